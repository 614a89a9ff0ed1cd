//! Who is online on every node: each node's tally of its own streams, the
//! other nodes' as they announced them, and the announcements.
//!
//! Each node keeps, per user with a stream on it, how many streams that
//! user has, and per session, group and topic of theirs how many of those
//! streams read it. It announces changes on the control route (batched
//! over [`presence_flush`](super::ClusterHubBuilder::presence_flush)), a
//! lease renewal every [`announce_every`](super::ClusterHubBuilder::announce_every),
//! and its whole tally to a node that says hello (a node starting, or one
//! back after a lost link). Every node keeps the others' tallies in memory,
//! so [`Hub::presence`](crate::Hub::presence) asks nobody.
//!
//! - **Leases.** A node's tally counts until its lease ends (six announce
//!   intervals, 30 s by default) without a word from it: a node that died
//!   stops counting by then; one that stops cleanly says goodbye at once.
//! - **Nothing missed silently.** Each node numbers its announcements; a
//!   node that sees a number skipped (a dropped message, a lost link) asks
//!   the announcer for its whole tally again.
//! - **Unique node ids.** A starting node says hello before it picks its
//!   id, hears every live node's, and draws one no live node holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{Audience, Principal, UserId};

/// Users per announcement: a node's whole tally goes in several.
const USERS_PER_MESSAGE: usize = 500;

/// One user's streams on one node, as announced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    /// Streams of the user (0: none left).
    #[serde(rename = "n")]
    streams: u64,
    #[serde(rename = "s", default, skip_serializing_if = "Vec::is_empty")]
    sessions: Vec<(String, u64)>,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<(String, u64)>,
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    topics: Vec<(String, u64)>,
}

/// What nodes say to each other about presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Announcement {
    /// A node starting (`node` 0, before it has an id) or back: everyone
    /// (or `to` alone) answers with their whole tally.
    Hello { node: u64, to: Option<u64> },
    /// Part of a node's whole tally; the `first` part replaces what was
    /// known of it.
    Tally {
        node: u64,
        incarnation: u64,
        seq: u64,
        lease_ms: u64,
        first: bool,
        users: Vec<(String, Entry)>,
    },
    /// Users whose streams changed (an entry with 0 streams: none left).
    Changes {
        node: u64,
        incarnation: u64,
        seq: u64,
        lease_ms: u64,
        users: Vec<(String, Entry)>,
    },
    /// Still here: the lease goes on.
    Alive {
        node: u64,
        incarnation: u64,
        seq: u64,
        lease_ms: u64,
    },
    /// Stopping: forget this node now.
    Gone { node: u64, incarnation: u64 },
}

/// The prefix that marks a presence message on the control route (no
/// envelope starts with it).
pub(super) const PREFIX: &[u8] = b"!p";

impl Announcement {
    pub(super) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_slice(PREFIX);
        let mut writer = out.writer();
        // Serializing plain data to a buffer cannot fail.
        let _ = serde_json::to_writer(&mut writer, self);
        writer.into_inner().freeze()
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes.strip_prefix(PREFIX)?).ok()
    }
}

/// This node's streams, per user.
#[derive(Default)]
struct Local {
    users: HashMap<UserId, LocalUser>,
    /// Users whose entry changed since the last announcement.
    dirty: HashSet<UserId>,
}

#[derive(Default)]
struct LocalUser {
    streams: u64,
    sessions: HashMap<String, u64>,
    groups: HashMap<String, u64>,
    topics: HashMap<String, u64>,
}

impl LocalUser {
    fn entry(&self) -> Entry {
        let list = |map: &HashMap<String, u64>| {
            let mut list: Vec<(String, u64)> = map.iter().map(|(k, n)| (k.clone(), *n)).collect();
            list.sort();
            list
        };
        Entry {
            streams: self.streams,
            sessions: list(&self.sessions),
            groups: list(&self.groups),
            topics: list(&self.topics),
        }
    }
}

