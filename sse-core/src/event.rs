//! [`Event`]: one server-sent event, validated and encoded once.
//!
//! Encoding follows the WHATWG HTML "server-sent events" format: each field
//! is written as `name: value\n` and the event ends with a blank line. The
//! builder refuses values the format cannot carry (an id with CR, LF or NUL,
//! an event name with CR or LF) with an [`EventError`], so no input can
//! produce a broken frame or a panic. Data and comments containing `\n`,
//! `\r\n` or `\r` become several lines, which a conforming parser joins
//! back with `\n`.
//!
//! The encoded frame is a [`Bytes`]: cloning an [`Event`] to hand it to
//! thousands of connections bumps a reference count and copies no payload.
//!
//! ```
//! use sse_core::Event;
//!
//! let event = Event::builder()
//!     .id("7")
//!     .event("notification")
//!     .data("line one\nline two")
//!     .build()?;
//! assert_eq!(
//!     &event.frame()[..],
//!     b"id: 7\nevent: notification\ndata: line one\ndata: line two\n\n"
//! );
//! assert!(Event::builder().id("a\nb").data("x").build().is_err());
//! # Ok::<(), sse_core::EventError>(())
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::Cursor;

/// A server-sent event, encoded once into shareable bytes.
///
/// Build one with [`Event::builder`], [`Event::json`] or [`Event::comment`].
/// Cloning is cheap (a reference-count increment); [`Event::frame`] gives the
/// exact bytes written to every recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    frame: Bytes,
    id: Option<Range<u32>>,
    cursor: Option<Cursor>,
    disconnect: bool,
    conflation_key: Option<Arc<str>>,
}

/// The longest [conflation key](EventBuilder::conflate), in bytes.
pub const MAX_CONFLATION_KEY_LEN: usize = 255;

/// First byte of [`Event::to_wire`] for an event with a conflation key. No
/// encoded frame starts with it (frames start with a field name or `:`).
const WIRE_KEYED: u8 = 0x01;

/// Why an [`Event`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The id contains a character the format cannot carry.
    #[error(
        "event id contains {0}; ids must not contain CR, LF or NUL (use an opaque token such as a number)"
    )]
    InvalidId(&'static str),
    /// The event name is reserved for the protocol's own records
    /// ([`REVOCATION_EVENT`](crate::revocation::REVOCATION_EVENT)).
    #[error("the event name {0:?} is reserved for the layer's own records; pick another name")]
    ReservedEventName(&'static str),
    /// The event name contains a line break.
    #[error(
        "event name contains {0}; names must not contain CR or LF (use a short token such as `notification`)"
    )]
    InvalidEventName(&'static str),
    /// The JSON payload could not be serialized.
    #[error("event data could not be serialized to JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No field was set, so the event would carry nothing.
    #[error("an event needs at least one of data, id, retry or a comment")]
    Empty,
    /// The encoded event would exceed 4 GiB.
    #[error("event is too large to encode (over 4 GiB)")]
    TooLarge,
    /// Bytes given to [`Event::from_encoded`] are not one event as this
    /// crate encodes them.
    #[error("not an encoded event: {0}")]
    InvalidFrame(&'static str),
    /// A conflation key is empty or longer than
    /// [`MAX_CONFLATION_KEY_LEN`] bytes.
    #[error(
        "a conflation key must be 1 to 255 bytes long (it is {0}); use a short name such as `job:42:progress`"
    )]
    InvalidConflationKey(usize),
    /// An event given to a log already has an id; the log assigns ids
    /// (its position in the history).
    #[error(
        "an event stored in the log may not carry an id of its own (it has {0:?}); the log assigns it"
    )]
    AlreadyHasId(String),
}

impl Event {
    /// Starts building an event.
    ///
    /// ```
    /// use sse_core::Event;
    /// let event = Event::builder().data("hello").build()?;
    /// assert_eq!(&event.frame()[..], b"data: hello\n\n");
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn builder() -> EventBuilder {
        EventBuilder::default()
    }

