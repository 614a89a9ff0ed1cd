//! Counters and gauges of a service, and their Prometheus text form.
//!
//! Two ways out, same names: [`SseService::metrics`](crate::SseService::metrics)
//! returns a [`MetricsSnapshot`] (with [`MetricsSnapshot::to_prometheus`]),
//! and with the `metrics` feature every counter, gauge and histogram also
//! goes through the [`metrics`](https://docs.rs/metrics) facade into the
//! recorder the app installed (`metrics-exporter-prometheus`,
//! OpenTelemetry, …). Install the recorder before building the service:
//! the service registers its metrics when it is built.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `sse_active_connections` | gauge | | open event streams |
//! | `sse_connects_total` | counter | | streams opened |
//! | `sse_disconnects_total` | counter | `cause` | streams ended ([`DisconnectCause`]) |
//! | `sse_rejected_total` | counter | `cause` | attempts refused ([`RejectCause`]) |
//! | `sse_auth_failures_total` | counter | | attempts that failed authentication |
//! | `sse_delivered_total` | counter | | live events written |
//! | `sse_replayed_total` | counter | | events replayed on reconnect |
//! | `sse_resets_total` | counter | | `reset` events sent |
//! | `sse_heartbeats_total` | counter | | heartbeats sent |
//! | `sse_published_total`, `sse_enqueued_total`, `sse_lagged_total` | counter | | the hub's counters, as of the last snapshot or stream open/close |
//! | `sse_hub_subscriptions` | gauge | | subscriptions registered on this node, as of the same |
//! | `sse_stream_duration_seconds` | histogram | | how long streams stayed open (facade only) |
//! | `sse_replay_events` | histogram | | events replayed per replay: a stream opened, or a catch-up (facade only) |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use sse_core::HubStats;

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// The client went away (closed the tab, lost the network) or a write failed.
    ClientGone,
    /// The connection fell behind and its bounded queue overflowed.
    Lagged,
    /// The service shut down.
    Shutdown,
    /// The stream reached its maximum lifetime.
    MaxLifetime,
    /// The credentials the stream authenticated with expired
    /// ([`Principal::expires_at`](sse_core::Principal::expires_at)).
    CredentialsExpired,
    /// The stream delivered nothing for the idle timeout.
    IdleTimeout,
    /// A disconnect event was published to it (a logout, say).
    Disconnected,
    /// The hub closed the subscription.
    HubClosed,
    /// Catching up from the store failed.
    StoreError,
    /// A poll (see [`poll_query`](crate::SseServiceBuilder::poll_query))
    /// sent what the log had and ended.
    Polled,
}

impl DisconnectCause {
    pub(crate) const ALL: [Self; 10] = [
        Self::ClientGone,
        Self::Lagged,
        Self::Shutdown,
        Self::MaxLifetime,
        Self::CredentialsExpired,
        Self::IdleTimeout,
        Self::Disconnected,
        Self::HubClosed,
        Self::StoreError,
        Self::Polled,
    ];

    /// A short snake_case label, as used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientGone => "client_gone",
            Self::Lagged => "lagged",
            Self::Shutdown => "shutdown",
            Self::MaxLifetime => "max_lifetime",
            Self::CredentialsExpired => "credentials_expired",
            Self::IdleTimeout => "idle_timeout",
            Self::Disconnected => "disconnected",
            Self::HubClosed => "hub_closed",
            Self::StoreError => "store_error",
            Self::Polled => "polled",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Why a connection attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCause {
    /// Not a `GET`: 405.
    Method,
    /// `Origin` not allowed: 403.
    Origin,
    /// Authentication failed: 401.
    Unauthenticated,
    /// A topic the principal may not read, or the authenticator forbade it: 403.
    Forbidden,
    /// Over the per-user limit: 429.
    UserLimit,
    /// Over the global limit or shutting down: 503.
    Overloaded,
    /// The session store, hub or notification store failed: 503.
    Unavailable,
    /// User code (an authenticator, a store) panicked: 500.
    Panic,
}

impl RejectCause {
    pub(crate) const ALL: [Self; 8] = [
        Self::Method,
        Self::Origin,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::UserLimit,
        Self::Overloaded,
        Self::Unavailable,
        Self::Panic,
    ];

