//! The [`NotificationStore`] suite: run it against your store from a
//! `#[tokio::test]`.
//!
//! The factory receives the [`Retention`] a check needs (most use
//! [`Retention::unlimited`]; the history-gone checks ask for a small one)
//! and returns a store honouring it.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use sse_core::InMemoryStore;
//! sse_conformance::store::run(|retention| async move { InMemoryStore::with_retention(retention) }).await;
//! # }
//! ```
//!
//! Every check uses user names unique to the run, so stores over a shared
//! database work without cleanup.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sse_core::{
    Change, ChangeKind, EventId, NewNotification, NotificationId, NotificationStore, PageRequest,
    Principal, Replay, Retention, StoreError, UserId,
};

use crate::report::{Report, ensure, run_id};

const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Concurrent writers in the ordering check.
pub const CONCURRENT_WRITERS: usize = 8;

/// Runs every check and panics with the table if any failed.
pub async fn run<S, F, Fut>(make_store: F)
where
    S: NotificationStore,
    F: Fn(Retention) -> Fut,
    Fut: Future<Output = S>,
{
    check(make_store).await.assert_passed();
}

/// Runs every check and returns the report.
pub async fn check<S, F, Fut>(make_store: F) -> Report
where
    S: NotificationStore,
    F: Fn(Retention) -> Fut,
    Fut: Future<Output = S>,
{
    let run = run_id();
    let mut report = Report::default();
    macro_rules! checks {
        ($($name:ident $(($retention:expr))?),* $(,)?) => {$(
            #[allow(unused_mut, unused_assignments)]
            let mut retention = Retention::unlimited();
            $(retention = $retention;)?
            let store = Arc::new(make_store(retention).await);
            let ns = format!("{run}-{}", stringify!($name));
            report.run(concat!("store::", stringify!($name)), CHECK_TIMEOUT, || $name(store, ns)).await;
        )*};
    }
    checks!(
        create_returns_the_stored_notification,
        invalid_input_is_rejected_by_field,
        ids_increase_per_recipient,
        list_pages_newest_first,
        unread_count_follows_every_operation,
        mark_read_records_a_change_once,
        mark_all_read_records_one_change,
        delete_records_a_change,
        delete_all_read_removes_only_read,
        other_users_ids_are_not_found,
        users_never_see_each_other,
        since_returns_exactly_the_changes_after,
        since_respects_the_limit,
        since_an_id_from_another_history_is_gone,
        last_event_id_is_the_newest,
        history_older_than_retention_is_gone(Retention::unlimited().max_changes_per_user(5)),
        concurrent_writers_keep_visible_order,
        change_events_encode,
    );
    report
}

type Shared<S> = Arc<S>;

fn uid(ns: &str, name: &str) -> UserId {
    UserId::from(format!("{ns}-{name}"))
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

async fn since<S: NotificationStore>(
    store: &S,
    user: &UserId,
    after: u64,
    limit: usize,
) -> Result<Replay, String> {
    store
        .since(&Principal::new(user.clone()), EventId(after), limit)
        .await
        .map_err(fail("since"))
}

async fn changes_since<S: NotificationStore>(
    store: &S,
    user: &UserId,
    after: u64,
) -> Result<Vec<Change>, String> {
    match since(store, user, after, 100_000).await? {
        Replay::Changes(changes) => Ok(changes),
        Replay::HistoryGone { latest } => Err(format!(
            "since({after}) answered HistoryGone (latest {latest:?}) with unlimited retention"
        )),
    }
}

async fn create_returns_the_stored_notification<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let bob = uid(&ns, "bob");
    let new = NewNotification::new(bob.clone(), "Build finished")
        .message("line 1\nline 2 — ünïcødé")
        .kind("ci")
        .action_url("/builds/1");
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

async fn invalid_input_is_rejected_by_field<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "u");
    let cases = [
        (NewNotification::new(u.clone(), ""), "title"),
        (NewNotification::new(u.clone(), "x".repeat(201)), "title"),
        (
            NewNotification::new(u.clone(), "t").message("x".repeat(2_001)),
            "message",
        ),
        (NewNotification::new(u.clone(), "t").kind(""), "kind"),
        (
            NewNotification::new(u.clone(), "t").action_url("javascript:alert(1)"),
            "actionUrl",
        ),
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

async fn ids_increase_per_recipient<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let (a, b) = (uid(&ns, "a"), uid(&ns, "b"));
    let mut last_a = 0;
    let mut last_b = 0;
    for i in 0..20 {
        let ca = create(&*store, &a, &format!("a{i}")).await?;
        ensure!(
            ca.id.get() > last_a,
            "change ids for a went from {last_a} to {}",
            ca.id
        );
        last_a = ca.id.get();
        let cb = create(&*store, &b, &format!("b{i}")).await?;
        ensure!(
            cb.id.get() > last_b,
            "change ids for b went from {last_b} to {}",
            cb.id
        );
        last_b = cb.id.get();
    }
    Ok(())
}

