//! A Redis that goes away and comes back, behind the store and sessions:
//! requests fail fast while it is down and succeed, from the first one,
//! once it is back. The tests run their own `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use sse_core::{NewNotification, NotificationStore, SessionLookup, StoreError};
use sse_redis::{RedisSessions, RedisStore};
use support::RedisProcess;

async fn connect(redis: &RedisProcess) -> (RedisStore, RedisSessions) {
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let sessions = RedisSessions::connect(&redis.url(), "sse:").await.unwrap();
    (store, sessions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_requests_fail_fast_and_recover_once_it_is_back() {
    let mut redis = RedisProcess::start().await;
    let (store, sessions) = connect(&redis).await;
    let credential = sessions
        .create(&sse_core::Principal::new("alice"))
        .await
        .unwrap();
    store
        .create(NewNotification::new("alice", "before"))
        .await
        .unwrap();

    redis.kill();
    let outage = Instant::now();
    let mut slowest = Duration::ZERO;
    while outage.elapsed() < Duration::from_secs(2) {
        let started = Instant::now();
        let created = store.create(NewNotification::new("alice", "during")).await;
        let looked_up = sessions.lookup(&credential).await;
        slowest = slowest.max(started.elapsed());
        assert!(
            matches!(created, Err(StoreError::Unavailable(_))),
            "{created:?}"
        );
        assert!(looked_up.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a request during the outage took {slowest:?}"
    );

    redis.restart().await;
    // Once the background probe has seen it back (every 250 ms while
    // down), no request fails, the first one included.
    tokio::time::sleep(Duration::from_millis(600)).await;
    store
        .create(NewNotification::new("alice", "after"))
        .await
        .expect("the first write after Redis came back");
    let principal = sessions.lookup(&credential).await.unwrap().unwrap();
    assert_eq!(principal.user().as_str(), "alice");
    assert_eq!(store.unread_count(&"alice".into()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_idle_fails_no_request() {
    let mut redis = RedisProcess::start().await;
    let (store, sessions) = connect(&redis).await;
    let credential = sessions
        .create(&sse_core::Principal::new("bob"))
        .await
        .unwrap();
    store
        .create(NewNotification::new("bob", "one"))
        .await
        .unwrap();
    // A quick restart with no traffic: the old connections are dead, and
    // nothing has used them since.
    redis.restart().await;
    store
        .create(NewNotification::new("bob", "two"))
        .await
        .expect("the first write on the old connection");
    assert!(sessions.lookup(&credential).await.unwrap().is_some());
    assert_eq!(store.unread_count(&"bob".into()).await.unwrap(), 2);
}
