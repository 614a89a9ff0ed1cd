//! [`SqlSessions`]: cookie sessions in the store's database.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AnyPool, Row};
use sse_core::auth::{
    BoxError, DEFAULT_SESSION_LIFETIME, DEFAULT_SESSIONS_PER_USER, IssuedSession, credential_digest,
};
use sse_core::{Principal, SessionId, SessionLookup, StoreError, Timestamp, UserId};

use crate::error::store_error;
use crate::store::SqlStore;

/// Sessions kept in the `sse_sessions` table, for apps that have no session
/// store of their own: they survive restarts and are shared by every node
/// on the same database. A [`SessionLookup`], so it plugs into
/// [`CookieSessionAuthenticator`](sse_core::CookieSessionAuthenticator).
///
/// Credentials (the cookie values) are 128 random bits from the operating
/// system and are never stored: a row holds the SHA-256 of its credential
/// and an unrelated random session id, which is what principals, hubs and
/// logs carry (see [`sse_core::auth::credential`]). A session expires after
/// its [lifetime](SqlSessions::lifetime) (30 days by default), at
/// [`SqlSessions::remove`] or [`SqlSessions::revoke`].
///
/// The table stays bounded: a user keeps at most
/// [`max_per_user`](SqlSessions::max_per_user) sessions (32; creating
/// another ends the oldest), and expired rows are deleted every ten
/// minutes by whichever [`create`](SqlSessions::create) comes along (or by
/// [`prune_expired`](SqlSessions::prune_expired) from your own scheduler).
///
/// ```
/// use sse_core::{CookieSessionAuthenticator, Principal, SessionLookup};
/// use sse_sqlx::{SqlSessions, SqlStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::auth::BoxError> {
/// let store = SqlStore::connect("sqlite::memory:").await?;
/// let sessions = SqlSessions::new(&store);
/// let sid = sessions.create(&Principal::new("alice").with_groups(["acme"])).await?;
/// let principal = sessions.lookup(&sid).await?.unwrap();
/// assert_eq!(principal.user().as_str(), "alice");
/// assert_eq!(principal.groups()[0].as_str(), "acme");
/// assert_ne!(principal.session().unwrap().as_str(), sid);
/// let auth = CookieSessionAuthenticator::new("sid", sessions);
/// # let _ = auth;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqlSessions {
    pool: AnyPool,
    lifetime: Duration,
    max_per_user: usize,
    /// When expired rows were last deleted (milliseconds since the epoch),
    /// shared by clones.
    last_prune: Arc<AtomicI64>,
}

/// How often `create` deletes expired rows.
const PRUNE_EVERY_MS: i64 = 600_000;

impl SqlSessions {
    /// Sessions in `store`'s database.
    pub fn new(store: &SqlStore) -> Self {
        Self {
            pool: store.writer_pool().clone(),
            lifetime: DEFAULT_SESSION_LIFETIME,
            max_per_user: DEFAULT_SESSIONS_PER_USER,
            last_prune: Arc::default(),
        }
    }

    /// How many sessions a user keeps (at least 1; 32 by default): creating
    /// one more ends the user's oldest.
    #[must_use]
    pub fn max_per_user(mut self, sessions: usize) -> Self {
        self.max_per_user = sessions.max(1);
        self
    }

