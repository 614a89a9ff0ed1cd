//! [`RedisStore`]: the event log and the notification inbox in Redis.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::streams::StreamRangeReply;
use redis::{FromRedisValue, Value};
use sse_core::log::{Epoch, LogRecord, Replay, check_appendable};
use sse_core::{
    Audience, Change, ChangeKind, Cursor, Event, EventLog, NewNotification, Notification,
    NotificationId, NotificationPolicy, NotificationStore, Page, PageRequest, Principal, Retention,
    StoreError, Timestamp, UserId,
};

use crate::RedisError;
use crate::connection::Target;
use crate::hub::redact;
use crate::link::Link;
use crate::scripts;

/// The event log and notification inbox for teams with Redis and no SQL
/// database: an [`EventLog`] for every durable audience and a
/// [`NotificationStore`] that writes its changes through it.
///
/// # Layout
///
/// Every key lives under one hash tag (`<prefix>{<prefix>log}:…`), so the
/// whole store sits on one cluster slot and each write — a notification
/// change and its log entry, or a batch — is one atomic script. The log is
/// a stream whose entry ids are `0-<position>`, positions taken from one
/// counter inside the script (so they are dense and visible in order),
/// with a sorted set of positions per audience for replays. Each user's
/// inbox is a hash of notifications, a sorted set of their ids, the set of
/// unread ones (its size is the unread count) and a version.
///
/// # One encoding
///
/// Scripts store what Rust encoded (the notification's JSON, each event's
/// frame); they only take positions and check versions. An inbox write
/// reads the user's state, builds the change with the same serde types as
/// every other store, and applies it only if the user's version did not
/// move meanwhile (else it reads again). Each write carries a token, so a
/// request retried after a dropped connection is not applied twice.
///
/// # Retention
///
/// By count and by age ([`Retention`]), applied as appends go (times come
/// from Redis's clock); replays below what is kept answer `HistoryGone`.
///
/// Redis must persist (AOF or RDB) for this to be durable. While Redis is
/// down, operations fail at once with
/// [`StoreError::Unavailable`](sse_core::StoreError::Unavailable).
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    keys: Arc<LogKeys>,
    retention: Retention,
    policy: NotificationPolicy,
}

/// Options for [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `connect` to open the store"]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    retention: Retention,
    policy: NotificationPolicy,
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// Prefix of every key (default `sse:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How much history the log keeps (default: the newest 100,000
    /// events).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The limits new notifications are checked against.
    pub fn policy(mut self, policy: NotificationPolicy) -> Self {
        self.policy = policy;
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
        let target = Target::resolve(&self.url, self.timeout).await?;
        let manager = target
            .connect(self.timeout, Duration::from_secs(5))
            .await
            .map_err(|source| RedisError::Connect {
                url: redact(&self.url),
                source,
            })?;
        Ok(RedisStore {
            link: Link::new(manager, self.timeout),
            keys: Arc::new(LogKeys::new(&self.prefix)),
            retention: self.retention,
            policy: self.policy,
        })
    }
}

