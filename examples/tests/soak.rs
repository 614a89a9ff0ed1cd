//! Churn soak against the real app on its default SQLite store: streams
//! opened and closed cleanly, aborted, held, fed junk, while notifications
//! keep being created. At the end: no stream or hub registration left,
//! memory back near the baseline, and every notification still replayable
//! from the cursor the run started at, once and in order.
//!
//! 30 s by default; `SOAK_SECS=300 scripts/soak` runs it for 5 minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sse_conformance::client::Request;
use support::Rng;
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_notifications");
const USERS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaks_nothing_and_loses_nothing() {
    let seconds: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite://{}", dir.join("soak.db").display());
    let (running, authority) = support::start(
        BIN,
        &[
            "--addr",
            "127.0.0.1:0",
            "--store",
            &store,
            "--heartbeat-secs",
            "0.5",
            "--max-connections-per-user",
            "64",
        ],
        &[],
    );
    let pid = running.0.id();
    let mut cookies = Vec::new();
    for u in 0..USERS {
        cookies.push(support::login_json(&authority, &format!("soak-{u}")).await);
    }
    let cookies = Arc::new(cookies);
    for cookie in cookies.iter().take(10) {
        drop(
            Request::get("/api/notifications/stream")
                .header("cookie", cookie)
                .send(&authority)
                .await
                .unwrap(),
        );
    }
    support::wait_for_streams(&authority, 0).await;
    let baseline = support::rss_kib(pid);
    // Where the log stands before the run: its `connected` event says.
    let start = {
        let mut stream = Request::get("/api/notifications/stream")
            .header("cookie", &cookies[0])
            .send(&authority)
            .await
            .unwrap();
        let connected = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(connected.event_type, "connected");
        connected.last_event_id
    };

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let running_flag = Arc::new(AtomicBool::new(true));

    // Notifications, round-robin over the users, about 40 a second.
    let publisher = {
        let (authority, cookies) = (authority.clone(), cookies.clone());
        tokio::spawn(async move {
            let mut created: HashMap<usize, usize> = HashMap::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let user = i % USERS;
                let body = json!({"user": format!("soak-{user}"), "title": format!("soak {i}")})
                    .to_string();
                let mut response = Request::new("POST", "/api/notifications")
                    .header("cookie", &cookies[(user + 1) % USERS])
                    .header("content-type", "application/json")
                    .body(body)
                    .send(&authority)
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    201,
                    "{:?}",
                    response.read_to_end(Duration::from_secs(2)).await
                );
                response.read_to_end(Duration::from_secs(2)).await.unwrap();
                *created.entry(user).or_default() += 1;
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            created
        })
    };

    // Churners: every way a stream can end.
    let mut churners = Vec::new();
    for worker in 0..8u64 {
        let (authority, cookies, running_flag) =
            (authority.clone(), cookies.clone(), running_flag.clone());
        churners.push(tokio::spawn(async move {
            let mut rng = Rng::new(worker + 1 + std::process::id() as u64);
            let mut cycles = 0u64;
            while Instant::now() < deadline && running_flag.load(Ordering::SeqCst) {
                let cookie = &cookies[rng.below(USERS as u64) as usize];
                let Ok(mut stream) = Request::get("/api/notifications/stream")
                    .header("cookie", cookie)
                    .send(&authority)
                    .await
                else {
                    continue;
                };
                assert_eq!(stream.status(), 200);
                match rng.below(5) {
                    0 => drop(stream),
                    1 => stream.abort(),
                    2 => {
                        for _ in 0..=rng.below(3) {
                            let _ = stream.next_item(Duration::from_millis(300)).await;
                        }
                        drop(stream);
                    }
                    3 => {
                        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
                        stream.abort();
                    }
                    _ => {
                        let _ = stream
                            .socket_mut()
                            .write_all(b"GET /junk HTTP/1.1\r\n\r\n\x00\xff")
                            .await;
                        drop(stream);
                    }
                }
                cycles += 1;
            }
            cycles
        }));
    }

    let created = publisher.await.unwrap();
    running_flag.store(false, Ordering::SeqCst);
    let mut cycles = 0;
    for churner in churners {
        cycles += churner.await.unwrap();
    }
    support::wait_for_streams(&authority, 0).await;
    let after = support::rss_kib(pid);
    let total: usize = created.values().sum();
    println!(
        "soak: {seconds} s, {cycles} stream cycles, {total} notifications; RSS {baseline} KiB -> {after} KiB"
    );
    assert!(
        cycles > seconds * 20,
        "only {cycles} churn cycles in {seconds} s"
    );
    assert!(
        after < baseline + 48 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );

    // Every notification is still replayable from where the run started,
    // once and in order (titles carry the publisher's sequence number).
    let position = |id: &str| -> u64 {
        id.rsplit_once('.')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("not a cursor: {id:?}"))
    };
    for (user, count) in created {
        let mut stream = Request::get("/api/notifications/stream")
            .header("cookie", &cookies[user])
            .header("last-event-id", &start)
            .send(&authority)
            .await
            .unwrap();
        let connected = stream.next_event(Duration::from_secs(2)).await.unwrap();
        assert_eq!(connected.event_type, "connected");
        assert_eq!(
            connected.last_event_id, start,
            "soak-{user}: resumed elsewhere"
        );
        let (mut last_position, mut last_title) = (position(&start), None::<u64>);
        for _ in 0..count {
            let event = stream.next_event(Duration::from_secs(5)).await.unwrap();
            assert_eq!(event.event_type, "notification", "soak-{user}: {event:?}");
            let at = position(&event.last_event_id);
            assert!(at > last_position, "soak-{user}: replay reordered a change");
            last_position = at;
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(data["type"], "created", "soak-{user}: {data}");
            let title: u64 = data["notification"]["title"]
                .as_str()
                .and_then(|t| t.strip_prefix("soak "))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("soak-{user}: {data}"));
            assert!(
                last_title.is_none_or(|last| title > last),
                "soak-{user}: replay lost or reordered a change"
            );
            last_title = Some(title);
        }
        // And nothing more: the next thing on the stream is a heartbeat.
        let next = stream.next_item(Duration::from_millis(200)).await;
        assert!(
            !matches!(&next, Ok(Some(sse_conformance::parser::Item::Event(_)))),
            "soak-{user}: replayed more than was created: {next:?}"
        );
    }
}
