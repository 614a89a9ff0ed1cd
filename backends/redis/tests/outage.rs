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

/// `INFO replication`'s `master_repl_offset` of the server on `url`.
async fn replication_offset(url: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// The store's primary dies while its replica is behind by five
/// acknowledged writes; the replica is promoted. Writes after the failover
/// must not take the lost writes' positions silently: a client resuming
/// from the last write it saw is told to reset (and refetch), never shown
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_asynchronous_failover_a_client_past_the_lost_writes_resets() {
    use sse_core::log::Replay;
    use sse_core::{EventLog, Principal};
    let mut primary = RedisProcess::start().await;
    let replica = RedisProcess::replica_of(primary.port).await;
    let proxy = sse_conformance::proxy::TcpProxy::start(format!("127.0.0.1:{}", primary.port))
        .await
        .unwrap();
    let store = RedisStore::connect(&format!("redis://{}", proxy.addr()))
        .await
        .unwrap();
    for i in 0..3 {
        store
            .create(NewNotification::new("ada", format!("replicated {i}")))
            .await
            .unwrap();
    }
    // The replica has those three; then it stalls while five more are
    // acknowledged by the primary alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while replication_offset(&replica.url()).await < replication_offset(&primary.url()).await {
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica.signal("-STOP");
    let mut last_seen = None;
    for i in 0..5 {
        let change = store
            .create(NewNotification::new("ada", format!("lost {i}")))
            .await
            .unwrap();
        last_seen = change.event().cursor();
    }
    let last_seen = last_seen.unwrap();
    // The primary dies; the replica takes over behind the same address.
    primary.kill();
    replica.signal("-CONT");
    let client = redis::Client::open(replica.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut connection)
        .await
        .unwrap();
    proxy.redirect(format!("127.0.0.1:{}", replica.port));
    proxy.cut();
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..5 {
        loop {
            match store
                .create(NewNotification::new("ada", format!("after {i}")))
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "no write after the failover: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    match store
        .since(&Principal::new("ada"), last_seen, 100)
        .await
        .unwrap()
    {
        Replay::HistoryGone { head } => assert_ne!(head.epoch(), last_seen.epoch()),
        Replay::Events { events, .. } => panic!(
            "a client past the lost writes was shown {} events after the failover, not a reset (the 5 new writes took reused positions)",
            events.len()
        ),
    }
}
