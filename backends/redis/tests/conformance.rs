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
async fn redis_store_passes_the_store_suite() {
    let prefix = support::prefix("store-suite");
    let report = sse_conformance::store::check(|retention| {
        let prefix = prefix.clone();
        async move {
            support::required(
                RedisStore::builder(support::redis_url())
                    .prefix(prefix)
                    .retention(retention)
                    .connect()
                    .await,
            )
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test]
async fn an_age_limit_is_refused_rather_than_ignored() {
    let error = RedisStore::builder(support::redis_url())
        .retention(sse_core::Retention::default().max_age(std::time::Duration::from_secs(60)))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(error, sse_redis::RedisError::Unsupported(_)),
        "{error}"
    );
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
    let alice = sessions.create(&"alice".into()).await.unwrap();
    let bob = sessions.create(&"bob".into()).await.unwrap();
    authenticator::run(
        Arc::new(CookieSessionAuthenticator::new("sid", sessions.clone())),
        vec![
            ValidRequest::new("/events", "alice").header("cookie", format!("sid={alice}")),
            ValidRequest::new("/events", "bob").header("cookie", format!("sid={bob}")),
        ],
    )
    .await;
    assert_eq!(sessions.remove(&alice).await.unwrap(), Some("alice".into()));
    assert!(sessions.lookup(&alice).await.unwrap().is_none());
}
