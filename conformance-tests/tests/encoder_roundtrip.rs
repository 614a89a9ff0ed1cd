//! sse-core's encoder, read back by the WHATWG parser: for arbitrary ids,
//! names and data the event that comes out is the event that went in.

use std::time::Duration;

use proptest::prelude::*;
use sse_conformance::parser::{Item, Parser, events, parse};
use sse_core::{Event, EventError};

/// What a conforming client sees for data containing any line breaks.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ a-z\r\n:]{0,20}",
        Just(String::new()),
        Just("\r\n\r\n".to_owned()),
        Just(" leading space".to_owned()),
        Just("🚀 ünïcødé \u{FEFF}".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_events_parse_back(id in text(), name in text(), data in text()) {
        match Event::builder().id(id.clone()).event(name.clone()).data(data.clone()).build() {
            Ok(event) => {
                prop_assert!(!id.contains(['\r', '\n', '\0']));
                prop_assert!(!name.contains(['\r', '\n']));
                let got = events(event.frame());
                prop_assert_eq!(got.len(), 1, "one event in, one out: {:?}", event);
                let expected_type = if name.is_empty() { "message" } else { name.as_str() };
                prop_assert_eq!(&got[0].event_type, expected_type);
                prop_assert_eq!(&got[0].data, &normalized(&data));
                prop_assert_eq!(&got[0].last_event_id, &id);
                prop_assert_eq!(event.id(), Some(id.as_str()));
            }
            Err(EventError::InvalidId(_)) => prop_assert!(id.contains(['\r', '\n', '\0'])),
            Err(EventError::InvalidEventName(_)) => prop_assert!(name.contains(['\r', '\n'])),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn comments_never_dispatch_or_leak_into_fields(comment in text()) {
        let event = Event::comment(&comment);
        let items = parse(event.frame());
        let lines: Vec<String> = items.iter().map(|item| match item {
            Item::Comment(c) => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        }).collect::<Result<_, _>>().map_err(|e| TestCaseError::fail(format!("a comment produced {e}")))?;
        let expected: Vec<String> = normalized(&comment).split('\n').map(|l| format!(" {l}")).collect();
        prop_assert_eq!(lines, expected);
    }

    #[test]
    fn a_sequence_of_events_keeps_order_and_ids(datas in prop::collection::vec(text(), 1..10)) {
        let mut stream = Vec::new();
        for (i, data) in datas.iter().enumerate() {
            let event = Event::builder().id(i.to_string()).data(data.clone()).build()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            stream.extend_from_slice(event.frame());
        }
        let got = events(&stream);
        prop_assert_eq!(got.len(), datas.len());
        for (i, (event, data)) in got.iter().zip(&datas).enumerate() {
            prop_assert_eq!(&event.data, &normalized(data));
            prop_assert_eq!(&event.last_event_id, &i.to_string());
        }
    }
}

#[test]
fn retry_hints_parse_back() {
    let event = Event::builder()
        .retry(Duration::from_millis(2500))
        .data("x")
        .build()
        .unwrap();
    let mut parser = Parser::new();
    parser.feed(event.frame());
    assert_eq!(parser.retry(), Some(2500));
}

#[test]
fn an_empty_id_clears_the_last_event_id() {
    let mut stream = Event::builder()
        .id("5")
        .data("a")
        .build()
        .unwrap()
        .frame()
        .to_vec();
    stream.extend_from_slice(Event::builder().id("").data("b").build().unwrap().frame());
    let got = events(&stream);
    assert_eq!(got[1].last_event_id, "");
}