    /// An event whose data is `value` serialized as JSON.
    ///
    /// JSON never contains a raw line break, so the data is a single line.
    ///
    /// ```
    /// use sse_core::Event;
    /// let event = Event::json(&serde_json::json!({"n": 1}))?;
    /// assert_eq!(&event.frame()[..], b"data: {\"n\":1}\n\n");
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, EventError> {
        Self::builder().json_data(value).build()
    }

    /// A comment-only frame: ignored by clients, useful as a heartbeat.
    ///
    /// ```
    /// use sse_core::Event;
    /// assert_eq!(&Event::comment("heartbeat").frame()[..], b": heartbeat\n\n");
    /// ```
    pub fn comment(text: &str) -> Self {
        let mut builder = Self::builder();
        builder.comment = Some(text.to_owned());
        builder.encode()
    }

    /// A frame carrying only a `retry:` reconnection hint.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sse_core::Event;
    /// assert_eq!(&Event::retry_hint(Duration::from_secs(3)).frame()[..], b"retry: 3000\n\n");
    /// ```
    pub fn retry_hint(retry: Duration) -> Self {
        let mut builder = Self::builder();
        builder.retry = Some(retry);
        builder.encode()
    }

    /// Rebuilds an event from the exact bytes of [`Event::frame`], as hubs
    /// that carry events between nodes receive them.
    ///
    /// The bytes are checked to be one event in this crate's encoding (lines
    /// of known fields, no CR, ending with the one blank line), so whatever
    /// arrives over the wire cannot inject a second event into a stream.
    ///
    /// ```
    /// use sse_core::Event;
    /// let sent = Event::builder().id("7").event("notification").data("a\nb").build()?;
    /// let received = Event::from_encoded(sent.frame().clone())?;
    /// assert_eq!(received, sent);
    /// assert!(Event::from_encoded("data: a\n\ndata: b\n\n".into()).is_err());
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn from_encoded(frame: Bytes) -> Result<Self, EventError> {
        if frame.len() > u32::MAX as usize {
            return Err(EventError::TooLarge);
        }
        if !frame.ends_with(b"\n\n") {
            return Err(EventError::InvalidFrame(
                "it does not end with a blank line",
            ));
        }
        if frame.contains(&b'\r') {
            return Err(EventError::InvalidFrame("it contains a carriage return"));
        }
        let body = &frame[..frame.len() - 1];
        let mut id = None;
        let mut at = 0usize;
        for line in body.split(|b| *b == b'\n') {
            let start = at;
            at += line.len() + 1;
            if at > body.len() {
                // The empty piece after the final LF of `body`.
                break;
            }
            if line.starts_with(b"id: ") {
                if id.is_some() {
                    return Err(EventError::InvalidFrame("it has two ids"));
                }
                if line.contains(&0) {
                    return Err(EventError::InvalidId("a NUL character"));
                }
                id = Some(start + 4..start + line.len());
            } else if !(line.starts_with(b": ")
                || line.starts_with(b"data: ")
                || line.starts_with(b"event: ")
                || line.starts_with(b"retry: "))
            {
                return Err(EventError::InvalidFrame(
                    "a line is not a field this crate writes (or is blank)",
                ));
            }
        }
        if body.is_empty() {
            return Err(EventError::Empty);
        }
        let cursor = id
            .as_ref()
            .and_then(|range| std::str::from_utf8(&frame[range.clone()]).ok())
            .and_then(|text| text.parse::<Cursor>().ok());
        let id = id.map(|range| {
            // `frame.len()` fits in u32, checked above.
            u32::try_from(range.start).unwrap_or(u32::MAX)
                ..u32::try_from(range.end).unwrap_or(u32::MAX)
        });
        Ok(Event {
            frame,
            id,
            cursor,
            disconnect: false,
            conflation_key: None,
        })
    }

