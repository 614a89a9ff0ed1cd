use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use super::{BoxError, SessionLookup};
use crate::{Principal, UserId};

/// A session store in process memory: credential → principal.
///
/// Good for demos, tests and single-process apps. [`InMemorySessions::create`]
/// issues 128-bit random credentials from the operating system's generator.
/// Cloning gives another handle to the same sessions.
///
/// ```
/// use sse_core::{InMemorySessions, Principal};
/// let sessions = InMemorySessions::new();
/// let sid = sessions.create(Principal::new("alice"));
/// assert_eq!(sessions.get(&sid).unwrap().user().as_str(), "alice");
/// // The principal carries its session, so a stream can target it.
/// assert_eq!(sessions.get(&sid).unwrap().session().unwrap().as_str(), sid);
/// sessions.remove(&sid);
/// assert!(sessions.get(&sid).is_none());
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

    /// Creates a session for `principal` with a fresh random credential,
    /// which becomes the principal's [`SessionId`](crate::SessionId).
    /// Returns the credential.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails: a
    /// predictable session id would be worse than stopping.
    pub fn create(&self, principal: Principal) -> String {
        let credential = random_token();
        self.insert(
            credential.clone(),
            principal.with_session(credential.as_str()),
        );
        credential
    }

    /// Stores `principal` under a credential you chose.
    pub fn insert(&self, credential: impl Into<String>, principal: Principal) {
        self.write().insert(credential.into(), principal);
    }

    /// Forgets a session; returns its principal.
    pub fn remove(&self, credential: &str) -> Option<Principal> {
        self.write().remove(credential)
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
            .get(credential)
            .cloned()
    }

    /// The session ids currently stored.
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

/// 128 bits from the OS generator as 32 hex digits.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS generator failing is not recoverable; a predictable session
        // id would be worse than stopping.
        panic!("the operating system's random number generator failed");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
