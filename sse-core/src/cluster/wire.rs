//! The one wire encoding of an event and its audience between nodes.
//!
//! Every hub that spans nodes (Redis, Redis Cluster, NATS, PostgreSQL, the
//! next engine) puts the same bytes on its channel: an [`Envelope`], the
//! audience first, then the event in its [wire form](Event::to_wire).
//!
//! ```text
//! envelope  = audience event
//! audience  = "*"                          ; everyone
//!           / kind length ":" name         ; exactly `length` bytes of name
//!           / "c" 32HEXDIG                 ; one connection (node, then number)
//! kind      = "u" / "s" / "g" / "t"        ; user, session, group, topic
//! length    = "0" / %x31-39 *4DIGIT        ; decimal, no leading zero, at most 65535
//! event     = ""                           ; Event::disconnect
//!           / Event::to_wire bytes         ; checked by Event::from_wire
//! ```
//!
//! # Why it cannot carry one audience's frame to another
//!
//! The encoding is **injective**: the name is length-prefixed, so no byte
//! of it (a line feed, a colon, a `*`) is ever read as structure, and
//! every field has exactly one spelling (lengths have no leading zero,
//! hex digits are lower case). Two different envelopes never share bytes,
//! so whatever an id holds, an event addressed to `user("x\ndata: evil")`
//! decodes as addressed to that user and to nobody else. The decoder
//! refuses anything that is not such an envelope: an unknown kind, a
//! length past the end or not canonical, a name that is not UTF-8, a
//! connection id that is not 32 lower-case hex digits, and an event that
//! [`Event::from_wire`] refuses (more than one frame, a line that is not a
//! field this crate writes). A property test feeds it arbitrary names and
//! arbitrary bytes.
//!
//! The envelope is UTF-8 text whenever the event is (every event this
//! crate builds is), so PostgreSQL's text-only `NOTIFY` carries it as it
//! is; binary-safe engines carry it as bytes.
//!
//! ```
//! use sse_core::cluster::Envelope;
//! use sse_core::{Audience, Event};
//!
//! let evil = Audience::user("x\ndata: evil");
//! let event = Event::builder().event("notification").data("hi").build()?;
//! let bytes = Envelope::new(evil.clone(), event.clone()).encode();
//! let received = Envelope::decode(bytes)?;
//! assert_eq!(received.audience, evil); // never user "x"
//! assert_eq!(received.event, event);
//! assert!(Envelope::decode("u1:xdata: a\n\ndata: b\n\n".into()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Audience, ConnectionId, Event, EventError};

/// The longest audience name an envelope carries, in bytes. Longer names
/// are refused when publishing ([`WireError::NameTooLong`]), never cut.
pub const MAX_NAME_LEN: usize = 65_535;

/// An event and who it is for, as it travels between nodes; see the
/// [module docs](self) for the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Who the event is for.
    pub audience: Audience,
    /// The event, with its conflation key, or [`Event::disconnect`].
    pub event: Event,
}

/// Why bytes are not an [`Envelope`], or an envelope cannot be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes do not start with an audience this encoding writes.
    #[error("not an envelope: {0}")]
    Malformed(&'static str),
    /// The audience is fine but the event is not one this crate encodes.
    #[error("the envelope's event is invalid: {0}")]
    Event(#[from] EventError),
    /// An audience name is longer than [`MAX_NAME_LEN`] bytes.
    #[error(
        "an audience name of {0} bytes is longer than the {MAX_NAME_LEN} a hub carries between nodes; use shorter ids"
    )]
    NameTooLong(usize),
}

impl Envelope {
    /// `event` for `audience`.
    pub fn new(audience: Audience, event: Event) -> Self {
        Self { audience, event }
    }

    /// The envelope's bytes; empty (which every decoder refuses) for an
    /// audience name longer than [`MAX_NAME_LEN`]. Hubs publish with
    /// [`Envelope::try_encode`], which says so instead.
    pub fn encode(&self) -> Bytes {
        self.try_encode().unwrap_or_default()
    }

