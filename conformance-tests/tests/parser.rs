//! The parser against the WHATWG "server-sent events" rules. Cases follow
//! the situations the web-platform-tests `eventsource/format-*` tests
//! exercise (written afresh here, not copied).

use proptest::prelude::*;
use sse_conformance::parser::{Item, ParsedEvent, Parser, events, parse};

fn ev(event_type: &str, data: &str, id: &str) -> ParsedEvent {
    ParsedEvent {
        event_type: event_type.into(),
        data: data.into(),
        last_event_id: id.into(),
    }
}

fn data_of(stream: &[u8]) -> Vec<String> {
    events(stream).into_iter().map(|e| e.data).collect()
}

#[test]
fn a_leading_bom_is_dropped_once() {
    assert_eq!(data_of("\u{FEFF}data: 1\n\n".as_bytes()), ["1"]);
    // A second BOM becomes part of the first field name, which is then unknown.
    assert_eq!(
        data_of("\u{FEFF}\u{FEFF}data: 1\n\ndata: 2\n\n".as_bytes()),
        ["2"]
    );
    // A BOM later in the stream is ordinary text.
    assert_eq!(
        data_of("data: 1\n\n\u{FEFF}data: 2\n\ndata: 3\n\n".as_bytes()),
        ["1", "3"]
    );
}

#[test]
fn every_line_ending_is_recognised() {
    assert_eq!(
        data_of(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"),
        ["a", "b", "c"]
    );
    assert_eq!(
        data_of(b"data:test\r\ndata\ndata:test\r\n\r"),
        ["test\n\ntest"]
    );
}

#[test]
fn a_cr_at_a_chunk_boundary_pairs_with_the_next_lf() {
    let mut parser = Parser::new();
    let mut items = parser.feed(b"data: a\r");
    items.extend(parser.feed(b"\ndata: b\r"));
    items.extend(parser.feed(b"\n\r"));
    items.extend(parser.feed(b"\n"));
    assert_eq!(items, vec![Item::Event(ev("message", "a\nb", ""))]);
}

#[test]
fn a_lone_cr_at_the_end_of_a_chunk_ends_the_line() {
    let mut parser = Parser::new();
    let mut items = parser.feed(b"data: a\r");
    items.extend(parser.feed(b"\r"));
    assert_eq!(items, vec![Item::Event(ev("message", "a", ""))]);
}

#[test]
fn field_parsing_follows_the_spec() {
    // Lines without a colon are field names with an empty value; one leading
    // space is stripped (not a tab, not two); field names are case-sensitive;
    // NUL is an ordinary character in data.
    let stream = "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n";
    assert_eq!(data_of(stream.as_bytes()), ["\0\n 2\n1\n3\n\n4"]);
    assert_eq!(data_of(b"data:\ttest\n\n"), ["\ttest"]);
    assert_eq!(data_of(b"data:test\n\n"), ["test"]);
}

#[test]
fn comments_are_reported_and_do_not_dispatch() {
    let items = parse(b": hello\n:\n:: x\ndata: 1\n: between\ndata: 2\n\n");
    assert_eq!(
        items,
        vec![
            Item::Comment(" hello".into()),
            Item::Comment("".into()),
            Item::Comment(": x".into()),
            Item::Comment(" between".into()),
            Item::Event(ev("message", "1\n2", "")),
        ]
    );
    assert!(events(b": only a comment\n\n").is_empty());
}

#[test]
fn data_fields_build_the_buffer() {
    // An empty data field dispatches an event with empty data.
    assert_eq!(
        data_of(b"data:\n\ndata\ndata\n\ndata:test\n\n"),
        ["", "\n", "test"]
    );
    // No data field at all dispatches nothing.
    assert!(events(b"event: x\n\nid: 3\n\n").is_empty());
}

#[test]
fn an_incomplete_event_at_the_end_is_discarded() {
    assert_eq!(data_of(b"data: 1\n\ndata: 2\n"), ["1"]);
    assert_eq!(data_of(b"data: 1\n\ndata: 2"), ["1"]);
}

#[test]
fn event_type_defaults_resets_and_may_be_empty() {
    let got =
        events(b"event: custom\ndata: a\n\ndata: b\n\nevent: \ndata: c\n\nevent\ndata: d\n\n");
    let types: Vec<_> = got.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["custom", "message", "message", "message"]);
    // A type set by an event without data is reset at the blank line too.
    let got = events(b"event: lost\n\ndata: e\n\n");
    assert_eq!(got[0].event_type, "message");
}

