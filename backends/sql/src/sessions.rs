//! [`SqlSessions`]: cookie sessions in the store's database.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::AnyPool;
use sse_core::auth::BoxError;
use sse_core::{Principal, SessionLookup, Timestamp, UserId};

use crate::error::store_error;
use crate::store::SqlStore;

/// Sessions kept in the `sse_sessions` table, for apps that have no session
/// store of their own: they survive restarts and are shared by every node
/// on the same database. A [`SessionLookup`], so it plugs into
/// [`CookieSessionAuthenticator`](sse_core::CookieSessionAuthenticator).
///
/// Session ids are 128 random bits from the operating system; a session
/// expires after its lifetime (30 days by default) or at [`SqlSessions::remove`].
///
/// ```
/// use sse_core::{CookieSessionAuthenticator, SessionLookup};
/// use sse_sqlx::{SqlSessions, SqlStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::auth::BoxError> {
/// let store = SqlStore::connect("sqlite::memory:").await?;
/// let sessions = SqlSessions::new(&store);
/// let sid = sessions.create(&"alice".into()).await?;
/// let principal = sessions.lookup(&sid).await?.unwrap();
/// assert_eq!(principal.user().as_str(), "alice");
/// let auth = CookieSessionAuthenticator::new("sid", sessions);
/// # let _ = auth;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqlSessions {
    pool: AnyPool,
    lifetime: Duration,
}

impl SqlSessions {
    /// Sessions in `store`'s database.
    pub fn new(store: &SqlStore) -> Self {
        Self {
            pool: store.writer_pool().clone(),
            lifetime: Duration::from_secs(30 * 24 * 3600),
        }
    }

    /// How long a session lasts from creation.
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Starts a session for `user`; returns its id (the cookie value).
    pub async fn create(&self, user: &UserId) -> Result<String, sse_core::StoreError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| sse_core::StoreError::Backend(e.to_string().into()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Timestamp::now().as_millis();
        let expires =
            now.saturating_add(i64::try_from(self.lifetime.as_millis()).unwrap_or(i64::MAX));
        sqlx::query("INSERT INTO sse_sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id.as_str())
            .bind(user.as_str())
            .bind(now)
            .bind(expires)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(id)
    }

    /// Ends a session; returns the user it belonged to.
    pub async fn remove(&self, id: &str) -> Result<Option<UserId>, sse_core::StoreError> {
        let user: Option<String> =
            sqlx::query_scalar("DELETE FROM sse_sessions WHERE id = $1 RETURNING user_id")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(user.map(UserId::from))
    }

    /// Deletes expired sessions; returns how many.
    pub async fn prune_expired(&self) -> Result<u64, sse_core::StoreError> {
        Ok(
            sqlx::query("DELETE FROM sse_sessions WHERE expires_at < $1")
                .bind(Timestamp::now().as_millis())
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected(),
        )
    }
}

#[async_trait]
impl SessionLookup for SqlSessions {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        let user: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM sse_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(credential)
        .bind(Timestamp::now().as_millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Box::new(store_error(e)) as BoxError)?;
        Ok(user.map(|user| Principal::new(user).with_session(credential)))
    }
}
