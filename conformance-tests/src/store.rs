//! The [`NotificationStore`] suite: run it against your inbox from a
//! `#[tokio::test]`.
//!
//! It checks the inbox (create, list, unread counts, read, delete, batches,
//! isolation between users) and that every change goes through the event
//! log the store writes to, in the order it was applied. The log itself has
//! its own suite ([`crate::log`]).
//!
//! The factory returns the store and the log it writes through (one value
//! for stores that are both, as the shipped ones are):
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use sse_core::InMemoryStore;
//! sse_conformance::store::run(|| async {
//!     let store = InMemoryStore::new();
//!     (store.clone(), store)
//! })
//! .await;
//! # }
//! ```
//!
//! Every check uses user names unique to the run, so stores over a shared
//! database work without cleanup. Validation is checked for what no
//! [`NotificationPolicy`](sse_core::NotificationPolicy) may allow (unsafe
//! links, control characters), so stores with their own limits pass.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sse_core::log::Replay;
use sse_core::{
    Change, ChangeKind, Cursor, Event, EventLog, NewNotification, NotificationId,
    NotificationStore, PageRequest, Principal, StoreError, UserId,
};

use crate::report::{Report, ensure, run_id};

const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Concurrent writers in the ordering check.
pub const CONCURRENT_WRITERS: usize = 8;

/// Runs every check and panics with the table if any failed.
pub async fn run<S, L, F, Fut>(make_store: F)
where
    S: NotificationStore,
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, L)>,
{
    check(make_store).await.assert_passed();
}

/// Runs every check and returns the report.
pub async fn check<S, L, F, Fut>(make_store: F) -> Report
where
    S: NotificationStore,
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, L)>,
{
    check_with(make_store, Options::default()).await
}

/// Runs every check with `options` (user ids of your store's shape) and
/// returns the report.
pub async fn check_with<S, L, F, Fut>(make_store: F, options: Options) -> Report
where
    S: NotificationStore,
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, L)>,
{
    let options = Arc::new(options);
    let run = run_id();
    let mut report = Report::default();
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            let (store, log) = make_store().await;
            let world = Arc::new(World { store, log });
            let ns = Ns { prefix: format!("{run}-{}", stringify!($name)), options: options.clone() };
            report.run(concat!("store::", stringify!($name)), CHECK_TIMEOUT, || $name(world, ns)).await;
        )*};
    }
    checks!(
        create_returns_the_stored_notification,
        unsafe_input_is_rejected_by_field,
        notification_ids_are_unique,
        ids_are_never_reused_after_a_delete,
        list_pages_newest_first,
        unread_count_follows_every_operation,
        mark_read_records_a_change_once,
        mark_all_read_records_one_change,
        delete_records_a_change,
        delete_all_read_removes_only_read,
        other_users_ids_are_not_found,
        users_never_see_each_other,
        every_change_goes_through_the_log_in_order,
        concurrent_writers_log_one_users_changes_in_order,
        a_batch_is_stored_whole_or_not_at_all,
        a_large_batch_keeps_every_notification_in_order,
        change_events_encode,
    );
    report
}

struct World<S, L> {
    store: S,
    log: L,
}

type Shared<S, L> = Arc<World<S, L>>;

/// A check's namespace: user ids unique to the run, in the adopter's shape.
#[derive(Clone)]
struct Ns {
    prefix: String,
    options: Arc<Options>,
}

fn uid(ns: &Ns, name: &str) -> UserId {
    (ns.options.user_id)(&format!("{}-{name}", ns.prefix))
}

type UserIdFn = dyn Fn(&str) -> UserId + Send + Sync;

/// How the suite runs; see [`check_with`].
#[derive(Clone)]
pub struct Options {
    user_id: Arc<UserIdFn>,
}

impl Default for Options {
    /// User ids such as `"k3j9-mark_read-alice"`.
    fn default() -> Self {
        Self {
            user_id: Arc::new(|label: &str| UserId::from(label)),
        }
    }
}

impl Options {
    /// User ids made by `to_id` from a label unique to the run and the
    /// user (`"k3j9-mark_read-alice"`). It must give the same id for the
    /// same label and different ids for different labels; use it when your
    /// store only accepts ids of its own shape.
    pub fn user_ids<F>(to_id: F) -> Self
    where
        F: Fn(&str) -> UserId + Send + Sync + 'static,
    {
        Self {
            user_id: Arc::new(to_id),
        }
    }

