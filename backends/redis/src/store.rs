//! [`RedisStore`]: notifications and the change log in Redis.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{Script, Value};
use sse_core::{
    Change, ChangeKind, EventId, NewNotification, Notification, NotificationId, NotificationStore,
    Page, PageRequest, Principal, Replay, Retention, StoreError, Timestamp, UserId,
};

use crate::RedisError;
use crate::hub::redact;

/// A [`NotificationStore`] for teams with Redis but no SQL database.
///
/// Per recipient (all under one hash tag, so a recipient lives on one
/// cluster slot): a hash of notifications, a sorted set of their ids (for
/// paging), a set of the unread ones (its size is the unread count), a
/// change counter and a stream — the change log — whose entries have the
/// ids `0-1`, `0-2`, …: the change ids. Every write is one Lua script, so
/// the id, the state change and the log entry are atomic and ids are
/// consecutive per recipient.
///
/// Retention: the stream is trimmed with `XADD … MAXLEN ~ N` (cheap,
/// approximate); `since` treats everything older than the newest `N` as
/// gone, so clients see exactly the retention they were promised. Only a
/// count limit is supported: ids are not times.
///
/// Redis must persist (AOF or RDB) for this to be durable.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: Arc<str>,
    max_changes: usize,
}

/// Options for [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to open the store"]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    retention: Retention,
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// Prefix of every key (default `sse:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many changes per recipient to keep for replay (default 1,000).
    /// An age limit is refused at connect: see [`RedisStore`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long an operation waits on Redis before failing with
    /// [`StoreError::Unavailable`] (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<RedisStore, RedisError> {
        if self.retention.age_limit().is_some() {
            return Err(RedisError::Unsupported(
                "the Redis store keeps changes by count only; use Retention::max_changes_per_user",
            ));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|source| RedisError::Url {
            url: redact(&self.url),
            source,
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| RedisError::Connect {
                url: redact(&self.url),
                source,
            })?;
        Ok(RedisStore {
            connection,
            prefix: self.prefix.into(),
            max_changes: self.retention.changes_limit().unwrap_or(usize::MAX),
        })
    }
}

/// One recipient's keys.
struct Keys {
    notifications: String,
    ids: String,
    unread: String,
    counter: String,
    log: String,
}

/// Keys stay distinct for any user id: `{`, `}` and `%` are escaped, so the
/// hash tag is exactly the user.
fn escape(user: &str) -> String {
    user.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Appends a change: bumps the counter, logs it with the counter as id.
const LOG: &str = r#"
local function log(kind, now, maxlen)
  local seq = redis.call('INCR', KEYS[4])
  local unread = redis.call('SCARD', KEYS[3])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '0-' .. string.format('%d', seq), 'k', kind, 'u', unread, 't', now)
  return {string.format('%d', seq), string.format('%d', unread)}
end
"#;

static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG}
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return log(ARGV[3], ARGV[4], ARGV[5])"#
    ))
});

static MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG}
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {{'missing'}} end
if redis.call('SREM', KEYS[3], ARGV[1]) == 0 then return {{'unchanged'}} end
return log(ARGV[2], ARGV[3], ARGV[4])"#
    ))
});

static MARK_ALL_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG}
local ids = redis.call('SMEMBERS', KEYS[3])
if #ids == 0 then return {{'unchanged'}} end
table.sort(ids, function(a, b) return tonumber(a) < tonumber(b) end)
redis.call('DEL', KEYS[3])
local out = log('{{"type":"read","ids":[' .. table.concat(ids, ',') .. ']}}', ARGV[1], ARGV[2])
for _, id in ipairs(ids) do table.insert(out, id) end
return out"#
    ))
});

static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG}
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {{'missing'}} end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return log(ARGV[2], ARGV[3], ARGV[4])"#
    ))
});

static DELETE_ALL_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LOG}
local read = {{}}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('SISMEMBER', KEYS[3], id) == 0 then table.insert(read, id) end
end
if #read == 0 then return {{'unchanged'}} end
for _, id in ipairs(read) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local out = log('{{"type":"deleted","ids":[' .. table.concat(read, ',') .. ']}}', ARGV[1], ARGV[2])
for _, id in ipairs(read) do table.insert(out, id) end
return out"#
    ))
});

fn store_error(error: redis::RedisError) -> StoreError {
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Backend(Box::new(error))
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected data in Redis: {what}").into())
}