    /// The envelope's bytes, or why the audience cannot travel.
    pub fn try_encode(&self) -> Result<Bytes, WireError> {
        let wire = self.event.to_wire();
        let mut out = BytesMut::with_capacity(audience_len(&self.audience) + wire.len());
        encode_audience(&self.audience, &mut out)?;
        out.put_slice(&wire);
        Ok(out.freeze())
    }

    /// Reads an envelope, refusing anything [`Envelope::encode`] does not
    /// write.
    pub fn decode(bytes: Bytes) -> Result<Self, WireError> {
        let (audience, at) = decode_audience(&bytes)?;
        let event = Event::from_wire(bytes.slice(at..))?;
        Ok(Self { audience, event })
    }
}

/// Bytes the encoded audience takes (a close upper bound).
fn audience_len(audience: &Audience) -> usize {
    match audience {
        Audience::Everyone => 1,
        Audience::Connection(_) => 33,
        Audience::User(name) => 7 + name.as_str().len(),
        Audience::Session(name) => 7 + name.as_str().len(),
        Audience::Group(name) => 7 + name.as_str().len(),
        Audience::Topic(name) => 7 + name.as_str().len(),
    }
}

/// Writes `audience` as the envelope's head.
pub fn encode_audience(audience: &Audience, out: &mut BytesMut) -> Result<(), WireError> {
    let (kind, name) = match audience {
        Audience::Everyone => {
            out.put_u8(b'*');
            return Ok(());
        }
        Audience::Connection(id) => {
            out.put_u8(b'c');
            out.put_slice(id.to_string().as_bytes());
            return Ok(());
        }
        Audience::User(name) => (b'u', name.as_str()),
        Audience::Session(name) => (b's', name.as_str()),
        Audience::Group(name) => (b'g', name.as_str()),
        Audience::Topic(name) => (b't', name.as_str()),
    };
    if name.len() > MAX_NAME_LEN {
        return Err(WireError::NameTooLong(name.len()));
    }
    out.put_u8(kind);
    let mut digits = [0; 20];
    out.put_slice(decimal(name.len(), &mut digits));
    out.put_u8(b':');
    out.put_slice(name.as_bytes());
    Ok(())
}

