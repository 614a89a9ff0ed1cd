//! Store operations on each backend: create, unread count, replay of 100
//! events. `cargo bench -p sse-benches --bench store` (PostgreSQL on
//! DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use divan::Bencher;
use sse_core::{
    EventId, InMemoryStore, NewNotification, NotificationStore, Principal, Replay, UserId,
};
use sse_sqlx::SqlStore;
use tokio::runtime::Runtime;

const BACKENDS: &[&str] = &["memory", "sqlite", "postgres"];

fn main() {
    divan::main();
}

fn open(rt: &Runtime, backend: &str) -> Arc<dyn NotificationStore> {
    rt.block_on(async {
        match backend {
            "memory" => Arc::new(InMemoryStore::new()) as Arc<dyn NotificationStore>,
            "sqlite" => Arc::new(
                SqlStore::connect(&sse_benches::sqlite_url("store"))
                    .await
                    .unwrap(),
            ),
            _ => Arc::new(
                SqlStore::connect(&sse_benches::postgres_url())
                    .await
                    .unwrap(),
            ),
        }
    })
}

fn user(label: &str) -> UserId {
    format!(
        "bench-{label}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    )
    .into()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One notification: validate, insert, bump the recipient, log the change.
#[divan::bench(args = BACKENDS, sample_count = 50, sample_size = 20)]
fn create(bencher: Bencher<'_, '_>, backend: &str) {
    let rt = runtime();
    let store = open(&rt, backend);
    let user = user("create");
    bencher.bench_local(|| {
        rt.block_on(store.create(NewNotification::new(user.clone(), "benchmark").message("a body")))
            .unwrap()
    });
}

/// The badge: one read of the recipient's row.
#[divan::bench(args = BACKENDS, sample_count = 50, sample_size = 50)]
fn unread_count(bencher: Bencher<'_, '_>, backend: &str) {
    let rt = runtime();
    let store = open(&rt, backend);
    let user = user("count");
    rt.block_on(async {
        for i in 0..1_000 {
            store
                .create(NewNotification::new(user.clone(), format!("n{i}")))
                .await
                .unwrap();
        }
    });
    bencher.bench_local(|| rt.block_on(store.unread_count(&user)).unwrap());
}

/// A reconnecting client that missed 100 changes.
#[divan::bench(args = BACKENDS, sample_count = 50, sample_size = 10)]
fn replay_100(bencher: Bencher<'_, '_>, backend: &str) {
    let rt = runtime();
    let store = open(&rt, backend);
    let user = user("replay");
    rt.block_on(async {
        for i in 0..200 {
            store
                .create(NewNotification::new(user.clone(), format!("n{i}")))
                .await
                .unwrap();
        }
    });
    let principal = Principal::new(user);
    bencher.bench_local(|| {
        let replay = rt
            .block_on(store.since(&principal, EventId(100), 1_000))
            .unwrap();
        assert!(matches!(&replay, Replay::Changes(changes) if changes.len() == 100));
        replay
    });
}
