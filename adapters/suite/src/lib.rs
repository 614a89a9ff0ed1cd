//! The integration suite every framework adapter passes, written once.
//!
//! An adapter test calls [`run`] with a function that mounts the given
//! [`SseService`] on a real server bound to `127.0.0.1:0` and serves:
//!
//! - `GET /events`: the stream;
//! - `POST /notify`: authenticated (the adapter's principal extractor),
//!   JSON [`NewNotification`](sse_core::NewNotification) in, `201` with
//!   the notification out, errors through the adapter's error mapping;
//! - `GET /whoami`: authenticated, answers the user id as text.
//!
//! The whole app must sit behind [`UserFromHeader`] (a tower layer standing
//! in for the app's own auth middleware, such as tower-sessions): it puts
//! the `x-suite-user` header's value into the request's extensions as a
//! [`SuiteUser`], which the suite's authenticator accepts.
//!
//! The suite runs the black-box checker (headers, first bytes, framing,
//! heartbeat, 401, 405, live delivery, replay, isolation) and then checks
//! many tabs per user under concurrent publishing, the handlers' status
//! codes and JSON errors, that authenticators see request extensions, and
//! that every registration is gone after the clients leave.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sse_conformance::check::{self, HttpPublish, Target};
use sse_conformance::client::Request;
use sse_conformance::{Outcome, Report};
use sse_core::{
    AuthRejection, CookieSessionAuthenticator, ExtensionAuthenticator, InMemoryHub,
    InMemorySessions, InMemoryStore, Principal, SessionAuthenticator,
};
use sse_tower::SseService;

/// Sessions per user, so each user can open that many tabs.
pub const TABS: usize = 4;

/// A running server the suite talks to.
pub struct Mounted {
    /// `host:port` it listens on.
    pub authority: String,
    /// Whatever keeps it running; dropped when the suite ends.
    pub guard: Box<dyn Any + Send>,
}

struct World {
    sse: SseService,
    hub: InMemoryHub,
    authority: String,
}

fn cookie(user: &str, tab: usize) -> String {
    format!("sid={user}-{tab}")
}

fn alice_cookie() -> Vec<(String, String)> {
    vec![("cookie".into(), cookie("alice", 0))]
}

/// The user an auth middleware in front of the app established; see
/// [`UserFromHeader`].
#[derive(Debug, Clone)]
pub struct SuiteUser(pub String);

/// A tower layer standing in for an app's auth middleware: puts the
/// `x-suite-user` header's value into the request's extensions as a
/// [`SuiteUser`]. Mount the whole app behind it.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserFromHeaderLayer;

impl<S> tower_layer::Layer<S> for UserFromHeaderLayer {
    type Service = UserFromHeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UserFromHeader(inner)
    }
}

/// The service [`UserFromHeaderLayer`] builds.
#[derive(Debug, Clone)]
pub struct UserFromHeader<S>(pub S);

impl<S, B> tower_service::Service<http::Request<B>> for UserFromHeader<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let user = request
            .headers()
            .get("x-suite-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(user) = user {
            request.extensions_mut().insert(SuiteUser(user));
        }
        self.0.call(request)
    }
}

/// Builds the service, mounts it with `mount`, runs every check and panics
/// with the table if any failed or was skipped.
pub async fn run<F, Fut>(adapter: &str, mount: F)
where
    F: FnOnce(SseService) -> Fut,
    Fut: Future<Output = Mounted>,
{
    let report = check(mount).await;
    println!("{adapter} adapter:\n{report}");
    let skipped: Vec<_> = report
        .checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Skip(_)))
        .map(|c| c.name.clone())
        .collect();
    assert!(
        skipped.is_empty(),
        "{adapter}: checks were skipped: {skipped:?}"
    );
    report.assert_passed();
}

