//! The black-box checker passes against both minimal examples, started as
//! binaries, with every check run (none skipped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sse_conformance::Outcome;
use sse_conformance::check::{self, HttpPublish, Target};

async fn passes(binary: &str) {
    let (_server, authority) = support::start(binary, &[], &[("HEARTBEAT_MS", "300")]);
    let alice = support::login(&authority, "alice").await;
    let bob = support::login(&authority, "bob").await;
    let mut target = Target::new(&authority, "/events");
    target.credentials = vec![("cookie".into(), alice.clone())];
    target.other_credentials = Some(vec![("cookie".into(), bob)]);
    let publish = |user: &str| HttpPublish {
        method: "POST".into(),
        path: "/notify".into(),
        headers: vec![
            ("cookie".into(), alice.clone()),
            ("content-type".into(), "application/json".into()),
        ],
        body: format!(r#"{{"user":"{user}","title":"{{token}}"}}"#),
    };
    target.publish = Some(check::http_publisher(
        &authority,
        publish("alice"),
        Some(publish("bob")),
    ));
    let report = check::run(&target).await;
    println!("{binary}:\n{report}");
    assert!(
        report.checks.iter().all(|c| c.outcome == Outcome::Pass),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_passes_against_minimal_axum() {
    passes(env!("CARGO_BIN_EXE_minimal-axum")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_passes_against_minimal_warp() {
    passes(env!("CARGO_BIN_EXE_minimal-warp")).await;
}
