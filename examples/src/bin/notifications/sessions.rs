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
    /// Starts a session for `principal`; returns its credential (the
    /// cookie value).
    pub(crate) async fn create(&self, principal: Principal) -> Result<String, StoreError> {
        match self {
            Self::Memory(sessions) => sessions
                .create(principal)
                .map_err(|e| StoreError::Backend(Box::new(e))),
            Self::Sql(sessions) => sessions.create(&principal).await,
            Self::Redis(sessions) => sessions.create(&principal).await,
        }
    }

    /// Ends the session of `credential`; returns its principal.
    pub(crate) async fn remove(&self, credential: &str) -> Result<Option<Principal>, StoreError> {
        match self {
            Self::Memory(sessions) => Ok(sessions.remove(credential)),
            Self::Sql(sessions) => sessions.remove(credential).await,
            Self::Redis(sessions) => sessions.remove(credential).await,
        }
    }

    /// The user's live sessions (for the orgs they are in).
    pub(crate) async fn of_user(&self, user: &UserId) -> Result<Vec<Principal>, StoreError> {
        match self {
            Self::Memory(sessions) => Ok(sessions.of_user(user)),
            Self::Sql(sessions) => sessions.of_user(user).await,
            Self::Redis(sessions) => sessions.of_user(user).await,
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
