//! [`Principal`]: who is on the other end of a connection.

use std::sync::{Arc, LazyLock};

use crate::{GroupId, SessionId, Topic, UserId};

/// Who is connected: a user, optionally one of their sessions, the groups
/// they belong to and the topics they may read.
///
/// An authenticator produces it; the hub indexes the connection under each
/// of these keys, so an [`Audience`](crate::Audience) reaches it directly.
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