    /// How long a session lasts from creation.
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Starts a session for `principal` (its user, groups and topics; a
    /// fresh session id replaces any it carries); returns its credential
    /// (the cookie value), which is not stored. Ends the user's oldest
    /// sessions past [`max_per_user`](Self::max_per_user), in the same
    /// transaction.
    pub async fn create(&self, principal: &Principal) -> Result<String, StoreError> {
        let issued = IssuedSession::generate().map_err(|e| StoreError::Backend(Box::new(e)))?;
        let now = Timestamp::now().as_millis();
        let expires =
            now.saturating_add(i64::try_from(self.lifetime.as_millis()).unwrap_or(i64::MAX));
        let names = |items: Vec<&str>| serde_json::to_string(&items);
        let groups = names(principal.groups().iter().map(|g| g.as_str()).collect())
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let topics = names(principal.topics().iter().map(|t| t.as_str()).collect())
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("INSERT INTO sse_sessions (credential_hash, session_id, user_id, groups, topics, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(issued.digest())
            .bind(issued.id().as_str())
            .bind(principal.user().as_str())
            .bind(groups)
            .bind(topics)
            .bind(now)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        // The user's other sessions: all but the newest `max - 1` that
        // have not expired end.
        let keep = i64::try_from(self.max_per_user - 1).unwrap_or(i64::MAX);
        sqlx::query(
            "DELETE FROM sse_sessions WHERE user_id = $1 AND session_id <> $2 AND session_id NOT IN \
             (SELECT session_id FROM sse_sessions WHERE user_id = $1 AND session_id <> $2 AND expires_at > $3 \
              ORDER BY created_at DESC, session_id DESC LIMIT $4)",
        )
        .bind(principal.user().as_str())
        .bind(issued.id().as_str())
        .bind(now)
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        let last = self.last_prune.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRUNE_EVERY_MS
            && self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // Not the caller's concern if it fails: the next one retries.
            if let Err(error) = self.prune_expired().await {
                tracing::warn!(%error, "deleting expired sessions failed");
                self.last_prune.store(last, Ordering::Relaxed);
            }
        }
        Ok(issued.into_parts().0)
    }

    /// Ends the session of `credential`; returns its principal, whose
    /// session id ends its streams through
    /// [`Notifier::disconnect`](sse_core::Notifier::disconnect).
    pub async fn remove(&self, credential: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM sse_sessions WHERE credential_hash = $1 RETURNING user_id, session_id, groups, topics, expires_at",
        )
        .bind(credential_digest(credential))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| principal(&row)).transpose()
    }

    /// Ends the session with this id (an administrator revoking it);
    /// returns whether it existed.
    ///
    /// Its credential is refused from then on; to end the streams it has
    /// open on every node too, as logout does, follow with
    /// `notifier.revoke(&user, Some(&id))`.
    pub async fn revoke(&self, session: &SessionId) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM sse_sessions WHERE session_id = $1")
                .bind(session.as_str())
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected()
                > 0,
        )
    }

    /// The user's sessions that have not expired, oldest first: for a
    /// "your devices" page, or to learn which groups a user is in.
    pub async fn of_user(&self, user: &UserId) -> Result<Vec<Principal>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, session_id, groups, topics, expires_at FROM sse_sessions \
             WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at, session_id",
        )
        .bind(user.as_str())
        .bind(Timestamp::now().as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(principal).collect()
    }

    /// Deletes expired sessions; returns how many. `create` does it every
    /// ten minutes anyway.
    pub async fn prune_expired(&self) -> Result<u64, StoreError> {
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

fn principal(row: &sqlx::any::AnyRow) -> Result<Principal, StoreError> {
    let user: String = row.try_get(0).map_err(store_error)?;
    let session: String = row.try_get(1).map_err(store_error)?;
    let names = |column: usize| -> Result<Vec<String>, StoreError> {
        let json: String = row.try_get(column).map_err(store_error)?;
        serde_json::from_str(&json).map_err(|e| StoreError::Backend(Box::new(e)))
    };
    let expires: i64 = row.try_get(4).map_err(store_error)?;
    let expires_at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(expires).unwrap_or(0));
    Ok(Principal::new(user)
        .with_session(session)
        .with_groups(names(2)?)
        .with_topics(names(3)?)
        .with_expiry(expires_at))
}

#[async_trait]
impl SessionLookup for SqlSessions {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        let row = sqlx::query(
            "SELECT user_id, session_id, groups, topics, expires_at FROM sse_sessions WHERE credential_hash = $1 AND expires_at > $2",
        )
        .bind(credential_digest(credential))
        .bind(Timestamp::now().as_millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| Box::new(store_error(e)) as BoxError)?;
        row.map(|row| principal(&row))
            .transpose()
            .map_err(|e| Box::new(e) as BoxError)
    }
}