async fn list_pages_newest_first<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "pager");
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(created_id(&create(&*store, &u, &format!("n{i}")).await?)?);
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

async fn unread_count_follows_every_operation<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "counter");
    let count = |store: Shared<S>, u: UserId| async move {
        store.unread_count(&u).await.map_err(fail("unread_count"))
    };
    ensure!(
        count(store.clone(), u.clone()).await? == 0,
        "a user with no notifications must have 0 unread"
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        let c = create(&*store, &u, &format!("n{i}")).await?;
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
    ensure!(
        count(store.clone(), u.clone()).await? == 3,
        "after one mark_read expected 3 unread"
    );
    store.delete(&u, ids[1]).await.map_err(fail("delete"))?;
    ensure!(
        count(store.clone(), u.clone()).await? == 2,
        "after deleting an unread one expected 2 unread"
    );
    store.delete(&u, ids[0]).await.map_err(fail("delete"))?;
    ensure!(
        count(store.clone(), u.clone()).await? == 2,
        "deleting a read notification must not change the unread count"
    );
    store
        .mark_all_read(&u)
        .await
        .map_err(fail("mark_all_read"))?;
    ensure!(
        count(store.clone(), u.clone()).await? == 0,
        "after mark_all_read expected 0 unread"
    );
    Ok(())
}

async fn mark_read_records_a_change_once<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "reader");
    let created = create(&*store, &u, "n").await?;
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
        change.id > created.id && change.unread_count == 0,
        "the read change has id {} (after {}) and unread {}",
        change.id,
        created.id,
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
    let log = changes_since(&*store, &u, 0).await?;
    ensure!(
        log.len() == 2,
        "the change log has {} entries, expected created + read",
        log.len()
    );
    Ok(())
}

async fn mark_all_read_records_one_change<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "all");
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        ids.insert(created_id(&create(&*store, &u, &format!("n{i}")).await?)?);
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

async fn delete_records_a_change<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "deleter");
    let id = created_id(&create(&*store, &u, "n").await?)?;
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

async fn delete_all_read_removes_only_read<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "cleaner");
    let keep = created_id(&create(&*store, &u, "keep").await?)?;
    let mut read = BTreeSet::new();
    for i in 0..3 {
        let id = created_id(&create(&*store, &u, &format!("r{i}")).await?)?;
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

async fn other_users_ids_are_not_found<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let (alice, mallory) = (uid(&ns, "alice"), uid(&ns, "mallory"));
    let id = created_id(&create(&*store, &alice, "private").await?)?;
    create(&*store, &mallory, "own").await?;
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

async fn users_never_see_each_other<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let users: Vec<UserId> = (0..4).map(|i| uid(&ns, &format!("u{i}"))).collect();
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let store = store.clone();
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                create(&*store, &u, &format!("{i}:{n}")).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("writer panicked: {e}"))??;
    }
    for (i, u) in users.iter().enumerate() {
        let page = store
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
        for change in changes_since(&*store, u, 0).await? {
            ensure!(
                change.user == *u,
                "{u}'s change log contains a change for {}",
                change.user
            );
        }
        ensure!(
            store.unread_count(u).await.map_err(fail("unread_count"))? == 10,
            "{u}'s unread count includes other users"
        );
    }
    Ok(())
}

