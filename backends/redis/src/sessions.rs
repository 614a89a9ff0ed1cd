//! [`RedisSessions`]: cookie sessions in Redis, shared by every node.

use std::time::Duration;

use async_trait::async_trait;
use sse_core::auth::{
    BoxError, DEFAULT_SESSION_LIFETIME, DEFAULT_SESSIONS_PER_USER, IssuedSession, credential_digest,
};
use sse_core::{Principal, SessionId, SessionLookup, StoreError, UserId};

use crate::RedisError;
use crate::connection::Target;
use crate::hub::redact;
use crate::link::Link;

/// Sessions in Redis, for apps without a session store of their own: every
/// node behind the load balancer sees the same sessions, and a logout on
/// one ends it everywhere. A [`SessionLookup`], so it plugs into
/// [`CookieSessionAuthenticator`](sse_core::CookieSessionAuthenticator).
///
/// The credential (the cookie value, 128 random bits) is never stored: a
/// session lives at `<prefix>session:<SHA-256 of the credential>`, holding
/// the user and an unrelated random session id, which is what principals,
/// hub channels and logs carry (see [`sse_core::auth::credential`]). A
/// session expires after its [lifetime](RedisSessions::lifetime) (30 days
/// by default; its keys carry that TTL, so Redis deletes them), at
/// [`RedisSessions::remove`] or [`RedisSessions::revoke`]. A user keeps at
/// most [`max_per_user`](RedisSessions::max_per_user) sessions (32;
/// creating another ends the oldest), indexed in a sorted set
/// `<prefix>sessions-of:<user>` that expires with the newest session.
#[derive(Clone)]
pub struct RedisSessions {
    link: Link,
    /// On a Redis Cluster (no transaction across the two keys of a session).
    cluster: bool,
    prefix: String,
    lifetime: Duration,
    max_per_user: usize,
}

impl RedisSessions {
    /// Connects to `url`, with keys under `prefix`. While Redis is down,
    /// lookups fail at once (streams and handlers answer `503`).
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, RedisError> {
        let timeout = Duration::from_secs(2);
        let target = Target::resolve(url, timeout).await?;
        let manager = target
            .connect(timeout, Duration::from_secs(5))
            .await
            .map_err(|source| RedisError::Connect {
                url: redact(url),
                source,
            })?;
        Ok(Self {
            cluster: target.is_cluster(),
            link: Link::new(manager, timeout),
            prefix: prefix.into(),
            lifetime: DEFAULT_SESSION_LIFETIME,
            max_per_user: DEFAULT_SESSIONS_PER_USER,
        })
    }

    /// How many sessions a user keeps (at least 1; 32 by default): creating
    /// one more ends the user's oldest.
    #[must_use]
    pub fn max_per_user(mut self, sessions: usize) -> Self {
        self.max_per_user = sessions.max(1);
        self
    }