    /// A short snake_case label, as used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Origin => "origin",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::UserLimit => "user_limit",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Panic => "panic",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    facade: facade::Facade,
    active: AtomicU64,
    connects: AtomicU64,
    disconnects: [AtomicU64; DisconnectCause::ALL.len()],
    rejects: [AtomicU64; RejectCause::ALL.len()],
    delivered: AtomicU64,
    replayed: AtomicU64,
    resets: AtomicU64,
    heartbeats: AtomicU64,
}

impl Metrics {
    pub(crate) fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.connected();
    }

    pub(crate) fn disconnected(&self, cause: DisconnectCause, seconds: f64) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.disconnects[cause.index()].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.disconnected(cause, seconds);
        #[cfg(not(feature = "metrics"))]
        let _ = seconds;
    }

    pub(crate) fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn rejected(&self, cause: RejectCause) {
        self.rejects[cause.index()].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.rejected(cause);
    }

    pub(crate) fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.delivered.increment(n);
    }

    pub(crate) fn replayed(&self, n: u64) {
        self.replayed.fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.replayed(n);
    }

    pub(crate) fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.resets.increment(1);
    }

    pub(crate) fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.heartbeats.increment(1);
    }

    /// Brings the facade's copies of the hub's counters up to date; the
    /// stats are not even read without the `metrics` feature.
    pub(crate) fn hub(&self, stats: impl FnOnce() -> HubStats) {
        #[cfg(feature = "metrics")]
        self.facade.hub(stats());
        #[cfg(not(feature = "metrics"))]
        let _ = stats;
    }

    pub(crate) fn snapshot(&self, hub: HubStats) -> MetricsSnapshot {
        #[cfg(feature = "metrics")]
        self.facade.hub(hub);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            active_connections: load(&self.active),
            connects: load(&self.connects),
            disconnects: DisconnectCause::ALL
                .iter()
                .map(|c| (*c, load(&self.disconnects[c.index()])))
                .collect(),
            rejects: RejectCause::ALL
                .iter()
                .map(|c| (*c, load(&self.rejects[c.index()])))
                .collect(),
            delivered: load(&self.delivered),
            replayed: load(&self.replayed),
            resets: load(&self.resets),
            heartbeats: load(&self.heartbeats),
            hub,
        }
    }
}

/// A point-in-time copy of a service's counters; see
/// [`SseService::metrics`](crate::SseService::metrics).
///
/// ```
/// # use sse_core::FnAuthenticator;
/// # let service = sse_tower::SseService::builder(FnAuthenticator::new(|_| Err(sse_core::AuthRejection::unauthenticated("no")))).build();
/// let snapshot = service.metrics();
/// assert_eq!(snapshot.active_connections, 0);
/// assert!(snapshot.to_prometheus().contains("sse_active_connections 0"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Streams open now.
    pub active_connections: u64,
    /// Streams opened since start.
    pub connects: u64,
    /// Streams ended since start, by cause.
    pub disconnects: Vec<(DisconnectCause, u64)>,
    /// Connection attempts refused since start, by cause.
    pub rejects: Vec<(RejectCause, u64)>,
    /// Live events written to streams.
    pub delivered: u64,
    /// Events replayed to reconnecting streams.
    pub replayed: u64,
    /// `reset` events sent (history gone, replay limit, malformed id).
    pub resets: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// The hub's counters (published events, queued events, lagged drops).
    pub hub: HubStats,
}