    /// A control event: a stream that receives it ends (after what it has
    /// already queued), and the client's next connect is authenticated
    /// afresh. Publish it to a session's audience at logout so that
    /// session's open streams close on every node. It has no bytes of its
    /// own and is never written to a client.
    ///
    /// ```
    /// use sse_core::Event;
    /// let signal = Event::disconnect();
    /// assert!(signal.is_disconnect());
    /// assert!(signal.frame().is_empty());
    /// ```
    pub fn disconnect() -> Self {
        Self {
            frame: Bytes::new(),
            id: None,
            cursor: None,
            disconnect: true,
            conflation_key: None,
        }
    }

    /// Whether this is the [`Event::disconnect`] control event.
    pub fn is_disconnect(&self) -> bool {
        self.disconnect
    }

    /// The encoded bytes, exactly as written to the wire.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// Consumes the event, returning its encoded bytes.
    pub fn into_frame(self) -> Bytes {
        self.frame
    }

    /// The `id:` of this event, if it has one.
    ///
    /// ```
    /// use sse_core::Event;
    /// let event = Event::builder().id("42").data("x").build()?;
    /// assert_eq!(event.id(), Some("42"));
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn id(&self) -> Option<&str> {
        let range = self.id.as_ref()?;
        let bytes = self.frame.get(range.start as usize..range.end as usize)?;
        std::str::from_utf8(bytes).ok()
    }