async fn since_returns_exactly_the_changes_after<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "replayer");
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(create(&*store, &u, &format!("n{i}")).await?);
    }
    if let ChangeKind::Created { notification } = &all[3].kind {
        if let Some(c) = store
            .mark_read(&u, notification.id)
            .await
            .map_err(fail("mark_read"))?
        {
            all.push(c);
        }
    }
    ensure!(
        changes_since(&*store, &u, 0).await? == all,
        "since(0) must return the whole log, in order"
    );
    for cut in [1, 5, all.len() - 1] {
        let after = all[cut - 1].id.get();
        let got = changes_since(&*store, &u, after).await?;
        ensure!(
            got == all[cut..],
            "since({after}) returned ids {:?}, expected {:?}",
            got.iter().map(|c| c.id).collect::<Vec<_>>(),
            all[cut..].iter().map(|c| c.id).collect::<Vec<_>>()
        );
    }
    let latest = all.last().map(|c| c.id.get()).unwrap_or(0);
    ensure!(
        changes_since(&*store, &u, latest).await?.is_empty(),
        "since(latest) must be empty"
    );
    ensure!(
        changes_since(&*store, &uid(&ns, "nobody"), 0)
            .await?
            .is_empty(),
        "since(0) for a user without history must be empty"
    );
    Ok(())
}

async fn since_respects_the_limit<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "limited");
    let mut all = Vec::new();
    for i in 0..12 {
        all.push(create(&*store, &u, &format!("n{i}")).await?);
    }
    match since(&*store, &u, 0, 5).await? {
        Replay::Changes(changes) => ensure!(
            changes == all[..5],
            "since(0, limit 5) must return the 5 oldest changes, got ids {:?}",
            changes.iter().map(|c| c.id).collect::<Vec<_>>()
        ),
        other => return Err(format!("since(0, limit 5) answered {other:?}")),
    }
    Ok(())
}

async fn since_an_id_from_another_history_is_gone<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "time-traveller");
    let c = create(&*store, &u, "n").await?;
    match since(&*store, &u, c.id.get() + 1_000, 100).await? {
        Replay::HistoryGone { latest } => ensure!(
            latest == Some(c.id),
            "HistoryGone.latest is {latest:?}, expected {:?}",
            Some(c.id)
        ),
        other => {
            return Err(format!(
                "since(an id above the newest) must be HistoryGone (the id comes from another history, e.g. before a restart); got {other:?}"
            ));
        }
    }
    match since(&*store, &uid(&ns, "new-user"), 7, 100).await? {
        Replay::HistoryGone { latest: None } => Ok(()),
        other => Err(format!(
            "since(7) for a user with no history must be HistoryGone {{ latest: None }}, got {other:?}"
        )),
    }
}

async fn last_event_id_is_the_newest<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "latest");
    let p = Principal::new(u.clone());
    let none = store
        .last_event_id(&p)
        .await
        .map_err(fail("last_event_id"))?;
    ensure!(
        none.is_none(),
        "last_event_id of a new user is {none:?}, expected None"
    );
    create(&*store, &u, "a").await?;
    let c = create(&*store, &u, "b").await?;
    let got = store
        .last_event_id(&p)
        .await
        .map_err(fail("last_event_id"))?;
    ensure!(
        got == Some(c.id),
        "last_event_id is {got:?}, expected {:?}",
        Some(c.id)
    );
    Ok(())
}