    /// User ids that are decimal integers (as `BIGINT` user keys need),
    /// one per label, counting from a random base so that runs over a
    /// shared database do not meet.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use sse_core::InMemoryStore;
    /// use sse_conformance::store::{self, Options};
    /// let report = store::check_with(|| async {
    ///     let store = InMemoryStore::new();
    ///     (store.clone(), store)
    /// }, Options::numeric_user_ids()).await;
    /// report.assert_passed();
    /// # }
    /// ```
    pub fn numeric_user_ids() -> Self {
        use std::collections::HashMap;
        use std::sync::Mutex;

        let base = u64::from(
            run_id()
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))),
        ) * 1_000_000;
        let ids: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
        Self::user_ids(move |label| {
            let mut ids = ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let next = base + 1 + ids.len() as u64;
            UserId::from(ids.entry(label.to_owned()).or_insert(next).to_string())
        })
    }
}

fn fail(what: &str) -> impl FnOnce(StoreError) -> String + '_ {
    move |e| format!("{what} failed: {e}")
}

async fn create<S: NotificationStore>(
    store: &S,
    user: &UserId,
    title: &str,
) -> Result<Change, String> {
    store
        .create(
            NewNotification::new(user.clone(), title)
                .message("m")
                .kind("test"),
        )
        .await
        .map_err(fail("create"))
}

fn created_id(change: &Change) -> Result<NotificationId, String> {
    match &change.kind {
        ChangeKind::Created { notification } => Ok(notification.id),
        other => Err(format!(
            "create returned a {other:?} change, expected `created`"
        )),
    }
}

/// `user`'s `notification` events in the log after `after`.
async fn logged<L: EventLog>(log: &L, user: &UserId, after: Cursor) -> Result<Vec<Event>, String> {
    match log
        .since(&Principal::new(user.clone()), after, 100_000)
        .await
        .map_err(fail("since"))?
    {
        Replay::Events { events, .. } => Ok(events
            .into_iter()
            .filter(|e| {
                crate::parser::events(e.frame())
                    .first()
                    .is_some_and(|parsed| parsed.event_type == sse_core::store::NOTIFICATION_EVENT)
            })
            .collect()),
        Replay::HistoryGone { head } => Err(format!(
            "the log answered HistoryGone (head {head}) for a replay from {after}"
        )),
    }
}

async fn head<L: EventLog>(log: &L) -> Result<Cursor, String> {
    log.head().await.map_err(fail("head"))
}

async fn list_pages_newest_first<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "pager");
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(created_id(&create(store, &u, &format!("n{i}")).await?)?);
    }
    ids.reverse();
    let mut listed = Vec::new();
    let mut request = PageRequest::first(10);
    let mut pages = 0;
    loop {
        let page = store.list(&u, request).await.map_err(fail("list"))?;
        pages += 1;
        ensure!(
            page.items.len() <= 10,
            "a page of limit 10 had {} items",
            page.items.len()
        );
        listed.extend(page.items.iter().map(|n| n.id));
        match page.next_before {
            Some(before) => request = PageRequest::first(10).before(before),
            None => break,
        }
        ensure!(pages < 10, "paging did not end after 10 pages");
    }
    ensure!(
        listed == ids,
        "paging listed {listed:?}, expected every id newest first: {ids:?}"
    );
    ensure!(
        pages == 3,
        "25 notifications in pages of 10 took {pages} pages, expected 3"
    );
    Ok(())
}

async fn mark_all_read_records_one_change<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "all");
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        ids.insert(created_id(&create(store, &u, &format!("n{i}")).await?)?);
    }
    let first = *ids.iter().next().ok_or("no ids")?;
    store
        .mark_read(&u, first)
        .await
        .map_err(fail("mark_read"))?;
    let change = store
        .mark_all_read(&u)
        .await
        .map_err(fail("mark_all_read"))?;
    let Some(Change {
        kind: ChangeKind::Read { ids: marked },
        unread_count: 0,
        ..
    }) = change
    else {
        return Err(format!(
            "mark_all_read returned {change:?}, expected a `read` change with 0 unread"
        ));
    };
    let marked: BTreeSet<_> = marked.into_iter().collect();
    let expected: BTreeSet<_> = ids.iter().copied().filter(|id| *id != first).collect();
    ensure!(
        marked == expected,
        "mark_all_read listed {marked:?}, expected the unread ones {expected:?}"
    );
    let again = store
        .mark_all_read(&u)
        .await
        .map_err(fail("mark_all_read"))?;
    ensure!(
        again.is_none(),
        "mark_all_read with nothing unread recorded {again:?}, expected None"
    );
    Ok(())
}