impl MetricsSnapshot {
    /// Streams ended for `cause`.
    pub fn disconnects(&self, cause: DisconnectCause) -> u64 {
        self.disconnects
            .iter()
            .find(|(c, _)| *c == cause)
            .map_or(0, |(_, n)| *n)
    }

    /// Attempts refused for `cause`.
    pub fn rejects(&self, cause: RejectCause) -> u64 {
        self.rejects
            .iter()
            .find(|(c, _)| *c == cause)
            .map_or(0, |(_, n)| *n)
    }

    /// Authentication failures (401 and authenticator-forbidden 403s).
    pub fn auth_failures(&self) -> u64 {
        self.rejects(RejectCause::Unauthenticated)
    }

    /// The snapshot in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric =
            |name: &str, kind: &str, help: &str, samples: &[(Option<(&str, &str)>, u64)]| {
                let _ = writeln!(out, "# HELP sse_{name} {help}\n# TYPE sse_{name} {kind}");
                for (label, value) in samples {
                    match label {
                        Some((key, val)) => {
                            let _ = writeln!(out, "sse_{name}{{{key}=\"{val}\"}} {value}");
                        }
                        None => {
                            let _ = writeln!(out, "sse_{name} {value}");
                        }
                    }
                }
            };
        metric(
            "active_connections",
            "gauge",
            "Open event streams.",
            &[(None, self.active_connections)],
        );
        metric(
            "connects_total",
            "counter",
            "Event streams opened.",
            &[(None, self.connects)],
        );
        let disconnects: Vec<_> = self
            .disconnects
            .iter()
            .map(|(c, n)| (Some(("cause", c.as_str())), *n))
            .collect();
        metric(
            "disconnects_total",
            "counter",
            "Event streams ended, by cause.",
            &disconnects,
        );
        let rejects: Vec<_> = self
            .rejects
            .iter()
            .map(|(c, n)| (Some(("cause", c.as_str())), *n))
            .collect();
        metric(
            "rejected_total",
            "counter",
            "Connection attempts refused, by cause.",
            &rejects,
        );
        metric(
            "auth_failures_total",
            "counter",
            "Connection attempts that failed authentication.",
            &[(None, self.auth_failures())],
        );
        metric(
            "published_total",
            "counter",
            "Events published to the hub.",
            &[(None, self.hub.published)],
        );
        metric(
            "enqueued_total",
            "counter",
            "Events queued to connections by the hub.",
            &[(None, self.hub.enqueued)],
        );
        metric(
            "delivered_total",
            "counter",
            "Live events written to streams.",
            &[(None, self.delivered)],
        );
        metric(
            "replayed_total",
            "counter",
            "Events replayed to reconnecting streams.",
            &[(None, self.replayed)],
        );
        metric(
            "resets_total",
            "counter",
            "Reset events sent because history was gone.",
            &[(None, self.resets)],
        );
        metric(
            "heartbeats_total",
            "counter",
            "Heartbeat comments sent.",
            &[(None, self.heartbeats)],
        );
        metric(
            "lagged_total",
            "counter",
            "Connections dropped because they fell behind.",
            &[(None, self.hub.lagged)],
        );
        metric(
            "hub_subscriptions",
            "gauge",
            "Subscriptions registered in the hub.",
            &[(None, self.hub.subscriptions)],
        );
        out
    }
}

#[cfg(feature = "metrics")]
mod facade {
    use metrics::Unit;
    use metrics::{
        Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
        gauge, histogram,
    };
    use sse_core::HubStats;

    use super::{DisconnectCause, RejectCause};

    /// Handles registered once with the recorder installed when the
    /// service was built: recording is then an atomic add, no lookup.
    pub(super) struct Facade {
        active: Gauge,
        connects: Counter,
        disconnects: [Counter; DisconnectCause::ALL.len()],
        rejects: [Counter; RejectCause::ALL.len()],
        auth_failures: Counter,
        pub(super) delivered: Counter,
        replayed: Counter,
        pub(super) resets: Counter,
        pub(super) heartbeats: Counter,
        published: Counter,
        enqueued: Counter,
        lagged: Counter,
        subscriptions: Gauge,
        duration: Histogram,
        replay_size: Histogram,
    }

