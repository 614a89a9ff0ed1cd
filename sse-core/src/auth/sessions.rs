use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::credential::{IssuedSession, RandomUnavailable, credential_digest};
use super::{BoxError, SessionLookup};
use crate::{Principal, SessionId, UserId};

/// How long a session lasts by default: 30 days, as the SQL and Redis
/// session stores.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many sessions a user keeps by default; creating one more ends the
/// oldest (so a login loop cannot fill the store).
pub const DEFAULT_SESSIONS_PER_USER: usize = 32;
/// How often expired sessions are deleted (during a `create`): the stores
/// need no task of their own, and a store nobody logs into does not grow.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A session store in process memory: credential → principal.
///
/// Good for demos, tests and single-process apps. Credentials are kept
/// only as their [`credential_digest`], and a session created here gets an
/// opaque [`SessionId`] unrelated to its credential (see
/// [`credential`](super::credential)). Cloning gives another handle to the
/// same sessions.
///
/// Bounded as the SQL and Redis stores are: a session expires after its
/// [`lifetime`](Self::lifetime) (30 days by default; its principal carries
/// that expiry, so its streams end then too), a user keeps at most
/// [`max_per_user`](Self::max_per_user) sessions (32; creating another ends
/// the oldest), and expired sessions are deleted every ten minutes by
/// whichever `create` comes along (or by [`prune_expired`](Self::prune_expired)).
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
#[derive(Clone)]
pub struct InMemorySessions {
    inner: Arc<RwLock<Inner>>,
    lifetime: Duration,
    max_per_user: usize,
}

#[derive(Default)]
struct Inner {
    /// Credential digest → session.
    sessions: HashMap<String, Principal>,
    /// Each user's credential digests, oldest first.
    by_user: HashMap<UserId, VecDeque<String>>,
    last_prune: Option<Instant>,
}

impl Inner {
    fn forget(&mut self, digest: &str) -> Option<Principal> {
        let principal = self.sessions.remove(digest)?;
        if let Some(digests) = self.by_user.get_mut(principal.user()) {
            digests.retain(|d| d != digest);
            if digests.is_empty() {
                self.by_user.remove(principal.user());
            }
        }
        Some(principal)
    }

    fn prune(&mut self) -> usize {
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, principal)| principal.is_expired())
            .map(|(digest, _)| digest.clone())
            .collect();
        for digest in &expired {
            self.forget(digest);
        }
        self.last_prune = Some(Instant::now());
        expired.len()
    }
}

impl Default for InMemorySessions {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            lifetime: DEFAULT_SESSION_LIFETIME,
            max_per_user: DEFAULT_SESSIONS_PER_USER,
        }
    }
}

impl InMemorySessions {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a session lasts from creation (30 days by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sse_core::{InMemorySessions, Principal};
    /// let sessions = InMemorySessions::new().lifetime(Duration::ZERO);
    /// let sid = sessions.create(Principal::new("alice")).unwrap();
    /// assert!(sessions.get(&sid).is_none(), "expired at once");
    /// ```
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// How many sessions a user keeps (at least 1; 32 by default): creating
    /// one more ends the user's oldest.
    ///
    /// ```
    /// use sse_core::{InMemorySessions, Principal};
    /// let sessions = InMemorySessions::new().max_per_user(2);
    /// let first = sessions.create(Principal::new("alice")).unwrap();
    /// let _second = sessions.create(Principal::new("alice")).unwrap();
    /// let _third = sessions.create(Principal::new("alice")).unwrap();
    /// assert!(sessions.get(&first).is_none());
    /// assert_eq!(sessions.len(), 2);
    /// ```
    #[must_use]
    pub fn max_per_user(mut self, sessions: usize) -> Self {
        self.max_per_user = sessions.max(1);
        self
    }

    /// Creates a session for `principal` with a fresh random credential and
    /// a fresh, unrelated session id (set on the principal), expiring after
    /// the [lifetime](Self::lifetime) (or earlier, if the principal already
    /// expires earlier). Returns the credential, to hand to the client.
    pub fn create(&self, principal: Principal) -> Result<String, RandomUnavailable> {
        let (credential, id) = IssuedSession::generate()?.into_parts();
        // A lifetime past what the clock can hold means no expiry.
        let principal = match (
            SystemTime::now().checked_add(self.lifetime),
            principal.expires_at(),
        ) {
            (Some(ends), Some(at)) if at > ends => principal.with_expiry(ends),
            (Some(ends), None) => principal.with_expiry(ends),
            _ => principal,
        };
        self.insert(credential.as_str(), principal.with_session(id));
        Ok(credential)
    }

    /// Stores `principal` under a credential you chose (kept as its digest);
    /// it expires when the principal does (see
    /// [`Principal::with_expiry`]), and counts toward the user's
    /// [cap](Self::max_per_user). The principal's session id, if any, is
    /// yours to choose too: never make it the credential.
    pub fn insert(&self, credential: impl AsRef<str>, principal: Principal) {
        let digest = credential_digest(credential.as_ref());
        let mut inner = self.write();
        if inner
            .last_prune
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            inner.prune();
        }
        inner.forget(&digest);
        let user = principal.user().clone();
        inner.sessions.insert(digest.clone(), principal);
        let digests = inner.by_user.entry(user).or_default();
        digests.push_back(digest);
        let over: Vec<String> = {
            let excess = digests.len().saturating_sub(self.max_per_user);
            digests.drain(..excess).collect()
        };
        for oldest in over {
            inner.sessions.remove(&oldest);
        }
    }

