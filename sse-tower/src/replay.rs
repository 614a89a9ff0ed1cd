//! Where a connecting client resumes from, and what it is sent to catch up.

use bytes::Bytes;
use http::request::Parts;
use sse_core::{Event, EventId, NotificationStore, Principal, Replay, StoreError};

/// The SSE event name of a reset: the client must refetch its state.
pub const RESET_EVENT: &str = "reset";

/// Where a client resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// No `Last-Event-ID`: a fresh client; nothing to replay.
    Fresh,
    /// Resume after this event id.
    After(EventId),
    /// A `Last-Event-ID` this service never sent (junk, non-UTF-8, too long).
    Invalid,
}

impl Position {
    /// Reads `Last-Event-ID`, or the query fallback when the header is
    /// absent. An empty value is a fresh start (browsers send none after an
    /// empty `id:`); anything else that is not one of our ids is `Invalid`.
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
            Some(bytes) => EventId::parse_header(&bytes).map_or(Self::Invalid, Self::After),
        }
    }
}

/// What to send a client so it is caught up with the store.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Encoded frames, oldest first: replayed changes, or one `reset`.
    pub(crate) frames: Vec<Bytes>,
    /// The id the client is at once these are sent.
    pub(crate) watermark: u64,
    /// How many changes were replayed.
    pub(crate) replayed: u64,
    /// Whether a `reset` was sent instead.
    pub(crate) reset: bool,
}

/// Asks the store what a client at `position` missed.
///
/// More than `limit` missed changes, a position older than the store keeps,
/// or an id the store never issued all become one `reset` event carrying
/// the newest id, so the client refetches and resumes from there.
pub(crate) async fn catch_up(
    store: &dyn NotificationStore,
    principal: &Principal,
    position: Position,
    limit: usize,
) -> Result<CatchUp, StoreError> {
    let after = match position {
        Position::Fresh => {
            // Nothing to send, but live events continue from the newest id:
            // the next one the client must see is `latest + 1`.
            let latest = store.last_event_id(principal).await?;
            return Ok(CatchUp {
                watermark: latest.map_or(0, EventId::get),
                ..CatchUp::default()
            });
        }
        Position::Invalid => {
            let latest = store.last_event_id(principal).await?;
            return reset(latest, "invalid-last-event-id");
        }
        Position::After(after) => after,
    };
    match store
        .since(principal, after, limit.saturating_add(1))
        .await?
    {
        Replay::Changes(changes) if changes.len() > limit => {
            let latest = store.last_event_id(principal).await?;
            reset(latest, "replay-limit")
        }
        Replay::Changes(changes) => {
            let mut frames = Vec::with_capacity(changes.len());
            let mut watermark = after.get();
            for change in &changes {
                let event = change
                    .to_event()
                    .map_err(|e| StoreError::Backend(Box::new(e)))?;
                watermark = watermark.max(change.id.get());
                frames.push(event.into_frame());
            }
            Ok(CatchUp {
                frames,
                watermark,
                replayed: changes.len() as u64,
                reset: false,
            })
        }
        Replay::HistoryGone { latest } => reset(latest, "history-gone"),
    }
}

fn reset(latest: Option<EventId>, reason: &'static str) -> Result<CatchUp, StoreError> {
    // An empty id clears the client's last event id, so its next reconnect
    // starts fresh instead of sending the unusable id again.
    let id = latest.map(|id| id.to_string()).unwrap_or_default();
    let event = Event::builder()
        .id(id)
        .event(RESET_EVENT)
        .data(format!("{{\"reason\":\"{reason}\"}}"))
        .build()
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(CatchUp {
        frames: vec![event.into_frame()],
        watermark: latest.map_or(0, EventId::get),
        replayed: 0,
        reset: true,
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
        assert_eq!(
            Position::from_request(&parts(None, "/"), q),
            Position::Fresh
        );
        assert_eq!(
            Position::from_request(&parts(Some(b"12"), "/"), q),
            Position::After(EventId(12))
        );
        assert_eq!(
            Position::from_request(&parts(None, "/?lastEventId=7"), q),
            Position::After(EventId(7))
        );
        assert_eq!(
            Position::from_request(&parts(None, "/?lastEventId=7"), None),
            Position::Fresh
        );
        assert_eq!(
            Position::from_request(&parts(Some(b"3"), "/?lastEventId=7"), q),
            Position::After(EventId(3))
        );
        assert_eq!(
            Position::from_request(&parts(Some(b""), "/"), q),
            Position::Fresh
        );
        for junk in [
            &b"abc"[..],
            b"-1",
            b"1.5",
            b"\xff\xfe",
            b"99999999999999999999999",
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