async fn delete_records_a_change<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "deleter");
    let id = created_id(&create(store, &u, "n").await?)?;
    let change = store.delete(&u, id).await.map_err(fail("delete"))?;
    ensure!(
        matches!(&change.kind, ChangeKind::Deleted { ids } if ids == &[id]),
        "delete recorded {:?}, expected Deleted {{ ids: [{id}] }}",
        change.kind
    );
    ensure!(
        change.unread_count == 0,
        "deleting the only (unread) notification left {} unread",
        change.unread_count
    );
    let page = store
        .list(&u, PageRequest::first(10))
        .await
        .map_err(fail("list"))?;
    ensure!(
        page.items.is_empty(),
        "list still shows {:?} after delete",
        page.items
    );
    match store.delete(&u, id).await {
        Err(StoreError::NotFound { id: missing }) if missing == id => Ok(()),
        other => Err(format!("deleting twice should be NotFound, got {other:?}")),
    }
}

async fn delete_all_read_removes_only_read<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "cleaner");
    let keep = created_id(&create(store, &u, "keep").await?)?;
    let mut read = BTreeSet::new();
    for i in 0..3 {
        let id = created_id(&create(store, &u, &format!("r{i}")).await?)?;
        store.mark_read(&u, id).await.map_err(fail("mark_read"))?;
        read.insert(id);
    }
    let change = store
        .delete_all_read(&u)
        .await
        .map_err(fail("delete_all_read"))?;
    let Some(Change {
        kind: ChangeKind::Deleted { ids },
        unread_count: 1,
        ..
    }) = change
    else {
        return Err(format!(
            "delete_all_read returned {change:?}, expected a `deleted` change with 1 unread left"
        ));
    };
    let ids: BTreeSet<_> = ids.into_iter().collect();
    ensure!(
        ids == read,
        "delete_all_read removed {ids:?}, expected the read ones {read:?}"
    );
    let page = store
        .list(&u, PageRequest::first(10))
        .await
        .map_err(fail("list"))?;
    let left: Vec<_> = page.items.iter().map(|n| n.id).collect();
    ensure!(
        left == [keep],
        "after delete_all_read the list holds {left:?}, expected only the unread {keep}"
    );
    let again = store
        .delete_all_read(&u)
        .await
        .map_err(fail("delete_all_read"))?;
    ensure!(
        again.is_none(),
        "delete_all_read with nothing read recorded {again:?}, expected None"
    );
    Ok(())
}

async fn other_users_ids_are_not_found<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let (alice, mallory) = (uid(&ns, "alice"), uid(&ns, "mallory"));
    let id = created_id(&create(store, &alice, "private").await?)?;
    create(store, &mallory, "own").await?;
    match store.mark_read(&mallory, id).await {
        Err(StoreError::NotFound { .. }) => {}
        other => {
            return Err(format!(
                "mallory marking alice's notification read should be NotFound, got {other:?}"
            ));
        }
    }
    match store.delete(&mallory, id).await {
        Err(StoreError::NotFound { .. }) => {}
        other => {
            return Err(format!(
                "mallory deleting alice's notification should be NotFound, got {other:?}"
            ));
        }
    }
    match store.mark_read(&alice, NotificationId(u64::MAX - 1)).await {
        Err(StoreError::NotFound { .. }) => {}
        other => return Err(format!("an unknown id should be NotFound, got {other:?}")),
    }
    let page = store
        .list(&alice, PageRequest::first(10))
        .await
        .map_err(fail("list"))?;
    ensure!(
        page.items.len() == 1 && !page.items[0].read,
        "alice's notification changed after mallory's attempts: {:?}",
        page.items
    );
    Ok(())
}

