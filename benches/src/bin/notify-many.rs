//! Sending to many: notifications stored and delivered per second, one
//! `Notifier::notify` at a time against `Notifier::notify_many` in batches,
//! on every shipped store, in one run.
//!
//! 1,000 users, each with a live subscription on an in-memory hub. A run
//! stores N notifications spread over the users and counts one as
//! delivered when its `created` change is in its recipient's queue; every
//! one must be (the binary checks). The rate is N over the time from the
//! first call to the last delivery.
//!
//! `cargo run --release -p sse-benches --bin notify-many [-- --quick]
//! [--stores sqlite,postgres] [--notifications 20000]` (the batched
//! count; one by one stores a tenth of it. PostgreSQL on `DATABASE_URL`, in a database of its own; Redis on
//! `REDIS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_core::{
    Hub, InMemoryHub, InMemoryStore, NewNotification, Notifier, Principal, Subscription,
};
use sse_redis::RedisStore;
use sse_sqlx::SqlStore;

const USERS: usize = 1_000;
const STORES: [&str; 4] = ["memory", "sqlite", "postgres", "redis"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let stores: Vec<String> = args
        .iter()
        .position(|a| a == "--stores")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || STORES.iter().map(|s| s.to_string()).collect(),
            |list| list.split(',').map(str::to_owned).collect(),
        );
    if let Some(unknown) = stores.iter().find(|s| !STORES.contains(&s.as_str())) {
        eprintln!("unknown store {unknown:?}; known: {}", STORES.join(","));
        std::process::exit(2);
    }
    // One by one is slow on the databases: fewer, enough for a stable rate.
    let batched = args
        .iter()
        .position(|a| a == "--notifications")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(if quick { 2_000 } else { 20_000 });
    let single = (batched / 10).max(1);
    println!(
        "| store | one by one ({single}) | notify_many, batches of 100 ({batched}) | batches of 1,000 ({batched}) | best vs one by one |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for backend in stores.iter().map(String::as_str) {
        let hub = InMemoryHub::new();
        let sqlite = sse_benches::sqlite_url("notify-many");
        let notifier = open(backend, &sqlite, Arc::new(hub.clone())).await;
        let run = format!("{backend}-{}", std::process::id());
        let mut subscriptions = Vec::with_capacity(USERS);
        for u in 0..USERS {
            subscriptions.push(
                hub.subscribe(&Principal::new(user(&run, u)), 4096)
                    .await
                    .unwrap(),
            );
        }
        let one = measure(&notifier, &run, &mut subscriptions, single, 1).await;
        let hundred = measure(&notifier, &run, &mut subscriptions, batched, 100).await;
        let thousand = measure(&notifier, &run, &mut subscriptions, batched, 1_000).await;
        println!(
            "| {backend} | {} | {} | {} | {:.1}x |",
            rate(one),
            rate(hundred),
            rate(thousand),
            hundred.max(thousand) / one
        );
        drop(notifier);
        if backend == "sqlite" {
            sse_benches::remove_sqlite(&sqlite);
        }
    }
}

fn user(run: &str, u: usize) -> String {
    format!("bench-{run}-{u}")
}

fn rate(per_second: f64) -> String {
    format!("{per_second:.0}/s")
}

/// Stores and delivers `count` notifications in batches of `batch` (1: one
/// `notify` each); returns notifications per second.
async fn measure(
    notifier: &Notifier,
    run: &str,
    subscriptions: &mut [Subscription],
    count: usize,
    batch: usize,
) -> f64 {
    let news: Vec<NewNotification> = (0..count)
        .map(|i| NewNotification::new(user(run, i % USERS), format!("Notification {i}")))
        .collect();
    let started = Instant::now();
    if batch == 1 {
        for new in news {
            notifier.notify(new).await.unwrap();
        }
    } else {
        let mut news = news.into_iter().peekable();
        while news.peek().is_some() {
            notifier
                .notify_many(news.by_ref().take(batch).collect())
                .await
                .unwrap();
        }
    }
    // Delivery into each recipient's queue is synchronous with the
    // in-memory hub; drain and count, every one must be there.
    let mut delivered = 0;
    for subscription in subscriptions.iter_mut() {
        while let Ok(Some(_)) = subscription.try_recv() {
            delivered += 1;
        }
    }
    let elapsed = started.elapsed().max(Duration::from_nanos(1));
    assert_eq!(delivered, count, "notifications were lost");
    count as f64 / elapsed.as_secs_f64()
}

async fn open(backend: &str, sqlite: &str, hub: Arc<dyn Hub>) -> Notifier {
    match backend {
        "memory" => Notifier::with_store(Arc::new(InMemoryStore::new()), hub),
        "sqlite" => Notifier::with_store(Arc::new(SqlStore::connect(sqlite).await.unwrap()), hub),
        "redis" => Notifier::with_store(
            Arc::new(
                RedisStore::builder(sse_benches::redis_url())
                    .prefix(format!("bench:many:{}:", std::process::id()))
                    .connect()
                    .await
                    .unwrap(),
            ),
            hub,
        ),
        _ => Notifier::with_store(
            Arc::new(
                SqlStore::connect(&sse_benches::fresh_postgres_url("notify_many").await)
                    .await
                    .unwrap(),
            ),
            hub,
        ),
    }
}