async fn history_older_than_retention_is_gone<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "forgetful");
    let mut all = Vec::new();
    for i in 0..20 {
        all.push(create(&*store, &u, &format!("n{i}")).await?);
    }
    let latest = all.last().map(|c| c.id);
    match since(&*store, &u, all[0].id.get(), 100).await? {
        Replay::HistoryGone { latest: got } => ensure!(
            got == latest,
            "HistoryGone.latest is {got:?}, expected {latest:?}"
        ),
        Replay::Changes(changes) => {
            return Err(format!(
                "with retention of 5 changes, since(first id) returned {} changes instead of HistoryGone",
                changes.len()
            ));
        }
    }
    let tail = &all[all.len() - 5..];
    match since(&*store, &u, all[all.len() - 6].id.get(), 100).await? {
        Replay::Changes(changes) => ensure!(
            changes == tail,
            "the 5 retained changes must still replay, got ids {:?}",
            changes.iter().map(|c| c.id).collect::<Vec<_>>()
        ),
        other => {
            return Err(format!(
                "since(the id just before the 5 retained) must replay them, got {other:?}"
            ));
        }
    }
    let page = store
        .list(&u, PageRequest::first(100))
        .await
        .map_err(fail("list"))?;
    ensure!(
        page.items.len() == 20,
        "retention of the change log must not delete notifications: {} of 20 listed",
        page.items.len()
    );
    Ok(())
}

async fn concurrent_writers_keep_visible_order<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    const PER_WRITER: usize = 25;
    let u = uid(&ns, "hot");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader polls `since(watermark)` while writers run: a store that
    // makes ids visible out of order shows a lower id after a higher one,
    // and the reader, resuming from its watermark, never sees it.
    let reader = {
        let store = store.clone();
        let u = u.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut watermark = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                for change in changes_since(&*store, &u, watermark).await? {
                    ensure!(
                        change.id.get() > watermark,
                        "since({watermark}) returned change {}",
                        change.id
                    );
                    watermark = change.id.get();
                    seen.push(change.id);
                }
                if finished {
                    return Ok::<_, String>(seen);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..CONCURRENT_WRITERS {
        let store = store.clone();
        let u = u.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                create(&*store, &u, &format!("w{w}-{i}")).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for writer in writers {
        writer
            .await
            .map_err(|e| format!("writer panicked: {e}"))??;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader
        .await
        .map_err(|e| format!("reader panicked: {e}"))??;
    let log = changes_since(&*store, &u, 0).await?;
    let ids: Vec<EventId> = log.iter().map(|c| c.id).collect();
    ensure!(
        ids.len() == CONCURRENT_WRITERS * PER_WRITER,
        "{} writers x {PER_WRITER} creates left {} changes",
        CONCURRENT_WRITERS,
        ids.len()
    );
    ensure!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "change ids are not strictly increasing: {ids:?}"
    );
    ensure!(
        seen == ids,
        "a reader resuming from its last id missed changes: it saw {} of {}; ids became visible out of order (assign them under a per-recipient lock)",
        seen.len(),
        ids.len()
    );
    let unread = store.unread_count(&u).await.map_err(fail("unread_count"))?;
    ensure!(
        unread == ids.len() as u64,
        "unread count is {unread} after {} concurrent creates",
        ids.len()
    );
    Ok(())
}

async fn change_events_encode<S: NotificationStore>(
    store: Shared<S>,
    ns: String,
) -> Result<(), String> {
    let u = uid(&ns, "wire");
    let c = store
        .create(
            NewNotification::new(u.clone(), "Hello \"quoted\"")
                .message("two\nlines\r\nand ünïcødé"),
        )
        .await
        .map_err(fail("create"))?;
    let event = c
        .to_event()
        .map_err(|e| format!("encoding the change failed: {e}"))?;
    let parsed = crate::parser::events(event.frame());
    ensure!(
        parsed.len() == 1,
        "the encoded change parsed into {} events",
        parsed.len()
    );
    ensure!(
        parsed[0].event_type == "notification" && parsed[0].last_event_id == c.id.to_string(),
        "parsed {:?}",
        parsed[0]
    );
    let json: serde_json::Value =
        serde_json::from_str(&parsed[0].data).map_err(|e| format!("data is not JSON: {e}"))?;
    ensure!(
        json["type"] == "created"
            && json["unreadCount"] == 1
            && json["notification"]["title"] == "Hello \"quoted\""
            && json["notification"]["message"] == "two\nlines\r\nand ünïcødé",
        "unexpected payload {json}"
    );
    Ok(())
}