async fn create_returns_the_stored_notification<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let bob = uid(&ns, "bob");
    let new = NewNotification::new(bob.clone(), "Build finished")
        .message("line 1\nline 2 — ünïcødé")
        .kind("ci")
        .action_url("/builds/1")
        .data(serde_json::json!({"build": 1, "tags": ["a", "b"]}));
    let change = store.create(new.clone()).await.map_err(fail("create"))?;
    let ChangeKind::Created { notification } = &change.kind else {
        return Err(format!(
            "create returned {:?}, expected a `created` change",
            change.kind
        ));
    };
    ensure!(
        change.user == bob,
        "the change is for {:?}, expected {bob:?}",
        change.user
    );
    ensure!(
        change.unread_count == 1,
        "unread count in the change is {}, expected 1",
        change.unread_count
    );
    ensure!(
        notification.title == new.title
            && notification.message == new.message
            && notification.kind == new.kind
            && notification.action_url == new.action_url
            && notification.data == new.data
            && notification.user == bob
            && !notification.read,
        "the stored notification {notification:?} does not match what was created ({new:?})"
    );
    let page = store
        .list(&bob, PageRequest::first(10))
        .await
        .map_err(fail("list"))?;
    ensure!(
        page.items.len() == 1 && &page.items[0] == notification,
        "list returned {:?}, expected exactly the created notification",
        page.items
    );
    Ok(())
}

async fn unsafe_input_is_rejected_by_field<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "u");
    let cases = [
        (
            NewNotification::new(u.clone(), "t").action_url("javascript:alert(1)"),
            "actionUrl",
        ),
        (
            NewNotification::new(u.clone(), "t").action_url("//evil.example"),
            "actionUrl",
        ),
        (
            NewNotification::new(u.clone(), "t").action_url("/\\evil.example"),
            "actionUrl",
        ),
        (NewNotification::new(u.clone(), "two\nlines"), "title"),
        (NewNotification::new(u.clone(), "t").kind("a\rb"), "kind"),
        (NewNotification::new("", "t"), "user"),
    ];
    for (new, field) in cases {
        match store.create(new.clone()).await {
            Err(StoreError::Invalid { field: got, .. }) if got == field => {}
            other => {
                return Err(format!(
                    "create({new:?}) should fail with Invalid {{ field: {field:?} }}, got {other:?}"
                ));
            }
        }
    }
    let count = store.unread_count(&u).await.map_err(fail("unread_count"))?;
    ensure!(
        count == 0,
        "rejected creates changed the unread count to {count}"
    );
    Ok(())
}

async fn notification_ids_are_unique<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let (a, b) = (uid(&ns, "a"), uid(&ns, "b"));
    let mut ids = BTreeSet::new();
    for i in 0..20 {
        for user in [&a, &b] {
            let id = created_id(&create(store, user, &format!("n{i}")).await?)?;
            ensure!(ids.insert(id), "notification id {id} was handed out twice");
        }
    }
    Ok(())
}

/// Stores that number ids themselves (by a counter, or past the largest
/// row) must not count back down when the newest notification is deleted.
async fn ids_are_never_reused_after_a_delete<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "u");
    let mut deleted = BTreeSet::new();
    for round in 0..3 {
        let batch = (0..3)
            .map(|i| NewNotification::new(u.clone(), format!("r{round}-{i}")))
            .collect();
        let changes = store
            .create_many(batch)
            .await
            .map_err(fail("create_many"))?;
        let single = create(store, &u, &format!("r{round}-single")).await?;
        for change in changes.iter().chain([&single]) {
            let id = created_id(change)?;
            ensure!(
                !deleted.contains(&id),
                "notification id {id} was handed out again after its notification was deleted"
            );
        }
        // Delete the newest ones: a store numbering past its largest row
        // would hand these ids out again.
        for change in changes.iter().skip(1).chain([&single]) {
            let id = created_id(change)?;
            store.delete(&u, id).await.map_err(fail("delete"))?;
            deleted.insert(id);
        }
    }
    Ok(())
}

