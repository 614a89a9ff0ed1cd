use serde::{Deserialize, Serialize};

use crate::{Event, EventError, EventId, NotificationId, Timestamp, UserId};

/// The SSE event name stores' changes are sent under.
pub const NOTIFICATION_EVENT: &str = "notification";

/// A notification to create; see [`NotificationStore::create`](super::NotificationStore::create).
///
/// ```
/// use sse_core::NewNotification;
/// let new = NewNotification::new("bob", "Build finished")
///     .message("main is green")
///     .kind("ci")
///     .action_url("/builds/42");
/// assert!(new.validate().is_ok());
/// assert!(NewNotification::new("bob", "x").action_url("javascript:alert(1)").validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NewNotification {
    /// The recipient.
    pub user: UserId,
    /// A short title, 1 to 200 characters.
    pub title: String,
    /// The body, up to 2,000 characters.
    #[serde(default)]
    pub message: String,
    /// A category the client can style or filter on, 1 to 64 characters.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Where clicking the notification leads: a path (`/x`) or an
    /// `http(s)://` URL, up to 2,048 characters.
    #[serde(default)]
    pub action_url: Option<String>,
}

fn default_kind() -> String {
    "info".to_owned()
}

/// Limits [`NewNotification::validate`] enforces.
pub mod limits {
    /// Longest user id, in bytes.
    pub const USER_MAX: usize = 128;
    /// Longest title, in characters.
    pub const TITLE_MAX: usize = 200;
    /// Longest message, in characters.
    pub const MESSAGE_MAX: usize = 2_000;
    /// Longest kind, in characters.
    pub const KIND_MAX: usize = 64;
    /// Longest action URL, in bytes.
    pub const ACTION_URL_MAX: usize = 2_048;
}

