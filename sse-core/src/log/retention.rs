//! [`Retention`]: how much history a log keeps.

use std::time::Duration;

/// How much history an [`EventLog`](super::EventLog) keeps for replay.
///
/// Replay covers a reconnecting client's gap only while the events it
/// missed are kept; a client whose cursor is older gets a `reset` and
/// refetches its state. Retention is by the log's total count of events
/// and by age: a count bounds memory and storage whatever the traffic, an
/// age says how long a client may stay away and still resume. Whatever the
/// log prunes, a stream never skips silently: it detects a cursor below
/// the oldest kept position and resets.
///
/// The notifications of a [`NotificationStore`](crate::NotificationStore)
/// are not pruned: they stay until deleted, and a client that was reset
/// lists them again.
///
/// ```
/// use std::time::Duration;
/// use sse_core::Retention;
/// let retention = Retention::default()
///     .max_events(50_000)
///     .max_age(Duration::from_secs(24 * 3600));
/// assert_eq!(retention.events_limit(), Some(50_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    max_events: Option<u64>,
    max_age: Option<Duration>,
}

impl Default for Retention {
    /// The newest 100,000 events, of any age.
    fn default() -> Self {
        Self {
            max_events: Some(100_000),
            max_age: None,
        }
    }
}

impl Retention {
    /// Keeps everything.
    pub fn unlimited() -> Self {
        Self {
            max_events: None,
            max_age: None,
        }
    }

    /// Keeps at most the newest `count` events (at least 1).
    #[must_use]
    pub fn max_events(mut self, count: u64) -> Self {
        self.max_events = Some(count.max(1));
        self
    }

    /// Drops events older than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The count limit, if any.
    pub fn events_limit(&self) -> Option<u64> {
        self.max_events
    }

    /// The age limit, if any.
    pub fn age_limit(&self) -> Option<Duration> {
        self.max_age
    }
}