async fn unread_count_follows_every_operation<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "counter");
    let count = || async { store.unread_count(&u).await.map_err(fail("unread_count")) };
    ensure!(
        count().await? == 0,
        "a user with no notifications must have 0 unread"
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        let c = create(store, &u, &format!("n{i}")).await?;
        ensure!(
            c.unread_count == i + 1,
            "after {} creates the change says {} unread",
            i + 1,
            c.unread_count
        );
        ids.push(created_id(&c)?);
    }
    store
        .mark_read(&u, ids[0])
        .await
        .map_err(fail("mark_read"))?;
    ensure!(count().await? == 3, "after one mark_read expected 3 unread");
    store.delete(&u, ids[1]).await.map_err(fail("delete"))?;
    ensure!(
        count().await? == 2,
        "after deleting an unread one expected 2 unread"
    );
    store.delete(&u, ids[0]).await.map_err(fail("delete"))?;
    ensure!(
        count().await? == 2,
        "deleting a read notification must not change the unread count"
    );
    store
        .mark_all_read(&u)
        .await
        .map_err(fail("mark_all_read"))?;
    ensure!(count().await? == 0, "after mark_all_read expected 0 unread");
    Ok(())
}

async fn mark_read_records_a_change_once<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "reader");
    let start = head(&world.log).await?;
    let created = create(store, &u, "n").await?;
    let id = created_id(&created)?;
    let change = store.mark_read(&u, id).await.map_err(fail("mark_read"))?;
    let Some(change) = change else {
        return Err(
            "mark_read of an unread notification returned None, expected a `read` change".into(),
        );
    };
    ensure!(
        matches!(&change.kind, ChangeKind::Read { ids } if ids == &[id]),
        "mark_read recorded {:?}, expected Read {{ ids: [{id}] }}",
        change.kind
    );
    ensure!(
        change.cursor.position() > created.cursor.position() && change.unread_count == 0,
        "the read change is at {} (after {}) with unread {}",
        change.cursor,
        created.cursor,
        change.unread_count
    );
    let again = store.mark_read(&u, id).await.map_err(fail("mark_read"))?;
    ensure!(
        again.is_none(),
        "marking an already read notification read recorded {again:?}, expected None"
    );
    let page = store
        .list(&u, PageRequest::first(10))
        .await
        .map_err(fail("list"))?;
    ensure!(
        page.items.first().is_some_and(|n| n.read),
        "list shows the notification unread after mark_read"
    );
    let log = logged(&world.log, &u, start).await?;
    ensure!(
        log.len() == 2,
        "the log holds {} of the user's changes, expected created + read",
        log.len()
    );
    Ok(())
}

async fn users_never_see_each_other<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let start = head(&world.log).await?;
    let users: Vec<UserId> = (0..4).map(|i| uid(&ns, &format!("u{i}"))).collect();
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let world = world.clone();
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                create(&world.store, &u, &format!("{i}:{n}")).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("writer panicked: {e}"))??;
    }
    for (i, u) in users.iter().enumerate() {
        let page = world
            .store
            .list(u, PageRequest::first(100))
            .await
            .map_err(fail("list"))?;
        ensure!(
            page.items.len() == 10,
            "{u} has {} notifications, expected 10",
            page.items.len()
        );
        for n in &page.items {
            ensure!(
                n.user == *u && n.title.starts_with(&format!("{i}:")),
                "{u}'s list contains {n:?}, which belongs to someone else"
            );
        }
        let events = logged(&world.log, u, start).await?;
        ensure!(
            events.len() == 10,
            "{u}'s replay holds {} changes, expected their 10",
            events.len()
        );
        for event in events {
            let text = String::from_utf8_lossy(event.frame()).into_owned();
            ensure!(
                text.contains(&format!("\"title\":\"{i}:")),
                "{u}'s replay holds another user's change: {text}"
            );
        }
        ensure!(
            world
                .store
                .unread_count(u)
                .await
                .map_err(fail("unread_count"))?
                == 10,
            "{u}'s unread count includes other users"
        );
    }
    Ok(())
}