    impl Default for Facade {
        fn default() -> Self {
            describe_gauge!("sse_active_connections", Unit::Count, "Open event streams.");
            describe_counter!("sse_connects_total", Unit::Count, "Event streams opened.");
            describe_counter!(
                "sse_disconnects_total",
                Unit::Count,
                "Event streams ended, by cause."
            );
            describe_counter!(
                "sse_rejected_total",
                Unit::Count,
                "Connection attempts refused, by cause."
            );
            describe_counter!(
                "sse_delivered_total",
                Unit::Count,
                "Live events written to streams."
            );
            describe_counter!(
                "sse_replayed_total",
                Unit::Count,
                "Events replayed to reconnecting streams."
            );
            describe_counter!(
                "sse_resets_total",
                Unit::Count,
                "Reset events sent because history was gone."
            );
            describe_counter!("sse_heartbeats_total", Unit::Count, "Heartbeats sent.");
            describe_counter!(
                "sse_published_total",
                Unit::Count,
                "Events published to the hub."
            );
            describe_counter!(
                "sse_enqueued_total",
                Unit::Count,
                "Events queued to connections by the hub."
            );
            describe_counter!(
                "sse_lagged_total",
                Unit::Count,
                "Subscriptions closed because their queue overflowed."
            );
            describe_histogram!(
                "sse_stream_duration_seconds",
                Unit::Seconds,
                "How long event streams stayed open."
            );
            describe_histogram!(
                "sse_replay_events",
                Unit::Count,
                "Events replayed per replay (a stream opened, or a catch-up)."
            );
            Self {
                active: gauge!("sse_active_connections"),
                connects: counter!("sse_connects_total"),
                disconnects: DisconnectCause::ALL
                    .map(|cause| counter!("sse_disconnects_total", "cause" => cause.as_str())),
                rejects: RejectCause::ALL
                    .map(|cause| counter!("sse_rejected_total", "cause" => cause.as_str())),
                auth_failures: counter!("sse_auth_failures_total"),
                delivered: counter!("sse_delivered_total"),
                replayed: counter!("sse_replayed_total"),
                resets: counter!("sse_resets_total"),
                heartbeats: counter!("sse_heartbeats_total"),
                published: counter!("sse_published_total"),
                enqueued: counter!("sse_enqueued_total"),
                lagged: counter!("sse_lagged_total"),
                subscriptions: gauge!("sse_hub_subscriptions"),
                duration: histogram!("sse_stream_duration_seconds"),
                replay_size: histogram!("sse_replay_events"),
            }
        }
    }

    impl Facade {
        pub(super) fn connected(&self) {
            self.connects.increment(1);
            self.active.increment(1.0);
        }

        pub(super) fn disconnected(&self, cause: DisconnectCause, seconds: f64) {
            self.active.decrement(1.0);
            if let Some(counter) = self.disconnects.get(cause.index()) {
                counter.increment(1);
            }
            self.duration.record(seconds);
        }

        pub(super) fn rejected(&self, cause: RejectCause) {
            if let Some(counter) = self.rejects.get(cause.index()) {
                counter.increment(1);
            }
            if cause == RejectCause::Unauthenticated {
                self.auth_failures.increment(1);
            }
        }

        pub(super) fn replayed(&self, n: u64) {
            self.replayed.increment(n);
            self.replay_size.record(n as f64);
        }

        pub(super) fn hub(&self, hub: HubStats) {
            self.published.absolute(hub.published);
            self.enqueued.absolute(hub.enqueued);
            self.lagged.absolute(hub.lagged);
            self.subscriptions.set(hub.subscriptions as f64);
        }
    }
}
