//! Log and store operations on each backend: append one event, append a
//! batch of 100, replay 100 events of a principal's audiences, create a
//! notification, the unread count. `cargo bench -p sse-benches --bench
//! store` (PostgreSQL on DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/test; Redis on REDIS_URL, default
//! redis://127.0.0.1:6379).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use divan::Bencher;
use sse_core::log::Replay;
use sse_core::{
    Audience, Event, EventLog, InMemoryStore, NewNotification, NotificationStore, Principal, UserId,
};
use sse_redis::RedisStore;
use sse_sqlx::SqlStore;
use tokio::runtime::Runtime;

const BACKENDS: &[&str] = &["memory", "sqlite", "postgres", "redis"];

/// A store that is its own log, as every shipped one is.
trait Store: EventLog + NotificationStore {}
impl<T: EventLog + NotificationStore> Store for T {}

fn main() {
    divan::main();
}

fn open(rt: &Runtime, backend: &str) -> Arc<dyn Store> {
    rt.block_on(async {
        match backend {
            "memory" => Arc::new(InMemoryStore::new()) as Arc<dyn Store>,
            "sqlite" => Arc::new(
                SqlStore::connect(&sse_benches::sqlite_url("store"))
                    .await
                    .unwrap(),
            ),
            "redis" => Arc::new(
                RedisStore::builder(sse_benches::redis_url())
                    .prefix(format!("bench:{}:", std::process::id()))
                    .connect()
                    .await
                    .unwrap(),
            ),
            _ => Arc::new(
                SqlStore::connect(&sse_benches::fresh_postgres_url("store").await)
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

fn event(n: usize) -> Event {
    Event::builder()
        .event("job.progress")
        .data(format!("{{\"done\":{n}}}"))
        .build()
        .unwrap()
}

/// One durable event: take a position, store the frame, index it.
#[divan::bench(args = BACKENDS, sample_count = 50, sample_size = 20)]
fn append_1(bencher: Bencher<'_, '_>, backend: &str) {
    let rt = runtime();
    let log = open(&rt, backend);
    let audience = Audience::group(user("append").as_str());
    bencher.bench_local(|| {
        rt.block_on(log.append(&[(audience.clone(), event(1))]))
            .unwrap()
    });
}

/// 100 durable events in one append (one transaction or script).
#[divan::bench(args = BACKENDS, sample_count = 20, sample_size = 5)]
fn append_batch_100(bencher: Bencher<'_, '_>, backend: &str) {
    let rt = runtime();
    let log = open(&rt, backend);
    let audience = Audience::group(user("batch").as_str());
    let batch: Vec<(Audience, Event)> = (0..100).map(|n| (audience.clone(), event(n))).collect();
    bencher.bench_local(|| rt.block_on(log.append(&batch)).unwrap());
}

/// A reconnecting client that missed 100 events of its user, group and
/// topic among 300 of others'.
#[divan::bench(args = BACKENDS, sample_count = 50, sample_size = 10)]
fn replay_100(bencher: Bencher<'_, '_>, backend: &str) {
    let rt = runtime();
    let log = open(&rt, backend);
    let user = user("replay");
    let principal = Principal::new(user.clone())
        .with_groups([format!("{user}-g")])
        .with_topics([format!("{user}-t")]);
    let start = rt.block_on(log.head()).unwrap();
    rt.block_on(async {
        for i in 0..100 {
            let mine = match i % 3 {
                0 => Audience::User(user.clone()),
                1 => Audience::group(format!("{user}-g")),
                _ => Audience::topic(format!("{user}-t")),
            };
            let batch: Vec<(Audience, Event)> = [
                mine,
                Audience::user(format!("{user}-other")),
                Audience::group(format!("{user}-other")),
                Audience::topic(format!("{user}-other")),
            ]
            .into_iter()
            .map(|a| (a, event(i)))
            .collect();
            log.append(&batch).await.unwrap();
        }
    });
    bencher.bench_local(|| {
        let replay = rt.block_on(log.since(&principal, start, 1_000)).unwrap();
        assert!(matches!(&replay, Replay::Events { events, .. } if events.len() == 100));
        replay
    });
}