async fn every_change_goes_through_the_log_in_order<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let u = uid(&ns, "replayer");
    let start = head(&world.log).await?;
    let mut all = Vec::new();
    for i in 0..6 {
        all.push(create(store, &u, &format!("n{i}")).await?);
    }
    let first = created_id(&all[0])?;
    all.extend(
        store
            .mark_read(&u, first)
            .await
            .map_err(fail("mark_read"))?,
    );
    all.extend(
        store
            .mark_all_read(&u)
            .await
            .map_err(fail("mark_all_read"))?,
    );
    all.push(store.delete(&u, first).await.map_err(fail("delete"))?);
    all.extend(
        store
            .delete_all_read(&u)
            .await
            .map_err(fail("delete_all_read"))?,
    );
    let expected: Vec<&Event> = all.iter().map(Change::event).collect();
    let events = logged(&world.log, &u, start).await?;
    ensure!(
        events.iter().collect::<Vec<_>>() == expected,
        "the log holds {} of the user's changes, expected the {} returned, in the order applied",
        events.len(),
        expected.len()
    );
    for change in &all {
        ensure!(
            change.event().cursor() == Some(change.cursor),
            "a change's event has id {:?}, expected its cursor {}",
            change.event().id(),
            change.cursor
        );
    }
    Ok(())
}

async fn concurrent_writers_log_one_users_changes_in_order<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    const PER_WRITER: usize = 25;
    let u = uid(&ns, "hot");
    let start = head(&world.log).await?;
    let mut writers = Vec::new();
    for w in 0..CONCURRENT_WRITERS {
        let world = world.clone();
        let u = u.clone();
        // Half the writers create one by one, half in batches of 5.
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(PER_WRITER);
            if w % 2 == 0 {
                for i in 0..PER_WRITER {
                    ids.push(created_id(
                        &create(&world.store, &u, &format!("w{w}-{i}")).await?,
                    )?);
                }
            } else {
                for batch in 0..PER_WRITER / 5 {
                    let news = (0..5)
                        .map(|i| NewNotification::new(u.clone(), format!("w{w}-{batch}-{i}")))
                        .collect();
                    let changes = world
                        .store
                        .create_many(news)
                        .await
                        .map_err(fail("create_many"))?;
                    for change in &changes {
                        ids.push(created_id(change)?);
                    }
                }
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut ids = BTreeSet::new();
    for writer in writers {
        for id in writer
            .await
            .map_err(|e| format!("writer panicked: {e}"))??
        {
            ensure!(
                ids.insert(id),
                "notification id {id} was handed out twice to concurrent writers"
            );
        }
    }
    let total = CONCURRENT_WRITERS * PER_WRITER;
    let events = logged(&world.log, &u, start).await?;
    ensure!(
        events.len() == total,
        "{CONCURRENT_WRITERS} writers x {PER_WRITER} creates left {} changes in the log",
        events.len()
    );
    // Each change carries the unread count after it: logged in the order
    // applied, they count 1, 2, 3, …
    for (i, event) in events.iter().enumerate() {
        let text = String::from_utf8_lossy(event.frame()).into_owned();
        ensure!(
            text.contains(&format!("\"unreadCount\":{}}}", i + 1)),
            "the user's change {} in log order has not unread count {}: changes reached the log in another order than they were applied ({text})",
            i + 1,
            i + 1
        );
    }
    let unread = world
        .store
        .unread_count(&u)
        .await
        .map_err(fail("unread_count"))?;
    ensure!(
        unread == total as u64,
        "unread count is {unread} after {total} concurrent creates"
    );
    Ok(())
}

async fn a_batch_is_stored_whole_or_not_at_all<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let (a, b) = (uid(&ns, "a"), uid(&ns, "b"));
    let start = head(&world.log).await?;
    let mut bad: Vec<NewNotification> = (0..5)
        .map(|i| NewNotification::new(a.clone(), format!("n{i}")))
        .collect();
    bad.push(NewNotification::new(b.clone(), "x").action_url("javascript:alert(1)"));
    ensure!(
        store.create_many(bad).await.is_err(),
        "a batch with an invalid notification was accepted"
    );
    ensure!(
        store.unread_count(&a).await.map_err(fail("unread_count"))? == 0
            && logged(&world.log, &a, start).await?.is_empty(),
        "a refused batch stored some of its notifications"
    );
    let batch: Vec<NewNotification> = (0..40)
        .map(|i| {
            NewNotification::new(
                if i % 2 == 0 { a.clone() } else { b.clone() },
                format!("n{i}"),
            )
        })
        .collect();
    let changes = store
        .create_many(batch)
        .await
        .map_err(fail("create_many"))?;
    ensure!(
        changes.len() == 40,
        "a batch of 40 returned {} changes",
        changes.len()
    );
    for (user, parity) in [(&a, 0), (&b, 1)] {
        let mine: Vec<&Change> = changes.iter().skip(parity).step_by(2).collect();
        ensure!(
            mine.iter().all(|c| c.user == *user)
                && mine
                    .windows(2)
                    .all(|w| w[0].cursor.position() < w[1].cursor.position())
                && mine
                    .iter()
                    .enumerate()
                    .all(|(i, c)| c.unread_count == i as u64 + 1),
            "a batch's changes for {user} are not in order with counts 1..=20"
        );
        let logged = logged(&world.log, user, start).await?;
        ensure!(
            logged.len() == 20,
            "the log holds {} of {user}'s 20 batched changes",
            logged.len()
        );
    }
    Ok(())
}