    /// How long a session lasts from creation (at least a second).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    fn key(&self, credential: &str) -> String {
        format!("{}session:{}", self.prefix, credential_digest(credential))
    }

    fn id_key(&self, session: &SessionId) -> String {
        format!("{}session-id:{session}", self.prefix)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}sessions-of:{}", self.prefix, crate::store::escape(user))
    }

    /// Starts a session for `principal` (its user, groups and topics; a
    /// fresh session id replaces any it carries); returns its credential
    /// (the cookie value), which is not stored. Ends the user's oldest
    /// sessions past [`max_per_user`](Self::max_per_user).
    pub async fn create(&self, principal: &Principal) -> Result<String, StoreError> {
        let issued = IssuedSession::generate().map_err(|e| StoreError::Backend(Box::new(e)))?;
        let record = serde_json::to_string(&Record {
            user: principal.user().as_str().into(),
            session: issued.id().as_str().into(),
            groups: principal.groups().iter().map(|g| g.to_string()).collect(),
            topics: principal.topics().iter().map(|t| t.to_string()).collect(),
            expires: std::time::SystemTime::now()
                .checked_add(self.lifetime)
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|since| u64::try_from(since.as_millis()).ok()),
        })
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let key = self.key(issued.credential());
        let seconds = self.lifetime.as_secs();
        let set = |key: &str, value: &str| {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(value).arg("EX").arg(seconds);
            set
        };
        let (by_credential, by_id) = (set(&key, &record), set(&self.id_key(issued.id()), &key));
        if self.cluster {
            // The two keys live on different slots of a cluster, where one
            // transaction cannot span them: the id index is written second,
            // so a session is never revocable by id before it exists.
            for write in [&by_credential, &by_id] {
                self.link
                    .run(|mut connection| async move { write.query_async::<()>(&mut connection).await })
                    .await?;
            }
        } else {
            let mut write = redis::pipe();
            write
                .atomic()
                .add_command(by_credential)
                .ignore()
                .add_command(by_id)
                .ignore();
            self.link
                .run(|mut connection| {
                    let write = &write;
                    async move { write.query_async::<()>(&mut connection).await }
                })
                .await?;
        }
        self.index(principal.user().as_str(), issued.id()).await?;
        Ok(issued.into_parts().0)
    }

    /// Adds a session to its user's index (dropping expired entries) and
    /// ends the oldest past the cap.
    async fn index(&self, user: &str, session: &SessionId) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let lifetime = self.lifetime.as_millis();
        let index = self.user_key(user);
        let mut write = redis::pipe();
        write
            .cmd("ZADD")
            .arg(&index)
            .arg(u64::try_from(now).unwrap_or(u64::MAX))
            .arg(session.as_str())
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(lifetime)))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(u64::try_from(lifetime).unwrap_or(u64::MAX))
            .ignore()
            .cmd("ZCARD")
            .arg(&index);
        let (held,): (usize,) = self
            .link
            .run(|mut connection| {
                let write = &write;
                async move { write.query_async(&mut connection).await }
            })
            .await?;
        if held <= self.max_per_user {
            return Ok(());
        }
        let excess = held - self.max_per_user;
        let oldest: Vec<String> = self
            .link
            .run(|mut connection| {
                let index = &index;
                async move {
                    redis::cmd("ZPOPMIN")
                        .arg(index)
                        .arg(excess)
                        .query_async::<Vec<(String, f64)>>(&mut connection)
                        .await
                }
            })
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in oldest {
            let key: Option<String> = self
                .command("GETDEL", &self.id_key(&SessionId::from(id)))
                .await?;
            if let Some(key) = key {
                let _: u64 = self.command("DEL", &key).await?;
            }
        }
        Ok(())
    }

    /// Takes a session out of its user's index.
    async fn unindex(&self, principal: &Principal) -> Result<(), StoreError> {
        let Some(session) = principal.session() else {
            return Ok(());
        };
        let index = self.user_key(principal.user().as_str());
        let _: u64 = self
            .link
            .run(|mut connection| {
                let index = &index;
                async move {
                    redis::cmd("ZREM")
                        .arg(index)
                        .arg(session.as_str())
                        .query_async(&mut connection)
                        .await
                }
            })
            .await?;
        Ok(())
    }

    /// Ends the session of `credential`; returns its principal, whose
    /// session id ends its streams through
    /// [`Notifier::disconnect`](sse_core::Notifier::disconnect).
    pub async fn remove(&self, credential: &str) -> Result<Option<Principal>, StoreError> {
        let key = self.key(credential);
        let record: Option<String> = self.command("GETDEL", &key).await?;
        let Some(principal) = record.as_deref().and_then(principal) else {
            return Ok(None);
        };
        if let Some(session) = principal.session() {
            let _: u64 = self.command("DEL", &self.id_key(session)).await?;
        }
        self.unindex(&principal).await?;
        Ok(Some(principal))
    }

    /// Ends the session with this id (an administrator revoking it);
    /// returns whether it existed.
    ///
    /// Its credential is refused from then on; to end the streams it has
    /// open on every node too, as logout does, follow with
    /// `notifier.revoke(&user, Some(&id))`.
    pub async fn revoke(&self, session: &SessionId) -> Result<bool, StoreError> {
        let key: Option<String> = self.command("GETDEL", &self.id_key(session)).await?;
        let Some(key) = key else { return Ok(false) };
        let record: Option<String> = self.command("GETDEL", &key).await?;
        let Some(principal) = record.as_deref().and_then(principal) else {
            return Ok(false);
        };
        self.unindex(&principal).await?;
        Ok(true)
    }

    /// The user's sessions that have not expired, oldest first: for a
    /// "your devices" page, or to learn which groups a user is in.
    pub async fn of_user(&self, user: &UserId) -> Result<Vec<Principal>, StoreError> {
        let index = self.user_key(user.as_str());
        let ids: Vec<String> = self
            .link
            .run(|mut connection| {
                let index = &index;
                async move {
                    redis::cmd("ZRANGE")
                        .arg(index)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut connection)
                        .await
                }
            })
            .await?;
        let mut principals = Vec::with_capacity(ids.len());
        for id in ids {
            let key: Option<String> = self
                .command("GET", &self.id_key(&SessionId::from(id)))
                .await?;
            let Some(key) = key else { continue };
            let record: Option<String> = self.command("GET", &key).await?;
            if let Some(principal) = record.as_deref().and_then(principal)
                && principal.user() == user
                && !principal.is_expired()
            {
                principals.push(principal);
            }
        }
        Ok(principals)
    }

    /// `name key` through the link.
    async fn command<T: redis::FromRedisValue>(
        &self,
        name: &'static str,
        key: &str,
    ) -> Result<T, StoreError> {
        self.link
            .run(|mut connection| async move {
                redis::cmd(name).arg(key).query_async(&mut connection).await
            })
            .await
    }
}

/// What a session key holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    user: String,
    session: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    /// Milliseconds since the Unix epoch; absent in sessions written
    /// before expiries were recorded (their key's TTL still ends them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
}

fn principal(record: &str) -> Option<Principal> {
    let record: Record = serde_json::from_str(record).ok()?;
    let principal = Principal::new(record.user)
        .with_session(record.session)
        .with_groups(record.groups)
        .with_topics(record.topics);
    Some(match record.expires {
        Some(ms) => {
            principal.with_expiry(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        }
        None => principal,
    })
}

#[async_trait]
impl SessionLookup for RedisSessions {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        let record: Option<String> = self
            .command("GET", &self.key(credential))
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
        Ok(record.as_deref().and_then(principal))
    }
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .field("lifetime", &self.lifetime)
            .field("max_per_user", &self.max_per_user)
            .finish_non_exhaustive()
    }
}
