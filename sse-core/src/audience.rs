//! [`Audience`]: who an event is for.

use crate::{ConnectionId, GroupId, Principal, SessionId, Topic, UserId};

/// Who an event is for.
///
/// A hub delivers an event to exactly the connections whose
/// [`Principal`] matches, in time proportional to their number.
///
/// ```
/// use sse_core::{Audience, Principal};
///
/// let bob = Principal::new("bob").with_groups(["acme"]);
/// assert!(Audience::user("bob").matches(&bob));
/// assert!(Audience::group("acme").matches(&bob));
/// assert!(!Audience::user("alice").matches(&bob));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Audience {
    /// Every connection of one user: all their tabs and devices.
    User(UserId),
    /// Every connection of one session.
    Session(SessionId),
    /// Every connection whose principal belongs to the group.
    Group(GroupId),
    /// Every connection subscribed to the topic.
    Topic(Topic),
    /// One connection.
    Connection(ConnectionId),
    /// Every connection.
    Everyone,
}

impl Audience {
    /// Every connection of `user`.
    pub fn user(user: impl Into<UserId>) -> Self {
        Self::User(user.into())
    }

    /// Every connection of `session`.
    pub fn session(session: impl Into<SessionId>) -> Self {
        Self::Session(session.into())
    }

    /// Every connection in `group`.
    pub fn group(group: impl Into<GroupId>) -> Self {
        Self::Group(group.into())
    }

    /// Every connection subscribed to `topic`.
    pub fn topic(topic: impl Into<Topic>) -> Self {
        Self::Topic(topic.into())
    }

    /// Whether events to this audience are kept in the event log and
    /// replayed: user, group, topic and everyone are; session and
    /// connection events are ephemeral (see [`crate::log`]).
    ///
    /// ```
    /// use sse_core::Audience;
    /// assert!(Audience::group("acme").is_durable());
    /// assert!(!Audience::session("s-1").is_durable());
    /// ```
    pub fn is_durable(&self) -> bool {
        matches!(
            self,
            Self::User(_) | Self::Group(_) | Self::Topic(_) | Self::Everyone
        )
    }

    /// The durable audience as one string, as logs store and index it:
    /// `u:<user>`, `g:<group>`, `t:<topic>` or `*`. The kind sits at a fixed
    /// position, so no name (a topic called `u:alice`, say) can spell
    /// another audience's key. `None` for ephemeral audiences.
    ///
    /// ```
    /// use sse_core::Audience;
    /// assert_eq!(Audience::topic("u:alice").key().as_deref(), Some("t:u:alice"));
    /// assert_eq!(Audience::from_key("t:u:alice"), Some(Audience::topic("u:alice")));
    /// assert_eq!(Audience::Everyone.key().as_deref(), Some("*"));
    /// assert_eq!(Audience::session("s").key(), None);
    /// ```
    pub fn key(&self) -> Option<String> {
        Some(match self {
            Self::User(user) => format!("u:{user}"),
            Self::Group(group) => format!("g:{group}"),
            Self::Topic(topic) => format!("t:{topic}"),
            Self::Everyone => "*".to_owned(),
            Self::Session(_) | Self::Connection(_) => return None,
        })
    }

    /// The audience a [`key`](Self::key) names.
    pub fn from_key(key: &str) -> Option<Self> {
        if key == "*" {
            return Some(Self::Everyone);
        }
        let (kind, name) = key.split_once(':')?;
        Some(match kind {
            "u" => Self::user(name),
            "g" => Self::group(name),
            "t" => Self::topic(name),
            _ => return None,
        })
    }

    /// Whether a connection of `principal` belongs to this audience.
    ///
    /// This is the reference semantics hubs implement with indexes; it is not
    /// used on the delivery path. [`Audience::Connection`] needs the
    /// connection id, so it never matches a principal alone.
    pub fn matches(&self, principal: &Principal) -> bool {
        match self {
            Self::User(user) => principal.user() == user,
            Self::Session(session) => principal.session() == Some(session),
            Self::Group(group) => principal.groups().contains(group),
            Self::Topic(topic) => principal.topics().contains(topic),
            Self::Connection(_) => false,
            Self::Everyone => true,
        }
    }
}