fn json_error(error: serde_json::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

/// What a write script answered.
enum Written {
    Missing,
    Unchanged,
    Logged {
        id: u64,
        unread: u64,
        ids: Vec<NotificationId>,
    },
}

fn written(reply: Vec<String>) -> Result<Written, StoreError> {
    match reply.first().map(String::as_str) {
        Some("missing") => Ok(Written::Missing),
        Some("unchanged") => Ok(Written::Unchanged),
        Some(_) if reply.len() >= 2 => {
            let number = |text: &str| {
                text.parse::<u64>()
                    .map_err(|_| corrupt("a non-numeric script reply"))
            };
            Ok(Written::Logged {
                id: number(&reply[0])?,
                unread: number(&reply[1])?,
                ids: reply[2..]
                    .iter()
                    .map(|id| number(id).map(NotificationId))
                    .collect::<Result<_, _>>()?,
            })
        }
        _ => Err(corrupt("an empty script reply")),
    }
}

impl RedisStore {
    /// Connects to `redis://host:port` with default options.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        Self::builder(url).connect().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "sse:".to_owned(),
            retention: Retention::default(),
            timeout: Duration::from_secs(2),
        }
    }

    fn keys(&self, user: &UserId) -> Keys {
        let base = format!("{}{{{}}}", self.prefix, escape(user.as_str()));
        Keys {
            notifications: format!("{base}:n"),
            ids: format!("{base}:ids"),
            unread: format!("{base}:unread"),
            counter: format!("{base}:seq"),
            log: format!("{base}:log"),
        }
    }

    fn maxlen(&self) -> String {
        self.max_changes.min(i64::MAX as usize).to_string()
    }

    async fn run(
        &self,
        script: &Script,
        keys: &Keys,
        args: &[String],
    ) -> Result<Written, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&keys.notifications)
            .key(&keys.ids)
            .key(&keys.unread)
            .key(&keys.counter)
            .key(&keys.log);
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        let reply: Vec<String> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(store_error)?;
        written(reply)
    }

    fn change(user: &UserId, kind: ChangeKind, id: u64, unread: u64, at: Timestamp) -> Change {
        Change::new(EventId(id), user.clone(), kind, unread, at)
    }
}

