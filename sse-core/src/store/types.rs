use serde::{Deserialize, Serialize};

use crate::{Cursor, Event, EventError, NotificationId, Timestamp, UserId};

/// The SSE event name stores' changes are sent under.
pub const NOTIFICATION_EVENT: &str = "notification";

/// A notification to create; see [`NotificationStore::create`](super::NotificationStore::create).
///
/// ```
/// use sse_core::NewNotification;
/// let new = NewNotification::new("bob", "Build finished")
///     .message("main is green")
///     .kind("ci")
///     .action_url("/builds/42")
///     .data(serde_json::json!({"build": 42, "branch": "main"}));
/// assert!(new.validate().is_ok());
/// assert!(NewNotification::new("bob", "x").action_url("javascript:alert(1)").validate().is_err());
/// assert!(NewNotification::new("bob", "x").action_url("/\\evil.example").validate().is_err());
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
    /// Any JSON the application attaches (ids, amounts, links to render),
    /// delivered as JSON (never as an escaped string) in the list and in
    /// stream events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

fn default_kind() -> String {
    "info".to_owned()
}

/// The limits stores check new notifications against; the defaults are
/// those of the demo app, and every one can be changed (give the store a
/// policy: `InMemoryStore::with_policy`, `sse-sqlx`'s and `sse-redis`'s
/// builders). What makes a notification unsafe to render (control
/// characters in one-line fields, `javascript:` or off-site action URLs)
/// is refused whatever the policy.
///
/// ```
/// use sse_core::{NewNotification, NotificationPolicy};
/// let relaxed = NotificationPolicy::default().require_title(false).max_message_chars(20_000);
/// let untitled = NewNotification::new("bob", "").message("x".repeat(10_000));
/// assert!(untitled.validate().is_err());
/// assert!(untitled.validate_with(&relaxed).is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotificationPolicy {
    /// Longest user id, in bytes (128).
    pub max_user_bytes: usize,
    /// Whether a title is required (yes).
    pub require_title: bool,
    /// Longest title, in characters (200).
    pub max_title_chars: usize,
    /// Longest message, in characters (2,000).
    pub max_message_chars: usize,
    /// Longest kind, in characters (64).
    pub max_kind_chars: usize,
    /// Longest action URL, in bytes (2,048).
    pub max_action_url_bytes: usize,
    /// Largest `data`, as JSON, in bytes (16 KiB).
    pub max_data_bytes: usize,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        Self {
            max_user_bytes: 128,
            require_title: true,
            max_title_chars: 200,
            max_message_chars: 2_000,
            max_kind_chars: 64,
            max_action_url_bytes: 2_048,
            max_data_bytes: 16 * 1024,
        }
    }
}

impl NotificationPolicy {
    /// Sets whether a title is required.
    #[must_use]
    pub fn require_title(mut self, required: bool) -> Self {
        self.require_title = required;
        self
    }

    /// Sets the longest title, in characters.
    #[must_use]
    pub fn max_title_chars(mut self, max: usize) -> Self {
        self.max_title_chars = max;
        self
    }

    /// Sets the longest message, in characters.
    #[must_use]
    pub fn max_message_chars(mut self, max: usize) -> Self {
        self.max_message_chars = max;
        self
    }

    /// Sets the longest kind, in characters.
    #[must_use]
    pub fn max_kind_chars(mut self, max: usize) -> Self {
        self.max_kind_chars = max;
        self
    }

    /// Sets the longest action URL, in bytes.
    #[must_use]
    pub fn max_action_url_bytes(mut self, max: usize) -> Self {
        self.max_action_url_bytes = max;
        self
    }

    /// Sets the largest `data`, as JSON, in bytes.
    #[must_use]
    pub fn max_data_bytes(mut self, max: usize) -> Self {
        self.max_data_bytes = max;
        self
    }

