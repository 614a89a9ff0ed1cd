//! [`SseServiceBuilder`]: every option of the stream, with defaults.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use sse_core::{
    EventLog, Hub, InMemoryHub, InMemoryStore, NotificationStore, Notifier, SessionAuthenticator,
};

use crate::SseService;
use crate::origin::Origin;
use crate::presence::PresenceAudiences;

/// Options of an [`SseService`]; see [`SseService::builder`].
///
/// | option | default |
/// | --- | --- |
/// | [`heartbeat`](Self::heartbeat) | 15 s |
/// | [`retry`](Self::retry) | 3 s |
/// | [`max_connections_per_user`](Self::max_connections_per_user) | 32 |
/// | [`max_connections`](Self::max_connections) | 100,000 |
/// | [`queue_capacity`](Self::queue_capacity) | 256 events |
/// | [`replay_limit`](Self::replay_limit) | 1,000 events |
/// | [`idle_timeout`](Self::idle_timeout) | off |
/// | [`max_lifetime`](Self::max_lifetime) | 1 hour (less up to 10 %, per stream) |
/// | [`allowed_origins`](Self::allowed_origins) | any |
/// | [`last_event_id_query`](Self::last_event_id_query) | `lastEventId` |
/// | [`poll_query`](Self::poll_query) | `poll` |
/// | [`shutdown_retry`](Self::shutdown_retry) | 1 s to 6 s |
/// | [`presence_events`](Self::presence_events) | off |
/// | [`hub`](Self::hub) / [`store`](Self::store) ([`log`](Self::log), [`inbox`](Self::inbox)) | in memory |
#[must_use = "call `build` to get the service"]
pub struct SseServiceBuilder {
    pub(crate) authenticator: Arc<dyn SessionAuthenticator>,
    pub(crate) hub: Option<Arc<dyn Hub>>,
    pub(crate) log: Option<Arc<dyn EventLog>>,
    pub(crate) inbox: Option<Arc<dyn NotificationStore>>,
    pub(crate) notifier: Option<Notifier>,
    pub(crate) config: Config,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) retry: Duration,
    pub(crate) max_per_user: usize,
    pub(crate) max_connections: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) replay_limit: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) allowed_origins: Option<Vec<Origin>>,
    pub(crate) last_event_id_query: Option<String>,
    pub(crate) poll_query: Option<String>,
    pub(crate) shutdown_retry: Range<Duration>,
    pub(crate) limit_retry_after: Duration,
    pub(crate) presence_events: Option<PresenceAudiences>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("heartbeat", &self.heartbeat)
            .field("retry", &self.retry)
            .field("max_per_user", &self.max_per_user)
            .field("max_connections", &self.max_connections)
            .field("queue_capacity", &self.queue_capacity)
            .field("replay_limit", &self.replay_limit)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("allowed_origins", &self.allowed_origins)
            .field("last_event_id_query", &self.last_event_id_query)
            .field("poll_query", &self.poll_query)
            .field("shutdown_retry", &self.shutdown_retry)
            .field("presence_events", &self.presence_events.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Some(Duration::from_secs(15)),
            retry: Duration::from_secs(3),
            max_per_user: 32,
            max_connections: 100_000,
            queue_capacity: 256,
            replay_limit: 1_000,
            idle_timeout: None,
            max_lifetime: Some(Duration::from_secs(3_600)),
            allowed_origins: None,
            last_event_id_query: Some("lastEventId".to_owned()),
            poll_query: Some("poll".to_owned()),
            shutdown_retry: Duration::from_secs(1)..Duration::from_secs(6),
            limit_retry_after: Duration::from_secs(5),
            presence_events: None,
        }
    }
}

impl SseServiceBuilder {
    pub(crate) fn new(authenticator: Arc<dyn SessionAuthenticator>) -> Self {
        Self {
            authenticator,
            hub: None,
            log: None,
            inbox: None,
            notifier: None,
            config: Config::default(),
        }
    }

