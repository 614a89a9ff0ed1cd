//! A hash map split into independently locked shards, so operations on
//! different keys rarely contend and no operation takes a global lock.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

const SHARDS: usize = 64;

pub(crate) struct Sharded<K, V> {
    shards: Box<[RwLock<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard<Q>(&self, key: &Q) -> &RwLock<HashMap<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[index]
    }

    /// Read access to the shard that holds `key`. The guard must not be held
    /// across an await; every caller does a bounded amount of work under it.
    pub(crate) fn read<Q>(&self, key: &Q) -> RwLockReadGuard<'_, HashMap<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the shard that holds `key`.
    pub(crate) fn write<Q>(&self, key: &Q) -> RwLockWriteGuard<'_, HashMap<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Visits every shard in turn under its read lock.
    pub(crate) fn for_each_shard(&self, mut visit: impl FnMut(&HashMap<K, V>)) {
        for shard in self.shards.iter() {
            visit(&shard.read().unwrap_or_else(PoisonError::into_inner));
        }
    }

    pub(crate) fn len(&self) -> usize {
        let mut len = 0;
        self.for_each_shard(|map| len += map.len());
        len
    }
}