    /// The id as a log position, when it is one: the event is durable, and
    /// streams use this to resume and to skip what they already sent.
    ///
    /// ```
    /// use sse_core::{Cursor, Event};
    /// let stored = Event::builder().id("abcdefgh.42").data("x").build()?;
    /// assert_eq!(stored.cursor().map(Cursor::position), Some(42));
    /// let opaque = Event::builder().id("42").data("x").build()?;
    /// assert_eq!(opaque.cursor(), None);
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor
    }

    /// The key under which a newer event replaces this one in a slow
    /// connection's queue; see [`EventBuilder::conflate`].
    pub fn conflation_key(&self) -> Option<&str> {
        self.conflation_key.as_deref()
    }

    /// The bytes a hub sends between nodes: the frame, preceded by the
    /// conflation key when there is one (`\x01<length>:<key>`; UTF-8 text
    /// throughout). [`Event::disconnect`] is the empty
    /// payload. [`Event::from_wire`] reads them back.
    ///
    /// ```
    /// use sse_core::Event;
    /// let progress = Event::builder().data("50").conflate("job:7").build()?;
    /// let received = Event::from_wire(progress.to_wire())?;
    /// assert_eq!(received, progress);
    /// assert_eq!(received.conflation_key(), Some("job:7"));
    /// assert!(Event::from_wire(Event::disconnect().to_wire())?.is_disconnect());
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn to_wire(&self) -> Bytes {
        match &self.conflation_key {
            None => self.frame.clone(),
            Some(key) => {
                // The length in decimal, so the wire form stays UTF-8 text
                // (PostgreSQL's NOTIFY carries only text).
                let len = key.len().to_string();
                let mut wire =
                    BytesMut::with_capacity(2 + len.len() + key.len() + self.frame.len());
                wire.put_u8(WIRE_KEYED);
                wire.put_slice(len.as_bytes());
                wire.put_u8(b':');
                wire.put_slice(key.as_bytes());
                wire.put_slice(&self.frame);
                wire.freeze()
            }
        }
    }

    /// Rebuilds an event from [`Event::to_wire`]'s bytes, checking the
    /// frame as [`Event::from_encoded`] does.
    pub fn from_wire(mut wire: Bytes) -> Result<Self, EventError> {
        if wire.is_empty() {
            return Ok(Self::disconnect());
        }
        if wire[0] != WIRE_KEYED {
            return Self::from_encoded(wire);
        }
        let colon =
            wire.iter()
                .take(5)
                .position(|b| *b == b':')
                .ok_or(EventError::InvalidFrame(
                    "a conflation key's length is missing",
                ))?;
        // Canonical decimal only (no sign, no leading zero): one spelling
        // per key, so the wire form stays injective.
        let digits = &wire[1..colon];
        let canonical = digits.first().is_some_and(|b| (b'1'..=b'9').contains(b))
            && digits.iter().all(u8::is_ascii_digit);
        let len = std::str::from_utf8(digits)
            .ok()
            .filter(|_| canonical)
            .and_then(|len| len.parse::<usize>().ok())
            .filter(|len| (1..=MAX_CONFLATION_KEY_LEN).contains(len))
            .ok_or(EventError::InvalidFrame(
                "a conflation key's length is not 1 to 255",
            ))?;
        let start = colon + 1;
        let key = wire
            .get(start..start + len)
            .and_then(|key| std::str::from_utf8(key).ok())
            .map(Arc::<str>::from)
            .ok_or(EventError::InvalidFrame(
                "a conflation key is cut short or not UTF-8",
            ))?;
        let frame = wire.split_off(start + len);
        let mut event = Self::from_encoded(frame)?;
        event.conflation_key = Some(key);
        Ok(event)
    }

    /// This event with `cursor` as its `id:`, as a log stores it: the id
    /// line goes in front of the encoded fields (field order does not
    /// matter to a parser), in one new allocation.
    ///
    /// Fails with [`EventError::AlreadyHasId`] if the event has an id, and
    /// [`EventError::Empty`] for [`Event::disconnect`], which is never stored.
    /// The result has no [conflation key](EventBuilder::conflate): a stored
    /// event is never replaced in a queue.
    ///
    /// ```
    /// use sse_core::{Cursor, Event};
    /// let cursor: Cursor = "abcdefgh.7".parse()?;
    /// let event = Event::builder().event("job.progress").data("50").build()?;
    /// let stored = event.with_cursor(cursor)?;
    /// assert_eq!(&stored.frame()[..], b"id: abcdefgh.7\nevent: job.progress\ndata: 50\n\n");
    /// assert_eq!(stored.cursor(), Some(cursor));
    /// assert!(stored.with_cursor(cursor).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_cursor(&self, cursor: Cursor) -> Result<Event, EventError> {
        if self.disconnect {
            return Err(EventError::Empty);
        }
        if let Some(id) = self.id() {
            return Err(EventError::AlreadyHasId(id.to_owned()));
        }
        let id = cursor.to_string();
        let mut frame = BytesMut::with_capacity(4 + id.len() + 1 + self.frame.len());
        frame.put_slice(b"id: ");
        frame.put_slice(id.as_bytes());
        frame.put_u8(b'\n');
        frame.put_slice(&self.frame);
        let end = 4 + id.len();
        Ok(Event {
            frame: frame.freeze(),
            id: Some(4..u32::try_from(end).unwrap_or(u32::MAX)),
            cursor: Some(cursor),
            disconnect: false,
            conflation_key: None,
        })
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.disconnect {
            return f.write_str("Event::disconnect()");
        }
        let mut debug = f.debug_struct("Event");
        debug.field("frame", &String::from_utf8_lossy(&self.frame));
        if let Some(key) = &self.conflation_key {
            debug.field("conflation_key", key);
        }
        debug.finish()
    }
}

/// Builds a validated [`Event`]; see [`Event::builder`].
///
/// Setters take the value as given; [`EventBuilder::build`] validates and
/// encodes in one pass into one allocation.
#[derive(Debug, Default)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<Duration>,
    comment: Option<String>,
    conflate: Option<String>,
    json_error: Option<serde_json::Error>,
}

