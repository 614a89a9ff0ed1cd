//! Where a connecting client resumes from, and what it is sent to catch up.

use bytes::Bytes;
use http::request::Parts;
use sse_core::log::Replay;
use sse_core::{Cursor, Event, EventLog, Principal, StoreError};

/// The SSE event name of a reset: the client must refetch its state.
pub const RESET_EVENT: &str = "reset";

/// Where a client resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// No `Last-Event-ID`: a fresh client; nothing to replay.
    Fresh,
    /// Resume after this position.
    After(Cursor),
    /// A `Last-Event-ID` this service never sent (junk, non-UTF-8, too
    /// long, or an id of another form).
    Invalid,
}

impl Position {
    /// Reads `Last-Event-ID`, or the query fallback when the header is
    /// absent. An empty value is a fresh start (browsers send none after an
    /// empty `id:`); anything else that is not one of our cursors is
    /// `Invalid`.
    pub(crate) fn from_request(parts: &Parts, query_name: Option<&str>) -> Self {
        let header = parts
            .headers
            .get("last-event-id")
            .map(|v| v.as_bytes().to_vec());
        let value = header.or_else(|| {
            let query = parts.uri.query()?;
            Some(sse_core::query::param(query, query_name?)?.into_bytes())
        });
        match value {
            None => Self::Fresh,
            Some(bytes) if bytes.is_empty() => Self::Fresh,
            Some(bytes) => Cursor::parse_header(&bytes).map_or(Self::Invalid, Self::After),
        }
    }
}

/// What to send a client so it is caught up with the log.
#[derive(Debug)]
pub(crate) struct CatchUp {
    /// Encoded frames, oldest first: replayed events, or one `reset`.
    pub(crate) frames: Vec<Bytes>,
    /// Where the client stands once these are sent: live events at or
    /// below it were replayed (or are not for it).
    pub(crate) watermark: Cursor,
    /// Where the client stood before them (the `connected` event's id).
    pub(crate) start: Cursor,
    /// How many events were replayed.
    pub(crate) replayed: u64,
    /// Whether a `reset` was sent instead.
    pub(crate) reset: bool,
    /// Whether the events caught up hold a revocation of the principal's
    /// session (see `sse_core::revocation`): a stream that was open before
    /// it ends; one opening now authenticated after it.
    pub(crate) revoked: bool,
}

/// Asks the log what a client at `position` missed.
///
/// More than `limit` missed events, a position older than the log keeps,
/// or an id the log never issued all become one `reset` event carrying the
/// head as its id, so the client refetches and resumes from there.
pub(crate) async fn catch_up(
    log: &dyn EventLog,
    principal: &Principal,
    position: Position,
    limit: usize,
) -> Result<CatchUp, StoreError> {
    let after = match position {
        Position::Fresh => {
            // Nothing to send, but the client starts at the head: the
            // `connected` event carries it, so a reconnect before any other
            // event still resumes without a gap.
            let head = log.head().await?;
            return Ok(CatchUp {
                frames: Vec::new(),
                watermark: head,
                start: head,
                replayed: 0,
                reset: false,
                revoked: false,
            });
        }
        Position::Invalid => {
            let head = log.head().await?;
            return reset(head, "invalid-last-event-id");
        }
        Position::After(after) => after,
    };
    match log.since(principal, after, limit.saturating_add(1)).await? {
        Replay::Events { events, .. } if events.len() > limit => {
            let head = log.head().await?;
            reset(head, "replay-limit")
        }
        Replay::Events { events, head } => {
            // Revocations are records for streams, never sent to clients.
            let mut revoked = false;
            let frames: Vec<Bytes> = events
                .into_iter()
                .filter(|event| match event.revocation() {
                    Some(revocation) => {
                        revoked |= revocation.ends(principal.session());
                        false
                    }
                    None => true,
                })
                .map(Event::into_frame)
                .collect();
            Ok(CatchUp {
                replayed: frames.len() as u64,
                frames,
                watermark: head,
                start: after,
                reset: false,
                revoked,
            })
        }
        Replay::HistoryGone { head } => reset(head, "history-gone"),
    }
}

fn reset(head: Cursor, reason: &'static str) -> Result<CatchUp, StoreError> {
    let event = Event::builder()
        .id(head.to_string())
        .event(RESET_EVENT)
        .data(format!("{{\"reason\":\"{reason}\"}}"))
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(CatchUp {
        frames: vec![event.into_frame()],
        watermark: head,
        start: head,
        replayed: 0,
        reset: true,
        revoked: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(header: Option<&[u8]>, uri: &str) -> Parts {
        let mut builder = http::Request::get(uri);
        if let Some(value) = header {
            builder = builder.header(
                "last-event-id",
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn last_event_id_sources_and_junk() {
        let q = Some("lastEventId");
        let cursor = |text: &str| Position::After(text.parse().unwrap());
        assert_eq!(
            Position::from_request(&parts(None, "/"), q),
            Position::Fresh
        );
        assert_eq!(
            Position::from_request(&parts(Some(b"abcdefgh.12"), "/"), q),
            cursor("abcdefgh.12")
        );
        assert_eq!(
            Position::from_request(&parts(None, "/?lastEventId=abcdefgh.7"), q),
            cursor("abcdefgh.7")
        );
        assert_eq!(
            Position::from_request(&parts(None, "/?lastEventId=abcdefgh.7"), None),
            Position::Fresh
        );
        assert_eq!(
            Position::from_request(&parts(Some(b"abcdefgh.3"), "/?lastEventId=abcdefgh.7"), q),
            cursor("abcdefgh.3")
        );
        assert_eq!(
            Position::from_request(&parts(Some(b""), "/"), q),
            Position::Fresh
        );
        for junk in [
            &b"abc"[..],
            b"12",
            b"-1",
            b"abcdefgh.1.5",
            b"\xff\xfe",
            b"abcdefgh.99999999999999999999999",
        ] {
            assert_eq!(
                Position::from_request(&parts(Some(junk), "/"), q),
                Position::Invalid,
                "{junk:?}"
            );
        }
        let huge = vec![b'7'; 64 * 1024];
        assert_eq!(
            Position::from_request(&parts(Some(&huge), "/"), q),
            Position::Invalid
        );
        assert_eq!(
            Position::from_request(&parts(None, "/?lastEventId=%FF%00"), q),
            Position::Invalid
        );
    }
}