#[async_trait]
impl NotificationStore for RedisStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        new.validate()?;
        let mut connection = self.connection.clone();
        let id: u64 = redis::cmd("INCR")
            .arg(format!("{}nid", self.prefix))
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let user = new.user.clone();
        let now = Timestamp::now();
        let notification = Notification::from_new(NotificationId(id), new, now);
        let json = serde_json::to_string(&notification).map_err(json_error)?;
        let kind = ChangeKind::Created { notification };
        let kind_json = serde_json::to_string(&kind).map_err(json_error)?;
        let args = [
            id.to_string(),
            json,
            kind_json,
            now.as_millis().to_string(),
            self.maxlen(),
        ];
        match self.run(&CREATE, &self.keys(&user), &args).await? {
            Written::Logged { id, unread, .. } => Ok(Self::change(&user, kind, id, unread, now)),
            _ => Err(corrupt("create logged no change")),
        }
    }

    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        let keys = self.keys(user);
        let mut connection = self.connection.clone();
        let upper = page
            .before_id()
            .map_or_else(|| "+inf".to_owned(), |id| format!("({id}"));
        let ids: Vec<u64> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&keys.ids)
            .arg(upper)
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(page.limit() + 1)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        if ids.is_empty() {
            return Ok(Page::new(Vec::new(), None));
        }
        let (bodies, unread): (Vec<Option<String>>, Vec<bool>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.notifications)
            .arg(&ids)
            .cmd("SMISMEMBER")
            .arg(&keys.unread)
            .arg(&ids)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let mut items = Vec::with_capacity(ids.len());
        for (body, unread) in bodies.into_iter().zip(unread) {
            // Deleted between the two reads: leave it out.
            let Some(body) = body else { continue };
            let mut notification: Notification = serde_json::from_str(&body).map_err(json_error)?;
            notification.read = !unread;
            items.push(notification);
        }
        let next_before = if items.len() > page.limit() {
            items.truncate(page.limit());
            items.last().map(|n| n.id)
        } else {
            None
        };
        Ok(Page::new(items, next_before))
    }

    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("SCARD")
            .arg(self.keys(user).unread)
            .query_async(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError> {
        let kind = ChangeKind::Read { ids: vec![id] };
        let now = Timestamp::now();
        let args = [
            id.to_string(),
            serde_json::to_string(&kind).map_err(json_error)?,
            now.as_millis().to_string(),
            self.maxlen(),
        ];
        match self.run(&MARK_READ, &self.keys(user), &args).await? {
            Written::Missing => Err(StoreError::NotFound { id }),
            Written::Unchanged => Ok(None),
            Written::Logged { id, unread, .. } => {
                Ok(Some(Self::change(user, kind, id, unread, now)))
            }
        }
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let now = Timestamp::now();
        match self
            .run(
                &MARK_ALL_READ,
                &self.keys(user),
                &[now.as_millis().to_string(), self.maxlen()],
            )
            .await?
        {
            Written::Logged { id, unread, ids } => Ok(Some(Self::change(
                user,
                ChangeKind::Read { ids },
                id,
                unread,
                now,
            ))),
            _ => Ok(None),
        }
    }

    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        let kind = ChangeKind::Deleted { ids: vec![id] };
        let now = Timestamp::now();
        let args = [
            id.to_string(),
            serde_json::to_string(&kind).map_err(json_error)?,
            now.as_millis().to_string(),
            self.maxlen(),
        ];
        match self.run(&DELETE, &self.keys(user), &args).await? {
            Written::Logged { id, unread, .. } => Ok(Self::change(user, kind, id, unread, now)),
            _ => Err(StoreError::NotFound { id }),
        }
    }

    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let now = Timestamp::now();
        match self
            .run(
                &DELETE_ALL_READ,
                &self.keys(user),
                &[now.as_millis().to_string(), self.maxlen()],
            )
            .await?
        {
            Written::Logged { id, unread, ids } => Ok(Some(Self::change(
                user,
                ChangeKind::Deleted { ids },
                id,
                unread,
                now,
            ))),
            _ => Ok(None),
        }
    }

    async fn since(
        &self,
        principal: &Principal,
        after: EventId,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let user = principal.user();
        let keys = self.keys(user);
        let mut connection = self.connection.clone();
        let (latest, range): (Option<u64>, StreamRangeReply) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(&keys.counter)
            .cmd("XRANGE")
            .arg(&keys.log)
            .arg(format!("0-{}", after.get().saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let Some(latest) = latest.filter(|l| *l > 0) else {
            return Ok(if after.get() == 0 {
                Replay::Changes(Vec::new())
            } else {
                Replay::HistoryGone { latest: None }
            });
        };
        let gone = Replay::HistoryGone {
            latest: Some(EventId(latest)),
        };
        let floor = latest.saturating_sub(u64::try_from(self.max_changes).unwrap_or(u64::MAX));
        if after.get() > latest || after.get() < floor {
            return Ok(gone);
        }
        let mut changes = Vec::with_capacity(range.ids.len());
        for entry in range.ids.into_iter().take(limit) {
            let id = entry
                .id
                .strip_prefix("0-")
                .and_then(|seq| seq.parse::<u64>().ok())
                .ok_or_else(|| corrupt("a change log id"))?;
            let field = |name: &str| -> Result<String, StoreError> {
                match entry.map.get(name) {
                    Some(Value::BulkString(bytes)) => {
                        String::from_utf8(bytes.clone()).map_err(|_| corrupt("a non-UTF-8 field"))
                    }
                    Some(Value::SimpleString(text)) => Ok(text.clone()),
                    Some(Value::Int(n)) => Ok(n.to_string()),
                    _ => Err(corrupt("a missing change field")),
                }
            };
            let kind: ChangeKind = serde_json::from_str(&field("k")?).map_err(json_error)?;
            let unread = field("u")?
                .parse()
                .map_err(|_| corrupt("an unread count"))?;
            let at =
                Timestamp::from_millis(field("t")?.parse().map_err(|_| corrupt("a timestamp"))?);
            changes.push(Self::change(user, kind, id, unread, at));
        }
        // Trimmed below what the client needs (or all of it): gone.
        let expected_first = after.get() + 1;
        let complete = match changes.first() {
            Some(first) => first.id.get() == expected_first,
            None => after.get() == latest,
        };
        Ok(if complete {
            Replay::Changes(changes)
        } else {
            gone
        })
    }

    async fn last_event_id(&self, principal: &Principal) -> Result<Option<EventId>, StoreError> {
        let mut connection = self.connection.clone();
        let latest: Option<u64> = redis::cmd("GET")
            .arg(self.keys(principal.user()).counter)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(latest.filter(|l| *l > 0).map(EventId))
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("max_changes", &self.max_changes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_ids_cannot_break_out_of_their_hash_tag() {
        assert_eq!(super::escape("a}b{c%"), "a%7Db%7Bc%25");
    }
}