impl NewNotification {
    /// A notification for `user` titled `title`, of kind `info`, with an
    /// empty message and no action URL.
    pub fn new(user: impl Into<UserId>, title: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            title: title.into(),
            message: String::new(),
            kind: default_kind(),
            action_url: None,
        }
    }

    /// Sets the message.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets the kind.
    #[must_use]
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the action URL.
    #[must_use]
    pub fn action_url(mut self, url: impl Into<String>) -> Self {
        self.action_url = Some(url.into());
        self
    }

    /// Checks every field; stores call this in `create`.
    ///
    /// The action URL must be a path or an `http(s)` URL so that a page
    /// rendering it as a link cannot be made to run `javascript:`.
    pub fn validate(&self) -> Result<(), super::StoreError> {
        use super::StoreError::Invalid;
        let user = self.user.as_str();
        if user.is_empty() || user.len() > limits::USER_MAX || user.chars().any(char::is_control) {
            return Err(Invalid {
                field: "user",
                reason: format!(
                    "must be 1 to {} bytes without control characters",
                    limits::USER_MAX
                ),
            });
        }
        let title_len = self.title.chars().count();
        if self.title.trim().is_empty()
            || title_len > limits::TITLE_MAX
            || self.title.chars().any(char::is_control)
        {
            return Err(Invalid {
                field: "title",
                reason: format!("must be 1 to {} characters on one line", limits::TITLE_MAX),
            });
        }
        if self.message.chars().count() > limits::MESSAGE_MAX {
            return Err(Invalid {
                field: "message",
                reason: format!("must be at most {} characters", limits::MESSAGE_MAX),
            });
        }
        if self.kind.is_empty()
            || self.kind.chars().count() > limits::KIND_MAX
            || self.kind.chars().any(char::is_control)
        {
            return Err(Invalid {
                field: "kind",
                reason: format!(
                    "must be 1 to {} characters without control characters",
                    limits::KIND_MAX
                ),
            });
        }
        if let Some(url) = &self.action_url {
            let safe_scheme = url.starts_with("https://")
                || url.starts_with("http://")
                || (url.starts_with('/') && !url.starts_with("//"));
            if !safe_scheme
                || url.len() > limits::ACTION_URL_MAX
                || url.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(Invalid {
                    field: "actionUrl",
                    reason: format!(
                        "must be a path starting with `/` or an http(s) URL, at most {} bytes, without spaces",
                        limits::ACTION_URL_MAX
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Notification {
    /// Unique within the store.
    pub id: NotificationId,
    /// The recipient.
    pub user: UserId,
    /// The title.
    pub title: String,
    /// The body.
    pub message: String,
    /// The category.
    pub kind: String,
    /// Where clicking it leads.
    pub action_url: Option<String>,
    /// Whether the recipient has read it.
    pub read: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

impl Notification {
    /// Builds a stored notification from a validated [`NewNotification`].
    /// For store implementations.
    pub fn from_new(id: NotificationId, new: NewNotification, created_at: Timestamp) -> Self {
        Self {
            id,
            user: new.user,
            title: new.title,
            message: new.message,
            kind: new.kind,
            action_url: new.action_url,
            read: false,
            created_at,
        }
    }
}

/// What changed, as recorded in a recipient's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ChangeKind {
    /// A notification was created.
    Created {
        /// The new notification.
        notification: Notification,
    },
    /// Notifications were marked read.
    Read {
        /// The ids that went from unread to read.
        ids: Vec<NotificationId>,
    },
    /// Notifications were deleted.
    Deleted {
        /// The ids removed.
        ids: Vec<NotificationId>,
    },
}

/// One entry of a recipient's change log: what a stream sends and replays.
///
/// Its wire form (see [`Change::to_event`]) is an event named
/// `notification` with the change id as `id:` and JSON data such as
/// `{"type":"created","notification":{..},"unreadCount":3}`,
/// `{"type":"read","ids":[1,2],"unreadCount":0}` or
/// `{"type":"deleted","ids":[4],"unreadCount":0}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Change {
    /// Consecutive per recipient, in the order changes become visible.
    pub id: EventId,
    /// The recipient.
    pub user: UserId,
    /// What changed.
    #[serde(flatten)]
    pub kind: ChangeKind,
    /// The recipient's unread count after this change.
    pub unread_count: u64,
    /// When the change was made.
    pub at: Timestamp,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(flatten)]
    kind: &'a ChangeKind,
    unread_count: u64,
}

impl Change {
    /// A change record. For store implementations.
    pub fn new(
        id: EventId,
        user: UserId,
        kind: ChangeKind,
        unread_count: u64,
        at: Timestamp,
    ) -> Self {
        Self {
            id,
            user,
            kind,
            unread_count,
            at,
        }
    }

    /// Encodes the change as the SSE event streams send.
    ///
    /// ```
    /// use sse_core::{Change, ChangeKind, EventId, NotificationId, Timestamp};
    /// let change = Change::new(
    ///     EventId(5), "bob".into(),
    ///     ChangeKind::Read { ids: vec![NotificationId(9)] },
    ///     0, Timestamp::from_millis(0),
    /// );
    /// assert_eq!(
    ///     &change.to_event()?.frame()[..],
    ///     b"id: 5\nevent: notification\ndata: {\"type\":\"read\",\"ids\":[9],\"unreadCount\":0}\n\n"
    /// );
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn to_event(&self) -> Result<Event, EventError> {
        Event::builder()
            .id(self.id.to_string())
            .event(NOTIFICATION_EVENT)
            .json_data(&Payload {
                kind: &self.kind,
                unread_count: self.unread_count,
            })
            .build()
    }
}

/// Which page of a user's notifications to list, newest first.
///
/// ```
/// use sse_core::{NotificationId, PageRequest};
/// let first = PageRequest::first(20);
/// let next = PageRequest::first(20).before(NotificationId(100));
/// assert_eq!(next.limit(), 20);
/// assert_eq!(PageRequest::first(10_000).limit(), PageRequest::MAX_LIMIT);
/// # let _ = first;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    limit: usize,
    before: Option<NotificationId>,
}

impl PageRequest {
    /// The largest page a store returns.
    pub const MAX_LIMIT: usize = 100;

    /// The newest `limit` notifications (clamped to 1..=[`Self::MAX_LIMIT`]).
    pub fn first(limit: usize) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            before: None,
        }
    }

    /// Only notifications with an id below `id` (the previous page's `next_before`).
    #[must_use]
    pub fn before(mut self, id: NotificationId) -> Self {
        self.before = Some(id);
        self
    }

    /// The page size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The exclusive upper bound on ids, if any.
    pub fn before_id(&self) -> Option<NotificationId> {
        self.before
    }
}

/// One page of notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Page {
    /// The notifications on this page.
    pub items: Vec<Notification>,
    /// Pass to [`PageRequest::before`] for the next page; `None` on the last.
    pub next_before: Option<NotificationId>,
}

impl Page {
    /// A page. For store implementations.
    pub fn new(items: Vec<Notification>, next_before: Option<NotificationId>) -> Self {
        Self { items, next_before }
    }
}

/// The answer to [`NotificationStore::since`](super::NotificationStore::since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The changes after the given id, oldest first.
    Changes(Vec<Change>),
    /// Some changes after the given id are no longer kept (or the id does not
    /// come from this store's history): the client must refetch its state.
    /// `latest` is the newest change id, to resume from after refetching.
    HistoryGone {
        /// The newest change id of the recipient, if any.
        latest: Option<EventId>,
    },
}