    /// Sets the longest user id, in bytes.
    #[must_use]
    pub fn max_user_bytes(mut self, max: usize) -> Self {
        self.max_user_bytes = max;
        self
    }
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
            data: None,
        }
    }

    /// Attaches JSON data.
    #[must_use]
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
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

    /// Checks every field against the default [`NotificationPolicy`].
    pub fn validate(&self) -> Result<(), super::StoreError> {
        self.validate_with(&NotificationPolicy::default())
    }

    /// Checks every field against `policy`; stores call this in `create`.
    ///
    /// The action URL must be a path or an `http(s)` URL so that a page
    /// rendering it as a link cannot be made to run `javascript:` or leave
    /// the site through `//host` or `/\host`, whatever the policy.
    pub fn validate_with(&self, policy: &NotificationPolicy) -> Result<(), super::StoreError> {
        use super::StoreError::Invalid;
        let user = self.user.as_str();
        if user.is_empty()
            || user.len() > policy.max_user_bytes
            || user.chars().any(char::is_control)
        {
            return Err(Invalid {
                field: "user",
                reason: format!(
                    "must be 1 to {} bytes without control characters",
                    policy.max_user_bytes
                ),
            });
        }
        let title_len = self.title.chars().count();
        if (policy.require_title && self.title.trim().is_empty())
            || title_len > policy.max_title_chars
            || self.title.chars().any(char::is_control)
        {
            return Err(Invalid {
                field: "title",
                reason: format!(
                    "must be {} to {} characters on one line",
                    u8::from(policy.require_title),
                    policy.max_title_chars
                ),
            });
        }
        if self.message.chars().count() > policy.max_message_chars {
            return Err(Invalid {
                field: "message",
                reason: format!("must be at most {} characters", policy.max_message_chars),
            });
        }
        if self.kind.is_empty()
            || self.kind.chars().count() > policy.max_kind_chars
            || self.kind.chars().any(char::is_control)
        {
            return Err(Invalid {
                field: "kind",
                reason: format!(
                    "must be 1 to {} characters without control characters",
                    policy.max_kind_chars
                ),
            });
        }
        if let Some(url) = &self.action_url {
            // Browsers read `\` as `/` in http(s) URLs, so `/\evil.example`
            // is the off-site `//evil.example`: no backslash anywhere.
            let safe_scheme = url.starts_with("https://")
                || url.starts_with("http://")
                || (url.starts_with('/') && !url.starts_with("//"));
            if !safe_scheme
                || url.contains('\\')
                || url.len() > policy.max_action_url_bytes
                || url.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(Invalid {
                    field: "actionUrl",
                    reason: format!(
                        "must be a path starting with `/` (not `//`) or an http(s) URL, at most {} bytes, without spaces or backslashes",
                        policy.max_action_url_bytes
                    ),
                });
            }
        }
        if let Some(data) = &self.data {
            let size = serde_json::to_vec(data).map_or(usize::MAX, |json| json.len());
            if size > policy.max_data_bytes {
                return Err(Invalid {
                    field: "data",
                    reason: format!("must be at most {} bytes of JSON", policy.max_data_bytes),
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
    /// The application's JSON data, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
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
            data: new.data,
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

/// One change to a recipient's notifications, as written through the
/// event log: what a stream sends and replays.
///
/// Its wire form ([`Change::event`]) is an event named `notification`
/// whose `id:` is its [`Cursor`] and whose JSON data is such as
/// `{"type":"created","notification":{..},"unreadCount":3}`,
/// `{"type":"read","ids":[1,2],"unreadCount":0}` or
/// `{"type":"deleted","ids":[4],"unreadCount":0}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// Its position in the event log.
    pub cursor: Cursor,
    /// The recipient.
    pub user: UserId,
    /// What changed.
    pub kind: ChangeKind,
    /// The recipient's unread count after this change.
    pub unread_count: u64,
    /// When the change was made.
    pub at: Timestamp,
    event: Event,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(flatten)]
    kind: &'a ChangeKind,
    unread_count: u64,
}

impl Change {
    /// The event to append to the log for a change (it has no id yet).
    /// For store implementations.
    ///
    /// ```
    /// use sse_core::{Change, ChangeKind, NotificationId};
    /// let event = Change::encode(&ChangeKind::Read { ids: vec![NotificationId(9)] }, 0)?;
    /// assert_eq!(
    ///     &event.frame()[..],
    ///     b"event: notification\ndata: {\"type\":\"read\",\"ids\":[9],\"unreadCount\":0}\n\n"
    /// );
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn encode(kind: &ChangeKind, unread_count: u64) -> Result<Event, EventError> {
        Event::builder()
            .event(NOTIFICATION_EVENT)
            .json_data(&Payload { kind, unread_count })
            .build()
    }

    /// The change, from the event the log returned for it. For store
    /// implementations.
    pub fn from_appended(
        user: UserId,
        kind: ChangeKind,
        unread_count: u64,
        at: Timestamp,
        event: Event,
    ) -> Result<Self, EventError> {
        let cursor = event.cursor().ok_or(EventError::InvalidFrame(
            "a stored change has no cursor as its id",
        ))?;
        Ok(Self {
            cursor,
            user,
            kind,
            unread_count,
            at,
            event,
        })
    }

    /// The event streams send and replay: its `id:` is the change's
    /// cursor, its bytes exactly what the log stored.
    pub fn event(&self) -> &Event {
        &self.event
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

    /// The page from up to `request.limit() + 1` notifications, newest
    /// first: stores fetch one more than the page holds, and that extra one
    /// tells whether there is a next page.
    ///
    /// ```
    /// use sse_core::{Notification, NotificationId, NewNotification, Page, PageRequest, Timestamp};
    /// let n = |id| Notification::from_new(NotificationId(id), NewNotification::new("u", "t"), Timestamp::from_millis(0));
    /// let page = Page::from_overfetch(vec![n(9), n(8), n(7)], PageRequest::first(2));
    /// assert_eq!(page.items.len(), 2);
    /// assert_eq!(page.next_before, Some(NotificationId(8)));
    /// assert_eq!(Page::from_overfetch(vec![n(9)], PageRequest::first(2)).next_before, None);
    /// ```
    pub fn from_overfetch(mut items: Vec<Notification>, request: PageRequest) -> Self {
        let next_before = if items.len() > request.limit() {
            items.truncate(request.limit());
            items.last().map(|n| n.id)
        } else {
            None
        };
        Self { items, next_before }
    }
}