    /// The hub connections subscribe to ([`InMemoryHub`] by default).
    pub fn hub(mut self, hub: impl Hub) -> Self {
        self.hub = Some(Arc::new(hub));
        self
    }

    /// A store that is both the event log streams replay from and the
    /// notification inbox (`InMemoryStore`, `sse-sqlx`'s `SqlStore`,
    /// `sse-redis`'s `RedisStore`). An [`InMemoryStore`] by default.
    pub fn store<S: EventLog + NotificationStore>(mut self, store: S) -> Self {
        let store = Arc::new(store);
        self.log = Some(store.clone());
        self.inbox = Some(store);
        self
    }

    /// The event log streams replay from, for apps without a
    /// [`NotificationStore`] (see `sse_core::guide`).
    pub fn log(mut self, log: impl EventLog) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// The notification inbox `notify` and friends use; it must write
    /// through the same log.
    pub fn inbox(mut self, inbox: impl NotificationStore) -> Self {
        self.inbox = Some(Arc::new(inbox));
        self
    }

    /// Uses the log, hub and inbox of an existing [`Notifier`] (instead of
    /// any given with [`hub`](Self::hub), [`store`](Self::store),
    /// [`log`](Self::log) or [`inbox`](Self::inbox)).
    pub fn notifier(mut self, notifier: &Notifier) -> Self {
        self.notifier = Some(notifier.clone());
        self
    }

    /// How often an idle stream sends a comment line, keeping proxies from
    /// timing it out and detecting dead peers: a heartbeat goes out once the
    /// stream has written nothing for `interval`, so no silence on it is
    /// longer (the `connected` event announces the interval as
    /// `heartbeatMs`, and clients may treat a longer silence as a dead
    /// stream). A stream busy with events sends none.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.config.heartbeat = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Sends no heartbeats.
    pub fn without_heartbeat(mut self) -> Self {
        self.config.heartbeat = None;
        self
    }