    /// Forgets a session; returns its principal (whose session id you can
    /// pass to [`Notifier::revoke`](crate::Notifier::revoke)).
    pub fn remove(&self, credential: &str) -> Option<Principal> {
        self.write().forget(&credential_digest(credential))
    }

    /// Forgets the session with this id; returns whether there was one.
    ///
    /// Its credential is refused from then on; to end the streams it has
    /// open on every node too, as logout does, follow with
    /// `notifier.revoke(&user, Some(&id))`.
    pub fn revoke(&self, session: &SessionId) -> bool {
        let mut inner = self.write();
        let found: Vec<String> = inner
            .sessions
            .iter()
            .filter(|(_, principal)| principal.session() == Some(session))
            .map(|(digest, _)| digest.clone())
            .collect();
        for digest in &found {
            inner.forget(digest);
        }
        !found.is_empty()
    }

    /// Forgets every session of `user`; returns how many there were.
    pub fn remove_user(&self, user: &UserId) -> usize {
        let mut inner = self.write();
        let digests = inner.by_user.remove(user).unwrap_or_default();
        for digest in &digests {
            inner.sessions.remove(digest);
        }
        digests.len()
    }

    /// The user's sessions that have not expired, oldest first: for a
    /// "your devices" page, or to learn which groups a user is in.
    ///
    /// ```
    /// use sse_core::{InMemorySessions, Principal, UserId};
    /// let sessions = InMemorySessions::new();
    /// sessions.create(Principal::new("alice").with_groups(["acme"])).unwrap();
    /// let alice = sessions.of_user(&UserId::from("alice"));
    /// assert_eq!(alice[0].groups()[0].as_str(), "acme");
    /// assert!(sessions.of_user(&UserId::from("bob")).is_empty());
    /// ```
    pub fn of_user(&self, user: &UserId) -> Vec<Principal> {
        let inner = self.read();
        inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|digest| inner.sessions.get(digest))
            .filter(|principal| !principal.is_expired())
            .cloned()
            .collect()
    }

    /// Deletes expired sessions now; returns how many. (`create` does it
    /// every ten minutes anyway.)
    pub fn prune_expired(&self) -> usize {
        self.write().prune()
    }

    /// The principal of a session that has not expired.
    pub fn get(&self, credential: &str) -> Option<Principal> {
        self.read()
            .sessions
            .get(&credential_digest(credential))
            .filter(|principal| !principal.is_expired())
            .cloned()
    }

    /// How many sessions are stored (expired ones not yet pruned included).
    pub fn len(&self) -> usize {
        self.read().sessions.len()
    }

    /// Whether no session is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
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
            .field("lifetime", &self.lifetime)
            .field("max_per_user", &self.max_per_user)
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

    #[test]
    fn sessions_expire_are_capped_per_user_and_pruned() {
        let sessions = InMemorySessions::new().max_per_user(3);
        let alice: Vec<String> = (0..5)
            .map(|_| sessions.create(Principal::new("alice")).unwrap())
            .collect();
        let bob = sessions.create(Principal::new("bob")).unwrap();
        // The two oldest of alice's ended; bob's is untouched.
        assert!(alice[..2].iter().all(|c| sessions.get(c).is_none()));
        assert!(alice[2..].iter().all(|c| sessions.get(c).is_some()));
        assert!(sessions.get(&bob).is_some());
        assert_eq!(sessions.len(), 4);
        // A created session carries its expiry; once past, it is refused
        // and pruned.
        let expires = sessions.get(&bob).unwrap().expires_at().unwrap();
        let days = expires.duration_since(SystemTime::now()).unwrap().as_secs() / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        let short = sessions.clone().lifetime(Duration::ZERO);
        let gone = short.create(Principal::new("carol")).unwrap();
        assert!(sessions.get(&gone).is_none());
        assert_eq!(sessions.prune_expired(), 1);
        assert_eq!(sessions.len(), 4);
        // Removing the user's sessions keeps the index consistent.
        assert_eq!(sessions.remove_user(&UserId::from("alice")), 3);
        assert!(sessions.remove(&bob).is_some());
        assert!(sessions.is_empty());
    }
}
