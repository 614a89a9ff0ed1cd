//! [`Cursor`]: a position in an event log's history, as clients carry it.

use std::fmt;
use std::str::FromStr;

/// A position in one log's history: the SSE `id:` of a durable event, and
/// what a reconnecting client sends back as `Last-Event-ID`.
///
/// Written `<epoch>.<position>`: eight base-32 characters naming the log's
/// history, a dot, and the position in decimal (`k3qz7m2a.1042`). At most
/// 29 bytes of `[a-z2-7.0-9]`, so it needs no percent-encoding in a query
/// string and stays well inside the 128 bytes of CORS-safelisted
/// characters browsers send without a preflight.
///
/// The **epoch** changes whenever the history does not continue the one a
/// client may hold a position in (an in-memory log after a restart, a
/// Redis log whose data was lost): a cursor from another epoch gets a
/// `reset`, never a replay of unrelated events. The **position** counts
/// the log's events, 1, 2, 3, … with no gap, in the order they became
/// visible; position 0 is "before the first event".
///
/// ```
/// use sse_core::Cursor;
/// let cursor: Cursor = "k3qz7m2a.1042".parse()?;
/// assert_eq!(cursor.position(), 1042);
/// assert_eq!(cursor.to_string(), "k3qz7m2a.1042");
/// assert_eq!(cursor.next().position(), 1043);
/// assert!("k3qz7m2a.01".parse::<Cursor>().is_err());
/// assert!("42".parse::<Cursor>().is_err());
/// # Ok::<(), sse_core::log::ParseCursorError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    epoch: Epoch,
    position: u64,
}

/// The name of one log history; see [`Cursor`]. 40 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(u64);

/// A string is not a cursor this crate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a cursor: expected <epoch>.<position>, eight base-32 characters, a dot and a decimal number"
)]
pub struct ParseCursorError;

const EPOCH_CHARS: usize = 8;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl Epoch {
    /// A fresh epoch from the operating system's random generator (a
    /// randomly keyed hash of the time if it fails).
    pub fn random() -> Self {
        let mut bytes = [0u8; 8];
        let bits = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => {
                use std::hash::{BuildHasher, RandomState};
                RandomState::new().hash_one(std::time::SystemTime::now())
            }
        };
        Self(bits & ((1 << 40) - 1))
    }

    /// The epoch as a number below 2⁴⁰ (for stores that keep it as one).
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The epoch `bits` (only the low 40 bits are kept).
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits & ((1 << 40) - 1))
    }

    /// The cursor at `position` in this history.
    pub const fn at(self, position: u64) -> Cursor {
        Cursor {
            epoch: self,
            position,
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; EPOCH_CHARS];
        for (i, byte) in out.iter_mut().enumerate() {
            let shift = 5 * (EPOCH_CHARS - 1 - i);
            *byte = BASE32[((self.0 >> shift) & 31) as usize];
        }
        // Every byte is from the ASCII alphabet above.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({self})")
    }
}

impl FromStr for Epoch {
    type Err = ParseCursorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != EPOCH_CHARS {
            return Err(ParseCursorError);
        }
        text.bytes()
            .try_fold(0u64, |bits, byte| {
                let digit = BASE32
                    .iter()
                    .position(|c| *c == byte)
                    .ok_or(ParseCursorError)?;
                Ok((bits << 5) | digit as u64)
            })
            .map(Self)
    }
}

impl Cursor {
    /// The log history this position belongs to.
    pub const fn epoch(self) -> Epoch {
        self.epoch
    }

    /// The position: how many events of the history precede or are this
    /// one (0: before the first).
    pub const fn position(self) -> u64 {
        self.position
    }

    /// The position after this one.
    pub const fn next(self) -> Self {
        Self {
            epoch: self.epoch,
            position: self.position.saturating_add(1),
        }
    }

    /// Parses a `Last-Event-ID` value, which may be any bytes: anything but
    /// the form [`Display`](fmt::Display) writes is an error, never a panic.
    ///
    /// ```
    /// use sse_core::Cursor;
    /// assert!(Cursor::parse_header(b"abcdefgh.7").is_ok());
    /// assert!(Cursor::parse_header(b"\xff\xfe").is_err());
    /// assert!(Cursor::parse_header(&[b'9'; 65536]).is_err());
    /// ```
    pub fn parse_header(value: &[u8]) -> Result<Self, ParseCursorError> {
        if value.len() > MAX_LEN {
            return Err(ParseCursorError);
        }
        std::str::from_utf8(value)
            .map_err(|_| ParseCursorError)?
            .parse()
    }
}

/// The longest cursor: 8 + 1 + 20 bytes.
const MAX_LEN: usize = EPOCH_CHARS + 1 + 20;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.position)
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({self})")
    }
}

impl FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (epoch, position) = text.split_once('.').ok_or(ParseCursorError)?;
        let canonical = !position.is_empty()
            && position.len() <= 20
            && position.bytes().all(|b| b.is_ascii_digit())
            && (position == "0" || !position.starts_with('0'));
        if !canonical {
            return Err(ParseCursorError);
        }
        Ok(Self {
            epoch: epoch.parse()?,
            position: position.parse().map_err(|_| ParseCursorError)?,
        })
    }
}

impl serde::Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_stay_small_and_safe() {
        for _ in 0..100 {
            let cursor = Epoch::random().at(u64::MAX);
            let text = cursor.to_string();
            assert!(text.len() <= MAX_LEN && text.len() <= 128);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
            );
            assert_eq!(text.parse::<Cursor>(), Ok(cursor));
        }
        assert_eq!(Epoch::from_bits(0).at(0).to_string(), "aaaaaaaa.0");
    }

    #[test]
    fn only_the_canonical_form_parses() {
        for bad in [
            "",
            ".",
            "abcdefgh.",
            ".12",
            "abcdefg.1",
            "abcdefghi.1",
            "ABCDEFGH.1",
            "abcdefg1.1",
            "abcdefgh.01",
            "abcdefgh.-1",
            "abcdefgh.1 ",
            "abcdefgh.18446744073709551616",
            "abcdefgh.1.2",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "abcdefgh.18446744073709551615"
                .parse::<Cursor>()
                .map(Cursor::position),
            Ok(u64::MAX)
        );
    }
}
