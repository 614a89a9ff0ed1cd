//! The store suite on SQLite and on a real PostgreSQL (`DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). A missing
//! PostgreSQL fails this test; it does not skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sse_sqlx::SqlStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_suite() {
    let report = sse_conformance::store::check(|retention| async move {
        SqlStore::builder(support::sqlite_url("suite"))
            .retention(retention)
            .connect()
            .await
            .expect("open a SQLite file")
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_suite() {
    let url = support::postgres_url();
    let report = sse_conformance::store::check(|retention| {
        let url = url.clone();
        async move {
            SqlStore::builder(&url)
                .retention(retention)
                .connect()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for this test (start it, or set DATABASE_URL): {e}"
                    )
                })
        }
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test]
async fn sql_sessions_pass_the_authenticator_suite_on_both_databases() {
    use std::sync::Arc;

    use sse_conformance::authenticator::{self, ValidRequest};
    use sse_core::CookieSessionAuthenticator;
    use sse_sqlx::SqlSessions;

    for url in [support::sqlite_url("sessions"), support::postgres_url()] {
        let store = SqlStore::connect(&url).await.unwrap();
        let sessions = SqlSessions::new(&store);
        let alice = sessions.create(&"alice".into()).await.unwrap();
        let bob = sessions.create(&"bob".into()).await.unwrap();
        let auth = Arc::new(CookieSessionAuthenticator::new("sid", sessions.clone()));
        authenticator::run(
            auth,
            vec![
                ValidRequest::new("/events", "alice").header("cookie", format!("sid={alice}")),
                ValidRequest::new("/events", "bob").header("cookie", format!("sid={bob}")),
            ],
        )
        .await;
        assert_eq!(sessions.remove(&alice).await.unwrap(), Some("alice".into()));
        use sse_core::SessionLookup;
        assert!(
            sessions.lookup(&alice).await.unwrap().is_none(),
            "a removed session still authenticates"
        );
        let expired = SqlSessions::new(&store).lifetime(std::time::Duration::ZERO);
        let gone = expired.create(&"carol".into()).await.unwrap();
        assert!(
            sessions.lookup(&gone).await.unwrap().is_none(),
            "an expired session still authenticates"
        );
    }
}