    /// The `retry:` hint sent first: how long a client waits before
    /// reconnecting after the stream drops.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.config.retry = retry;
        self
    }

    /// Open streams one user may hold (all tabs and devices); past it,
    /// `429 Too Many Requests` with `Retry-After`.
    pub fn max_connections_per_user(mut self, max: usize) -> Self {
        self.config.max_per_user = max.max(1);
        self
    }

    /// Open streams this service holds; past it, `503 Service Unavailable`
    /// with `Retry-After`.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max.max(1);
        self
    }

    /// Events a connection may have queued; a connection that falls further
    /// behind is closed (its client reconnects and replays).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = capacity.max(1);
        self
    }

    /// Most events replayed to a reconnecting client; a larger gap gets a
    /// `reset` event instead (the client refetches).
    pub fn replay_limit(mut self, limit: usize) -> Self {
        self.config.replay_limit = limit;
        self
    }

    /// Closes a stream that delivered no event for this long (heartbeats do
    /// not count). Checked at heartbeat ticks.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Sends join and leave events: when a user's first stream opens, or
    /// their last one closes (on any node of the hub), `event: presence`
    /// with `{"user":"alice","online":true|false}` goes to each audience
    /// `to` returns for that principal (its groups, say). Off by default.
    /// See [`Hub::presence`](sse_core::Hub::presence) to ask who is
    /// online, and [`crate::presence`] for the fine print.
    ///
    /// ```
    /// use sse_core::{Audience, CookieSessionAuthenticator, InMemorySessions};
    /// use sse_tower::SseService;
    ///
    /// let sse = SseService::builder(CookieSessionAuthenticator::new("sid", InMemorySessions::new()))
    ///     .presence_events(|principal| principal.groups().iter().cloned().map(Audience::Group).collect())
    ///     .build();
    /// # let _ = sse;
    /// ```
    pub fn presence_events<F>(mut self, to: F) -> Self
    where
        F: Fn(&sse_core::Principal) -> Vec<sse_core::Audience> + Send + Sync + 'static,
    {
        self.config.presence_events = Some(Arc::new(to));
        self
    }

    /// Closes every stream after this long, less up to a tenth drawn per
    /// stream (so streams opened together do not come back together), with
    /// a jittered `retry:` hint; clients reconnect, authenticate again and
    /// replay. Default one hour: it bounds how long a stream outlives
    /// credentials that were withdrawn without a
    /// [revocation](sse_core::Notifier::revoke) (a session store emptied by
    /// a restart, a user disabled in the app's database), and rebalances
    /// connections across nodes.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = Some(lifetime);
        self
    }

    /// Streams live until the client or the server ends them.
    pub fn without_max_lifetime(mut self) -> Self {
        self.config.max_lifetime = None;
        self
    }

    /// Accepts only requests whose `Origin` header (when present) is one of
    /// these, answering others `403 Forbidden`, as are requests with an
    /// opaque (`null`) origin, several `Origin` headers or one that is not
    /// an origin. Browsers send `Origin` on cross-origin `EventSource`
    /// requests. Origins compare by scheme, host and port
    /// ([`Origin`](crate::origin::Origin)).
    ///
    /// ```
    /// # use sse_core::{AuthRejection, FnAuthenticator};
    /// # let auth = FnAuthenticator::new(|_| Err(AuthRejection::unauthenticated("no")));
    /// let sse = sse_tower::SseService::builder(auth)
    ///     .allowed_origins(["https://app.example".parse()?])
    ///     .build();
    /// # Ok::<(), sse_tower::origin::InvalidOrigin>(())
    /// ```
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        self.config.allowed_origins = Some(origins.into_iter().collect());
        self
    }

    /// The query parameter read as `Last-Event-ID` when the header is
    /// absent, for clients that cannot set headers.
    pub fn last_event_id_query(mut self, name: impl Into<String>) -> Self {
        self.config.last_event_id_query = Some(name.into());
        self
    }

    /// Reads `Last-Event-ID` from the header only.
    pub fn without_last_event_id_query(mut self) -> Self {
        self.config.last_event_id_query = None;
        self
    }

    /// The query parameter that makes a request a **poll** (default
    /// `poll`: `GET /events?poll=1`): the response is the `connected`
    /// event and what the log has after the request's cursor, and then it
    /// ends. Clients behind a proxy that buffers responses poll, since a
    /// stream never reaches them; `@sse-layer/client` does by itself. A
    /// poll is not a live connection: it does not subscribe to the hub and
    /// never counts as a join or leave in presence.
    pub fn poll_query(mut self, name: impl Into<String>) -> Self {
        self.config.poll_query = Some(name.into());
        self
    }

    /// Treats every request as a stream (no poll parameter).
    pub fn without_poll_query(mut self) -> Self {
        self.config.poll_query = None;
        self
    }

    /// The range the jittered `retry:` sent at shutdown is drawn from, so
    /// that clients of a restarting server come back spread out.
    pub fn shutdown_retry(mut self, range: Range<Duration>) -> Self {
        if range.start < range.end {
            self.config.shutdown_retry = range;
        }
        self
    }

    /// Builds the service.
    pub fn build(self) -> SseService {
        let notifier = match self.notifier {
            Some(notifier) => notifier,
            None => {
                let hub = self.hub.unwrap_or_else(|| Arc::new(InMemoryHub::new()));
                match self.log {
                    Some(log) => {
                        let notifier = Notifier::new(log, hub);
                        match self.inbox {
                            Some(inbox) => notifier.with_inbox(inbox),
                            None => notifier,
                        }
                    }
                    None => Notifier::with_store(Arc::new(InMemoryStore::new()), hub),
                }
            }
        };
        SseService::from_parts(self.authenticator, notifier, self.config)
    }
}

impl std::fmt::Debug for SseServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseServiceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
