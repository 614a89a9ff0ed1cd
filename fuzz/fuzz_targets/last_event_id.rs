//! The connect path with arbitrary `Last-Event-ID` header bytes, query
//! string and cookie: it answers with a status (never panics), and a
//! stream's first event is `connected`.
#![no_main]

use std::sync::LazyLock;

use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use sse_core::{CookieSessionAuthenticator, Cursor, InMemorySessions, Principal};
use sse_tower::SseService;
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
});

static SERVICE: LazyLock<SseService> = LazyLock::new(|| {
    let sessions = InMemorySessions::new();
    sessions.insert("ok", Principal::new("alice"));
    SseService::builder(CookieSessionAuthenticator::new("sid", sessions)).build()
});

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    last_event_id: Option<Vec<u8>>,
    query: String,
    cookie: Vec<u8>,
    authenticated: bool,
    method: u8,
}

fuzz_target!(|input: Input| {
    // The pure pieces first.
    if let Some(value) = &input.last_event_id {
        let _ = Cursor::parse_header(value);
    }
    let _ = sse_core::query::param(&input.query, "lastEventId");

    let uri = format!("/events?{}", input.query);
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return;
    };
    let method = [http::Method::GET, http::Method::POST, http::Method::HEAD]
        [input.method as usize % 3]
        .clone();
    let mut request = http::Request::builder().method(method.clone()).uri(uri);
    if input.authenticated {
        request = request.header("cookie", "sid=ok");
    } else if let Ok(value) = http::HeaderValue::from_bytes(&input.cookie) {
        request = request.header("cookie", value);
    }
    if let Some(value) = input
        .last_event_id
        .as_ref()
        .and_then(|v| http::HeaderValue::from_bytes(v).ok())
    {
        request = request.header("last-event-id", value);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    // 403 only for a `?topic=` the principal may not read. Asked of the
    // query the server sees: the URI drops a `#fragment`, which can turn
    // `topic#x` into `topic`.
    let asks_topic = request
        .uri()
        .query()
        .is_some_and(|query| sse_core::query::params(query, "topic").next().is_some());
    RUNTIME.block_on(async {
        let response = SERVICE
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status().as_u16();
        assert!(
            matches!(status, 200 | 401 | 405) || (status == 403 && asks_topic),
            "unexpected status {status}"
        );
        if status == 200 {
            let mut body = std::pin::pin!(response.into_body());
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            let text = String::from_utf8(first.to_vec()).unwrap();
            assert!(text.contains("event: connected\n"), "{text}");
        }
    });
});
