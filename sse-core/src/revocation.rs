//! [`Revocation`]: ending a user's streams (one session's, or all) on every
//! node, durably.
//!
//! A logout must end the session's open streams on every node, even when
//! the message that says so cannot travel right then (a broker down, a
//! node cut off). So a revocation is written to the event log, under the
//! user's audience, like any durable event: every node delivers it in log
//! order, filling it from the log if the live message was lost (after the
//! link returns, or from the log's head on a quiet system), and every
//! stream of that user reads it. A stream that receives one for its
//! session (or for all the user's sessions) after it opened ends; its
//! client reconnects and is authenticated again. A revocation is never
//! written to a client, and one from before a stream opened (met in its
//! replay) does not end it: the stream authenticated after it.
//!
//! [`Notifier::revoke`](crate::Notifier::revoke) writes one;
//! `sse-tower` streams honour it.

use crate::{Event, EventError, SessionId};

/// The event name of a revocation record. Reserved: an event built with
/// it is refused ([`EventError::ReservedEventName`]).
pub const REVOCATION_EVENT: &str = "sse.revoke";

/// Whose streams a revocation ends (always of the user it is stored for).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Every stream of the user.
    AllSessions,
    /// The user's streams of this session.
    Session(SessionId),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

impl Revocation {
    /// Whether a stream of a principal with `session` (of the revoked
    /// user) ends.
    pub fn ends(&self, session: Option<&SessionId>) -> bool {
        match self {
            Self::AllSessions => true,
            Self::Session(revoked) => session == Some(revoked),
        }
    }

    /// The revocation as an event, to append to the user's audience.
    ///
    /// ```
    /// use sse_core::{Revocation, SessionId};
    /// let event = Revocation::Session(SessionId::from("s-1")).to_event()?;
    /// assert_eq!(event.revocation(), Some(Revocation::Session(SessionId::from("s-1"))));
    /// # Ok::<(), sse_core::EventError>(())
    /// ```
    pub fn to_event(&self) -> Result<Event, EventError> {
        let record = Record {
            session: match self {
                Self::AllSessions => None,
                Self::Session(session) => Some(session.as_str().to_owned()),
            },
        };
        let data = serde_json::to_string(&record)?;
        Event::builder().data(data).build_reserved(REVOCATION_EVENT)
    }
}

impl Event {
    /// The revocation this event records, if it is one (see
    /// [`crate::revocation`]).
    pub fn revocation(&self) -> Option<Revocation> {
        let frame = &self.frame()[..];
        // `id: …` first when stored, then the name: a byte compare for
        // every other event.
        let rest = match self.id() {
            Some(id) => frame
                .strip_prefix(b"id: ")?
                .strip_prefix(id.as_bytes())?
                .strip_prefix(b"\n")?,
            None => frame,
        };
        let rest = rest.strip_prefix(b"event: sse.revoke\ndata: ")?;
        let end = rest.iter().position(|b| *b == b'\n')?;
        let record: Record = serde_json::from_slice(&rest[..end]).ok()?;
        Some(match record.session {
            Some(session) => Revocation::Session(SessionId::from(session)),
            None => Revocation::AllSessions,
        })
    }
}
