use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use super::credential::{IssuedSession, RandomUnavailable, credential_digest};
use super::{BoxError, SessionLookup};
use crate::{Principal, SessionId, UserId};

/// A session store in process memory: credential → principal.
///
/// Good for demos, tests and single-process apps. Credentials are kept
/// only as their [`credential_digest`], and a session created here gets an
/// opaque [`SessionId`] unrelated to its credential (see
/// [`credential`](super::credential)). Cloning gives another handle to the
/// same sessions.
///
/// ```
/// use sse_core::{InMemorySessions, Principal};
/// # fn main() -> Result<(), sse_core::auth::RandomUnavailable> {
/// let sessions = InMemorySessions::new();
/// let sid = sessions.create(Principal::new("alice"))?;
/// let principal = sessions.get(&sid).unwrap();
/// assert_eq!(principal.user().as_str(), "alice");
/// // The principal carries a session id a stream can target, which is
/// // not the credential.
/// assert_ne!(principal.session().unwrap().as_str(), sid);
/// sessions.remove(&sid);
/// assert!(sessions.get(&sid).is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct InMemorySessions {
    sessions: Arc<RwLock<HashMap<String, Principal>>>,
}

impl InMemorySessions {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a session for `principal` with a fresh random credential and
    /// a fresh, unrelated session id (set on the principal). Returns the
    /// credential, to hand to the client.
    pub fn create(&self, principal: Principal) -> Result<String, RandomUnavailable> {
        let (credential, id) = IssuedSession::generate()?.into_parts();
        self.insert(credential.as_str(), principal.with_session(id));
        Ok(credential)
    }

    /// Stores `principal` under a credential you chose (kept as its digest).
    /// The principal's session id, if any, is yours to choose too: never
    /// make it the credential.
    pub fn insert(&self, credential: impl AsRef<str>, principal: Principal) {
        self.write()
            .insert(credential_digest(credential.as_ref()), principal);
    }

    /// Forgets a session; returns its principal (whose session id you can
    /// pass to [`Notifier::disconnect`](crate::Notifier::disconnect)).
    pub fn remove(&self, credential: &str) -> Option<Principal> {
        self.write().remove(&credential_digest(credential))
    }

    /// Forgets the session with this id; returns whether there was one.
    ///
    /// Its credential is refused from then on; to end the streams it has
    /// open on every node too, as logout does, follow with
    /// `notifier.revoke(&user, Some(&id))`.
    pub fn revoke(&self, session: &SessionId) -> bool {
        let mut sessions = self.write();
        let before = sessions.len();
        sessions.retain(|_, principal| principal.session() != Some(session));
        before != sessions.len()
    }

    /// Forgets every session of `user`; returns how many there were.
    pub fn remove_user(&self, user: &UserId) -> usize {
        let mut sessions = self.write();
        let before = sessions.len();
        sessions.retain(|_, principal| principal.user() != user);
        before - sessions.len()
    }

    /// The principal of a session.
    pub fn get(&self, credential: &str) -> Option<Principal> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&credential_digest(credential))
            .cloned()
    }

    /// How many sessions are stored.
    pub fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no session is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Principal>> {
        self.sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SessionLookup for InMemorySessions {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        Ok(self.get(credential))
    }
}

impl std::fmt::Debug for InMemorySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemorySessions")
            .field("sessions", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_become_identifiers() {
        let sessions = InMemorySessions::new();
        let credential = sessions.create(Principal::new("alice")).unwrap();
        let principal = sessions.get(&credential).unwrap();
        let shown = format!("{principal:?} {sessions:?}");
        assert!(!shown.contains(&credential), "{shown}");
        let session = principal.session().unwrap().clone();
        assert!(sessions.revoke(&session));
        assert!(sessions.get(&credential).is_none());
    }
}
