//! A streaming parser for `text/event-stream` that follows the WHATWG HTML
//! "server-sent events" interpretation algorithm step by step.
//!
//! - Input is UTF-8 decoded with replacement (U+FFFD for each maximal
//!   invalid subpart), and one leading byte order mark is dropped.
//! - Lines end at CRLF, LF or CR; a CR at the end of one chunk followed by
//!   LF at the start of the next is one line end.
//! - A line starting with `:` is a comment. Otherwise the field name runs to
//!   the first `:` (or the whole line), and one leading space of the value
//!   is removed.
//! - `event` sets the type buffer; `data` appends the value and a LF to the
//!   data buffer; `id` sets the last event id buffer unless the value
//!   contains NUL; `retry` sets the reconnection time if the value is only
//!   ASCII digits; other fields are ignored.
//! - A blank line dispatches: the last event id is updated, and if the data
//!   buffer is non-empty an event is produced (its trailing LF removed, type
//!   `message` if unset). The data and type buffers are then reset; the
//!   last event id is kept across events.
//! - At the end of the stream an incomplete event is discarded.
//!
//! Any split of the input into chunks yields the same items.
//!
//! ```
//! use sse_conformance::parser::{Item, Parser};
//!
//! let mut parser = Parser::new();
//! let mut items = parser.feed(b"id: 1\nevent: greet\ndata: hel");
//! items.extend(parser.feed(b"lo\r\n\r\n"));
//! let Item::Event(event) = &items[0] else { panic!() };
//! assert_eq!((event.event_type.as_str(), event.data.as_str(), event.last_event_id.as_str()), ("greet", "hello", "1"));
//! ```

/// An event the parser dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type (`message` when the stream set none).
    pub event_type: String,
    /// The data, lines joined with `\n`.
    pub data: String,
    /// The stream's last event id when this event was dispatched.
    pub last_event_id: String,
}

/// What the parser observed, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An event was dispatched.
    Event(ParsedEvent),
    /// A `retry:` field set the reconnection time, in milliseconds.
    Retry(u64),
    /// A comment line (without its leading `:`), as heartbeats are sent.
    Comment(String),
}

/// The streaming parser; feed it chunks as they arrive.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of an incomplete UTF-8 sequence at the end of the last chunk.
    utf8_tail: Vec<u8>,
    started: bool,
    line: String,
    after_cr: bool,
    event_type: String,
    data: String,
    last_event_id_buffer: String,
    last_event_id: String,
    retry: Option<u64>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of bytes; returns what it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        self.feed_into(chunk, &mut items);
        items
    }

    /// Like [`Parser::feed`], appending to `items`.
    pub fn feed_into(&mut self, chunk: &[u8], items: &mut Vec<Item>) {
        let joined;
        let mut input: &[u8] = chunk;
        if !self.utf8_tail.is_empty() {
            let mut bytes = std::mem::take(&mut self.utf8_tail);
            bytes.extend_from_slice(chunk);
            joined = bytes;
            input = &joined;
        }
        loop {
            match std::str::from_utf8(input) {
                Ok(text) => {
                    self.decoded(text, items);
                    return;
                }
                Err(error) => {
                    let (valid, rest) = input.split_at(error.valid_up_to());
                    // `valid` is valid UTF-8 by construction.
                    if let Ok(text) = std::str::from_utf8(valid) {
                        self.decoded(text, items);
                    }
                    match error.error_len() {
                        Some(bad) => {
                            self.decoded("\u{FFFD}", items);
                            input = &rest[bad..];
                        }
                        None => {
                            // An incomplete sequence: wait for the next chunk.
                            self.utf8_tail = rest.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream. An incomplete event is discarded, as the spec says;
    /// nothing is returned.
    pub fn finish(&mut self) {
        *self = Self {
            last_event_id: std::mem::take(&mut self.last_event_id),
            retry: self.retry,
            ..Self::default()
        };
    }

    /// The stream's last event id (what a reconnect sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the stream last set, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    fn decoded(&mut self, mut text: &str, items: &mut Vec<Item>) {
        if !self.started && !text.is_empty() {
            self.started = true;
            text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        }
        while !text.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(rest) = text.strip_prefix('\n') {
                    text = rest;
                    continue;
                }
            }
            match text.find(['\r', '\n']) {
                None => {
                    self.line.push_str(text);
                    return;
                }
                Some(at) => {
                    self.line.push_str(&text[..at]);
                    self.after_cr = text.as_bytes()[at] == b'\r';
                    text = &text[at + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, items);
                }
            }
        }
    }

    fn process_line(&mut self, line: &str, items: &mut Vec<Item>) {
        if line.is_empty() {
            self.dispatch(items);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.to_owned()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_event_id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, so parsing fails only on overflow: ignored too.
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(ms);
                    items.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, items: &mut Vec<Item>) {
        self.last_event_id.clone_from(&self.last_event_id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        items.push(Item::Event(ParsedEvent {
            event_type,
            data: std::mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        }));
        self.event_type.clear();
    }
}

/// Parses a complete stream in one go.
///
/// ```
/// let items = sse_conformance::parser::parse(b"data: a\n\ndata: b\n\n");
/// assert_eq!(items.len(), 2);
/// ```
pub fn parse(stream: &[u8]) -> Vec<Item> {
    let mut parser = Parser::new();
    let items = parser.feed(stream);
    parser.finish();
    items
}

/// The events of a complete stream, without retries and comments.
///
/// ```
/// let events = sse_conformance::parser::events(b": hi\nretry: 10\ndata: x\n\n");
/// assert_eq!(events[0].data, "x");
/// ```
pub fn events(stream: &[u8]) -> Vec<ParsedEvent> {
    parse(stream)
        .into_iter()
        .filter_map(|item| match item {
            Item::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}
