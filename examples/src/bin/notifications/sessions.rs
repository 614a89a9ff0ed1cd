//! Demo login sessions, next to the notifications: in the SQL database or
//! Redis (they survive restarts and are shared by every instance), or in
//! memory with `--store memory`.

use async_trait::async_trait;
use sse_core::auth::BoxError;
use sse_core::{InMemorySessions, Principal, SessionLookup, StoreError, UserId};
use sse_redis::RedisSessions;
use sse_sqlx::SqlSessions;

#[derive(Clone, Debug)]
pub(crate) enum Sessions {
    Memory(InMemorySessions),
    Sql(SqlSessions),
    Redis(RedisSessions),
}

impl Sessions {
    pub(crate) async fn create(&self, user: &UserId) -> Result<String, StoreError> {
        match self {
            Self::Memory(sessions) => Ok(sessions.create(Principal::new(user.clone()))),
            Self::Sql(sessions) => sessions.create(user).await,
            Self::Redis(sessions) => sessions.create(user).await,
        }
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(sessions) => {
                sessions.remove(id);
                Ok(())
            }
            Self::Sql(sessions) => sessions.remove(id).await.map(|_| ()),
            Self::Redis(sessions) => sessions.remove(id).await.map(|_| ()),
        }
    }
}

#[async_trait]
impl SessionLookup for Sessions {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        match self {
            Self::Memory(sessions) => sessions.lookup(credential).await,
            Self::Sql(sessions) => sessions.lookup(credential).await,
            Self::Redis(sessions) => sessions.lookup(credential).await,
        }
    }
}