#[test]
fn the_last_event_id_persists_and_ignores_nul() {
    let got = events(
        b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\nid: 3\n\ndata: e\n\n",
    );
    let ids: Vec<_> = got.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(ids, ["1", "1", "1", "", "3"]);
    // An id-only event updates the id without dispatching.
    let mut parser = Parser::new();
    assert!(parser.feed(b"id: 9\n\n").is_empty());
    assert_eq!(parser.last_event_id(), "9");
}

#[test]
fn retry_takes_digits_only() {
    let items = parse(
        b"retry: 03000\nretry:1000x\nretry: 1000 \nretry\nretry: -5\nretry:\nretry: 7\ndata: x\n\n",
    );
    let retries: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Retry(ms) => Some(*ms),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [3000, 7]);
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(data_of(b"foo: bar\ndata: x\nbaz\n\n"), ["x"]);
}

#[test]
fn utf8_is_decoded_with_replacement() {
    assert_eq!(data_of("data: ünïcødé 🚀\n\n".as_bytes()), ["ünïcødé 🚀"]);
    // An invalid byte and a truncated sequence become U+FFFD.
    assert_eq!(
        data_of(b"data: a\xffb\xe2\x82c\n\n"),
        ["a\u{FFFD}b\u{FFFD}c"]
    );
    // A multi-byte character split across chunks decodes whole.
    let mut parser = Parser::new();
    let bytes = "data: 🚀\n\n".as_bytes();
    let mut items = Vec::new();
    for byte in bytes {
        items.extend(parser.feed(std::slice::from_ref(byte)));
    }
    assert_eq!(items, vec![Item::Event(ev("message", "🚀", ""))]);
}

#[test]
fn a_bom_split_across_chunks_is_still_dropped() {
    let mut parser = Parser::new();
    let mut items = parser.feed(b"\xef\xbb");
    items.extend(parser.feed(b"\xbfdata: 1\n\n"));
    assert_eq!(items, vec![Item::Event(ev("message", "1", ""))]);
}

#[test]
fn long_lines_are_kept_whole() {
    let long = "y".repeat(1 << 20);
    assert_eq!(data_of(format!("data: {long}\n\n").as_bytes()), [long]);
}

fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b": ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just("\u{FEFF}".as_bytes().to_vec()),
        Just("🚀é".as_bytes().to_vec()),
        Just(vec![0xff]),
        Just(vec![0xe2, 0x82]),
        Just(vec![0]),
        "[a-z0-9 :]{0,8}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Splitting the input at every byte boundary (and into random chunks)
    /// yields exactly the items of parsing it whole.
    #[test]
    fn any_chunking_gives_the_same_items(stream in stream_strategy(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let whole = parse(&stream);

        let mut parser = Parser::new();
        let mut bytewise = Vec::new();
        for byte in &stream {
            parser.feed_into(std::slice::from_ref(byte), &mut bytewise);
        }
        prop_assert_eq!(&bytewise, &whole);

        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        let mut parser = Parser::new();
        let mut chunked = Vec::new();
        let mut start = 0;
        for point in points.into_iter().chain([stream.len()]) {
            parser.feed_into(&stream[start..point], &mut chunked);
            start = point;
        }
        prop_assert_eq!(&chunked, &whole);
    }
}
