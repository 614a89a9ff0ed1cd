//! [`RedisSessions`]: cookie sessions in Redis, shared by every node.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use sse_core::auth::BoxError;
use sse_core::{Principal, SessionLookup, StoreError, UserId};

use crate::RedisError;
use crate::hub::redact;

/// Sessions in Redis (`<prefix>session:<id>` → user, with a TTL), for apps
/// without a session store of their own: every node behind the load
/// balancer sees the same sessions, and a logout on one ends it everywhere.
/// A [`SessionLookup`], so it plugs into
/// [`CookieSessionAuthenticator`](sse_core::CookieSessionAuthenticator).
///
/// Session ids are 128 random bits from the operating system; a session
/// expires after its lifetime (30 days by default) or at
/// [`RedisSessions::remove`].
#[derive(Clone)]
pub struct RedisSessions {
    connection: ConnectionManager,
    prefix: String,
    lifetime: Duration,
}

impl RedisSessions {
    /// Connects to `url`, with keys under `prefix`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, RedisError> {
        let client = redis::Client::open(url).map_err(|source| RedisError::Url {
            url: redact(url),
            source,
        })?;
        let connection =
            ConnectionManager::new(client)
                .await
                .map_err(|source| RedisError::Connect {
                    url: redact(url),
                    source,
                })?;
        Ok(Self {
            connection,
            prefix: prefix.into(),
            lifetime: Duration::from_secs(30 * 24 * 3600),
        })
    }

    /// How long a session lasts from creation (at least a second).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    fn key(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    /// Starts a session for `user`; returns its id (the cookie value).
    pub async fn create(&self, user: &UserId) -> Result<String, StoreError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Backend(e.to_string().into()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.key(&id))
            .arg(user.as_str())
            .arg("EX")
            .arg(self.lifetime.as_secs())
            .query_async::<()>(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(id)
    }

    /// Ends a session; returns the user it belonged to.
    pub async fn remove(&self, id: &str) -> Result<Option<UserId>, StoreError> {
        let mut connection = self.connection.clone();
        let user: Option<String> = redis::cmd("GETDEL")
            .arg(self.key(id))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(user.map(UserId::from))
    }
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

#[async_trait]
impl SessionLookup for RedisSessions {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        let mut connection = self.connection.clone();
        let user: Option<String> = redis::cmd("GET")
            .arg(self.key(credential))
            .query_async(&mut connection)
            .await
            .map_err(|e| Box::new(unavailable(e)) as BoxError)?;
        Ok(user.map(|user| Principal::new(user).with_session(credential)))
    }
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
