//! Identifiers: who is connected ([`UserId`], [`SessionId`], [`GroupId`],
//! [`Topic`]), which connection ([`ConnectionId`]) and which event or
//! notification ([`EventId`], [`NotificationId`]).
//!
//! String identifiers wrap an `Arc<str>`: the hub keeps one key per
//! connection in several indexes, and cloning a key must not copy it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string as this identifier.
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                Self(id.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id.into())
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

string_id! {
    /// A user: every tab and device of one person.
    ///
    /// ```
    /// use sse_core::UserId;
    /// let alice = UserId::from("alice");
    /// assert_eq!(alice.as_str(), "alice");
    /// ```
    UserId
}

string_id! {
    /// One login session of a user (a browser's cookie, a device's token).
    ///
    /// ```
    /// use sse_core::SessionId;
    /// assert_eq!(SessionId::from("s-1").to_string(), "s-1");
    /// ```
    SessionId
}

string_id! {
    /// A group of users: an organization, a tenant, a team.
    ///
    /// ```
    /// use sse_core::GroupId;
    /// assert_eq!(GroupId::new("acme").as_str(), "acme");
    /// ```
    GroupId
}

string_id! {
    /// A named channel that principals may be allowed to read.
    ///
    /// ```
    /// use sse_core::Topic;
    /// assert_eq!(Topic::from("deploys").as_str(), "deploys");
    /// ```
    Topic
}

macro_rules! number_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The numeric value.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            /// Parses the canonical decimal form: ASCII digits only, no sign,
            /// no whitespace, at most 20 digits, fitting in a `u64`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_decimal(s.as_bytes()).map(Self)
            }
        }
    };
}

number_id! {
    /// The id of a change event, assigned by a [`NotificationStore`](crate::NotificationStore).
    ///
    /// Consecutive per recipient in the order events become visible;
    /// it is what the stream sends as the SSE `id:` and what a reconnecting
    /// client sends back as `Last-Event-ID`.
    ///
    /// ```
    /// use sse_core::EventId;
    /// let id: EventId = "42".parse()?;
    /// assert_eq!(id, EventId(42));
    /// assert!("4 2".parse::<EventId>().is_err());
    /// # Ok::<(), sse_core::id::ParseIdError>(())
    /// ```
    EventId
}

number_id! {
    /// The id of a stored notification, unique within its store.
    ///
    /// ```
    /// use sse_core::NotificationId;
    /// assert_eq!("7".parse::<NotificationId>()?, NotificationId(7));
    /// # Ok::<(), sse_core::id::ParseIdError>(())
    /// ```
    NotificationId
}

number_id! {
    /// One live connection (one subscription to a hub).
    ///
    /// Unique within a hub; hubs that span nodes make it unique across them.
    ///
    /// ```
    /// use sse_core::ConnectionId;
    /// assert_eq!(ConnectionId(9).to_string(), "9");
    /// ```
    ConnectionId
}

impl EventId {
    /// Parses a `Last-Event-ID` value sent by a client, which may be any bytes.
    ///
    /// Only the canonical decimal form this crate emits is accepted; anything
    /// else (junk, non-UTF-8, oversized) is an error, never a panic.
    ///
    /// ```
    /// use sse_core::EventId;
    /// assert_eq!(EventId::parse_header(b"17"), Ok(EventId(17)));
    /// assert!(EventId::parse_header(b"\xff\xfe").is_err());
    /// assert!(EventId::parse_header(&[b'9'; 65536]).is_err());
    /// ```
    pub fn parse_header(value: &[u8]) -> Result<Self, ParseIdError> {
        parse_decimal(value).map(Self)
    }
}

/// A string is not the canonical decimal form of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: expected 1 to 20 ASCII digits fitting in a u64")]
pub struct ParseIdError;

fn parse_decimal(bytes: &[u8]) -> Result<u64, ParseIdError> {
    if bytes.is_empty() || bytes.len() > 20 {
        return Err(ParseIdError);
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(ParseIdError);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(ParseIdError)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_ids_parse_strictly() {
        assert_eq!("0".parse::<EventId>(), Ok(EventId(0)));
        assert_eq!(
            "18446744073709551615".parse::<EventId>(),
            Ok(EventId(u64::MAX))
        );
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1a",
            "18446744073709551616",
            "000000000000000000001",
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(ParseIdError), "{bad:?}");
        }
    }

    #[test]
    fn string_ids_borrow_as_str() {
        use std::collections::HashMap;
        let mut map = HashMap::new();
        map.insert(UserId::from("alice"), 1);
        assert_eq!(map.get("alice"), Some(&1));
        assert_eq!(format!("{:?}", UserId::from("a\"b")), "\"a\\\"b\"");
    }
}