/// Keys stay distinct for any name: `{`, `}` and `%` are escaped, so a
/// name cannot leave its hash tag or spell another key.
pub(crate) fn escape(name: &str) -> String {
    name.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// The log's keys, all under one hash tag.
struct LogKeys {
    base: String,
    head: String,
    epoch: String,
    log: String,
    pruned: String,
    notification_ids: String,
}

/// One user's inbox keys.
#[derive(Clone)]
struct InboxKeys {
    notifications: String,
    ids: String,
    unread: String,
    version: String,
}

impl LogKeys {
    fn new(prefix: &str) -> Self {
        let base = format!("{prefix}{{{}log}}", escape(prefix));
        Self {
            head: format!("{base}:head"),
            epoch: format!("{base}:epoch"),
            log: format!("{base}:log"),
            pruned: format!("{base}:pruned"),
            notification_ids: format!("{base}:nid"),
            base,
        }
    }

    fn index(&self, audience_key: &str) -> String {
        format!("{}:i:{}", self.base, escape(audience_key))
    }

    fn token(&self, token: &str) -> String {
        format!("{}:tok:{token}", self.base)
    }

    fn inbox(&self, user: &UserId) -> InboxKeys {
        let base = format!("{}:u:{}", self.base, escape(user.as_str()));
        InboxKeys {
            notifications: format!("{base}:n"),
            ids: format!("{base}:ids"),
            unread: format!("{base}:unread"),
            version: format!("{base}:v"),
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unexpected data in Redis: {what}").into())
}

fn json_error(error: serde_json::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn random_token() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        use std::hash::{BuildHasher, RandomState};
        return format!(
            "{:x}",
            RandomState::new().hash_one(std::time::SystemTime::now())
        );
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Value) -> Result<String, StoreError> {
    String::from_redis_value(value.clone()).map_err(|_| corrupt("a non-text script reply"))
}

fn number(value: &Value) -> Result<u64, StoreError> {
    text(value)?
        .parse()
        .map_err(|_| corrupt("a non-numeric script reply"))
}

/// How much of a user a write reads besides version and unread count.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Nothing more (a create).
    Count,
    /// Whether one notification exists and is unread.
    One(NotificationId),
    /// The unread ids.
    Unread,
    /// The unread ids and every id.
    All,
}

/// A user as [`RedisStore::read_users`] found them.
#[derive(Debug, Default)]
struct UserState {
    version: String,
    unread_count: u64,
    /// Sorted; read for `Scope::Unread` and `Scope::All`.
    unread: Vec<NotificationId>,
    /// Sorted; read for `Scope::All`.
    ids: Vec<NotificationId>,
    /// For `Scope::One`.
    one_exists: bool,
    one_unread: bool,
}

/// One user's part of a write: the version it was read at and what to do.
struct UserWrite {
    keys: InboxKeys,
    version: String,
    ops: Vec<Op>,
}

enum Op {
    Set(NotificationId, String),
    AddId(NotificationId),
    AddUnread(NotificationId),
    RemoveUnread(NotificationId),
    RemoveNotification(NotificationId),
    RemoveId(NotificationId),
    ClearUnread,
}

/// What a write did.
enum Written {
    /// A user's version moved: read again.
    Conflict,
    /// Applied (now or by an earlier try of the same token).
    Applied { epoch: Epoch, first: u64 },
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
            policy: NotificationPolicy::default(),
            timeout: Duration::from_secs(2),
        }
    }

    fn limits(&self) -> (String, String) {
        (
            self.retention
                .events_limit()
                .map_or_else(String::new, |n| n.to_string()),
            self.retention
                .age_limit()
                .map_or_else(String::new, |age| age.as_millis().to_string()),
        )
    }

    /// Runs [`scripts::WRITE`]: the users' operations under their versions,
    /// then `events` appended, once per token.
    async fn write(
        &self,
        users: &[UserWrite],
        events: &[(Audience, Event)],
        token: &str,
    ) -> Result<Written, StoreError> {
        let keys = &self.keys;
        let (max_events, max_age) = self.limits();
        let mut invocation = scripts::WRITE.prepare_invoke();
        invocation
            .key(&keys.head)
            .key(&keys.epoch)
            .key(&keys.log)
            .key(&keys.pruned)
            .key(keys.token(token));
        for user in users {
            invocation
                .key(&user.keys.notifications)
                .key(&user.keys.ids)
                .key(&user.keys.unread)
                .key(&user.keys.version);
        }
        let mut audiences = Vec::with_capacity(events.len());
        for (audience, _) in events {
            let key = audience.key().unwrap_or_default();
            invocation.key(keys.index(&key));
            audiences.push(key);
        }
        invocation
            .arg(token)
            .arg(Epoch::random().to_string())
            .arg(max_events)
            .arg(max_age)
            .arg(users.len())
            .arg(events.len());
        for user in users {
            invocation.arg(&user.version).arg(user.ops.len());
            for op in &user.ops {
                match op {
                    Op::Set(id, json) => invocation.arg("hset").arg(id.get()).arg(json),
                    Op::AddId(id) => invocation.arg("zadd").arg(id.get()),
                    Op::AddUnread(id) => invocation.arg("sadd").arg(id.get()),
                    Op::RemoveUnread(id) => invocation.arg("srem").arg(id.get()),
                    Op::RemoveNotification(id) => invocation.arg("hdel").arg(id.get()),
                    Op::RemoveId(id) => invocation.arg("zrem").arg(id.get()),
                    Op::ClearUnread => invocation.arg("delunread").arg("-"),
                };
            }
        }
        for ((_, event), audience) in events.iter().zip(&audiences) {
            invocation.arg(audience).arg(event.frame().as_ref());
        }
        let reply: Vec<Value> = self
            .link
            .run(|mut connection| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        match reply.first().map(text).transpose()?.as_deref() {
            Some("conflict") => Ok(Written::Conflict),
            Some("ok" | "done") if reply.len() >= 4 => {
                let epoch = text(&reply[1])?
                    .parse()
                    .map_err(|_| corrupt("the log's epoch"))?;
                let first = number(&reply[2])?;
                let cleanup: Vec<String> = reply[4..].iter().map(text).collect::<Result<_, _>>()?;
                if !cleanup.is_empty() {
                    self.clean_indexes(cleanup).await;
                }
                Ok(Written::Applied { epoch, first })
            }
            _ => Err(corrupt("a write script reply")),
        }
    }

    /// Drops pruned positions from audience indexes (a replay skips them
    /// anyway; this gives the memory back).
    async fn clean_indexes(&self, audiences: Vec<String>) {
        let (pruned, keys) = (self.keys.pruned.clone(), &self.keys);
        let floor: Result<Option<u64>, _> = self
            .link
            .run(|mut connection| {
                let pruned = &pruned;
                async move {
                    redis::cmd("GET")
                        .arg(pruned)
                        .query_async(&mut connection)
                        .await
                }
            })
            .await;
        let Ok(Some(floor)) = floor else { return };
        let mut pipe = redis::pipe();
        for audience in &audiences {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(keys.index(audience))
                .arg("-inf")
                .arg(floor)
                .ignore();
        }
        if let Err(error) = self
            .link
            .run(|mut connection| {
                let pipe = &pipe;
                async move { pipe.query_async::<()>(&mut connection).await }
            })
            .await
        {
            tracing::debug!(%error, "cleaning audience indexes failed; replays skip pruned positions anyway");
        }
    }

    /// The events as the write script stored them: each with its position.
    fn stamp(
        events: &[(Audience, Event)],
        epoch: Epoch,
        first: u64,
    ) -> Result<Vec<Event>, StoreError> {
        events
            .iter()
            .enumerate()
            .map(|(i, (_, event))| {
                event
                    .with_cursor(epoch.at(first + i as u64))
                    .map_err(|e| StoreError::Backend(Box::new(e)))
            })
            .collect()
    }

    /// What a write needs to know of each user, read together in one round
    /// trip: their version and unread count always, and only as much more
    /// as `scope` asks, so that a create or a single-id change costs the
    /// same whatever the size of the inbox.
    async fn read_users(
        &self,
        keys: &[&InboxKeys],
        scope: Scope,
        reserve: usize,
    ) -> Result<(Vec<UserState>, Vec<NotificationId>), StoreError> {
        let mut read = redis::pipe();
        read.atomic();
        if reserve > 0 {
            // Fresh notification ids, in the same round trip.
            read.cmd("INCRBY")
                .arg(&self.keys.notification_ids)
                .arg(reserve);
        }
        for keys in keys {
            read.cmd("GET")
                .arg(&keys.version)
                .cmd("SCARD")
                .arg(&keys.unread);
            match scope {
                Scope::Count => {}
                Scope::One(id) => {
                    read.cmd("SISMEMBER")
                        .arg(&keys.unread)
                        .arg(id.0)
                        .cmd("ZSCORE")
                        .arg(&keys.ids)
                        .arg(id.0);
                }
                Scope::Unread => {
                    read.cmd("SMEMBERS").arg(&keys.unread);
                }
                Scope::All => {
                    read.cmd("SMEMBERS")
                        .arg(&keys.unread)
                        .cmd("ZRANGE")
                        .arg(&keys.ids)
                        .arg(0)
                        .arg(-1);
                }
            }
        }
        let mut values: Vec<redis::Value> = self
            .link
            .run(|mut connection| {
                let read = &read;
                async move { read.query_async(&mut connection).await }
            })
            .await?;
        let reserved = if reserve > 0 {
            if values.is_empty() {
                return Err(corrupt("no reply to INCRBY"));
            }
            let last: u64 = redis::from_redis_value(values.remove(0))
                .map_err(|_| corrupt("a notification id counter"))?;
            let first = (last + 1).saturating_sub(reserve as u64);
            (first..=last).map(NotificationId).collect()
        } else {
            Vec::new()
        };
        let per_user = match scope {
            Scope::Count => 2,
            Scope::One(_) | Scope::All => 4,
            Scope::Unread => 3,
        };
        if values.len() != keys.len() * per_user {
            return Err(corrupt("a user read returned the wrong number of replies"));
        }
        let parse = |value: &redis::Value| -> Result<Vec<NotificationId>, StoreError> {
            let mut ids: Vec<u64> =
                redis::from_redis_value(value.clone()).map_err(|_| corrupt("an id set"))?;
            ids.sort_unstable();
            Ok(ids.into_iter().map(NotificationId).collect())
        };
        values
            .chunks(per_user)
            .map(|user| {
                let version: Option<String> = redis::from_redis_value(user[0].clone())
                    .map_err(|_| corrupt("a user version"))?;
                let unread_count: u64 = redis::from_redis_value(user[1].clone())
                    .map_err(|_| corrupt("an unread count"))?;
                let mut state = UserState {
                    version: version.unwrap_or_else(|| "0".to_owned()),
                    unread_count,
                    ..UserState::default()
                };
                match scope {
                    Scope::Count => {}
                    Scope::One(_) => {
                        state.one_unread = redis::from_redis_value::<bool>(user[2].clone())
                            .map_err(|_| corrupt("an unread flag"))?;
                        state.one_exists = !matches!(user[3], redis::Value::Nil);
                    }
                    Scope::Unread => state.unread = parse(&user[2])?,
                    Scope::All => {
                        state.unread = parse(&user[2])?;
                        state.ids = parse(&user[3])?;
                    }
                }
                Ok(state)
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(|states| (states, reserved))
    }

    /// Reads `user`, lets `plan` decide the change (or that there is
    /// none), and writes it; again from the read if the user changed
    /// meanwhile.
    async fn change<T>(
        &self,
        user: &UserId,
        scope: Scope,
        plan: impl Fn(&UserState) -> Result<Option<(Vec<Op>, ChangeKind, u64, T)>, StoreError>,
    ) -> Result<Option<(Change, T)>, StoreError> {
        let token = random_token();
        for _ in 0..100 {
            let keys = self.keys.inbox(user);
            let state = self
                .read_users(&[&keys], scope, 0)
                .await?
                .0
                .pop()
                .ok_or_else(|| corrupt("no user read"))?;
            let version = state.version.clone();
            let Some((ops, kind, unread_after, extra)) = plan(&state)? else {
                return Ok(None);
            };
            let event = Change::encode(&kind, unread_after)
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
            let events = [(Audience::User(user.clone()), event)];
            let write = UserWrite { keys, version, ops };
            match self
                .write(std::slice::from_ref(&write), &events, &token)
                .await?
            {
                Written::Conflict => continue,
                Written::Applied { epoch, first } => {
                    let stored = Self::stamp(&events, epoch, first)?;
                    let change = Change::from_appended(
                        user.clone(),
                        kind,
                        unread_after,
                        Timestamp::now(),
                        stored
                            .into_iter()
                            .next()
                            .ok_or_else(|| corrupt("no event"))?,
                    )
                    .map_err(|e| StoreError::Backend(Box::new(e)))?;
                    return Ok(Some((change, extra)));
                }
            }
        }
        Err(StoreError::Unavailable(
            "the user's notifications kept changing during the write; retry".into(),
        ))
    }
}

#[async_trait]
impl EventLog for RedisStore {
    async fn append(&self, events: &[(Audience, Event)]) -> Result<Vec<Event>, StoreError> {
        check_appendable(events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match self.write(&[], events, &random_token()).await? {
            Written::Applied { epoch, first } => Self::stamp(events, epoch, first),
            Written::Conflict => Err(corrupt("a conflict without users")),
        }
    }

    async fn since(
        &self,
        principal: &Principal,
        after: Cursor,
        limit: usize,
    ) -> Result<Replay, StoreError> {
        let keys = &self.keys;
        let (max_events, max_age) = self.limits();
        let mut invocation = scripts::SINCE.prepare_invoke();
        invocation
            .key(&keys.head)
            .key(&keys.epoch)
            .key(&keys.log)
            .key(&keys.pruned);
        for audience in principal.durable_audiences() {
            invocation.key(keys.index(&audience.key().unwrap_or_default()));
        }
        invocation
            .arg(after.epoch().to_string())
            .arg(after.position())
            .arg(limit)
            .arg(max_events)
            .arg(max_age);
        let reply: Vec<Value> = self
            .link
            .run(|mut connection| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        let head = |epoch: &Value, position: &Value| -> Result<Cursor, StoreError> {
            let epoch: Epoch = text(epoch)?
                .parse()
                .map_err(|_| corrupt("the log's epoch"))?;
            Ok(epoch.at(number(position)?))
        };
        match reply.first().map(text).transpose()?.as_deref() {
            Some("empty") => {
                let head = self.head().await?;
                Ok(Replay::HistoryGone { head })
            }
            Some("gone") if reply.len() == 3 => Ok(Replay::HistoryGone {
                head: head(&reply[1], &reply[2])?,
            }),
            Some("events") if reply.len() >= 4 => {
                let log_head = head(&reply[1], &reply[2])?;
                let more = number(&reply[3])? == 1;
                let events = reply[4..]
                    .iter()
                    .map(|frame| {
                        Event::from_encoded(Bytes::from(text(frame)?))
                            .map_err(|e| StoreError::Backend(Box::new(e)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let head = match (more, events.last().and_then(Event::cursor)) {
                    (true, Some(last)) => last,
                    _ => log_head,
                };
                Ok(Replay::Events { events, head })
            }
            _ => Err(corrupt("a replay script reply")),
        }
    }

    async fn read(&self, after: Cursor, limit: usize) -> Result<Vec<LogRecord>, StoreError> {
        let keys = &self.keys;
        let mut read = redis::pipe();
        read.atomic()
            .cmd("GET")
            .arg(&keys.epoch)
            .cmd("XRANGE")
            .arg(&keys.log)
            .arg(format!("(0-{}", after.position()))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1));
        let (epoch, range): (Option<String>, StreamRangeReply) = self
            .link
            .run(|mut connection| {
                let read = &read;
                async move { read.query_async(&mut connection).await }
            })
            .await?;
        if epoch.as_deref() != Some(after.epoch().to_string().as_str()) {
            return Ok(Vec::new());
        }
        range
            .ids
            .into_iter()
            .take(limit)
            .map(|entry| {
                let field = |name: &str| -> Result<String, StoreError> {
                    match entry.map.get(name) {
                        Some(value) => text(value),
                        None => Err(corrupt("a log entry without its fields")),
                    }
                };
                let audience = Audience::from_key(&field("a")?)
                    .ok_or_else(|| corrupt("a log entry's audience"))?;
                let event = Event::from_encoded(Bytes::from(field("f")?))
                    .map_err(|e| StoreError::Backend(Box::new(e)))?;
                Ok(LogRecord { audience, event })
            })
            .collect()
    }

    async fn head(&self) -> Result<Cursor, StoreError> {
        let keys = &self.keys;
        let mut invocation = scripts::HEAD.prepare_invoke();
        invocation
            .key(&keys.head)
            .key(&keys.epoch)
            .arg(Epoch::random().to_string());
        let (epoch, position): (String, u64) = self
            .link
            .run(|mut connection| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut connection).await }
            })
            .await?;
        let epoch: Epoch = epoch.parse().map_err(|_| corrupt("the log's epoch"))?;
        Ok(epoch.at(position))
    }
}

fn json(notification: &Notification) -> Result<String, StoreError> {
    serde_json::to_string(notification).map_err(json_error)
}

#[async_trait]
impl NotificationStore for RedisStore {
    async fn create(&self, new: NewNotification) -> Result<Change, StoreError> {
        Ok(self
            .create_many(vec![new])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| corrupt("a create stored nothing"))?)
    }

    /// One script for the whole batch: every recipient's notifications
    /// and every change, or nothing.
    async fn create_many(&self, new: Vec<NewNotification>) -> Result<Vec<Change>, StoreError> {
        for notification in &new {
            notification.validate_with(&self.policy)?;
        }
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now();
        let mut recipients: Vec<UserId> = new.iter().map(|n| n.user.clone()).collect();
        recipients.sort();
        recipients.dedup();
        let inboxes: Vec<InboxKeys> = recipients.iter().map(|u| self.keys.inbox(u)).collect();
        let inboxes: Vec<&InboxKeys> = inboxes.iter().collect();
        // The first read also reserves the ids: two round trips per create.
        let (mut states, ids) = self.read_users(&inboxes, Scope::Count, new.len()).await?;
        if ids.len() != new.len() {
            return Err(corrupt("fewer notification ids than notifications"));
        }
        let notifications: Vec<Notification> = ids
            .into_iter()
            .zip(new)
            .map(|(id, notification)| Notification::from_new(id, notification, now))
            .collect();
        let token = random_token();
        for attempt in 0..100 {
            if attempt > 0 {
                states = self.read_users(&inboxes, Scope::Count, 0).await?.0;
            }
            let mut writes = Vec::with_capacity(recipients.len());
            let mut unread = std::collections::HashMap::new();
            for ((user, keys), state) in recipients.iter().zip(&inboxes).zip(states.drain(..)) {
                unread.insert(user.clone(), state.unread_count);
                writes.push(UserWrite {
                    keys: (*keys).clone(),
                    version: state.version,
                    ops: Vec::new(),
                });
            }
            let mut changes = Vec::with_capacity(notifications.len());
            let mut events = Vec::with_capacity(notifications.len());
            for notification in &notifications {
                let at = recipients.binary_search(&notification.user).unwrap_or(0);
                let ops = &mut writes[at].ops;
                ops.push(Op::Set(notification.id, json(notification)?));
                ops.push(Op::AddId(notification.id));
                ops.push(Op::AddUnread(notification.id));
                let count = unread.entry(notification.user.clone()).or_default();
                *count += 1;
                let kind = ChangeKind::Created {
                    notification: notification.clone(),
                };
                let event =
                    Change::encode(&kind, *count).map_err(|e| StoreError::Backend(Box::new(e)))?;
                events.push((Audience::User(notification.user.clone()), event));
                changes.push((notification.user.clone(), kind, *count));
            }
            match self.write(&writes, &events, &token).await? {
                Written::Conflict => continue,
                Written::Applied { epoch, first } => {
                    let stored = Self::stamp(&events, epoch, first)?;
                    return changes
                        .into_iter()
                        .zip(stored)
                        .map(|((user, kind, unread), event)| {
                            Change::from_appended(user, kind, unread, now, event)
                                .map_err(|e| StoreError::Backend(Box::new(e)))
                        })
                        .collect();
                }
            }
        }
        Err(StoreError::Unavailable(
            "the recipients' notifications kept changing during the write; retry".into(),
        ))
    }

    async fn list(&self, user: &UserId, page: PageRequest) -> Result<Page, StoreError> {
        let keys = self.keys.inbox(user);
        let upper = page
            .before_id()
            .map_or_else(|| "+inf".to_owned(), |id| format!("({id}"));
        let mut range = redis::cmd("ZREVRANGEBYSCORE");
        range
            .arg(&keys.ids)
            .arg(upper)
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(page.limit() + 1);
        let ids: Vec<u64> = self
            .link
            .run(|mut connection| {
                let range = &range;
                async move { range.query_async(&mut connection).await }
            })
            .await?;
        if ids.is_empty() {
            return Ok(Page::new(Vec::new(), None));
        }
        let mut read = redis::pipe();
        read.cmd("HMGET")
            .arg(&keys.notifications)
            .arg(&ids)
            .cmd("SMISMEMBER")
            .arg(&keys.unread)
            .arg(&ids);
        let (bodies, unread): (Vec<Option<String>>, Vec<bool>) = self
            .link
            .run(|mut connection| {
                let read = &read;
                async move { read.query_async(&mut connection).await }
            })
            .await?;
        let mut items = Vec::with_capacity(ids.len());
        for (body, unread) in bodies.into_iter().zip(unread) {
            // Deleted between the two reads: leave it out.
            let Some(body) = body else { continue };
            let mut notification: Notification = serde_json::from_str(&body).map_err(json_error)?;
            notification.read = !unread;
            items.push(notification);
        }
        Ok(Page::from_overfetch(items, page))
    }

    async fn unread_count(&self, user: &UserId) -> Result<u64, StoreError> {
        let unread = self.keys.inbox(user).unread;
        self.link
            .run(|mut connection| {
                let unread = &unread;
                async move {
                    redis::cmd("SCARD")
                        .arg(unread)
                        .query_async(&mut connection)
                        .await
                }
            })
            .await
    }

    async fn mark_read(
        &self,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Option<Change>, StoreError> {
        let changed = self
            .change(user, Scope::One(id), |state| {
                if !state.one_exists {
                    return Err(StoreError::NotFound { id });
                }
                if !state.one_unread {
                    return Ok(None);
                }
                Ok(Some((
                    vec![Op::RemoveUnread(id)],
                    ChangeKind::Read { ids: vec![id] },
                    state.unread_count - 1,
                    (),
                )))
            })
            .await?;
        Ok(changed.map(|(change, ())| change))
    }

    async fn mark_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let changed = self
            .change(user, Scope::Unread, |state| {
                if state.unread.is_empty() {
                    return Ok(None);
                }
                Ok(Some((
                    vec![Op::ClearUnread],
                    ChangeKind::Read {
                        ids: state.unread.clone(),
                    },
                    0,
                    (),
                )))
            })
            .await?;
        Ok(changed.map(|(change, ())| change))
    }

    async fn delete(&self, user: &UserId, id: NotificationId) -> Result<Change, StoreError> {
        let changed = self
            .change(user, Scope::One(id), |state| {
                if !state.one_exists {
                    return Err(StoreError::NotFound { id });
                }
                let was_unread = state.one_unread;
                Ok(Some((
                    vec![
                        Op::RemoveNotification(id),
                        Op::RemoveId(id),
                        Op::RemoveUnread(id),
                    ],
                    ChangeKind::Deleted { ids: vec![id] },
                    state.unread_count - u64::from(was_unread),
                    (),
                )))
            })
            .await?;
        changed
            .map(|(change, ())| change)
            .ok_or(StoreError::NotFound { id })
    }

    async fn delete_all_read(&self, user: &UserId) -> Result<Option<Change>, StoreError> {
        let changed = self
            .change(user, Scope::All, |state| {
                let read: Vec<NotificationId> = state
                    .ids
                    .iter()
                    .copied()
                    .filter(|id| state.unread.binary_search(id).is_err())
                    .collect();
                if read.is_empty() {
                    return Ok(None);
                }
                let mut ops = Vec::with_capacity(read.len() * 2);
                for id in &read {
                    ops.push(Op::RemoveNotification(*id));
                    ops.push(Op::RemoveId(*id));
                }
                Ok(Some((
                    ops,
                    ChangeKind::Deleted { ids: read },
                    state.unread_count,
                    (),
                )))
            })
            .await?;
        Ok(changed.map(|(change, ())| change))
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys.base)
            .field("retention", &self.retention)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_cannot_break_out_of_their_hash_tag() {
        assert_eq!(super::escape("a}b{c%"), "a%7Db%7Bc%25");
        let keys = super::LogKeys::new("app:");
        assert_eq!(keys.head, "app:{app:log}:head");
        assert_eq!(keys.index("u:a}b"), "app:{app:log}:i:u:a%7Db");
    }
}
