//! The hub, store and sessions on a Redis Cluster the tests start
//! themselves (three primaries, a replica each, `redis-server` processes
//! on free ports): the suites pass, two nodes deliver to each other over
//! sharded pub/sub, and a primary killed mid-stream fails over with every
//! notification arriving once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sse_core::{
    NewNotification, NotificationStore, NotifyError, Principal, SessionLookup, StoreError,
};
use sse_redis::{RedisHub, RedisSessions, RedisStore};
use support::{RedisCluster, node, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_hub_store_and_log_pass_their_suites() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls();
    let prefix = support::prefix("cluster-hub");
    let report = sse_conformance::hub::check(|| {
        let (urls, prefix) = (urls.clone(), prefix.clone());
        async move {
            RedisHub::builder(urls)
                .prefix(prefix)
                .connect()
                .await
                .unwrap()
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();

    // One seed is enough: the store finds out it is a cluster.
    let seed = cluster.seed();
    let prefix = support::prefix("cluster-store");
    let report = sse_conformance::store::check(|| {
        let (seed, prefix) = (seed.clone(), prefix.clone());
        async move {
            let store = RedisStore::builder(seed)
                .prefix(prefix)
                .connect()
                .await
                .unwrap();
            (store.clone(), store)
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();

    let report = sse_conformance::log::check(|retention| {
        let seed = seed.clone();
        async move {
            RedisStore::builder(seed)
                .prefix(support::prefix("cluster-log"))
                .retention(retention)
                .connect()
                .await
                .unwrap()
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_work_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    let prefix = support::prefix("cluster-sessions");
    let sessions = RedisSessions::connect(&cluster.seed(), prefix)
        .await
        .unwrap();
    let credential = sessions
        .create(&Principal::new("alice").with_groups(["acme"]))
        .await
        .unwrap();
    let principal = sessions.lookup(&credential).await.unwrap().unwrap();
    assert_eq!(principal.user().as_str(), "alice");
    let session = principal.session().unwrap().clone();
    assert!(sessions.revoke(&session).await.unwrap());
    assert!(sessions.lookup(&credential).await.unwrap().is_none());
}

use support::title;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_stream_fails_over_and_every_tab_gets_everything_once_in_order() {
    const COUNT: usize = 150;
    let mut cluster = RedisCluster::start().await;
    let urls = cluster.urls();
    let prefix = support::prefix("cluster-failover");
    let store = RedisStore::builder(urls.clone())
        .prefix(prefix.clone())
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let a = node(&urls, &prefix, &store).await;
    let b = node(&urls, &prefix, &store).await;
    let mut streams = vec![
        ("alice", open(&a, "alice-0").await),
        ("bob", open(&b, "bob-0").await),
        ("alice", open(&b, "alice-1").await),
    ];
    // A primary that live events travel through (alice's or bob's
    // channel), not the store's: Redis replicates asynchronously, so a
    // write the store's primary acknowledged just before dying may be
    // missing on its replica; that is Redis's guarantee, not the hub's.
    let store_primary = cluster.primary_of(&format!("{prefix}{{{prefix}log}}:head"));
    let victim = ["alice", "bob"]
        .map(|user| cluster.primary_of(&format!("{prefix}u:{user}")))
        .into_iter()
        .find(|&port| port != store_primary)
        .unwrap_or_else(|| cluster.primary_of(&format!("{prefix}c:any")));
    let victim = if victim == store_primary {
        cluster
            .primaries()
            .into_iter()
            .find(|&p| p != store_primary)
            .unwrap()
    } else {
        victim
    };

    let notifier = a.sse.notifier().clone();
    let creating = tokio::spawn(async move {
        let (mut unpublished, mut refused) = (0, 0);
        for i in 0..COUNT {
            for user in ["alice", "bob"] {
                // As an HTTP client would on a 503: try again shortly.
                loop {
                    match notifier
                        .notify(NewNotification::new(user, format!("{user}:{i}")))
                        .await
                    {
                        Ok(_) => break,
                        // Stored; delivered by the catch-up.
                        Err(NotifyError::Publish { .. }) => {
                            unpublished += 1;
                            break;
                        }
                        Err(NotifyError::Store(StoreError::Unavailable(_))) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(other) => panic!("the store failed: {other}"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (unpublished, refused)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(victim);
    cluster.wait_until_ok().await;
    let (unpublished, refused) = creating.await.unwrap();
    println!("failover: {unpublished} publishes failed live, {refused} writes refused and retried");

    for (user, stream) in &mut streams {
        for i in 0..COUNT {
            let event = stream
                .next_event(Duration::from_secs(20))
                .await
                .unwrap_or_else(|e| panic!("{user}: notification {i} never arrived: {e}"));
            assert_eq!(
                title(&event),
                format!("{user}:{i}"),
                "{user}: lost, repeated or reordered"
            );
        }
    }
    assert_eq!(
        a.sse.metrics().active_connections + b.sse.metrics().active_connections,
        3,
        "browser connections were dropped"
    );
    assert!(a.hub.is_connected() && b.hub.is_connected());
    // The store kept everything, on the promoted replica.
    assert_eq!(
        store.unread_count(&"alice".into()).await.unwrap(),
        COUNT as u64
    );
}
