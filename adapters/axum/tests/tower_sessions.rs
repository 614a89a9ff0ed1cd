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

/// The session key holding when the session ends, in Unix milliseconds.
const ENDS_AT: &str = "ends_at";

/// The recipe for a stream's expiry with tower-sessions: `Session::expiry_date()`
/// is recomputed on every request as now + the inactivity TTL, so a stream
/// opened late would outlive its session by up to that TTL. Record the end
/// when the session is written (here at login: only the login writes this
/// session, so the store's record expires then) and give the stream that.
async fn login_until(session: Session, Path(user): Path<String>) -> StatusCode {
    let ends_at =
        i64::try_from(session.expiry_date().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let written = async {
        session.insert("user", user).await?;
        session.insert(ENDS_AT, ends_at).await
    };
    match written.await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_late_ends_with_its_session_not_a_ttl_later() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let auth = ExtensionAuthenticator::with(|session: Session| async move {
        let user = session.get::<String>("user").await;
        let ends_at = session.get::<i64>(ENDS_AT).await;
        match (user, ends_at) {
            (Ok(Some(user)), Ok(Some(ends_at))) => {
                let ends = UNIX_EPOCH + Duration::from_millis(u64::try_from(ends_at).unwrap_or(0));
                Ok(Principal::new(user).with_expiry(ends))
            }
            (Ok(_), Ok(_)) => Err(AuthRejection::unauthenticated("log in first")),
            (Err(error), _) | (_, Err(error)) => Err(AuthRejection::Unavailable(Box::new(error))),
        }
    });
    let sse = SseService::builder(auth).build();
    // Sessions end 3 s after their last write.
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_secure(false)
        .with_expiry(tower_sessions::Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::seconds(3),
        ));
    let app = Router::new()
        .route("/login/{user}", post(login_until))
        .sse_stream("/events", &sse)
        .layer(sessions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let login = Request::new("POST", "/login/alice")
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let logged_in = SystemTime::now();
    // Late: most of the session's life has passed.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let mut stream = Request::get("/events")
        .header("cookie", &cookie)
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let connected = stream.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(connected.event_type, "connected");
    // It ends when the session does (3 s after the login), not 3 s after
    // it opened (4.8 s after the login).
    stream.read_to_end(Duration::from_secs(5)).await.unwrap();
    let lived = logged_in.elapsed().unwrap();
    assert!(
        lived < Duration::from_millis(3_800),
        "the stream outlived its session: ended {lived:?} after the login"
    );
    // And the session itself is over: a new stream is refused.
    let refused = Request::get("/events")
        .header("cookie", &cookie)
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
