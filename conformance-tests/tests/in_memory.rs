//! The in-memory defaults pass the suites they define.
#![allow(clippy::unwrap_used)]

use sse_core::{InMemoryHub, InMemoryLog, InMemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_hub_passes_the_hub_suite() {
    let report = sse_conformance::hub::check(|| async { InMemoryHub::new() }).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.checks.len() >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_log_passes_the_log_suite() {
    let report =
        sse_conformance::log::check(
            |retention| async move { InMemoryLog::with_retention(retention) },
        )
        .await;
    println!("{report}");
    report.assert_passed();
    assert!(report.checks.len() >= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_passes_the_store_suite() {
    let report = sse_conformance::store::check(|| async {
        let store = InMemoryStore::new();
        (store.clone(), store)
    })
    .await;
    println!("{report}");
    report.assert_passed();
    assert!(report.checks.len() >= 15);
}

mod authenticators {
    use std::sync::Arc;

    use sse_conformance::authenticator::{self, RefusedRequest, ValidRequest};
    use sse_core::{
        AuthRejection, BearerTokenAuthenticator, CookieSessionAuthenticator, FnAuthenticator,
        InMemorySessions, Principal, SessionAuthenticator,
    };

    fn two_sessions() -> (InMemorySessions, String, String) {
        let sessions = InMemorySessions::new();
        let alice = sessions.create(Principal::new("alice")).unwrap();
        let bob = sessions.create(Principal::new("bob")).unwrap();
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
            Arc::new(BearerTokenAuthenticator::new(sessions).query_param("access_token")),
            vec![
                ValidRequest::new("/events", "alice")
                    .header("authorization", format!("Bearer {alice}")),
                ValidRequest::new(format!("/events?access_token={bob}"), "bob"),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn cookie_or_bearer_passes_and_refuses_an_expired_session() {
        let (sessions, alice, bob) = two_sessions();
        sessions.insert(
            "expired",
            Principal::new("carol").with_expiry(std::time::SystemTime::UNIX_EPOCH),
        );
        let auth = CookieSessionAuthenticator::new("sid", sessions.clone())
            .or(BearerTokenAuthenticator::new(sessions));
        authenticator::run_with(
            Arc::new(auth),
            vec![
                ValidRequest::new("/events", "alice").header("cookie", format!("sid={alice}")),
                ValidRequest::new("/events", "bob")
                    .header("authorization", format!("Bearer {bob}")),
            ],
            vec![
                RefusedRequest::new("/events", "an expired cookie session")
                    .header("cookie", "sid=expired"),
                RefusedRequest::new("/events", "an expired bearer session")
                    .header("authorization", "Bearer expired"),
                RefusedRequest::new(
                    format!("/events?access_token={alice}"),
                    "a query token when header-only",
                ),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn the_jwt_authenticator_passes_and_refuses_expired_and_foreign_tokens() {
        use sse_core::JwtAuthenticator;
        use sse_core::auth::jsonwebtoken::{EncodingKey, Header, encode};

        const KEY: &[u8] = b"conformance secret of 32 bytes..";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = |sub: &str, exp: u64, aud: &str, key: &[u8]| {
            let claims = serde_json::json!({"sub": sub, "exp": exp, "aud": aud});
            encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
        };
        let auth = JwtAuthenticator::hs256(KEY)
            .unwrap()
            .audience(["sse"])
            .cookie("jwt")
            .query_param("access_token");
        authenticator::run_with(
            Arc::new(auth),
            vec![
                ValidRequest::new("/events", "alice").header(
                    "authorization",
                    format!("Bearer {}", token("alice", now + 600, "sse", KEY)),
                ),
                ValidRequest::new("/events", "bob").header(
                    "cookie",
                    format!("jwt={}", token("bob", now + 600, "sse", KEY)),
                ),
                ValidRequest::new(
                    format!(
                        "/events?access_token={}",
                        token("carol", now + 600, "sse", KEY)
                    ),
                    "carol",
                ),
            ],
            vec![
                RefusedRequest::new("/events", "an expired token").header(
                    "authorization",
                    format!("Bearer {}", token("alice", now - 3600, "sse", KEY)),
                ),
                RefusedRequest::new("/events", "a token signed with another key").header(
                    "authorization",
                    format!(
                        "Bearer {}",
                        token(
                            "alice",
                            now + 600,
                            "sse",
                            b"another key of 32 bytes........"
                        )
                    ),
                ),
                RefusedRequest::new("/events", "a token for another audience").header(
                    "cookie",
                    format!("jwt={}", token("alice", now + 600, "billing", KEY)),
                ),
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

#[tokio::test]
async fn jwt_authenticator_passes_the_token_checks() {
    use sse_conformance::authenticator::{Tokens, ValidRequest};
    use sse_core::auth::jsonwebtoken::{EncodingKey, Header, encode};
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    let auth = sse_core::JwtAuthenticator::hs256(KEY)
        .unwrap()
        .audience(["sse"])
        .issuer(["https://auth.example"]);
    sse_conformance::authenticator::run_tokens(
        std::sync::Arc::new(auth),
        Tokens {
            mint: |claims: &serde_json::Value| {
                encode(&Header::default(), claims, &EncodingKey::from_secret(KEY)).unwrap()
            },
            request: |token: &str| {
                ValidRequest::new("/events", "alice")
                    .header("authorization", format!("Bearer {token}"))
            },
            audience: Some("sse".into()),
            issuer: Some("https://auth.example".into()),
        },
    )
    .await;
}
