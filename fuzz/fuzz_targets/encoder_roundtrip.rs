//! The encoder: any id, name, data and comment either build an event that
//! the WHATWG parser reads back as the same event, or are refused with a
//! typed error for exactly the characters the format cannot carry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_conformance::parser::{Item, parse};
use sse_core::{Event, EventError};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    comment: Option<String>,
}

fuzz_target!(|input: Input| {
    let mut builder = Event::builder();
    if let Some(id) = &input.id {
        builder = builder.id(id.clone());
    }
    if let Some(name) = &input.event {
        builder = builder.event(name.clone());
    }
    if let Some(data) = &input.data {
        builder = builder.data(data.clone());
    }
    if let Some(comment) = &input.comment {
        builder = builder.comment(comment.clone());
    }
    match builder.build() {
        Ok(event) => {
            assert!(
                input
                    .id
                    .as_ref()
                    .is_none_or(|id| !id.contains(['\r', '\n', '\0']))
            );
            assert!(
                input
                    .event
                    .as_ref()
                    .is_none_or(|e| !e.contains(['\r', '\n']))
            );
            // The frame survives a trip through a hub.
            assert_eq!(
                Event::from_encoded(event.frame().clone()).ok().as_ref(),
                Some(&event)
            );
            let items = parse(event.frame());
            let dispatched: Vec<_> = items
                .iter()
                .filter_map(|i| {
                    if let Item::Event(e) = i {
                        Some(e)
                    } else {
                        None
                    }
                })
                .collect();
            match &input.data {
                Some(data) => {
                    assert_eq!(dispatched.len(), 1);
                    let parsed = dispatched[0];
                    assert_eq!(parsed.data, data.replace("\r\n", "\n").replace('\r', "\n"));
                    let name = input
                        .event
                        .as_deref()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("message");
                    assert_eq!(parsed.event_type, name);
                    assert_eq!(parsed.last_event_id, input.id.clone().unwrap_or_default());
                }
                None => assert!(dispatched.is_empty()),
            }
        }
        Err(EventError::InvalidId(_)) => assert!(input.id.unwrap().contains(['\r', '\n', '\0'])),
        Err(EventError::InvalidEventName(_)) => {
            assert!(input.event.unwrap().contains(['\r', '\n']))
        }
        Err(EventError::ReservedEventName(name)) => {
            assert_eq!(input.event.as_deref(), Some(name))
        }
        Err(EventError::Empty) => {
            assert!(input.id.is_none() && input.data.is_none() && input.comment.is_none())
        }
        Err(other) => panic!("unexpected error {other}"),
    }
});
