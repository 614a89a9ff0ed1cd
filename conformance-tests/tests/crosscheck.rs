//! Our encoder's output, read by two independent parsers — the
//! `eventsource-stream` crate and npm's `eventsource-parser` (from
//! `js/crosscheck.mjs`) — gives the same events as our parser, over a
//! corpus of tricky events and several chunkings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use sse_conformance::parser::{ParsedEvent, events};
use sse_core::Event;

fn corpus() -> Vec<Event> {
    let long = "x".repeat(8 * 1024);
    let mut corpus = vec![
        Event::builder().data("plain").build(),
        Event::builder()
            .id("1")
            .event("notification")
            .data("{\"type\":\"created\"}")
            .build(),
        Event::builder().data("multi\nline\ndata").build(),
        Event::builder().data("crlf\r\nlines\r\nhere").build(),
        Event::builder().data("lone\rcarriage\rreturns").build(),
        Event::builder().data("mixed\r\n\n\r\rends").build(),
        Event::builder().data("trailing newline\n").build(),
        Event::builder().data("").build(),
        Event::builder().data("\n").build(),
        Event::builder().data("  two leading spaces").build(),
        Event::builder().data(":starts with a colon").build(),
        Event::builder().data("data: looks like a field").build(),
        Event::builder()
            .data("🚀 ünïcødé 中文 עברית e\u{301}")
            .build(),
        Event::builder()
            .data("line\u{2028}separator\u{2029}paragraph")
            .build(),
        Event::builder().data("bom \u{FEFF} inside").build(),
        Event::builder().data("nul \0 inside").build(),
        Event::builder().data(long).build(),
        Event::builder().event("with space").data("named").build(),
        Event::builder().event("ünïcødé").data("named").build(),
        Event::builder().id("id with spaces").data("x").build(),
        Event::builder().id("ünïcødé-id").data("x").build(),
        Event::builder().data("keeps the previous id").build(),
        Event::builder().id("").data("empty id resets").build(),
        Event::builder().id("7").build(),
        Event::builder().data("after an id-only event").build(),
        Event::builder()
            .comment("a comment\nover two lines")
            .data("after a comment")
            .build(),
        Event::builder()
            .retry(Duration::from_millis(2500))
            .data("with retry")
            .build(),
        Event::json(
            &serde_json::json!({"text": "quote \" backslash \\ newline \n tab \t", "n": [1, 2]}),
        ),
    ];
    corpus.push(
        Event::builder()
            .id("last")
            .event("end")
            .data("the end")
            .build(),
    );
    corpus.into_iter().map(|e| e.unwrap()).collect()
}

fn stream() -> Vec<u8> {
    let mut bytes = vec![];
    for event in corpus() {
        bytes.extend_from_slice(event.frame());
        bytes.extend_from_slice(Event::comment("heartbeat").frame());
    }
    bytes
}

/// The stream split at several kinds of points (never inside a UTF-8
/// sequence for the JavaScript side, which receives strings).
fn chunkings(stream: &str) -> Vec<(String, Vec<String>)> {
    let boundaries: Vec<usize> = stream
        .char_indices()
        .map(|(i, _)| i)
        .chain([stream.len()])
        .collect();
    let split_every = |n: usize| {
        let mut chunks = vec![];
        let mut start = 0;
        for window in boundaries.chunks(n) {
            let end = *window.last().unwrap();
            if end > start {
                chunks.push(stream[start..end].to_owned());
                start = end;
            }
        }
        if start < stream.len() {
            chunks.push(stream[start..].to_owned());
        }
        chunks
    };
    let mut by_line = vec![];
    let mut rest = stream;
    while let Some(at) = rest.find(['\r', '\n']) {
        by_line.push(rest[..=at].to_owned());
        rest = &rest[at + 1..];
    }
    by_line.push(rest.to_owned());
    vec![
        ("whole".into(), vec![stream.to_owned()]),
        ("every character".into(), split_every(1)),
        ("every 7 characters".into(), split_every(7)),
        ("every 4096 characters".into(), split_every(4096)),
        ("after every line end".into(), by_line),
    ]
}

fn ours() -> Vec<ParsedEvent> {
    let expected = events(&stream());
    assert_eq!(
        expected.len(),
        corpus()
            .iter()
            .filter(|e| e.frame().windows(5).any(|w| w == b"data:"))
            .count()
    );
    expected
}

#[tokio::test]
async fn eventsource_stream_sees_the_same_events() {
    let expected = ours();
    let text = String::from_utf8(stream()).unwrap();
    // Fed one character at a time, this crate rescans its buffer on every
    // chunk (quadratic); the other chunkings cover boundaries within lines.
    for (name, chunks) in chunkings(&text)
        .into_iter()
        .filter(|(name, _)| name != "every character")
    {
        let source = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        );
        let got: Vec<_> = source.eventsource().map(|e| e.unwrap()).collect().await;
        assert_eq!(got.len(), expected.len(), "{name}: event count");
        for (i, (theirs, ours)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                (
                    theirs.event.as_str(),
                    theirs.data.as_str(),
                    theirs.id.as_str()
                ),
                (
                    ours.event_type.as_str(),
                    ours.data.as_str(),
                    ours.last_event_id.as_str()
                ),
                "{name}: event {i} differs"
            );
        }
    }
}

#[test]
fn npm_eventsource_parser_sees_the_same_events() {
    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        js.join("node_modules/eventsource-parser").exists(),
        "the npm parser is not installed: run `npm ci --prefix conformance-tests/js` (scripts/test does)"
    );
    let text = String::from_utf8(stream()).unwrap();
    let expected: Vec<_> = ours()
        .into_iter()
        .map(|e| serde_json::json!({"type": e.event_type, "data": e.data, "lastEventId": e.last_event_id}))
        .collect();
    let chunkings: serde_json::Map<String, serde_json::Value> = chunkings(&text)
        .into_iter()
        .map(|(name, chunks)| (name, serde_json::json!(chunks)))
        .collect();
    let corpus = serde_json::json!({"expected": expected, "chunkings": chunkings});
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("sse-crosscheck-corpus.json");
    std::fs::write(&path, corpus.to_string()).unwrap();
    let output = std::process::Command::new("node")
        .arg(js.join("crosscheck.mjs"))
        .arg(&path)
        .output()
        .expect("node is required for this test (https://nodejs.org)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "eventsource-parser disagrees:\n{report}"
    );
    assert!(report.contains("0 mismatches"), "{report}");
}
