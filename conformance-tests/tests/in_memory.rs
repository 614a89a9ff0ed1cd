//! The in-memory defaults pass the suites they define.

use sse_core::{InMemoryHub, InMemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_hub_passes_the_hub_suite() {
    let report = sse_conformance::hub::check(|| async { InMemoryHub::new() }).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.checks.len() >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_passes_the_store_suite() {
    let report = sse_conformance::store::check(|retention| async move {
        InMemoryStore::with_retention(retention)
    })
    .await;
    println!("{report}");
    report.assert_passed();
    assert!(report.checks.len() >= 15);
}

mod authenticators {
    use std::sync::Arc;

    use sse_conformance::authenticator::{self, ValidRequest};
    use sse_core::{
        AuthRejection, BearerTokenAuthenticator, CookieSessionAuthenticator, FnAuthenticator,
        InMemorySessions, Principal,
    };

    fn two_sessions() -> (InMemorySessions, String, String) {
        let sessions = InMemorySessions::new();
        let alice = sessions.create(Principal::new("alice"));
        let bob = sessions.create(Principal::new("bob"));
        (sessions, alice, bob)
    }

    #[tokio::test]
    async fn the_cookie_authenticator_passes() {
        let (sessions, alice, bob) = two_sessions();
        let report = authenticator::check(
            Arc::new(CookieSessionAuthenticator::new("sid", sessions)),
            vec![
                ValidRequest::new("/events", "alice")
                    .header("cookie", format!("theme=dark; sid={alice}")),
                ValidRequest::new("/events", "bob").header("cookie", format!("sid={bob}")),
            ],
        )
        .await;
        println!("{report}");
        report.assert_passed();
    }

    #[tokio::test]
    async fn the_bearer_authenticator_passes_with_header_and_query() {
        let (sessions, alice, bob) = two_sessions();
        authenticator::run(
            Arc::new(BearerTokenAuthenticator::new(sessions)),
            vec![
                ValidRequest::new("/events", "alice")
                    .header("authorization", format!("Bearer {alice}")),
                ValidRequest::new(format!("/events?access_token={bob}"), "bob"),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn a_header_trusting_closure_fails_with_clear_messages() {
        // Accepts any x-user header: every junk credential check must catch it.
        let naive = FnAuthenticator::new(|parts| {
            let user = parts
                .headers
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            match user.strip_prefix("user=") {
                Some(u) if !u.is_empty() => Ok(Principal::new(u)),
                _ => Err(AuthRejection::unauthenticated("no user")),
            }
        });
        let report = authenticator::check(
            Arc::new(naive),
            vec![
                ValidRequest::new("/", "alice").header("cookie", "user=alice"),
                ValidRequest::new("/", "bob").header("cookie", "user=bob"),
            ],
        )
        .await;
        assert!(!report.passed());
        let failure = report
            .outcome("authenticator::wrong_credentials_are_401")
            .unwrap();
        assert!(
            matches!(failure, sse_conformance::Outcome::Fail(why) if why.contains("authenticated as")),
            "{report}"
        );
    }
}
