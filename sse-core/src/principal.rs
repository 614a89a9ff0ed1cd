//! [`Principal`]: who is on the other end of a connection.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use crate::{Audience, GroupId, SessionId, Topic, UserId};

/// Who is connected: a user, optionally one of their sessions, the groups
/// they belong to, the topics they may read and when their credentials
/// expire.
///
/// A principal with an [expiry](Self::with_expiry) is refused once it has
/// passed, and its stream ends at that instant with a `retry:` hint, so
/// the client comes back at once and authenticates again (with a fresh
/// token, or not at all).
///
/// An authenticator produces it; the hub indexes the connection under each
/// of these keys, so an [`Audience`] reaches it directly.
/// Cloning is cheap: every part is reference counted.
///
/// ```
/// use sse_core::Principal;
///
/// let alice = Principal::new("alice")
///     .with_session("s-1")
///     .with_groups(["acme"])
///     .with_topics(["deploys", "billing"]);
/// assert_eq!(alice.user().as_str(), "alice");
/// assert!(alice.may_read(&"deploys".into()));
/// assert!(!alice.may_read(&"payroll".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    user: UserId,
    session: Option<SessionId>,
    expires_at: Option<SystemTime>,
    // Groups and topics share one allocation, and principals without any
    // share one empty value: the hub keeps a principal per connection.
    scopes: Arc<Scopes>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Scopes {
    groups: Box<[GroupId]>,
    topics: Box<[Topic]>,
}

static NO_SCOPES: LazyLock<Arc<Scopes>> = LazyLock::new(Arc::default);

impl Principal {
    /// A principal for `user`, with no session, group or topic.
    pub fn new(user: impl Into<UserId>) -> Self {
        Self {
            user: user.into(),
            session: None,
            expires_at: None,
            scopes: NO_SCOPES.clone(),
        }
    }

    /// Sets the session this connection belongs to.
    #[must_use]
    pub fn with_session(mut self, session: impl Into<SessionId>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Sets the groups (organizations, tenants) the user belongs to.
    /// Duplicates are removed, so a connection is indexed once per group.
    #[must_use]
    pub fn with_groups<I>(mut self, groups: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<GroupId>,
    {
        Arc::make_mut(&mut self.scopes).groups =
            sorted_unique(groups.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the topics this principal may read. Duplicates are removed.
    #[must_use]
    pub fn with_topics<I>(mut self, topics: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Topic>,
    {
        Arc::make_mut(&mut self.scopes).topics =
            sorted_unique(topics.into_iter().map(Into::into).collect());
        self
    }

    /// Sets when the credentials this principal authenticated with stop
    /// being valid (a token's `exp`, a session's end).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use sse_core::Principal;
    ///
    /// let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    /// let bob = Principal::new("bob").with_expiry(in_an_hour);
    /// assert_eq!(bob.expires_at(), Some(in_an_hour));
    /// assert!(!bob.is_expired());
    /// assert!(Principal::new("eve").with_expiry(SystemTime::UNIX_EPOCH).is_expired());
    /// ```
    #[must_use]
    pub fn with_expiry(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// When the credentials stop being valid, if they do.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the credentials have expired by now.
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= SystemTime::now())
    }

    /// Refuses a principal whose user, session, group or topic ids hold
    /// CR, LF or NUL: ids that come from input (a name, a token's `sub`)
    /// are where frame injection starts. `sse-tower` refuses such
    /// principals from any authenticator with `401`.
    ///
    /// ```
    /// use sse_core::Principal;
    /// assert!(Principal::new("alice").with_groups(["acme"]).check_ids().is_ok());
    /// assert!(Principal::new("x\ndata: evil").check_ids().is_err());
    /// assert!(Principal::new("bob").with_topics(["a\0b"]).check_ids().is_err());
    /// ```
    pub fn check_ids(&self) -> Result<(), crate::AuthRejection> {
        let bad = |id: &str| id.contains(['\r', '\n', '\0']);
        let offending = if bad(self.user().as_str()) {
            Some("user")
        } else if self.session().is_some_and(|s| bad(s.as_str())) {
            Some("session")
        } else if self.groups().iter().any(|g| bad(g.as_str())) {
            Some("group")
        } else if self.topics().iter().any(|t| bad(t.as_str())) {
            Some("topic")
        } else {
            None
        };
        match offending {
            Some(what) => Err(crate::AuthRejection::unauthenticated(format!(
                "the {what} id holds a line break or NUL"
            ))),
            None => Ok(()),
        }
    }

    /// The user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The session, if the authenticator knows it.
    pub fn session(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// The groups the user belongs to.
    pub fn groups(&self) -> &[GroupId] {
        &self.scopes.groups
    }

    /// The topics this principal may read (and, once a stream narrows them,
    /// the topics the connection subscribes to).
    pub fn topics(&self) -> &[Topic] {
        &self.scopes.topics
    }

    /// Whether `topic` is among the topics this principal may read.
    pub fn may_read(&self, topic: &Topic) -> bool {
        self.scopes.topics.contains(topic)
    }

    /// Whether a connection of this principal receives events to
    /// `audience` (see [`Audience::matches`]).
    pub fn reads(&self, audience: &Audience) -> bool {
        audience.matches(self)
    }

    /// The durable audiences this principal reads, whose history a stream
    /// replays: its user, its groups, its topics and everyone.
    ///
    /// ```
    /// use sse_core::{Audience, Principal};
    /// let bob = Principal::new("bob").with_groups(["acme"]).with_topics(["deploys"]);
    /// let audiences: Vec<Audience> = bob.durable_audiences().collect();
    /// assert_eq!(audiences, [
    ///     Audience::user("bob"), Audience::group("acme"), Audience::topic("deploys"), Audience::Everyone,
    /// ]);
    /// ```
    pub fn durable_audiences(&self) -> impl Iterator<Item = Audience> + '_ {
        std::iter::once(Audience::User(self.user.clone()))
            .chain(self.groups().iter().cloned().map(Audience::Group))
            .chain(self.topics().iter().cloned().map(Audience::Topic))
            .chain(std::iter::once(Audience::Everyone))
    }
}

fn sorted_unique<T: Ord>(mut items: Vec<T>) -> Box<[T]> {
    items.sort();
    items.dedup();
    items.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_groups_and_topics_collapse() {
        let p = Principal::new("u")
            .with_groups(["b", "a", "b"])
            .with_topics(["t", "t"]);
        assert_eq!(p.groups(), &[GroupId::from("a"), GroupId::from("b")]);
        assert_eq!(p.topics().len(), 1);
    }
}
