//! The hub and store suites against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`). A missing Redis fails these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sse_redis::{RedisHub, RedisStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hub_passes_the_hub_suite() {
    let prefix = support::prefix("hub-suite");
    let report = sse_conformance::hub::check(|| {
        let prefix = prefix.clone();
        async move {
            support::required(
                RedisHub::builder(support::redis_url())
                    .prefix(prefix)
                    .connect()
                    .await,
            )
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_log_passes_the_log_suite() {
    let report = sse_conformance::log::check(|retention| async move {
        // A prefix per check: retention prunes the whole log.
        support::required(
            RedisStore::builder(support::redis_url())
                .prefix(support::prefix("log-suite"))
                .retention(retention)
                .connect()
                .await,
        )
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_store_suite() {
    let prefix = support::prefix("store-suite");
    let report = sse_conformance::store::check(|| {
        let prefix = prefix.clone();
        async move {
            let store = support::required(
                RedisStore::builder(support::redis_url())
                    .prefix(prefix)
                    .connect()
                    .await,
            );
            (store.clone(), store)
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test]
async fn connecting_to_nothing_is_a_typed_error() {
    let error = RedisHub::connect("redis://127.0.0.1:1").await.unwrap_err();
    assert!(
        error.to_string().contains("check that it is running"),
        "{error}"
    );
    assert!(matches!(
        RedisHub::connect("not a url").await.unwrap_err(),
        sse_redis::RedisError::Url { .. }
    ));
}

#[tokio::test]
async fn redis_sessions_pass_the_authenticator_suite() {
    use std::sync::Arc;

    use sse_conformance::authenticator::{self, ValidRequest};
    use sse_core::{CookieSessionAuthenticator, SessionLookup};
    use sse_redis::RedisSessions;

    let sessions = support::required(
        RedisSessions::connect(&support::redis_url(), support::prefix("sessions")).await,
    );
    let alice = sessions
        .create(&sse_core::Principal::new("alice").with_groups(["acme"]))
        .await
        .unwrap();
    assert_eq!(
        sessions.lookup(&alice).await.unwrap().unwrap().groups(),
        [sse_core::GroupId::from("acme")]
    );
    let bob = sessions
        .create(&sse_core::Principal::new("bob"))
        .await
        .unwrap();
    authenticator::run(
        Arc::new(CookieSessionAuthenticator::new("sid", sessions.clone())),
        vec![
            ValidRequest::new("/events", "alice").header("cookie", format!("sid={alice}")),
            ValidRequest::new("/events", "bob").header("cookie", format!("sid={bob}")),
        ],
    )
    .await;
    let principal = sessions.lookup(&bob).await.unwrap().unwrap();
    let session = principal.session().unwrap().clone();
    assert_ne!(session.as_str(), bob, "the session id is the credential");
    let removed = sessions.remove(&alice).await.unwrap().unwrap();
    assert_eq!(removed.user().as_str(), "alice");
    assert!(sessions.lookup(&alice).await.unwrap().is_none());
    assert!(sessions.revoke(&session).await.unwrap());
    assert!(sessions.lookup(&bob).await.unwrap().is_none());
    assert!(!sessions.revoke(&session).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hub_passes_the_multi_node_suite() {
    let prefix = support::prefix("nodes-suite");
    let report = sse_conformance::hub::check_nodes(|| {
        let prefix = prefix.clone();
        async move {
            support::required(
                RedisHub::builder(support::redis_url())
                    .prefix(prefix)
                    .connect()
                    .await,
            )
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_forced_onto_the_same_node_id_still_hand_out_distinct_connection_ids() {
    use sse_core::{Audience, Event, Hub, Principal};
    let prefix = support::prefix("same-node-id");
    let connect = || {
        RedisHub::builder(support::redis_url())
            .prefix(prefix.clone())
            .node_id(7)
            .connect()
    };
    let a = support::required(connect().await);
    let b = support::required(connect().await);
    assert_eq!(a.node_id(), 7);
    assert_ne!(b.node_id(), 7, "a live node's id was handed out again");
    // Each node's first connection gets sequence number 1: under the old
    // scheme (a per-process base) these could collide; now the node part
    // differs.
    let mut on_a = a.subscribe(&Principal::new("alice"), 8).await.unwrap();
    let mut on_b = b.subscribe(&Principal::new("mallory"), 8).await.unwrap();
    assert_eq!(on_a.id().seq(), on_b.id().seq());
    assert_ne!(on_a.id(), on_b.id());
    // An event for alice's connection, published on B, reaches alice's
    // connection on A and never mallory's on B.
    let secret = Event::json(&"for alice's connection").unwrap();
    b.publish(&Audience::Connection(on_a.id()), &secret)
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), on_a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, secret);
    let marker = Event::json(&"marker").unwrap();
    b.publish(&Audience::Connection(on_b.id()), &marker)
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, marker, "mallory received alice's event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_hub_keeps_its_connection_past_many_keep_alive_pings() {
    let hub = support::required(
        RedisHub::builder(support::redis_url())
            .prefix(support::prefix("idle"))
            .ping_every(std::time::Duration::from_millis(100))
            .connect()
            .await,
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert!(hub.is_connected());
    assert_eq!(
        hub.reconnects(),
        0,
        "a healthy, idle hub reconnected: its keep-alive ping was taken for a lost link"
    );
}
