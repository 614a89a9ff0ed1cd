//! A slow reader under a 10 kHz progress stream, with and without a
//! conflation key (`EventBuilder::conflate`).
//!
//! One stream over HTTP (`sse_tower::serve`, in-memory hub, the default
//! queue of 256 events) whose client reads 256 bytes every 5 ms (about
//! 50 KB/s, a fifth of what is sent) through a 4 KiB receive buffer. The
//! server publishes `{"done":n}` to the stream's user 10,000 times a
//! second. Reported per mode: events sent and received, whether the stream
//! survived, and how long after the last publish the client saw the final
//! value.
//!
//! `cargo run --release -p sse-benches --bin conflation [-- --quick]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::Router;
use sse_core::{Audience, AuthRejection, Event, FnAuthenticator, Hub, InMemoryHub, Principal};
use sse_tower::SseService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

const RATE_HZ: u64 = 10_000;

struct Outcome {
    sent: u64,
    received: u64,
    in_order: bool,
    /// `None`: the final value never arrived (the stream was closed).
    final_after: Option<Duration>,
    closed_after: Option<u64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1 } else { 5 };
    println!(
        "| mode | sent | received | order kept | stream | final value seen after last publish |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for keyed in [false, true] {
        let o = run(keyed, Duration::from_secs(secs)).await;
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            if keyed {
                "conflate(\"job:7\")"
            } else {
                "no key"
            },
            o.sent,
            o.received,
            if o.in_order { "yes" } else { "NO" },
            match (o.closed_after, o.final_after) {
                (Some(n), _) => format!("closed as lagged after {n} events"),
                (None, Some(_)) => "open".into(),
                (None, None) => "open, still draining stale events".into(),
            },
            match o.final_after {
                Some(t) => format!("{:.0} ms", t.as_secs_f64() * 1e3),
                None => "not within 10 s".into(),
            }
        );
        if keyed {
            assert!(o.in_order, "keyed events arrived out of order");
            assert!(o.closed_after.is_none(), "the keyed stream was closed");
            assert!(o.final_after.is_some(), "the final value never arrived");
        }
    }
}

async fn run(keyed: bool, duration: Duration) -> Outcome {
    let hub = InMemoryHub::new();
    let auth = FnAuthenticator::new(|_| Ok::<_, AuthRejection>(Principal::new("u")));
    let sse = SseService::builder(auth)
        .hub(hub.clone())
        .heartbeat(Duration::from_secs(60))
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        sse_tower::serve(listener, Router::new().route_service("/events", sse)).into_future(),
    );

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(addr).await.unwrap();
    client
        .write_all(b"GET /events HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    while hub.stats().subscriptions == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let last = (duration.as_secs() * RATE_HZ).saturating_sub(1);
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_HZ));
            for n in 0..=last {
                ticker.tick().await;
                let mut event = Event::builder()
                    .event("job.progress")
                    .data(format!("{{\"done\":{n}}}"));
                if keyed {
                    event = event.conflate("job:7");
                }
                hub.publish(&Audience::user("u"), &event.build().unwrap())
                    .await
                    .unwrap();
            }
            (started.elapsed(), Instant::now())
        })
    };

    let mut buffer = Vec::new();
    let mut chunk = [0u8; 256];
    let mut values = Vec::new();
    let mut closed = false;
    let mut final_at = None;
    let deadline = Instant::now() + duration + Duration::from_secs(10);
    while final_at.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        match tokio::time::timeout(Duration::from_millis(50), client.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        while let Some(at) = find(&buffer, b"}\n\n") {
            let frame: Vec<u8> = buffer.drain(..at + 3).collect();
            let text = String::from_utf8_lossy(&frame);
            if let Some(n) = text
                .rsplit_once("{\"done\":")
                .and_then(|(_, rest)| rest.trim_end_matches("}\n\n").parse::<u64>().ok())
            {
                values.push(n);
                if n == last {
                    final_at = Some(Instant::now());
                }
            }
        }
    }
    let (_, published_at) = publisher.await.unwrap();
    server.abort();
    Outcome {
        sent: last + 1,
        received: values.len() as u64,
        in_order: values.windows(2).all(|w| w[0] < w[1]),
        final_after: final_at.map(|at| at.saturating_duration_since(published_at)),
        closed_after: closed.then_some(values.len() as u64),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