impl EventBuilder {
    /// Sets the `id:`; an empty id clears the client's last event id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event name (`event:`); clients dispatch it to listeners of that name.
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(name.into());
        self
    }

    /// Sets the data; line breaks of any kind become separate `data:` lines.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the data to `value` serialized as JSON.
    ///
    /// A serialization error is reported by [`EventBuilder::build`].
    pub fn json_data<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(json) => self.data = Some(json),
            Err(error) => self.json_error = Some(error),
        }
        self
    }

    /// Sets the `retry:` hint: how long the client waits before reconnecting.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Adds a comment, written as `: text` lines that clients ignore.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// Gives the event a conflation key: where a connection's queue still
    /// holds an undelivered event with the same key, that one is dropped
    /// and this one is queued at the back (latest value wins). For
    /// progress, counters and presence, of which a slow reader needs only
    /// the latest. The key is not written to the client.
    ///
    /// Only ephemeral events conflate, so stored events are never skipped:
    /// [`Notifier::publish`](crate::Notifier::publish) refuses an event
    /// with a key, and [`Event::with_cursor`] (what logs store) drops it.
    /// A key is 1 to [`MAX_CONFLATION_KEY_LEN`] bytes.
    ///
    /// ```
    /// use sse_core::hub::{channel, SendOutcome};
    /// use sse_core::{ConnectionId, Event};
    ///
    /// let (sender, mut subscription) = channel(ConnectionId::new(0, 1), 8, ());
    /// let progress = |n: u32| Event::builder().event("job.progress").data(n.to_string()).conflate("job:7").build();
    /// sender.try_send(&progress(10)?);
    /// sender.try_send(&Event::builder().data("other").build()?);
    /// sender.try_send(&progress(20)?);
    /// assert_eq!(&subscription.try_recv()?.unwrap().frame()[..], b"data: other\n\n");
    /// assert_eq!(&subscription.try_recv()?.unwrap().frame()[..], b"event: job.progress\ndata: 20\n\n");
    /// assert!(subscription.try_recv()?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn conflate(mut self, key: impl Into<String>) -> Self {
        self.conflate = Some(key.into());
        self
    }

    /// Validates the fields and encodes the event.
    ///
    /// ```
    /// use sse_core::{Event, EventError};
    /// let err = Event::builder().event("a\rb").data("x").build().unwrap_err();
    /// assert!(matches!(err, EventError::InvalidEventName(_)));
    /// ```
    pub fn build(self) -> Result<Event, EventError> {
        if let Some(error) = self.json_error {
            return Err(EventError::Json(error));
        }
        if let Some(id) = &self.id
            && let Some(bad) = forbidden(id, true)
        {
            return Err(EventError::InvalidId(bad));
        }
        if let Some(name) = &self.event
            && let Some(bad) = forbidden(name, false)
        {
            return Err(EventError::InvalidEventName(bad));
        }
        if self.event.as_deref() == Some(crate::revocation::REVOCATION_EVENT) {
            return Err(EventError::ReservedEventName(
                crate::revocation::REVOCATION_EVENT,
            ));
        }
        self.build_unchecked_name()
    }

    /// [`build`](Self::build) with a reserved event name: for the layer's
    /// own records.
    pub(crate) fn build_reserved(mut self, name: &'static str) -> Result<Event, EventError> {
        self.event = Some(name.to_owned());
        self.build_unchecked_name()
    }

    fn build_unchecked_name(self) -> Result<Event, EventError> {
        if let Some(key) = &self.conflate
            && (key.is_empty() || key.len() > MAX_CONFLATION_KEY_LEN)
        {
            return Err(EventError::InvalidConflationKey(key.len()));
        }
        if self.id.is_none()
            && self.data.is_none()
            && self.retry.is_none()
            && self.comment.is_none()
        {
            return Err(EventError::Empty);
        }
        if self.encoded_len() > u32::MAX as usize {
            return Err(EventError::TooLarge);
        }
        Ok(self.encode())
    }

    fn encoded_len(&self) -> usize {
        let lines = |text: &str, prefix: usize| {
            split_lines(text)
                .map(|line| prefix + line.len() + 1)
                .sum::<usize>()
        };
        let mut len = 1;
        len += self.comment.as_deref().map_or(0, |c| lines(c, 2));
        len += self.retry.map_or(0, |_| "retry: ".len() + 20 + 1);
        len += self.id.as_ref().map_or(0, |id| "id: ".len() + id.len() + 1);
        len += self
            .event
            .as_ref()
            .map_or(0, |e| "event: ".len() + e.len() + 1);
        len += self.data.as_deref().map_or(0, |d| lines(d, "data: ".len()));
        len
    }

    /// Encodes without validating; callers have validated (or built the
    /// fields themselves from values that cannot be invalid).
    fn encode(&self) -> Event {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        if let Some(comment) = &self.comment {
            for line in split_lines(comment) {
                put_line(&mut buf, b": ", line);
            }
        }
        if let Some(retry) = self.retry {
            let millis = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
            put_line(&mut buf, b"retry: ", &millis.to_string());
        }
        let mut id_range = None;
        if let Some(id) = &self.id {
            buf.put_slice(b"id: ");
            // `encoded_len` was checked against u32::MAX by `build`, and the
            // constructors that skip `build` carry no id.
            let start = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            buf.put_slice(id.as_bytes());
            let end = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            buf.put_u8(b'\n');
            id_range = Some(start..end);
        }
        if let Some(event) = &self.event {
            put_line(&mut buf, b"event: ", event);
        }
        if let Some(data) = &self.data {
            for line in split_lines(data) {
                put_line(&mut buf, b"data: ", line);
            }
        }
        buf.put_u8(b'\n');
        let cursor = self.id.as_deref().and_then(|id| id.parse::<Cursor>().ok());
        Event {
            frame: buf.freeze(),
            id: id_range,
            cursor,
            disconnect: false,
            conflation_key: self.conflate.as_deref().map(Arc::from),
        }
    }
}

