//! Per-user and global connection limits.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sse_core::UserId;

const SHARDS: usize = 32;

/// Counts open streams per user and in total; a [`Permit`] holds one slot.
pub(crate) struct ConnectionLimits {
    global: AtomicUsize,
    max_global: usize,
    max_per_user: usize,
    per_user: Box<[Mutex<HashMap<UserId, usize>>]>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitExceeded {
    Global,
    User,
}

/// One open stream's slot; released on drop.
pub(crate) struct Permit {
    limits: Arc<ConnectionLimits>,
    user: UserId,
}

impl ConnectionLimits {
    pub(crate) fn new(max_global: usize, max_per_user: usize) -> Self {
        Self {
            global: AtomicUsize::new(0),
            max_global,
            max_per_user,
            per_user: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, user: &UserId) -> &Mutex<HashMap<UserId, usize>> {
        &self.per_user[self.hasher.hash_one(user) as usize % SHARDS]
    }

    /// Whether the global limit is reached (a cheap check before authenticating).
    pub(crate) fn full(&self) -> bool {
        self.global.load(Ordering::Relaxed) >= self.max_global
    }

    pub(crate) fn acquire(self: &Arc<Self>, user: &UserId) -> Result<Permit, LimitExceeded> {
        if self.global.fetch_add(1, Ordering::AcqRel) >= self.max_global {
            self.global.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitExceeded::Global);
        }
        let mut shard = self
            .shard(user)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = shard.entry(user.clone()).or_insert(0);
        if *count >= self.max_per_user {
            drop(shard);
            self.global.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitExceeded::User);
        }
        *count += 1;
        Ok(Permit {
            limits: self.clone(),
            user: user.clone(),
        })
    }

    /// Users with at least one open stream (zero after every stream closed).
    #[cfg(test)]
    pub(crate) fn users(&self) -> usize {
        self.per_user
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let limits = &self.limits;
        let mut shard = limits
            .shard(&self.user)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = shard.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&self.user);
            }
        }
        drop(shard);
        limits.global.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_global_limits_hold_and_release() {
        let limits = Arc::new(ConnectionLimits::new(3, 2));
        let a1 = limits.acquire(&"a".into()).unwrap();
        let _a2 = limits.acquire(&"a".into()).unwrap();
        assert_eq!(limits.acquire(&"a".into()).err(), Some(LimitExceeded::User));
        let _b1 = limits.acquire(&"b".into()).unwrap();
        assert_eq!(
            limits.acquire(&"c".into()).err(),
            Some(LimitExceeded::Global)
        );
        drop(a1);
        let _c1 = limits.acquire(&"c".into()).unwrap();
        drop((_a2, _b1, _c1));
        assert_eq!(limits.users(), 0);
        assert!(!limits.full());
    }
}
