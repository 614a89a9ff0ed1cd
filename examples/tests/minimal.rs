//! The minimal examples, built and started as a user would, each deliver
//! an event to a logged-in client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use sse_conformance::client::Request;

async fn one_event_arrives(binary: &str) {
    let (_server, authority) = support::start(binary, &[], &[]);
    let cookie = support::login(&authority, "alice").await;

    let mut stream = Request::get("/events")
        .header("cookie", &cookie)
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream
            .next_event(Duration::from_secs(2))
            .await
            .unwrap()
            .event_type,
        "connected"
    );

    let mut notify = Request::new("POST", "/notify")
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(r#"{"user":"alice","title":"from the example"}"#)
        .send(&authority)
        .await
        .unwrap();
    assert_eq!(
        notify.status(),
        200,
        "{:?}",
        notify.read_to_end(Duration::from_secs(2)).await
    );
    let event = stream.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!(event.event_type, "notification");
    assert!(event.data.contains("from the example"));

    let unauthenticated = Request::get("/events").send(&authority).await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn minimal_axum_delivers_an_event() {
    one_event_arrives(env!("CARGO_BIN_EXE_minimal-axum")).await;
}

#[tokio::test]
async fn minimal_warp_delivers_an_event() {
    one_event_arrives(env!("CARGO_BIN_EXE_minimal-warp")).await;
}