fn put_line(buf: &mut BytesMut, prefix: &[u8], value: &str) {
    buf.put_slice(prefix);
    buf.put_slice(value.as_bytes());
    buf.put_u8(b'\n');
}

fn forbidden(value: &str, nul_too: bool) -> Option<&'static str> {
    value.bytes().find_map(|b| match b {
        b'\r' => Some("a carriage return (CR)"),
        b'\n' => Some("a line feed (LF)"),
        b'\0' if nul_too => Some("a NUL character"),
        _ => None,
    })
}

/// Splits on `\r\n`, `\r` or `\n`, the line ends the SSE format recognises.
/// An empty string is one empty line (an event with empty data is still an
/// event); a trailing line break yields a trailing empty line.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: &Event) -> &str {
        std::str::from_utf8(event.frame()).unwrap()
    }

    #[test]
    fn conflation_keys_round_trip_the_wire_as_text_and_junk_is_refused() {
        for key in [
            "k",
            "job:7:progress",
            "été\n:x",
            &"x".repeat(MAX_CONFLATION_KEY_LEN),
        ] {
            let event = Event::builder().data("d").conflate(key).build().unwrap();
            let wire = event.to_wire();
            assert!(std::str::from_utf8(&wire).is_ok());
            let back = Event::from_wire(wire).unwrap();
            assert_eq!(back.conflation_key(), Some(key));
            assert_eq!(back, event);
        }
        for bad in ["", &"x".repeat(MAX_CONFLATION_KEY_LEN + 1)] {
            assert!(matches!(
                Event::builder().data("d").conflate(bad).build(),
                Err(EventError::InvalidConflationKey(_))
            ));
        }
        for junk in [
            &b"\x01"[..],
            b"\x01:",
            b"\x010:data: x\n\n",
            b"\x019999:k",
            b"\x013:ab",
            b"\x011:kdata: x\n\ndata: y\n\n",
            b"\x01300:kdata: x\n\n",
            b"\x01+1:kdata: x\n\n",
            b"\x0101:kdata: x\n\n",
        ] {
            assert!(
                Event::from_wire(Bytes::copy_from_slice(junk)).is_err(),
                "{junk:?}"
            );
        }
        let stored = Event::builder().data("d").conflate("k").build().unwrap();
        let stored = stored.with_cursor("abcdefgh.1".parse().unwrap()).unwrap();
        assert_eq!(stored.conflation_key(), None);
    }

    #[test]
    fn every_line_break_becomes_a_data_line() {
        let event = Event::builder().data("a\nb\r\nc\rd").build().unwrap();
        assert_eq!(frame(&event), "data: a\ndata: b\ndata: c\ndata: d\n\n");
        let event = Event::builder().data("trailing\n").build().unwrap();
        assert_eq!(frame(&event), "data: trailing\ndata: \n\n");
        let event = Event::builder().data("").build().unwrap();
        assert_eq!(frame(&event), "data: \n\n");
    }

    #[test]
    fn fields_are_written_in_a_fixed_order() {
        let event = Event::builder()
            .comment("hi\nthere")
            .retry(Duration::from_millis(1500))
            .id("9")
            .event("notification")
            .data("x")
            .build()
            .unwrap();
        assert_eq!(
            frame(&event),
            ": hi\n: there\nretry: 1500\nid: 9\nevent: notification\ndata: x\n\n"
        );
        assert_eq!(event.id(), Some("9"));
        assert_eq!(event.cursor(), None);
    }

    #[test]
    fn leading_spaces_survive_because_one_space_is_always_written() {
        let event = Event::builder().id(" 1").data("  x").build().unwrap();
        assert_eq!(frame(&event), "id:  1\ndata:   x\n\n");
        assert_eq!(event.id(), Some(" 1"));
        assert_eq!(event.cursor(), None);
    }

    #[test]
    fn invalid_ids_and_names_are_typed_errors() {
        for id in ["a\nb", "a\rb", "a\0b", "\n"] {
            assert!(matches!(
                Event::builder().id(id).data("x").build(),
                Err(EventError::InvalidId(_))
            ));
        }
        for name in ["a\nb", "\r"] {
            assert!(matches!(
                Event::builder().event(name).data("x").build(),
                Err(EventError::InvalidEventName(_))
            ));
        }
        // NUL is legal in an event name.
        assert!(Event::builder().event("a\0b").data("x").build().is_ok());
        assert!(matches!(Event::builder().build(), Err(EventError::Empty)));
    }

    #[test]
    fn empty_id_resets_the_client_id() {
        let event = Event::builder().id("").data("x").build().unwrap();
        assert_eq!(frame(&event), "id: \ndata: x\n\n");
        assert_eq!(event.id(), Some(""));
    }

    #[test]
    fn json_errors_surface_at_build() {
        use std::collections::HashMap;
        let mut map = HashMap::new();
        map.insert(vec![1u8], 1);
        assert!(matches!(Event::json(&map), Err(EventError::Json(_))));
    }

    #[test]
    fn clones_share_the_frame() {
        let event = Event::builder().data("x".repeat(1024)).build().unwrap();
        let clone = event.clone();
        assert_eq!(event.frame().as_ptr(), clone.frame().as_ptr());
    }

    #[test]
    fn from_encoded_round_trips_and_rejects_anything_else() {
        let events = [
            Event::builder().data("x").build().unwrap(),
            Event::builder()
                .id("12")
                .event("e")
                .data("a\r\nb")
                .comment("c\nd")
                .build()
                .unwrap(),
            Event::builder().id("").build().unwrap(),
            Event::builder()
                .retry(Duration::from_secs(1))
                .build()
                .unwrap(),
            Event::comment("heartbeat"),
        ];
        for event in events {
            assert_eq!(Event::from_encoded(event.frame().clone()).unwrap(), event);
        }
        for junk in [
            &b""[..],
            b"\n",
            b"data: x\n",
            b"data: x\r\n\r\n",
            b"data: a\n\ndata: b\n\n",
            b"id: 1\nid: 2\n\n",
            b"bogus\n\n",
            b"data:no-space\n\n",
            b"id: a\0b\ndata: x\n\n",
        ] {
            assert!(
                Event::from_encoded(Bytes::copy_from_slice(junk)).is_err(),
                "{:?}",
                String::from_utf8_lossy(junk)
            );
        }
    }

    #[test]
    fn capacity_is_exact() {
        let builder = Event::builder()
            .id("12")
            .event("e")
            .data("a\r\nb")
            .comment("c");
        let len = builder.encoded_len();
        let event = builder.build().unwrap();
        // `encoded_len` reserves 20 digits for retry; without retry it is exact.
        assert_eq!(event.frame().len(), len);
    }
}