fn bump(map: &mut HashMap<String, u64>, key: &str, open: bool) {
    if open {
        *map.entry(key.to_owned()).or_default() += 1;
    } else if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Another node's tally, as last announced.
struct Remote {
    incarnation: u64,
    seq: u64,
    expires: Instant,
    users: HashMap<String, Entry>,
    /// Streams per session, group and topic (`s`, `g`, `t` and the name),
    /// and `*` for all: kept as entries come and go, so that a count is one
    /// lookup.
    counts: HashMap<(u8, String), u64>,
}

impl Remote {
    fn new(incarnation: u64, seq: u64, expires: Instant) -> Self {
        Self {
            incarnation,
            seq,
            expires,
            users: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    /// Replaces `user`'s entry (0 streams: removes it).
    fn put(&mut self, user: String, entry: Entry) {
        if let Some(old) = self.users.remove(&user) {
            self.count_entry(&old, false);
        }
        if entry.streams > 0 {
            self.count_entry(&entry, true);
            self.users.insert(user, entry);
        }
    }

    fn count_entry(&mut self, entry: &Entry, add: bool) {
        let mut apply = |key: (u8, String), n: u64| {
            let count = self.counts.entry(key.clone()).or_default();
            if add {
                *count += n;
            } else {
                *count = count.saturating_sub(n);
                if *count == 0 {
                    self.counts.remove(&key);
                }
            }
        };
        apply((b'*', String::new()), entry.streams);
        for (kind, list) in [
            (b's', &entry.sessions),
            (b'g', &entry.groups),
            (b't', &entry.topics),
        ] {
            for (name, n) in list {
                apply((kind, name.clone()), *n);
            }
        }
    }

    fn count(&self, audience: &Audience) -> u64 {
        let key = |kind: u8, name: &str| self.counts.get(&(kind, name.to_owned())).copied();
        match audience {
            Audience::User(user) => self.users.get(user.as_str()).map(|e| e.streams),
            Audience::Session(session) => key(b's', session.as_str()),
            Audience::Group(group) => key(b'g', group.as_str()),
            Audience::Topic(topic) => key(b't', topic.as_str()),
            Audience::Everyone => key(b'*', ""),
            Audience::Connection(_) => None,
        }
        .unwrap_or(0)
    }

    /// Streams per user of `audience` on this node.
    fn members(&self, audience: &Audience, into: &mut BTreeMap<UserId, u64>) {
        if let Audience::User(user) = audience {
            if let Some(entry) = self.users.get(user.as_str()) {
                *into.entry(user.clone()).or_default() += entry.streams;
            }
            return;
        }
        for (user, entry) in &self.users {
            let n = match audience {
                Audience::Session(s) => of(&entry.sessions, s.as_str()),
                Audience::Group(g) => of(&entry.groups, g.as_str()),
                Audience::Topic(t) => of(&entry.topics, t.as_str()),
                Audience::Everyone => entry.streams,
                _ => 0,
            };
            if n > 0 {
                *into.entry(UserId::from(user.as_str())).or_default() += n;
            }
        }
    }
}

fn of(list: &[(String, u64)], name: &str) -> u64 {
    list.iter()
        .find(|(key, _)| key == name)
        .map_or(0, |(_, n)| *n)
}

/// Presence on every node; see the module docs.
pub(super) struct Book {
    local: Mutex<Local>,
    remote: Mutex<HashMap<u64, Remote>>,
    /// Node ids heard while starting (before this node has one).
    heard: Mutex<HashSet<u64>>,
    wake: tokio::sync::Notify,
    seq: std::sync::atomic::AtomicU64,
}

/// What to do after applying an announcement.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply {
    Nothing,
    /// Send this node's whole tally.
    Tally,
    /// Ask `node` for its whole tally (one of its announcements was missed).
    AskFor(u64),
    /// Ask every node for its whole tally (this node may have missed any).
    AskAll,
}

impl Book {
    pub(super) fn new() -> Self {
        Self {
            local: Mutex::new(Local::default()),
            remote: Mutex::new(HashMap::new()),
            heard: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remote(&self) -> MutexGuard<'_, HashMap<u64, Remote>> {
        self.remote.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream of `principal` opened (`open`) or closed on this node.
    pub(super) fn local_change(&self, principal: &Principal, open: bool) {
        let mut local = self.local();
        let user = local.users.entry(principal.user().clone()).or_default();
        if open {
            user.streams += 1;
        } else {
            user.streams = user.streams.saturating_sub(1);
        }
        if let Some(session) = principal.session() {
            bump(&mut user.sessions, session.as_str(), open);
        }
        for group in principal.groups() {
            bump(&mut user.groups, group.as_str(), open);
        }
        for topic in principal.topics() {
            bump(&mut user.topics, topic.as_str(), open);
        }
        if user.streams == 0 {
            local.users.remove(principal.user());
        }
        local.dirty.insert(principal.user().clone());
        drop(local);
        self.wake.notify_one();
    }

    /// Waits until a local change is to be announced.
    pub(super) async fn changed(&self) {
        self.wake.notified().await;
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// The local changes since the last call, as one announcement (or none).
    pub(super) fn take_changes(
        &self,
        node: u64,
        incarnation: u64,
        lease: Duration,
    ) -> Option<Announcement> {
        let mut local = self.local();
        if local.dirty.is_empty() {
            return None;
        }
        let dirty = std::mem::take(&mut local.dirty);
        let users = dirty
            .into_iter()
            .map(|user| {
                let entry = local
                    .users
                    .get(&user)
                    .map(LocalUser::entry)
                    .unwrap_or_default();
                (user.as_str().to_owned(), entry)
            })
            .collect();
        drop(local);
        Some(Announcement::Changes {
            node,
            incarnation,
            seq: self.next_seq(),
            lease_ms: millis(lease),
            users,
        })
    }

    /// This node's whole tally, in announcements of bounded size.
    pub(super) fn tally(&self, node: u64, incarnation: u64, lease: Duration) -> Vec<Announcement> {
        let local = self.local();
        let users: Vec<(String, Entry)> = local
            .users
            .iter()
            .map(|(user, entry)| (user.as_str().to_owned(), entry.entry()))
            .collect();
        drop(local);
        let mut parts: Vec<Vec<(String, Entry)>> = users
            .chunks(USERS_PER_MESSAGE)
            .map(<[(String, Entry)]>::to_vec)
            .collect();
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        parts
            .into_iter()
            .enumerate()
            .map(|(i, users)| Announcement::Tally {
                node,
                incarnation,
                seq: self.next_seq(),
                lease_ms: millis(lease),
                first: i == 0,
                users,
            })
            .collect()
    }

    pub(super) fn alive(&self, node: u64, incarnation: u64, lease: Duration) -> Announcement {
        Announcement::Alive {
            node,
            incarnation,
            seq: self.next_seq(),
            lease_ms: millis(lease),
        }
    }

    /// Applies another node's announcement. `own` is this node's id and
    /// incarnation, once it has them.
    pub(super) fn apply(&self, message: Announcement, own: Option<(u64, u64)>) -> Reply {
        let now = Instant::now();
        match message {
            Announcement::Hello { to, .. } => {
                let for_us = match (to, own) {
                    (None, _) => true,
                    (Some(to), Some((node, _))) => to == node,
                    (Some(_), None) => false,
                };
                if for_us && own.is_some() {
                    Reply::Tally
                } else {
                    Reply::Nothing
                }
            }
            Announcement::Gone { node, incarnation } => {
                let mut remote = self.remote();
                if remote
                    .get(&node)
                    .is_some_and(|r| r.incarnation == incarnation)
                {
                    remote.remove(&node);
                }
                Reply::Nothing
            }
            Announcement::Tally {
                node,
                incarnation,
                seq,
                lease_ms,
                first,
                users,
            } => {
                if self.is_own(node, incarnation, own) {
                    return Reply::Nothing;
                }
                let mut remote = self.remote();
                let expires = now + Duration::from_millis(lease_ms);
                let known = remote
                    .get(&node)
                    .is_some_and(|r| r.incarnation == incarnation);
                if first || !known {
                    remote.insert(node, Remote::new(incarnation, seq, expires));
                }
                let Some(entry) = remote.get_mut(&node) else {
                    return Reply::Nothing;
                };
                let in_order = first || !known || seq == entry.seq + 1;
                entry.seq = seq;
                entry.expires = expires;
                for (user, e) in users {
                    entry.put(user, e);
                }
                if in_order {
                    Reply::Nothing
                } else {
                    Reply::AskFor(node)
                }
            }
            Announcement::Changes {
                node,
                incarnation,
                seq,
                lease_ms,
                users,
            } => {
                if self.is_own(node, incarnation, own) {
                    return Reply::Nothing;
                }
                let mut remote = self.remote();
                let expires = now + Duration::from_millis(lease_ms);
                let entry = remote
                    .entry(node)
                    .or_insert_with(|| Remote::new(incarnation, 0, expires));
                let in_order = entry.incarnation == incarnation && seq == entry.seq + 1;
                if entry.incarnation != incarnation {
                    *entry = Remote::new(incarnation, seq, expires);
                }
                entry.seq = seq;
                entry.expires = expires;
                for (user, e) in users {
                    entry.put(user, e);
                }
                if in_order {
                    Reply::Nothing
                } else {
                    Reply::AskFor(node)
                }
            }
            Announcement::Alive {
                node,
                incarnation,
                seq,
                lease_ms,
            } => {
                if self.is_own(node, incarnation, own) {
                    return Reply::Nothing;
                }
                let mut remote = self.remote();
                match remote.get_mut(&node) {
                    Some(entry) if entry.incarnation == incarnation => {
                        let in_order = seq == entry.seq + 1;
                        entry.seq = seq;
                        entry.expires = now + Duration::from_millis(lease_ms);
                        if in_order {
                            Reply::Nothing
                        } else {
                            Reply::AskFor(node)
                        }
                    }
                    _ => Reply::AskFor(node),
                }
            }
        }
    }

    /// Whether a message is this node's own (or, while this node has no id
    /// yet, records the id it names).
    fn is_own(&self, node: u64, incarnation: u64, own: Option<(u64, u64)>) -> bool {
        match own {
            Some((id, inc)) if id == node => {
                if inc != incarnation {
                    tracing::error!(
                        node = format_args!("{node:016x}"),
                        "another live node announces this node's id; connection-addressed events may reach either"
                    );
                }
                true
            }
            Some(_) => false,
            None => {
                self.heard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(node);
                false
            }
        }
    }

    /// Node ids heard from live nodes so far.
    pub(super) fn heard(&self) -> HashSet<u64> {
        let mut heard = self
            .heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        heard.extend(self.remote().keys());
        heard
    }

    /// Streams of `audience` on the other live nodes.
    pub(super) fn remote_count(&self, audience: &Audience) -> u64 {
        let now = Instant::now();
        let mut remote = self.remote();
        remote.retain(|_, node| node.expires > now);
        remote.values().map(|node| node.count(audience)).sum()
    }

    /// Streams per user of `audience` on the other live nodes, added to
    /// `into`.
    pub(super) fn remote_members(&self, audience: &Audience, into: &mut BTreeMap<UserId, u64>) {
        let now = Instant::now();
        let mut remote = self.remote();
        remote.retain(|_, node| node.expires > now);
        for node in remote.values() {
            node.members(audience, into);
        }
    }

    /// Streams per user of `audience` on this node, added to `into`.
    pub(super) fn local_members(&self, audience: &Audience, into: &mut BTreeMap<UserId, u64>) {
        let local = self.local();
        for (user, entry) in &local.users {
            let n = match audience {
                Audience::User(u) if u == user => entry.streams,
                Audience::Session(s) => entry.sessions.get(s.as_str()).copied().unwrap_or(0),
                Audience::Group(g) => entry.groups.get(g.as_str()).copied().unwrap_or(0),
                Audience::Topic(t) => entry.topics.get(t.as_str()).copied().unwrap_or(0),
                Audience::Everyone => entry.streams,
                _ => 0,
            };
            if n > 0 {
                *into.entry(user.clone()).or_default() += n;
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn announcements_round_trip_and_nothing_else_decodes() {
        let message = Announcement::Changes {
            node: u64::MAX,
            incarnation: 7,
            seq: 1,
            lease_ms: 30_000,
            users: vec![("a\nb".into(), Entry::default())],
        };
        assert_eq!(Announcement::decode(&message.encode()), Some(message));
        assert_eq!(Announcement::decode(b"u1:x"), None);
        assert_eq!(Announcement::decode(b"!p{}"), None);
    }

    #[tokio::test]
    async fn tallies_changes_and_leases_across_two_books() {
        let (a, b) = (Book::new(), Book::new());
        let alice = Principal::new("alice")
            .with_session("s1")
            .with_groups(["acme"]);
        a.local_change(&alice, true);
        a.local_change(&alice, true);
        for part in a.tally(1, 10, LEASE) {
            assert_eq!(b.apply(part, Some((2, 20))), Reply::Nothing);
        }
        assert_eq!(b.remote_count(&Audience::user("alice")), 2);
        assert_eq!(b.remote_count(&Audience::group("acme")), 2);
        assert_eq!(b.remote_count(&Audience::session("s1")), 2);
        assert_eq!(b.remote_count(&Audience::Everyone), 2);
        a.local_change(&alice, false);
        let change = a.take_changes(1, 10, LEASE).unwrap();
        assert_eq!(b.apply(change, Some((2, 20))), Reply::Nothing);
        assert_eq!(b.remote_count(&Audience::user("alice")), 1);
        let mut members = BTreeMap::new();
        b.remote_members(&Audience::group("acme"), &mut members);
        assert_eq!(members.get("alice"), Some(&1));
        // A skipped number: ask for the whole tally again.
        a.local_change(&alice, false);
        let _lost = a.take_changes(1, 10, LEASE).unwrap();
        a.local_change(&alice, true);
        let after = a.take_changes(1, 10, LEASE).unwrap();
        assert_eq!(b.apply(after, Some((2, 20))), Reply::AskFor(1));
        // Goodbye: gone at once.
        b.apply(
            Announcement::Gone {
                node: 1,
                incarnation: 10,
            },
            Some((2, 20)),
        );
        assert_eq!(b.remote_count(&Audience::Everyone), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_node_stops_counting_when_its_lease_ends() {
        let (a, b) = (Book::new(), Book::new());
        a.local_change(&Principal::new("bob"), true);
        for part in a.tally(1, 10, Duration::from_secs(3)) {
            b.apply(part, Some((2, 20)));
        }
        assert_eq!(b.remote_count(&Audience::user("bob")), 1);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.remote_count(&Audience::user("bob")), 0);
    }

    #[test]
    fn a_starting_node_hears_the_ids_in_use() {
        let book = Book::new();
        let tally = Announcement::Tally {
            node: 42,
            incarnation: 1,
            seq: 1,
            lease_ms: 1_000,
            first: true,
            users: Vec::new(),
        };
        assert_eq!(book.apply(tally, None), Reply::Nothing);
        assert!(book.heard().contains(&42));
        // A hello is answered only once this node has an id.
        let hello = Announcement::Hello { node: 0, to: None };
        assert_eq!(book.apply(hello.clone(), None), Reply::Nothing);
        assert_eq!(book.apply(hello, Some((7, 1))), Reply::Tally);
    }
}
