//! The log and store suites on SQLite and on a real PostgreSQL
//! (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`). A
//! missing PostgreSQL fails these tests; they do not skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use sse_sqlx::SqlStore;

fn required<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        panic!(
            "the database is required for this test (start PostgreSQL, or set DATABASE_URL): {e}"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_log_suite() {
    let report = sse_conformance::log::check(|retention| async move {
        // Each check gets its own database: retention prunes the whole log.
        required(
            SqlStore::builder(support::sqlite_url("log-suite"))
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
async fn postgres_passes_the_log_suite() {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let report = sse_conformance::log::check(|retention| async move {
        let url = support::fresh_postgres_url(&format!(
            "log_suite_{}",
            NEXT.fetch_add(1, Ordering::SeqCst)
        ))
        .await;
        required(SqlStore::builder(url).retention(retention).connect().await)
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_suite() {
    let report = sse_conformance::store::check(|| async {
        let store = required(SqlStore::connect(&support::sqlite_url("store-suite")).await);
        (store.clone(), store)
    })
    .await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_suite() {
    let url = support::fresh_postgres_url("store_suite").await;
    let report = sse_conformance::store::check(|| {
        let url = url.clone();
        async move {
            let store = required(SqlStore::connect(&url).await);
            (store.clone(), store)
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

    for url in [
        support::sqlite_url("sessions"),
        support::fresh_postgres_url("sessions").await,
    ] {
        let store = SqlStore::connect(&url).await.unwrap();
        let sessions = SqlSessions::new(&store);
        let alice = sessions
            .create(
                &sse_core::Principal::new("alice")
                    .with_groups(["acme"])
                    .with_topics(["ops"]),
            )
            .await
            .unwrap();
        {
            use sse_core::SessionLookup;
            let principal = sessions.lookup(&alice).await.unwrap().unwrap();
            assert_eq!(principal.groups(), [sse_core::GroupId::from("acme")]);
            assert_eq!(principal.topics(), [sse_core::Topic::from("ops")]);
        }
        let bob = sessions
            .create(&sse_core::Principal::new("bob"))
            .await
            .unwrap();
        let auth = Arc::new(CookieSessionAuthenticator::new("sid", sessions.clone()));
        authenticator::run(
            auth,
            vec![
                ValidRequest::new("/events", "alice").header("cookie", format!("sid={alice}")),
                ValidRequest::new("/events", "bob").header("cookie", format!("sid={bob}")),
            ],
        )
        .await;
        use sse_core::SessionLookup;
        let session = sessions
            .lookup(&bob)
            .await
            .unwrap()
            .unwrap()
            .session()
            .unwrap()
            .clone();
        assert_ne!(session.as_str(), bob, "the session id is the credential");
        let removed = sessions.remove(&alice).await.unwrap().unwrap();
        assert_eq!(removed.user().as_str(), "alice");
        assert!(
            sessions.lookup(&alice).await.unwrap().is_none(),
            "a removed session still authenticates"
        );
        assert!(sessions.revoke(&session).await.unwrap());
        assert!(sessions.lookup(&bob).await.unwrap().is_none());
        // The table holds no credential: only its hash and an unrelated id.
        let carol = sessions
            .create(&sse_core::Principal::new("carol"))
            .await
            .unwrap();
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT credential_hash || ' ' || session_id || ' ' || user_id FROM sse_sessions",
        )
        .fetch_all(&sqlx::AnyPool::connect(&url).await.unwrap())
        .await
        .unwrap();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|row| !row.contains(&carol)), "{rows:?}");
        let expired = SqlSessions::new(&store).lifetime(std::time::Duration::ZERO);
        let gone = expired
            .create(&sse_core::Principal::new("carol"))
            .await
            .unwrap();
        assert!(
            sessions.lookup(&gone).await.unwrap().is_none(),
            "an expired session still authenticates"
        );
    }
}

/// A login loop cannot fill the table: each user keeps their newest
/// sessions, and expired rows are deleted.
#[tokio::test]
async fn sql_sessions_are_capped_per_user_and_expired_rows_pruned() {
    use sse_core::{Principal, SessionLookup};
    use sse_sqlx::SqlSessions;

    for url in [
        support::sqlite_url("session-cap"),
        support::fresh_postgres_url("session_cap").await,
    ] {
        let store = SqlStore::connect(&url).await.unwrap();
        let sessions = SqlSessions::new(&store).max_per_user(3);
        let mut alice = Vec::new();
        for _ in 0..5 {
            alice.push(sessions.create(&Principal::new("alice")).await.unwrap());
            // Distinct creation instants, so "oldest" is well defined.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let bob = sessions.create(&Principal::new("bob")).await.unwrap();
        for (k, credential) in alice.iter().enumerate() {
            let alive = sessions.lookup(credential).await.unwrap().is_some();
            assert_eq!(alive, k >= 2, "alice's session {k} ({url})");
        }
        assert!(sessions.lookup(&bob).await.unwrap().is_some());
        let listed = sessions
            .of_user(&sse_core::UserId::from("alice"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|p| p.user().as_str() == "alice"));
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sse_sessions")
                .fetch_one(&sqlx::AnyPool::connect(&url).await.unwrap())
                .await
                .unwrap()
        };
        assert_eq!(count().await, 4);
        // Expired rows go at the next prune, and the first create of a
        // fresh handle prunes.
        let short = SqlSessions::new(&store).lifetime(std::time::Duration::ZERO);
        short.create(&Principal::new("carol")).await.unwrap();
        short.create(&Principal::new("dave")).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // (`short`'s own first create may have pruned carol already.)
        assert!(sessions.prune_expired().await.unwrap() >= 1);
        assert_eq!(count().await, 4);
        short.create(&Principal::new("erin")).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        SqlSessions::new(&store)
            .create(&Principal::new("frank"))
            .await
            .unwrap();
        assert_eq!(count().await, 5, "the expired session was not pruned");
    }
}
