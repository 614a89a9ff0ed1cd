//! The stream behind `tower-sessions`, as most axum apps already log users
//! in: the login handler writes the user into the session, and the stream
//! authenticates with `ExtensionAuthenticator` reading that session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use sse_axum::sse_core::{AuthRejection, ExtensionAuthenticator, NewNotification, Principal};
use sse_axum::{SseRouterExt, SseService};
use sse_conformance::client::Request;
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

async fn login(session: Session, Path(user): Path<String>) -> StatusCode {
    match session.insert("user", user).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tower_sessions_login_authenticates_the_stream() {
    let auth = ExtensionAuthenticator::with(|session: Session| async move {
        match session.get::<String>("user").await {
            Ok(Some(user)) => Ok(Principal::new(user)),
            Ok(None) => Err(AuthRejection::unauthenticated("log in first")),
            Err(error) => Err(AuthRejection::Unavailable(Box::new(error))),
        }
    });
    let sse = SseService::builder(auth).build();
    let app = Router::new()
        .route("/login/{user}", post(login))
        .sse_stream("/events", &sse)
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // No session: 401, with the authenticator's reason.
    let mut anonymous = Request::get("/events").send(&authority).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body = anonymous.read_to_end(Duration::from_secs(2)).await.unwrap();
    assert!(String::from_utf8_lossy(body).contains("log in first"));

    let mut cookies = Vec::new();
    for user in ["alice", "bob"] {
        let login = Request::new("POST", format!("/login/{user}"))
            .send(&authority)
            .await
            .unwrap();
        assert_eq!(login.status(), 204);
        let cookie = login
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned();
        cookies.push(cookie);
    }
    let mut alice = Request::get("/events")
        .header("cookie", &cookies[0])
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(alice.status(), 200);
    let mut bob = Request::get("/events")
        .header("cookie", &cookies[1])
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(bob.status(), 200);
    for stream in [&mut alice, &mut bob] {
        let connected = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(connected.event_type, "connected");
    }

    sse.notifier()
        .notify(NewNotification::new("alice", "for alice"))
        .await
        .unwrap();
    let event = alice.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(event.event_type, "notification");
    assert!(event.data.contains("for alice"));
    // Bob's stream, authenticated by his own session, gets nothing of it.
    assert!(bob.next_event(Duration::from_millis(300)).await.is_err());
}