/// Reads the audience at the start of `bytes`, and where the rest starts.
pub fn decode_audience(bytes: &[u8]) -> Result<(Audience, usize), WireError> {
    let Some((&kind, rest)) = bytes.split_first() else {
        return Err(WireError::Malformed("it is empty"));
    };
    match kind {
        b'*' => return Ok((Audience::Everyone, 1)),
        b'c' => {
            let hex = rest
                .get(..32)
                .filter(|hex| hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .ok_or(WireError::Malformed(
                    "a connection id is not 32 lower-case hex digits",
                ))?;
            let id = std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| hex.parse::<ConnectionId>().ok())
                .ok_or(WireError::Malformed("a connection id does not parse"))?;
            return Ok((Audience::Connection(id), 33));
        }
        b'u' | b's' | b'g' | b't' => {}
        _ => return Err(WireError::Malformed("unknown audience kind")),
    }
    let colon = rest
        .iter()
        .take(6)
        .position(|b| *b == b':')
        .ok_or(WireError::Malformed("a name's length is missing"))?;
    let digits = &rest[..colon];
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if !canonical {
        return Err(WireError::Malformed(
            "a name's length is not canonical decimal",
        ));
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .filter(|len| *len <= MAX_NAME_LEN)
        .ok_or(WireError::Malformed("a name's length is out of range"))?;
    let start = 1 + colon + 1;
    let name = bytes
        .get(start..start + len)
        .ok_or(WireError::Malformed("a name is cut short"))?;
    let name =
        std::str::from_utf8(name).map_err(|_| WireError::Malformed("a name is not UTF-8"))?;
    let audience = match kind {
        b'u' => Audience::user(name),
        b's' => Audience::session(name),
        b'g' => Audience::group(name),
        _ => Audience::topic(name),
    };
    Ok((audience, start + len))
}

/// `value` in decimal, written into the end of `buffer`.
fn decimal(mut value: usize, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buffer[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> Event {
        Event::builder().event("n").data("x").build().unwrap()
    }

    #[test]
    fn every_audience_kind_round_trips() {
        for audience in [
            Audience::Everyone,
            Audience::user(""),
            Audience::user("alice"),
            Audience::session("s:1"),
            Audience::group("acme\n"),
            Audience::topic("u5:x"),
            Audience::Connection(ConnectionId::new(u64::MAX, 7)),
        ] {
            for event in [event(), Event::disconnect(), {
                Event::builder()
                    .data("p")
                    .conflate("job:1")
                    .build()
                    .unwrap()
            }] {
                let envelope = Envelope::new(audience.clone(), event);
                let back = Envelope::decode(envelope.try_encode().unwrap()).unwrap();
                assert_eq!(back, envelope);
                assert_eq!(back.event.conflation_key(), envelope.event.conflation_key());
            }
        }
    }

    #[test]
    fn an_injected_line_stays_inside_its_audience() {
        let bytes = Envelope::new(Audience::user("x\ndata: evil"), event()).encode();
        assert_eq!(&bytes[..], b"u12:x\ndata: evilevent: n\ndata: x\n\n");
        let back = Envelope::decode(bytes).unwrap();
        assert_eq!(back.audience, Audience::user("x\ndata: evil"));
        assert_eq!(&back.event.frame()[..], b"event: n\ndata: x\n\n");
    }

    #[test]
    fn anything_else_is_refused() {
        for junk in [
            &b""[..],
            b"x",
            b"u",
            b"u:",
            b"u01:xdata: x\n\n",
            b"u+1:xdata: x\n\n",
            b"u5:abc",
            b"u999999:x",
            b"u1:\xffdata: x\n\n",
            b"u1:xdata: a\n\ndata: b\n\n",
            b"u1:xnot a field\n\n",
            b"c0123",
            b"c0000000000000000000000000000000Adata: x\n\n",
            b"*\n",
        ] {
            assert!(
                Envelope::decode(Bytes::copy_from_slice(junk)).is_err(),
                "{:?}",
                String::from_utf8_lossy(junk)
            );
        }
        let long = Audience::topic("t".repeat(MAX_NAME_LEN + 1));
        assert!(matches!(
            Envelope::new(long, event()).try_encode(),
            Err(WireError::NameTooLong(_))
        ));
    }

    /// Any characters, control characters and line breaks included.
    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
    }

    fn audience() -> impl Strategy<Value = Audience> {
        prop_oneof![
            Just(Audience::Everyone),
            name().prop_map(Audience::user),
            name().prop_map(Audience::session),
            name().prop_map(Audience::group),
            name().prop_map(Audience::topic),
            (any::<u64>(), any::<u64>())
                .prop_map(|(node, seq)| Audience::Connection(ConnectionId::new(node, seq))),
        ]
    }

    proptest! {
        #[test]
        fn decoding_inverts_encoding_for_any_names(audience in audience(), data in name()) {
            let event = Event::builder().data(data).build().unwrap();
            let envelope = Envelope::new(audience, event);
            let bytes = envelope.try_encode().unwrap();
            prop_assert_eq!(Envelope::decode(bytes).unwrap(), envelope);
        }

        #[test]
        fn distinct_envelopes_never_share_bytes(a in audience(), b in audience(), data in "[a-z\n]{0,8}") {
            let event = Event::builder().data(data).build().unwrap();
            let (x, y) = (Envelope::new(a, event.clone()), Envelope::new(b, event));
            prop_assert_eq!(x.encode() == y.encode(), x == y);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_what_decodes_re_encodes_the_same(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(envelope) = Envelope::decode(Bytes::from(bytes.clone())) {
                prop_assert_eq!(&envelope.encode()[..], &bytes[..]);
            }
        }
    }
}
