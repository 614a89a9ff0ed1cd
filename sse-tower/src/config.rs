//! [`SseServiceBuilder`]: every option of the stream, with defaults.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use sse_core::{
    Hub, InMemoryHub, InMemoryStore, NotificationStore, Notifier, SessionAuthenticator,
};

use crate::SseService;

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
/// | [`max_lifetime`](Self::max_lifetime) | off |
/// | [`allowed_origins`](Self::allowed_origins) | any |
/// | [`last_event_id_query`](Self::last_event_id_query) | `lastEventId` |
/// | [`shutdown_retry`](Self::shutdown_retry) | 1 s to 6 s |
/// | [`hub`](Self::hub) / [`store`](Self::store) | in memory |
#[must_use = "call `build` to get the service"]
pub struct SseServiceBuilder {
    pub(crate) authenticator: Arc<dyn SessionAuthenticator>,
    pub(crate) hub: Option<Arc<dyn Hub>>,
    pub(crate) store: Option<Arc<dyn NotificationStore>>,
    pub(crate) config: Config,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) retry: Duration,
    pub(crate) max_per_user: usize,
    pub(crate) max_connections: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) replay_limit: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) allowed_origins: Option<Vec<HeaderValue>>,
    pub(crate) last_event_id_query: Option<String>,
    pub(crate) shutdown_retry: Range<Duration>,
    pub(crate) limit_retry_after: Duration,
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
            max_lifetime: None,
            allowed_origins: None,
            last_event_id_query: Some("lastEventId".to_owned()),
            shutdown_retry: Duration::from_secs(1)..Duration::from_secs(6),
            limit_retry_after: Duration::from_secs(5),
        }
    }
}

impl SseServiceBuilder {
    pub(crate) fn new(authenticator: Arc<dyn SessionAuthenticator>) -> Self {
        Self {
            authenticator,
            hub: None,
            store: None,
            config: Config::default(),
        }
    }

    /// The hub connections subscribe to ([`InMemoryHub`] by default).
    pub fn hub(mut self, hub: impl Hub) -> Self {
        self.hub = Some(Arc::new(hub));
        self
    }

    /// The store streams replay from ([`InMemoryStore`] by default).
    pub fn store(mut self, store: impl NotificationStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Uses the store and hub of an existing [`Notifier`].
    pub fn notifier(mut self, notifier: &Notifier) -> Self {
        self.hub = Some(notifier.hub().clone());
        self.store = Some(notifier.store().clone());
        self
    }

    /// How often an idle stream sends a comment line, keeping proxies from
    /// timing it out and detecting dead peers. A stream that sent an event
    /// during the interval skips the heartbeat.
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

    /// Closes every stream after this long (with a `retry:` hint); clients
    /// reconnect and replay. Useful to rebalance connections across nodes.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = Some(lifetime);
        self
    }

    /// Accepts only requests whose `Origin` header (when present) is one of
    /// these, answering others `403 Forbidden`. Browsers send `Origin` on
    /// cross-origin `EventSource` requests.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.allowed_origins = Some(
            origins
                .into_iter()
                .filter_map(|o| HeaderValue::from_str(o.as_ref().trim_end_matches('/')).ok())
                .collect(),
        );
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
        let hub = self.hub.unwrap_or_else(|| Arc::new(InMemoryHub::new()));
        let store = self.store.unwrap_or_else(|| Arc::new(InMemoryStore::new()));
        SseService::from_parts(self.authenticator, Notifier::new(store, hub), self.config)
    }
}

impl std::fmt::Debug for SseServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseServiceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
