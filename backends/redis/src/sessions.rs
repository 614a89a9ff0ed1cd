//! [`RedisSessions`]: cookie sessions in Redis, shared by every node.

use std::time::Duration;

use async_trait::async_trait;
use sse_core::auth::{BoxError, IssuedSession, credential_digest};
use sse_core::{Principal, SessionId, SessionLookup, StoreError};

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
/// session expires after its lifetime (30 days by default), at
/// [`RedisSessions::remove`] or [`RedisSessions::revoke`].
#[derive(Clone)]
pub struct RedisSessions {
    link: Link,
    /// On a Redis Cluster (no transaction across the two keys of a session).
    cluster: bool,
    prefix: String,
    lifetime: Duration,
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
            lifetime: Duration::from_secs(30 * 24 * 3600),
        })
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

    /// Starts a session for `principal` (its user, groups and topics; a
    /// fresh session id replaces any it carries); returns its credential
    /// (the cookie value), which is not stored.
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
        Ok(issued.into_parts().0)
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
        let removed: u64 = self.command("DEL", &key).await?;
        Ok(removed > 0)
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
            .finish_non_exhaustive()
    }
}