/// A batch larger than any backend's statement or pipeline chunk: every
/// notification keeps its own title, ids grow in batch order, and the
/// inbox lists them back.
async fn a_large_batch_keeps_every_notification_in_order<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let store = &world.store;
    let (a, b) = (uid(&ns, "a"), uid(&ns, "b"));
    const SIZE: usize = 2_500;
    let batch: Vec<NewNotification> = (0..SIZE)
        .map(|i| {
            NewNotification::new(
                if i % 3 == 0 { a.clone() } else { b.clone() },
                format!("n{i}"),
            )
        })
        .collect();
    let changes = store
        .create_many(batch)
        .await
        .map_err(fail("create_many"))?;
    ensure!(
        changes.len() == SIZE,
        "a batch of {SIZE} returned {} changes",
        changes.len()
    );
    let mut ids = Vec::with_capacity(SIZE);
    for (i, change) in changes.iter().enumerate() {
        let ChangeKind::Created { notification } = &change.kind else {
            return Err(format!("change {i} of a batch is not `created`"));
        };
        ensure!(
            notification.title == format!("n{i}") && change.user == notification.user,
            "change {i} of a batch carries {:?} for {}: notifications were mixed up",
            notification.title,
            notification.user
        );
        ids.push(notification.id);
    }
    ensure!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "the ids of a batch do not grow in batch order"
    );
    let page = store
        .list(&a, PageRequest::first(5))
        .await
        .map_err(fail("list"))?;
    let newest: Vec<String> = page.items.iter().map(|n| n.title.clone()).collect();
    let want: Vec<String> = [2499, 2496, 2493, 2490, 2487]
        .iter()
        .map(|i| format!("n{i}"))
        .collect();
    ensure!(
        newest == want,
        "the newest of {a}'s batched notifications list as {newest:?}, not {want:?}"
    );
    ensure!(
        store.unread_count(&a).await.map_err(fail("unread_count"))? == 834
            && store.unread_count(&b).await.map_err(fail("unread_count"))? == 1_666,
        "unread counts after a batch of {SIZE} are wrong"
    );
    Ok(())
}

async fn change_events_encode<S: NotificationStore, L: EventLog>(
    world: Shared<S, L>,
    ns: Ns,
) -> Result<(), String> {
    let u = uid(&ns, "wire");
    let c = world
        .store
        .create(
            NewNotification::new(u.clone(), "Hello \"quoted\"")
                .message("two\nlines\r\nand ünïcødé")
                .data(serde_json::json!({"n": 1, "s": "x\ny"})),
        )
        .await
        .map_err(fail("create"))?;
    let parsed = crate::parser::events(c.event().frame());
    ensure!(
        parsed.len() == 1,
        "the encoded change parsed into {} events",
        parsed.len()
    );
    ensure!(
        parsed[0].event_type == "notification" && parsed[0].last_event_id == c.cursor.to_string(),
        "parsed {:?}",
        parsed[0]
    );
    let json: serde_json::Value =
        serde_json::from_str(&parsed[0].data).map_err(|e| format!("data is not JSON: {e}"))?;
    ensure!(
        json["type"] == "created"
            && json["unreadCount"] == 1
            && json["notification"]["title"] == "Hello \"quoted\""
            && json["notification"]["message"] == "two\nlines\r\nand ünïcødé"
            && json["notification"]["data"] == serde_json::json!({"n": 1, "s": "x\ny"}),
        "unexpected payload {json}"
    );
    Ok(())
}
