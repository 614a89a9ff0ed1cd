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

/// A login loop cannot fill Redis: each user keeps their newest sessions,
/// and removing or revoking one takes it out of the user's index.
#[tokio::test]
async fn redis_sessions_are_capped_per_user() {
    use sse_core::{Principal, SessionLookup};
    use sse_redis::RedisSessions;

    let prefix = support::prefix("session-cap");
    let sessions = support::required(RedisSessions::connect(&support::redis_url(), &prefix).await)
        .max_per_user(3);
    let mut alice = Vec::new();
    for _ in 0..5 {
        alice.push(sessions.create(&Principal::new("alice")).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let bob = sessions.create(&Principal::new("bob")).await.unwrap();
    for (k, credential) in alice.iter().enumerate() {
        let alive = sessions.lookup(credential).await.unwrap().is_some();
        assert_eq!(alive, k >= 2, "alice's session {k}");
    }
    assert!(sessions.lookup(&bob).await.unwrap().is_some());
    let listed = sessions
        .of_user(&sse_core::UserId::from("alice"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    // Ended sessions leave no key behind (only live sessions, their id
    // index entries and the users' indexes remain).
    let client = redis::Client::open(support::redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 4 * 2 + 2, "{keys:?}");
    // Freed places are reused: after a logout, the next login ends no one.
    sessions.remove(&alice[4]).await.unwrap().unwrap();
    let again = sessions.create(&Principal::new("alice")).await.unwrap();
    for credential in [&alice[2], &alice[3], &again] {
        assert!(sessions.lookup(credential).await.unwrap().is_some());
    }
    let principal = sessions.lookup(&alice[2]).await.unwrap().unwrap();
    assert!(sessions.revoke(principal.session().unwrap()).await.unwrap());
    let once_more = sessions.create(&Principal::new("alice")).await.unwrap();
    for credential in [&alice[3], &again, &once_more] {
        assert!(sessions.lookup(credential).await.unwrap().is_some());
    }
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
