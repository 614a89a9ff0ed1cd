//! Presence across nodes: each node keeps its own counts exact in memory
//! and mirrors them into one Redis hash, `<prefix>p:<node id>`, whose
//! fields are audience keys (`u:alice`, `g:acme`, `*` for everyone) and
//! whose values are this node's open streams. The hash expires after the
//! node's lease, so a node that dies stops counting within it; the set
//! `<prefix>nodes` lists the nodes to ask.
//!
//! A count changes in the hash within `presence_flush` of the change
//! (changes are batched), and the whole hash is rewritten every third of a
//! lease, which also heals it after Redis lost its data. A query adds this
//! node's exact count to the other nodes' hashes in one script call.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::Script;
use sse_core::{Audience, InMemoryHub};
use tokio::sync::Notify;

use crate::connection::Connection;
use crate::hub::{Channels, channel};

/// The field counting every stream of a node.
pub(crate) const EVERYONE: &str = "*";

/// Keys whose counts changed since the last flush.
#[derive(Default)]
pub(crate) struct Dirty {
    keys: Mutex<HashSet<String>>,
    /// Shared with the flusher, which must not keep the hub alive.
    pub(crate) wake: Arc<Notify>,
}

impl Dirty {
    pub(crate) fn mark(&self, keys: &[String]) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(keys.iter().cloned());
        self.wake.notify_one();
    }

    fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.keys.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Where presence lives in Redis for one prefix.
#[derive(Clone)]
pub(crate) struct PresenceKeys {
    /// The channel prefix: fields are channel names without it.
    prefix: String,
    /// The key prefix (a hash tag on a cluster: every presence key on one
    /// slot, as the count script reads them all).
    key_prefix: String,
    nodes: String,
    own: String,
}

impl PresenceKeys {
    pub(crate) fn new(prefix: &str, key_prefix: &str, node: u64) -> Self {
        Self {
            prefix: prefix.to_owned(),
            key_prefix: key_prefix.to_owned(),
            nodes: format!("{key_prefix}nodes"),
            own: format!("{node:016x}"),
        }
    }

    fn hash_prefix(&self) -> String {
        format!("{}p:", self.key_prefix)
    }

    fn own_hash(&self) -> String {
        format!("{}p:{}", self.key_prefix, self.own)
    }

    /// The hash field of a channel key (the channel without the prefix).
    fn field<'a>(&self, channel: &'a str) -> &'a str {
        channel
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(channel)
    }

    /// The field for an audience: its channel without the prefix (the one
    /// naming of audiences, `hub::channel`), `*` for everyone; `None` for
    /// a connection (answered by its own node only).
    pub(crate) fn field_of(&self, audience: &Audience) -> Option<String> {
        match audience {
            Audience::Everyone => Some(EVERYONE.to_owned()),
            Audience::Connection(_) => None,
            other => channel(&self.prefix, other).map(|name| self.field(&name).to_owned()),
        }
    }
}

/// Sums a field over every other live node's hash; forgets nodes whose
/// hash expired.
static REMOTE_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[3] then
    local hash = ARGV[1] .. node
    local n = redis.call('HGET', hash, ARGV[2])
    if n then
      total = total + tonumber(n)
    elseif redis.call('EXISTS', hash) == 0 then
      redis.call('SREM', KEYS[1], node)
    end
  end
end
return total
",
    )
});

/// The other nodes' streams of `field`.
pub(crate) async fn remote_count(
    connection: &mut Connection,
    keys: &PresenceKeys,
    field: &str,
) -> Result<u64, redis::RedisError> {
    REMOTE_COUNT
        .key(&keys.nodes)
        .arg(keys.hash_prefix())
        .arg(field)
        .arg(&keys.own)
        .invoke_async(connection)
        .await
}

/// The task that mirrors this node's counts into Redis.
pub(crate) struct Flusher {
    pub(crate) wake: Arc<Notify>,
    pub(crate) publisher: Connection,
    pub(crate) channels: Weak<Channels>,
    pub(crate) local: InMemoryHub,
    pub(crate) keys: PresenceKeys,
    pub(crate) flush_every: Duration,
    pub(crate) lease: Duration,
}

impl Flusher {
    pub(crate) async fn run(mut self) {
        let mut rewrite = tokio::time::interval(self.lease / 3);
        let mut full = true;
        loop {
            let dirty = {
                tokio::select! {
                    () = self.wake.notified() => {
                        // Batch what else changes meanwhile.
                        tokio::time::sleep(self.flush_every).await;
                    }
                    _ = rewrite.tick() => full = true,
                }
                let Some(channels) = self.channels.upgrade() else {
                    return;
                };
                channels.dirty.take()
            };
            let Some(pipe) = self.pipeline(full, &dirty) else {
                return;
            };
            match pipe.query_async::<()>(&mut self.publisher).await {
                Ok(()) => full = false,
                Err(error) => {
                    // Rewrite everything once Redis answers again.
                    tracing::warn!(%error, "writing presence to Redis failed; retrying");
                    full = true;
                    tokio::time::sleep(self.flush_every.max(Duration::from_millis(100))).await;
                }
            }
        }
    }

    /// The writes for `dirty` keys, or for every key when `full`.
    fn pipeline(&self, full: bool, dirty: &HashSet<String>) -> Option<redis::Pipeline> {
        let channels = self.channels.upgrade()?;
        let hash = self.keys.own_hash();
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SADD")
            .arg(&self.keys.nodes)
            .arg(&self.keys.own)
            .ignore();
        let counts = channels.counts();
        if full {
            pipe.cmd("DEL").arg(&hash).ignore();
            for (channel, count) in counts.iter() {
                pipe.cmd("HSET")
                    .arg(&hash)
                    .arg(self.keys.field(channel))
                    .arg(*count)
                    .ignore();
            }
        } else {
            for channel in dirty {
                let field = self.keys.field(channel);
                match counts.get(channel) {
                    Some(count) => pipe.cmd("HSET").arg(&hash).arg(field).arg(*count).ignore(),
                    None => pipe.cmd("HDEL").arg(&hash).arg(field).ignore(),
                };
            }
        }
        drop(counts);
        pipe.cmd("HSET")
            .arg(&hash)
            .arg(EVERYONE)
            .arg(self.local.local_presence(&Audience::Everyone))
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&hash)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX))
            .ignore();
        Some(pipe)
    }
}