/// Like [`run`], returning the report.
pub async fn check<F, Fut>(mount: F) -> Report
where
    F: FnOnce(SseService) -> Fut,
    Fut: Future<Output = Mounted>,
{
    let sessions = InMemorySessions::new();
    for user in ["alice", "bob"] {
        for tab in 0..TABS {
            let sid = format!("{user}-{tab}");
            sessions.insert(sid.clone(), Principal::new(user).with_session(sid));
        }
    }
    let hub = InMemoryHub::new();
    // What the app's middleware established, or else the session cookie:
    // the shipped authenticators, composed as adopters would.
    let from_middleware = ExtensionAuthenticator::with(|SuiteUser(user): SuiteUser| async move {
        Ok::<_, AuthRejection>(Principal::new(user))
    });
    let sse =
        SseService::builder(from_middleware.or(CookieSessionAuthenticator::new("sid", sessions)))
            .hub(hub.clone())
            .store(InMemoryStore::new())
            .heartbeat(Duration::from_millis(200))
            .build();
    let mounted = mount(sse.clone()).await;
    let world = Arc::new(World {
        sse,
        hub,
        authority: mounted.authority.clone(),
    });

    let mut target = Target::new(&world.authority, "/events");
    target.credentials = alice_cookie();
    target.other_credentials = Some(vec![("cookie".into(), cookie("bob", 0))]);
    let publish_to = |user: &str| HttpPublish {
        method: "POST".into(),
        path: "/notify".into(),
        headers: vec![
            ("cookie".into(), cookie("bob", 1)),
            ("content-type".into(), "application/json".into()),
        ],
        body: format!(r#"{{"user":"{user}","title":"{{token}}"}}"#),
    };
    target.publish = Some(check::http_publisher(
        &world.authority,
        publish_to("alice"),
        Some(publish_to("bob")),
    ));
    let mut report = check::run(&target).await;

    let limit = Duration::from_secs(60);
    report
        .check(
            "many_tabs_isolated_under_concurrent_publishing",
            limit,
            || many_tabs(world.clone()),
        )
        .await;
    report
        .check("handlers_authenticate_and_map_errors", limit, || {
            handlers(world.clone())
        })
        .await;
    report
        .check("json_body_errors_are_400_naming_the_field", limit, || {
            json_errors(world.clone())
        })
        .await;
    report
        .check("authenticators_see_request_extensions", limit, || {
            extensions(world.clone())
        })
        .await;
    report
        .check("cleanup_after_disconnect", limit, || cleanup(world.clone()))
        .await;
    drop(mounted.guard);
    report
}

async fn post_notify(authority: &str, sender: &str, body: &str) -> Result<(u16, String), String> {
    let mut response = Request::new("POST", "/notify")
        .header("cookie", sender)
        .header("content-type", "application/json")
        .body(body)
        .send(authority)
        .await
        .map_err(|e| format!("POST /notify failed: {e}"))?;
    let status = response.status();
    let body = response
        .read_to_end(Duration::from_secs(5))
        .await
        .map_err(|e| format!("reading the /notify answer failed: {e}"))?;
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

async fn many_tabs(world: Arc<World>) -> Result<(), String> {
    const PER_PUBLISHER: usize = 15;
    const PUBLISHERS: usize = 4;
    let mut tabs = Vec::new();
    for user in ["alice", "bob"] {
        for tab in 0..TABS {
            // As EventSource asks: `sse_tower::serve` writes such streams directly.
            let mut stream = Request::get("/events")
                .header("accept", "text/event-stream")
                .header("cookie", cookie(user, tab))
                .send(&world.authority)
                .await
                .map_err(|e| format!("opening {user} tab {tab}: {e}"))?;
            let first = stream
                .next_event(Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            if first.event_type != "connected" {
                return Err(format!("{user} tab {tab}: first event {first:?}"));
            }
            tabs.push((user, tab, stream));
        }
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let authority = world.authority.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                let to = if (i + p) % 2 == 0 { "alice" } else { "bob" };
                let body = format!(r#"{{"user":"{to}","title":"{to}:{p}:{i}"}}"#);
                let (status, answer) = post_notify(&authority, &cookie("alice", 3), &body).await?;
                if status != 201 {
                    return Err(format!("POST /notify answered {status}: {answer}"));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for publisher in publishers {
        publisher
            .await
            .map_err(|e| format!("publisher panicked: {e}"))??;
    }
    let per_user = PUBLISHERS * PER_PUBLISHER / 2;
    for (user, tab, stream) in &mut tabs {
        let mut last_id = 0u64;
        for received in 0..per_user {
            let event = stream
                .next_event(Duration::from_secs(5))
                .await
                .map_err(|e| {
                    format!(
                        "{user} tab {tab}: expected {per_user} notifications, got {received}: {e}"
                    )
                })?;
            let data: serde_json::Value =
                serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
            let title = data["notification"]["title"].as_str().unwrap_or_default();
            if !title.starts_with(&format!("{user}:")) {
                return Err(format!(
                    "{user} tab {tab} received {title:?}, addressed to someone else"
                ));
            }
            let id = event
                .last_event_id
                .parse::<sse_core::Cursor>()
                .map_err(|_| format!("bad id {:?}", event.last_event_id))?
                .position();
            if id <= last_id {
                return Err(format!("{user} tab {tab}: position {id} after {last_id}"));
            }
            last_id = id;
        }
    }
    Ok(())
}

async fn handlers(world: Arc<World>) -> Result<(), String> {
    let body = r#"{"user":"bob","title":"hi"}"#;
    let mut response = Request::new("POST", "/notify")
        .header("content-type", "application/json")
        .body(body)
        .send(&world.authority)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let content_type = response.header("content-type").map(str::to_owned);
    let answer = response
        .read_to_end(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("401 body is not JSON: {e}"))?;
    if status != 401
        || content_type.as_deref() != Some("application/json")
        || !json["error"].is_string()
    {
        return Err(format!(
            "POST /notify without a session: expected 401 with a JSON error, got {status} {content_type:?} {json}"
        ));
    }
    let (status, answer) = post_notify(
        &world.authority,
        &cookie("alice", 0),
        r#"{"user":"bob","title":""}"#,
    )
    .await?;
    let json: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("400 body is not JSON: {e}"))?;
    if status != 400 || json["field"] != "title" {
        return Err(format!(
            "an empty title: expected 400 naming the field, got {status} {answer}"
        ));
    }
    let (status, answer) = post_notify(&world.authority, &cookie("alice", 0), body).await?;
    let json: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("201 body is not JSON: {e}"))?;
    if status != 201 || json["user"] != "bob" || json["title"] != "hi" || json["read"] != false {
        return Err(format!(
            "a valid notify: expected 201 with the notification, got {status} {answer}"
        ));
    }
    let mut whoami = Request::get("/whoami")
        .header("cookie", cookie("bob", 2))
        .send(&world.authority)
        .await
        .map_err(|e| e.to_string())?;
    let who = whoami
        .read_to_end(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    if who != b"bob" {
        return Err(format!(
            "/whoami as bob answered {:?}",
            String::from_utf8_lossy(who)
        ));
    }
    Ok(())
}

async fn json_errors(world: Arc<World>) -> Result<(), String> {
    let sender = cookie("alice", 1);
    for (body, field) in [
        (r#"{"user":"bob"}"#, Some("title")),
        (r#"{"user":"bob","title":7}"#, Some("title")),
        (r#"{"title":"x"}"#, Some("user")),
        (r#"{"user":"bob","title":"x""#, None),
        ("[]", None),
    ] {
        let (status, answer) = post_notify(&world.authority, &sender, body).await?;
        let json: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| format!("{body}: the {status} body is not JSON: {e}: {answer}"))?;
        if status != 400 || !json["error"].is_string() || json["field"].as_str() != field {
            return Err(format!(
                "{body}: expected 400 naming {field:?}, got {status} {answer}"
            ));
        }
    }
    let mut response = Request::new("POST", "/notify")
        .header("cookie", sender.as_str())
        .header("content-type", "text/plain")
        .body(r#"{"user":"bob","title":"x"}"#)
        .send(&world.authority)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response
        .read_to_end(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(answer)
        .map_err(|e| format!("the {status} answer to a text body is not JSON: {e}"))?;
    if status != 415 || !json["error"].is_string() {
        return Err(format!(
            "a body not declared as JSON: expected 415, got {status} {json}"
        ));
    }
    Ok(())
}

async fn extensions(world: Arc<World>) -> Result<(), String> {
    let mut whoami = Request::get("/whoami")
        .header("x-suite-user", "carol")
        .send(&world.authority)
        .await
        .map_err(|e| e.to_string())?;
    let status = whoami.status();
    let who = whoami
        .read_to_end(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?
        .to_vec();
    if (status, who.as_slice()) != (200, b"carol".as_slice()) {
        return Err(format!(
            "/whoami with the user in an extension answered {status} {:?}",
            String::from_utf8_lossy(&who)
        ));
    }
    let mut stream = Request::get("/events")
        .header("accept", "text/event-stream")
        .header("x-suite-user", "carol")
        .send(&world.authority)
        .await
        .map_err(|e| e.to_string())?;
    if stream.status() != 200 {
        return Err(format!(
            "a stream with the user in an extension answered {}",
            stream.status()
        ));
    }
    stream
        .next_event(Duration::from_secs(2))
        .await
        .map_err(|e| format!("no connected event: {e}"))?;
    Ok(())
}

async fn cleanup(world: Arc<World>) -> Result<(), String> {
    for _ in 0..500 {
        let active = world.sse.metrics().active_connections;
        if active == 0 && world.hub.index_entries() == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "after every client left, {} streams are still open and the hub holds {} entries",
        world.sse.metrics().active_connections,
        world.hub.index_entries()
    ))
}
