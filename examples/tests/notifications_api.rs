//! The notifications app's HTTP interface, endpoint by endpoint, against
//! the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The Redis Cluster launcher of sse-redis's tests, shared rather than copied.
#[path = "../../backends/redis/tests/support/mod.rs"]
mod redis_support;

use std::time::Duration;

use serde_json::{Value, json};
use sse_conformance::client::{Request, Response};

const BIN: &str = env!("CARGO_BIN_EXE_notifications");
const WAIT: Duration = Duration::from_secs(3);

struct App {
    _running: support::Running,
    authority: String,
}

fn start(args: &[&str]) -> App {
    let mut all = vec!["--addr", "127.0.0.1:0", "--heartbeat-secs", "0.2"];
    all.extend_from_slice(args);
    let (running, authority) = support::start(BIN, &all, &[]);
    App {
        _running: running,
        authority,
    }
}

fn memory_app() -> App {
    start(&["--store", "memory"])
}

impl App {
    async fn send(&self, request: Request) -> (u16, Response, Vec<u8>) {
        let mut response = request.send(&self.authority).await.unwrap();
        let status = response.status();
        let body = if status == 200 && response.header("content-type") == Some("text/event-stream")
        {
            Vec::new()
        } else {
            response.read_to_end(WAIT).await.unwrap().to_vec()
        };
        (status, response, body)
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = Request::new(method, path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let (status, _, body) = self.send(request).await;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        (status, value)
    }

    async fn login(&self, user: &str) -> String {
        let (status, response, _) = self
            .send(
                Request::new("POST", "/api/login")
                    .header("content-type", "application/json")
                    .body(json!({"user": user}).to_string()),
            )
            .await;
        assert_eq!(status, 204);
        response
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    async fn notify(&self, cookie: &str, body: Value) -> (u16, Value) {
        self.json("POST", "/api/notifications", Some(cookie), Some(body))
            .await
    }

    async fn stream(&self, cookie: &str, last_event_id: Option<&str>) -> Response {
        let mut request = Request::get("/api/notifications/stream").header("cookie", cookie);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut stream = request.send(&self.authority).await.unwrap();
        assert_eq!(stream.status(), 200);
        assert_eq!(
            stream.next_event(WAIT).await.unwrap().event_type,
            "connected"
        );
        stream
    }
}

/// The next event other than members' `presence` news.
async fn next_skipping_presence(stream: &mut Response) -> sse_conformance::parser::ParsedEvent {
    loop {
        let event = stream.next_event(WAIT).await.unwrap();
        if event.event_type != "presence" {
            return event;
        }
    }
}

fn data(event: &sse_conformance::parser::ParsedEvent) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn login_sets_a_session_cookie_and_validates_the_name() {
    let app = memory_app();
    let (status, response, _) = app
        .send(
            Request::new("POST", "/api/login")
                .header("content-type", "application/json")
                .body(r#"{"user":"alice"}"#),
        )
        .await;
    assert_eq!(status, 204);
    let cookie = response.header("set-cookie").unwrap();
    assert!(cookie.starts_with("sid="), "{cookie}");
    // As long as the server keeps the session (30 days); plain http: no
    // `Secure`.
    assert!(!cookie.contains("Secure"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    for bad in ["", "Alice", "a b", "ä", &"x".repeat(65), "../etc"] {
        let (status, body) = app
            .json("POST", "/api/login", None, Some(json!({"user": bad})))
            .await;
        assert_eq!(
            (status, &body["field"]),
            (400, &json!("user")),
            "{bad:?}: {body}"
        );
    }
    let (status, body) = app
        .json("POST", "/api/login", None, Some(json!({"name": "alice"})))
        .await;
    assert_eq!((status, &body["field"]), (400, &json!("user")), "{body}");
    assert!(body["error"].is_string());
    let (status, body) = app
        .json("POST", "/api/login", None, Some(json!({"user": 7})))
        .await;
    assert_eq!((status, &body["field"]), (400, &json!("user")), "{body}");
    let (status, _, body) = app
        .send(Request::new("POST", "/api/login").body(r#"{"user":"alice"}"#))
        .await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = app
        .send(
            Request::new("POST", "/api/login")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(status, 400);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
}

#[tokio::test]
async fn every_endpoint_needs_a_session() {
    let app = memory_app();
    for (method, path) in [
        ("GET", "/api/session"),
        ("GET", "/api/notifications"),
        ("GET", "/api/notifications/unread-count"),
        ("POST", "/api/notifications/1/read"),
        ("POST", "/api/notifications/read-all"),
        ("DELETE", "/api/notifications/1"),
        ("DELETE", "/api/notifications?read=true"),
    ] {
        let (status, body) = app.json(method, path, Some("sid=forged"), None).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    let (status, _) = app
        .notify("sid=forged", json!({"user": "bob", "title": "x"}))
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = app.send(Request::get("/api/notifications/stream")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn notifying_stores_returns_201_and_streams_the_created_event() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mut bobs_stream = app.stream(&bob, None).await;
    let (status, created) = app
        .notify(
            &alice,
            json!({"user": "bob", "title": "Build finished", "message": "main is green\nall good", "kind": "ci", "actionUrl": "/builds/1"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    for field in [
        "id",
        "user",
        "title",
        "message",
        "kind",
        "actionUrl",
        "read",
        "createdAt",
    ] {
        assert!(
            created.get(field).is_some(),
            "the notification lacks {field}: {created}"
        );
    }
    assert_eq!(
        (created["user"].as_str(), created["read"].as_bool()),
        (Some("bob"), Some(false))
    );

    let event = bobs_stream.next_event(WAIT).await.unwrap();
    assert_eq!(event.event_type, "notification");
    assert!(!event.last_event_id.is_empty());
    let payload = data(&event);
    assert_eq!(payload["type"], "created");
    assert_eq!(payload["notification"], created);
    assert_eq!(payload["unreadCount"], 1);

    let (status, count) = app
        .json("GET", "/api/notifications/unread-count", Some(&bob), None)
        .await;
    assert_eq!((status, count), (200, json!({"count": 1})));
    let (_, session) = app.json("GET", "/api/session", Some(&bob), None).await;
    assert_eq!(session, json!({"user": "bob", "org": null}));
}

impl App {
    async fn login_org(&self, user: &str, org: &str) -> String {
        let (status, response, _) = self
            .send(
                Request::new("POST", "/api/login")
                    .header("content-type", "application/json")
                    .body(json!({"user": user, "org": org}).to_string()),
            )
            .await;
        assert_eq!(status, 204);
        response
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn announcements_reach_the_orgs_members_live_and_on_replay_and_no_one_else() {
    let app = memory_app();
    let alice = app.login_org("alice", "acme").await;
    let bob = app.login_org("bob", "acme").await;
    let eve = app.login_org("eve", "globex").await;
    let (status, session) = app.json("GET", "/api/session", Some(&bob), None).await;
    assert_eq!(
        (status, session),
        (200, json!({"user": "bob", "org": "acme"}))
    );

    let mut bob_live = app.stream(&bob, None).await;
    let mut eve_live = app.stream(&eve, None).await;
    // Carol, also of acme, is offline: her last event was the `connected`
    // of a stream she has since closed.
    let carol = app.login_org("carol", "acme").await;
    let mut carol_before = app
        .send(Request::get("/api/notifications/stream").header("cookie", &carol))
        .await
        .1;
    let connected = carol_before.next_event(WAIT).await.unwrap();
    drop(carol_before);

    let (status, announcement) = app
        .json(
            "POST",
            "/api/announcements",
            Some(&alice),
            Some(json!({"title": "Office closed Friday", "message": "Enjoy the long weekend"})),
        )
        .await;
    assert_eq!(status, 201, "{announcement}");
    for field in ["id", "org", "title", "message", "createdAt", "from"] {
        assert!(
            announcement.get(field).is_some(),
            "{announcement} lacks {field}"
        );
    }
    assert_eq!(announcement["org"], "acme");
    assert_eq!(announcement["from"], "alice");

    let live = next_skipping_presence(&mut bob_live).await;
    assert_eq!(live.event_type, "announcement");
    assert_eq!(data(&live), announcement);

    let mut carol_back = app.stream(&carol, Some(&connected.last_event_id)).await;
    let replayed = next_skipping_presence(&mut carol_back).await;
    assert_eq!(replayed.event_type, "announcement");
    assert_eq!(data(&replayed), announcement);

    // Eve (another org) gets nothing: the next thing she sees is her own.
    app.notify(&eve, json!({"user": "eve", "title": "marker"}))
        .await;
    let next = next_skipping_presence(&mut eve_live).await;
    assert_eq!(next.event_type, "notification");

    // Announcing needs an org; the title is validated.
    let loner = app.login("loner").await;
    let (status, _) = app
        .json(
            "POST",
            "/api/announcements",
            Some(&loner),
            Some(json!({"title": "hi"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .json(
            "POST",
            "/api/announcements",
            Some(&alice),
            Some(json!({"title": ""})),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("title")));
    let (status, body) = app
        .json(
            "POST",
            "/api/login",
            None,
            Some(json!({"user": "x", "org": "Bad Org"})),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("org")));
}

#[tokio::test]
async fn presence_says_who_is_online_and_members_hear_joins_and_leaves() {
    let app = memory_app();
    let dana = app.login_org("dana", "acme").await;
    let erin = app.login_org("erin", "acme").await;
    let frank = app.login_org("frank", "globex").await;
    let presence = |user: &str| {
        let path = format!("/api/presence?user={user}");
        let app = &app;
        let dana = dana.clone();
        async move { app.json("GET", &path, Some(&dana), None).await }
    };
    assert_eq!(
        presence("erin").await,
        (200, json!({"user": "erin", "online": false, "streams": 0}))
    );
    let mut dana_live = app.stream(&dana, None).await;
    let own = dana_live.next_event(WAIT).await.unwrap();
    assert_eq!(
        (own.event_type.as_str(), data(&own)),
        ("presence", json!({"user": "dana", "online": true}))
    );
    let mut frank_live = app.stream(&frank, None).await;

    // Erin opens two tabs: one join for her org, and the count says two.
    let first = app.stream(&erin, None).await;
    let second = app.stream(&erin, None).await;
    let joined = dana_live.next_event(WAIT).await.unwrap();
    assert_eq!(
        (joined.event_type.as_str(), data(&joined)),
        ("presence", json!({"user": "erin", "online": true}))
    );
    assert_eq!(
        presence("erin").await,
        (200, json!({"user": "erin", "online": true, "streams": 2}))
    );
    // Who of acme is online, with their streams; only acme's members ask.
    let members = app
        .json("GET", "/api/presence?org=acme", Some(&erin), None)
        .await;
    assert_eq!(
        members,
        (
            200,
            json!([{"user": "dana", "streams": 1}, {"user": "erin", "streams": 2}])
        )
    );
    let (status, body) = app
        .json("GET", "/api/presence?org=acme", Some(&frank), None)
        .await;
    assert_eq!(status, 404, "{body}");
    for bad in [
        "/api/presence?org=Bad%20Org",
        "/api/presence",
        "/api/presence?org=acme&user=erin",
    ] {
        let (status, body) = app.json("GET", bad, Some(&dana), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    drop(first);
    drop(second);
    let left = dana_live.next_event(WAIT).await.unwrap();
    assert_eq!(
        (left.event_type.as_str(), data(&left)),
        ("presence", json!({"user": "erin", "online": false}))
    );
    assert_eq!(presence("erin").await.1["online"], false);
    let members = app
        .json("GET", "/api/presence?org=acme", Some(&dana), None)
        .await;
    assert_eq!(members, (200, json!([{"user": "dana", "streams": 1}])));
    // Another org hears nothing of acme's members.
    let heard = frank_live.next_event(Duration::from_millis(300)).await;
    assert!(
        heard.as_ref().map_or(true, |e| data(e)["user"] == "frank"),
        "frank heard {heard:?}"
    );

    let (status, body) = app
        .json(
            "GET",
            "/api/presence?user=Not%20A%20Name",
            Some(&dana),
            None,
        )
        .await;
    assert_eq!((status, &body["field"]), (400, &json!("user")));
    let (status, _) = app.json("GET", "/api/presence?user=erin", None, None).await;
    assert_eq!(status, 401);
    // Presence is told only within an org: frank (globex) is online, but
    // dana (acme) learns nothing about him, the same as about a name
    // nobody uses; he learns nothing about acme's members; about herself,
    // anyone may ask.
    for (asker, about) in [(&dana, "frank"), (&dana, "nobody"), (&frank, "dana")] {
        let path = format!("/api/presence?user={about}");
        let (status, body) = app.json("GET", &path, Some(asker), None).await;
        assert_eq!(status, 404, "{about}: {body}");
        assert!(!body.to_string().contains("online"), "{body}");
    }
    let (status, body) = app
        .json("GET", "/api/presence?user=frank", Some(&frank), None)
        .await;
    assert_eq!((status, &body["online"]), (200, &json!(true)), "{body}");
    // Without an org, only yourself.
    let loner = app.login("loner").await;
    let (status, _) = app
        .json("GET", "/api/presence?user=dana", Some(&loner), None)
        .await;
    assert_eq!(status, 404);
    drop(frank_live);
}

#[tokio::test]
async fn notification_data_is_json_in_the_list_and_the_stream() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let mut stream = app.stream(&alice, None).await;
    let sent = json!({"invoice": 42, "lines": [{"sku": "a", "qty": 2}], "note": "x\ny"});
    let (status, created) = app
        .notify(
            &alice,
            json!({"user": "alice", "title": "Invoice paid", "data": sent}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // The app adds who sent it.
    let mut attached = sent.clone();
    attached["from"] = json!("alice");
    assert_eq!(created["data"], attached);
    let event = stream.next_event(WAIT).await.unwrap();
    assert_eq!(data(&event)["notification"]["data"], attached);
    let (_, list) = app
        .json("GET", "/api/notifications", Some(&alice), None)
        .await;
    assert_eq!(list["items"][0]["data"], attached);
    let (status, body) = app
        .notify(
            &alice,
            json!({"user": "alice", "title": "x", "data": "not an object"}),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("data")));
}

/// A notification says who sent it, and the sender cannot say otherwise.
#[tokio::test]
async fn notifications_carry_their_sender() {
    let app = memory_app();
    let mallory = app.login("mallory").await;
    let bob = app.login("bob").await;
    let (status, created) = app
        .notify(
            &mallory,
            json!({"user": "bob", "title": "Your bank", "data": {"from": "bank"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["from"], "mallory");
    let (_, list) = app
        .json("GET", "/api/notifications", Some(&bob), None)
        .await;
    assert_eq!(list["items"][0]["data"]["from"], "mallory");
}

#[tokio::test]
async fn invalid_notifications_get_400_naming_the_field() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let cases = [
        (json!({"user": "bob"}), Some("title")),
        (json!({"title": "x"}), Some("user")),
        (json!({"user": "bob", "title": 5}), Some("title")),
        (
            json!({"user": "bob", "title": "x", "kind": ["a"]}),
            Some("kind"),
        ),
        (
            json!({"user": "bob", "title": "x", "surprise": 1}),
            Some("surprise"),
        ),
        (json!({"user": "Bob!", "title": "x"}), Some("user")),
        (json!({"user": "bob", "title": ""}), Some("title")),
        (
            json!({"user": "bob", "title": "x".repeat(201)}),
            Some("title"),
        ),
        (
            json!({"user": "bob", "title": "x", "message": "m".repeat(2001)}),
            Some("message"),
        ),
        (
            json!({"user": "bob", "title": "x", "kind": ""}),
            Some("kind"),
        ),
        (
            json!({"user": "bob", "title": "x", "actionUrl": "javascript:alert(1)"}),
            Some("actionUrl"),
        ),
        (
            json!({"user": "bob", "title": "x", "actionUrl": "//evil.example"}),
            Some("actionUrl"),
        ),
        (
            json!({"user": "bob", "title": "x", "actionUrl": "/\\evil.example"}),
            Some("actionUrl"),
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app.notify(&alice, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
        if let Some(field) = field {
            assert_eq!(
                (status, answer["field"].as_str()),
                (400, Some(field)),
                "{body}: {answer}"
            );
        }
    }
    let (_, count) = app
        .json(
            "GET",
            "/api/notifications/unread-count",
            Some(&app.login("bob").await),
            None,
        )
        .await;
    assert_eq!(count["count"], 0, "an invalid notification was stored");
}

#[tokio::test]
async fn listing_pages_newest_first() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let (_, created) = app
            .notify(&alice, json!({"user": "alice", "title": format!("n{i}")}))
            .await;
        ids.push(created["id"].as_u64().unwrap());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/notifications?limit=10".to_owned();
    loop {
        let (status, page) = app.json("GET", &path, Some(&alice), None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_u64().unwrap()),
        );
        match page["nextBefore"].as_u64() {
            Some(before) => path = format!("/api/notifications?limit=10&before={before}"),
            None => {
                assert!(page["nextBefore"].is_null());
                break;
            }
        }
    }
    assert_eq!(seen, ids);
    let (status, answer) = app
        .json("GET", "/api/notifications?limit=abc", Some(&alice), None)
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].is_string());
}

#[tokio::test]
async fn read_and_delete_work_on_own_notifications_and_404_on_others() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mut alices_stream = app.stream(&alice, None).await;
    let notify = |title: &'static str| {
        let (app, alice) = (&app, alice.clone());
        async move {
            app.notify(&alice, json!({"user": "alice", "title": title}))
                .await
                .1["id"]
                .as_u64()
                .unwrap()
        }
    };
    let (a, b, c) = (notify("a").await, notify("b").await, notify("c").await);
    for _ in 0..3 {
        alices_stream.next_event(WAIT).await.unwrap();
    }

    assert_eq!(
        app.json(
            "POST",
            &format!("/api/notifications/{a}/read"),
            Some(&bob),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.json(
            "DELETE",
            &format!("/api/notifications/{a}"),
            Some(&bob),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.json("POST", "/api/notifications/999999/read", Some(&alice), None)
            .await
            .0,
        404
    );
    assert_eq!(
        app.json("POST", "/api/notifications/abc/read", Some(&alice), None)
            .await
            .0,
        404
    );

    assert_eq!(
        app.json(
            "POST",
            &format!("/api/notifications/{a}/read"),
            Some(&alice),
            None
        )
        .await
        .0,
        204
    );
    let read = data(&alices_stream.next_event(WAIT).await.unwrap());
    assert_eq!(read, json!({"type": "read", "ids": [a], "unreadCount": 2}));

    assert_eq!(
        app.json("POST", "/api/notifications/read-all", Some(&alice), None)
            .await
            .0,
        204
    );
    let all = data(&alices_stream.next_event(WAIT).await.unwrap());
    assert_eq!(
        all,
        json!({"type": "read", "ids": [b, c], "unreadCount": 0})
    );

    assert_eq!(
        app.json(
            "DELETE",
            &format!("/api/notifications/{c}"),
            Some(&alice),
            None
        )
        .await
        .0,
        204
    );
    let deleted = data(&alices_stream.next_event(WAIT).await.unwrap());
    assert_eq!(
        deleted,
        json!({"type": "deleted", "ids": [c], "unreadCount": 0})
    );

    let (status, answer) = app
        .json("DELETE", "/api/notifications", Some(&alice), None)
        .await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("read")));
    assert_eq!(
        app.json("DELETE", "/api/notifications?read=true", Some(&alice), None)
            .await
            .0,
        204
    );
    let bulk = data(&alices_stream.next_event(WAIT).await.unwrap());
    assert_eq!(
        bulk,
        json!({"type": "deleted", "ids": [a, b], "unreadCount": 0})
    );
    let (_, page) = app
        .json("GET", "/api/notifications", Some(&alice), None)
        .await;
    assert_eq!(page, json!({"items": [], "nextBefore": null}));
}

#[tokio::test]
async fn logout_ends_that_sessions_streams_only() {
    let app = memory_app();
    let first = app.login("alice").await;
    let second = app.login("alice").await;
    let mut first_stream = app.stream(&first, None).await;
    let mut second_stream = app.stream(&second, None).await;
    let (status, response, _) = app
        .send(Request::new("POST", "/api/logout").header("cookie", &first))
        .await;
    assert_eq!(status, 204);
    assert!(response.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(
        first_stream.wait_for_end(WAIT).await.unwrap(),
        "the logged-out session's stream stayed open"
    );
    assert_eq!(
        app.json("GET", "/api/session", Some(&first), None).await.0,
        401
    );
    app.notify(&second, json!({"user": "alice", "title": "still here"}))
        .await;
    assert!(
        second_stream
            .next_event(WAIT)
            .await
            .unwrap()
            .data
            .contains("still here")
    );
}

/// Logging out clears the cookie whatever it held; logging in again ends
/// the session the request presented (and its streams).
#[tokio::test]
async fn logout_always_clears_the_cookie_and_login_rotates_the_session() {
    let app = memory_app();
    let (status, response, _) = app
        .send(Request::new("POST", "/api/logout").header("cookie", "sid=forged"))
        .await;
    assert_eq!(status, 204);
    let cleared = response.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, response, _) = app.send(Request::new("POST", "/api/logout")).await;
    assert_eq!(status, 204);
    assert!(response.header("set-cookie").unwrap().contains("Max-Age=0"));

    let old = app.login("alice").await;
    let mut old_stream = app.stream(&old, None).await;
    let (status, response, _) = app
        .send(
            Request::new("POST", "/api/login")
                .header("content-type", "application/json")
                .header("cookie", &old)
                .body(json!({"user": "alice"}).to_string()),
        )
        .await;
    assert_eq!(status, 204);
    let fresh = response
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, old);
    assert_eq!(
        app.json("GET", "/api/session", Some(&old), None).await.0,
        401
    );
    assert_eq!(
        app.json("GET", "/api/session", Some(&fresh), None).await.0,
        200
    );
    assert!(
        old_stream.wait_for_end(WAIT).await.unwrap(),
        "the replaced session's stream stayed open"
    );
    // A tossed cookie next to the real one does not shadow it.
    let both = format!("sid=tossed; {fresh}");
    assert_eq!(
        app.json("GET", "/api/session", Some(&both), None).await.0,
        200
    );
}

/// One address cannot mint sessions without bound.
#[tokio::test]
async fn logins_are_rate_limited_per_address() {
    let app = start(&["--store", "memory", "--login-rate", "3"]);
    for k in 0..3 {
        app.login(&format!("user{k}")).await;
    }
    let (status, response, body) = app
        .send(
            Request::new("POST", "/api/login")
                .header("content-type", "application/json")
                .body(json!({"user": "user9"}).to_string()),
        )
        .await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many logins"));
    // Everything but logging in goes on.
    let cookie = format!("sid={}", "x");
    assert_eq!(
        app.json("GET", "/api/session", Some(&cookie), None).await.0,
        401
    );
}

/// Over https the cookie is `__Host-sid; Secure` (a sibling subdomain can
/// neither set nor shadow it) and streams and the API read it.
#[tokio::test]
async fn an_https_origin_gets_a_host_prefixed_secure_cookie() {
    let app = start(&["--store", "memory", "--origin", "https://app.example"]);
    let (status, response, _) = app
        .send(
            Request::new("POST", "/api/login")
                .header("content-type", "application/json")
                .header("origin", "https://app.example")
                .body(json!({"user": "alice"}).to_string()),
        )
        .await;
    assert_eq!(status, 204);
    let set = response.header("set-cookie").unwrap();
    assert!(set.starts_with("__Host-sid="), "{set}");
    for attribute in [
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=2592000",
    ] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(
        app.json("GET", "/api/session", Some(&cookie), None).await.0,
        200
    );
    // The plain name is not the session cookie here.
    let plain = cookie.replacen("__Host-sid", "sid", 1);
    assert_eq!(
        app.json("GET", "/api/session", Some(&plain), None).await.0,
        401
    );
    let mut stream = app.stream(&cookie, None).await;
    drop(stream.next_event(Duration::from_millis(10)).await);
}

/// `--require-origin`: a cookie-carrying write must say where it comes
/// from; browsers always do, so the page keeps working.
#[tokio::test]
async fn require_origin_refuses_cookie_writes_that_say_nothing() {
    let app = start(&["--store", "memory", "--require-origin"]);
    let alice = app.login("alice").await;
    let write = || Request::new("POST", "/api/notifications/read-all").header("cookie", &alice);
    let (status, _, body) = app.send(write()).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Origin"));
    let own = format!("http://{}", app.authority);
    assert_eq!(app.send(write().header("origin", &own)).await.0, 204);
    assert_eq!(
        app.send(write().header("sec-fetch-site", "same-origin"))
            .await
            .0,
        204
    );
    for site in ["cross-site", "same-site", "none"] {
        assert_eq!(
            app.send(write().header("sec-fetch-site", site)).await.0,
            403,
            "{site}"
        );
    }
}

/// With no `--origin`, on loopback: a request naming another host (a page
/// whose name was rebound to 127.0.0.1) is refused, stream included.
#[tokio::test]
async fn other_host_names_are_refused_on_loopback() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let port = app.authority.rsplit_once(':').unwrap().1.to_owned();
    for host in [format!("evil.example:{port}"), "evil.example".to_owned()] {
        for request in [
            Request::get("/").header("host", &host),
            Request::get("/api/notifications/stream")
                .header("cookie", &alice)
                .header("host", &host),
            Request::new("POST", "/api/notifications/read-all")
                .header("cookie", &alice)
                .header("host", &host)
                .header("origin", format!("http://{host}")),
        ] {
            assert_eq!(app.send(request).await.0, 400, "{host}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, _, _) = app.send(Request::get("/").header("host", &host)).await;
        assert_eq!(status, 200, "{host}");
    }
}

/// Store and hub URLs are printed without their passwords.
#[tokio::test]
async fn startup_never_prints_a_password() {
    let url = fresh_postgres_url("redacted").await;
    // Trust authentication ignores the password; the URL still holds it.
    let with_password = url.replacen("postgres@", "postgres:hunter2secret@", 1);
    assert_ne!(with_password, url, "{url}");
    let (_running, _, told) = support::start_telling(
        BIN,
        &["--addr", "127.0.0.1:0", "--store", &with_password],
        &[],
    );
    assert!(!told.contains("hunter2secret"), "{told}");
    assert!(told.contains("postgres:***@"), "{told}");
}

#[tokio::test]
async fn a_junk_last_event_id_gets_a_reset() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let mut stream = app.stream(&alice, Some("not-an-id")).await;
    let reset = stream.next_event(WAIT).await.unwrap();
    assert_eq!(reset.event_type, "reset");
}

#[tokio::test]
async fn cross_origin_writes_are_refused() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let write = |origins: &[&str]| {
        let mut request =
            Request::new("POST", "/api/notifications/read-all").header("cookie", &alice);
        for origin in origins {
            request = request.header("origin", *origin);
        }
        request
    };
    let own = format!("http://{}", app.authority);
    let (host, port) = app.authority.rsplit_once(':').unwrap();
    for origins in [
        vec!["https://evil.example".to_owned()],
        // The same host over another scheme, or another port.
        vec![format!("https://{}", app.authority)],
        vec![format!(
            "http://{host}:{}",
            port.parse::<u16>().unwrap() + 1
        )],
        vec!["null".to_owned()],
        // Two Origin headers, whatever they say.
        vec![own.clone(), own.clone()],
        vec![own.clone(), "https://evil.example".to_owned()],
    ] {
        let list: Vec<&str> = origins.iter().map(String::as_str).collect();
        let (status, _, body) = app.send(write(&list)).await;
        assert_eq!(
            status,
            403,
            "{origins:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    for origin in [
        own.clone(),
        own.to_uppercase().replace("HTTP://", "http://"),
    ] {
        assert_eq!(app.send(write(&[&origin])).await.0, 204, "{origin}");
    }
    // Without Origin (not a browser, or a same-origin request that omits it).
    assert_eq!(app.send(write(&[])).await.0, 204);
    // Streams too, with no --origin given: another site cannot open one.
    let stream = |origin: &str| {
        Request::get("/api/notifications/stream")
            .header("cookie", &alice)
            .header("origin", origin)
    };
    assert_eq!(app.send(stream("http://evil.example")).await.0, 403);
    assert_eq!(app.send(stream(&own)).await.0, 200);
}

#[tokio::test]
async fn configured_origins_bound_writes_and_streams() {
    let app = start(&["--store", "memory", "--origin", "https://app.example"]);
    let alice = app.login("alice").await;
    let write = |origin: &str| {
        Request::new("POST", "/api/notifications/read-all")
            .header("cookie", &alice)
            .header("origin", origin)
    };
    assert_eq!(app.send(write("https://app.example")).await.0, 204);
    assert_eq!(
        app.send(write(&format!("http://{}", app.authority)))
            .await
            .0,
        403
    );
    let stream = |origin: &str| {
        Request::get("/api/notifications/stream")
            .header("cookie", &alice)
            .header("origin", origin)
    };
    assert_eq!(app.send(stream("https://evil.example")).await.0, 403);
    assert_eq!(app.send(stream("http://app.example")).await.0, 403);
    assert_eq!(app.send(stream("https://APP.example")).await.0, 200);
}

#[tokio::test]
async fn the_page_and_api_carry_security_headers() {
    let app = memory_app();
    for path in ["/", "/app.js", "/api/notifications/unread-count"] {
        let (_, response, _) = app.send(Request::get(path)).await;
        let csp = response
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp:?}");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp:?}");
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_operator_broadcast_reaches_every_user_live_and_on_replay() {
    const TOKEN: &str = "operator-token-0123";
    let off = memory_app();
    let body = json!({"title": "Maintenance at 22:00"});
    let (status, _) = off
        .json("POST", "/api/broadcasts", None, Some(body.clone()))
        .await;
    assert_eq!(status, 404, "broadcasts are off without --admin-token");

    let app = start(&["--store", "memory", "--admin-token", TOKEN]);
    let alice = app.login("alice").await;
    let bob = app.login_org("bob", "acme").await;
    let mut alice_live = app.stream(&alice, None).await;
    // Bob's stream closed after its `connected`: he replays what he missed.
    let mut bob_before = app
        .send(Request::get("/api/notifications/stream").header("cookie", &bob))
        .await
        .1;
    let connected = bob_before.next_event(WAIT).await.unwrap();
    drop(bob_before);

    let post = |authorization: Option<String>| {
        let mut request = Request::new("POST", "/api/broadcasts")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request
    };
    assert_eq!(app.send(post(None)).await.0, 401);
    assert_eq!(app.send(post(Some("Bearer wrong".into()))).await.0, 401);
    // A session is not an operator.
    let as_alice = post(None).header("cookie", &alice);
    assert_eq!(app.send(as_alice).await.0, 401);
    let (status, _, sent) = app.send(post(Some(format!("Bearer {TOKEN}")))).await;
    assert_eq!(status, 201);
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["title"], "Maintenance at 22:00");

    let live = next_skipping_presence(&mut alice_live).await;
    assert_eq!(
        (live.event_type.as_str(), data(&live)),
        ("broadcast", sent.clone())
    );
    let mut bob_back = app.stream(&bob, Some(&connected.last_event_id)).await;
    let replayed = next_skipping_presence(&mut bob_back).await;
    assert_eq!(
        (replayed.event_type.as_str(), data(&replayed)),
        ("broadcast", sent)
    );

    let bad = Request::new("POST", "/api/broadcasts")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(json!({"title": " "}).to_string());
    let (status, _, body) = app.send(bad).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["field"].as_str()), (400, Some("title")));
}

#[tokio::test]
async fn metrics_access_is_configurable() {
    let off = start(&["--store", "memory", "--metrics", "off"]);
    assert_eq!(off.send(Request::get("/metrics")).await.0, 404);
    let guarded = start(&[
        "--store",
        "memory",
        "--metrics",
        "bearer:s3cret-s3cret-s3cret",
    ]);
    assert_eq!(guarded.send(Request::get("/metrics")).await.0, 401);
    let wrong = Request::get("/metrics").header("authorization", "Bearer nope");
    assert_eq!(guarded.send(wrong).await.0, 401);
    let right = Request::get("/metrics").header("authorization", "Bearer s3cret-s3cret-s3cret");
    let (status, _, body) = guarded.send(right).await;
    assert_eq!(status, 200);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("sse_active_connections")
    );
}

#[tokio::test]
async fn a_huge_body_gets_413() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let body = format!(
        r#"{{"user":"bob","title":"x","message":"{}"}}"#,
        "y".repeat(10 * 1024 * 1024)
    );
    let (status, _, _) = app
        .send(
            Request::new("POST", "/api/notifications")
                .header("cookie", &alice)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn metrics_healthz_and_the_page_are_served() {
    let app = memory_app();
    let alice = app.login("alice").await;
    let _stream = app.stream(&alice, None).await;
    let (status, response, body) = app.send(Request::get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    for metric in [
        "sse_active_connections 1",
        "sse_connects_total 1",
        "sse_disconnects_total{cause=\"client_gone\"}",
        "sse_published_total",
        "sse_auth_failures_total",
        "# TYPE sse_stream_duration_seconds histogram",
    ] {
        assert!(text.contains(metric), "/metrics lacks {metric}:\n{text}");
    }
    // A closed stream's duration lands in the histogram's buckets (the
    // exporter drains histograms at its upkeep, every 5 s).
    let short = app.stream(&alice, None).await;
    drop(short);
    let mut counted = String::new();
    for _ in 0..100 {
        let (_, _, body) = app.send(Request::get("/metrics")).await;
        counted = String::from_utf8(body).unwrap();
        if counted.contains("sse_stream_duration_seconds_count 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        counted.contains("sse_stream_duration_seconds_count 1"),
        "no stream duration recorded:\n{counted}"
    );
    assert_eq!(app.send(Request::get("/healthz")).await.2, b"ok\n");
    let (status, response, page) = app.send(Request::get("/")).await;
    assert_eq!(status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        String::from_utf8(page)
            .unwrap()
            .contains("<script type=\"module\" src=\"/app.js\">")
    );
    let (status, response, _) = app.send(Request::get("/app.js")).await;
    assert_eq!(
        (status, response.header("content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
}

#[test]
fn help_documents_every_flag_and_bad_flags_exit_2() {
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--addr",
        "SSE_ADDR",
        "--heartbeat-secs",
        "SSE_HEARTBEAT_SECS",
        "--store",
        "SSE_STORE",
        "--hub",
        "SSE_HUB",
        "--max-connections-per-user",
        "--admin-token",
        "SSE_ADMIN_TOKEN",
        "--hub-prefix",
        "SSE_HUB_PREFIX",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let bad = std::process::Command::new(BIN)
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let bad = std::process::Command::new(BIN)
        .args(["--heartbeat-secs", "-1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn with_the_default_sqlite_store_notifications_and_sessions_survive_a_restart() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("notifications-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("notifications.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // The default store is sqlite://notifications.db in the working directory.
    let start_in_dir = || {
        let (running, authority) = {
            let mut child = std::process::Command::new(BIN)
                .args(["--addr", "127.0.0.1:0", "--heartbeat-secs", "0.2"])
                .current_dir(&dir)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            assert!(line.contains("store sqlite://notifications.db"), "{line}");
            let authority = line
                .split("http://")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned();
            (support::Running(child), authority)
        };
        App {
            _running: running,
            authority,
        }
    };

    let app = start_in_dir();
    let alice = app.login("alice").await;
    for i in 0..3 {
        app.notify(
            &alice,
            json!({"user": "alice", "title": format!("before restart {i}")}),
        )
        .await;
    }
    let mut stream = app.stream(&alice, None).await;
    app.notify(&alice, json!({"user": "alice", "title": "seen live"}))
        .await;
    let seen = stream.next_event(WAIT).await.unwrap();
    drop(stream);
    drop(app); // SIGKILL: no graceful shutdown

    let app = start_in_dir();
    // The session survived too: same cookie, no new login.
    let (status, page) = app
        .json("GET", "/api/notifications", Some(&alice), None)
        .await;
    assert_eq!(
        status, 200,
        "the session did not survive the restart: {page}"
    );
    let titles: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        titles,
        [
            "seen live",
            "before restart 2",
            "before restart 1",
            "before restart 0"
        ]
    );
    app.notify(&alice, json!({"user": "alice", "title": "after restart"}))
        .await;
    let mut resumed = app.stream(&alice, Some(&seen.last_event_id)).await;
    let replayed = resumed.next_event(WAIT).await.unwrap();
    assert_eq!(data(&replayed)["notification"]["title"], "after restart");
}

/// Two instances of the app sharing Redis (hub, store and sessions): log in
/// on one, receive what is sent through the other.
#[tokio::test]
async fn two_instances_on_redis_serve_the_same_users() {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let a = start(&["--store", &redis, "--hub", &redis]);
    let b = start(&["--store", &redis, "--hub", &redis]);
    let user = format!("multi-{}", std::process::id());
    let on_a = a.login(&user).await;
    let mut stream = a.stream(&on_a, None).await;
    // The session made on A is valid on B.
    let (status, created) = b
        .notify(&on_a, json!({"user": user, "title": "through node b"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let event = stream.next_event(WAIT).await.unwrap();
    assert_eq!(data(&event)["notification"]["title"], "through node b");
    let (_, count) = b
        .json("GET", "/api/notifications/unread-count", Some(&on_a), None)
        .await;
    assert!(count["count"].as_u64().unwrap() >= 1);
}

/// A fresh PostgreSQL database for one test, on `DATABASE_URL`'s server.
async fn fresh_postgres_url(name: &str) -> String {
    sqlx::any::install_default_drivers();
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let database = format!("sse_example_{name}");
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required: {e}"));
    for statement in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let slash = admin.rfind('/').unwrap();
    format!("{}/{database}", &admin[..slash])
}

/// Two instances on PostgreSQL alone (hub over LISTEN/NOTIFY, store and
/// sessions): log in on one, receive what is sent through the other, and
/// see the other's streams in presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_serve_the_same_users() {
    let cluster = redis_support::RedisCluster::start().await;
    // The hub gets every seed; the store one, and finds the cluster.
    let (seeds, seed) = (cluster.urls(), cluster.seed());
    let a = start(&["--store", &seed, "--hub", &seeds]);
    let b = start(&["--store", &seed, "--hub", &seeds]);
    let on_a = a.login("alice").await;
    let mut stream = b.stream(&on_a, None).await;
    let (status, created) = a
        .notify(
            &on_a,
            json!({"user": "alice", "title": "across the cluster"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let event = next_skipping_presence(&mut stream).await;
    assert_eq!(data(&event)["notification"]["title"], "across the cluster");
    let (_, count) = b
        .json("GET", "/api/notifications/unread-count", Some(&on_a), None)
        .await;
    assert_eq!(count["count"], 1);
}

#[tokio::test]
async fn two_instances_on_postgres_alone_serve_the_same_users() {
    let url = fresh_postgres_url("two_nodes").await;
    let a = start(&["--store", &url, "--hub", &url]);
    let b = start(&["--store", &url, "--hub", &url]);
    let on_a = a.login("pg-alice").await;
    let mut stream = a.stream(&on_a, None).await;
    let (status, created) = b
        .notify(
            &on_a,
            json!({"user": "pg-alice", "title": "through node b"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let event = stream.next_event(WAIT).await.unwrap();
    assert_eq!(data(&event)["notification"]["title"], "through node b");
    // Node B counts the stream open on node A (within its presence flush).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, presence) = b
            .json("GET", "/api/presence?user=pg-alice", Some(&on_a), None)
            .await;
        assert_eq!(status, 200, "{presence}");
        if presence["streams"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{presence}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances sharing NATS for the hub and PostgreSQL for the store.
#[tokio::test]
async fn two_instances_on_nats_serve_the_same_users() {
    let url = fresh_postgres_url("nats_nodes").await;
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let a = start(&["--store", &url, "--hub", &nats]);
    let b = start(&["--store", &url, "--hub", &nats]);
    let on_a = a.login("nats-alice").await;
    let mut stream = a.stream(&on_a, None).await;
    let (status, created) = b
        .notify(
            &on_a,
            json!({"user": "nats-alice", "title": "through node b"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let event = stream.next_event(WAIT).await.unwrap();
    assert_eq!(data(&event)["notification"]["title"], "through node b");
}
