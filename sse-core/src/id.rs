//! Identifiers: who is connected ([`UserId`], [`SessionId`], [`GroupId`],
//! [`Topic`]), which connection ([`ConnectionId`]) and which notification
//! ([`NotificationId`]). Positions in the event log are
//! [`Cursor`](crate::Cursor)s.
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
    /// The id of a stored notification, unique within its store: a store
    /// never hands an id out again, even after its notification is
    /// deleted (clients may remember ids they saw deleted).
    ///
    /// ```
    /// use sse_core::NotificationId;
    /// assert_eq!("7".parse::<NotificationId>()?, NotificationId(7));
    /// # Ok::<(), sse_core::id::ParseIdError>(())
    /// ```
    NotificationId
}

/// One live connection (one subscription to a hub), unique across every
/// node that shares the hub.
///
/// 128 bits: the node the connection lives on (64 bits; random per
/// [`InMemoryHub`](crate::InMemoryHub), and claimed exclusively by hubs
/// that span nodes, such as `sse-redis`'s) and a per-node counter that
/// never repeats. [`Audience::Connection`](crate::Audience::Connection)
/// therefore reaches that one connection and never another node's.
/// Written as 32 lowercase hex digits.
///
/// ```
/// use sse_core::ConnectionId;
/// let id = ConnectionId::new(0xabc, 9);
/// assert_eq!(id.to_string(), "0000000000000abc0000000000000009");
/// assert_eq!(id.to_string().parse::<ConnectionId>()?, id);
/// assert_eq!((id.node(), id.seq()), (0xabc, 9));
/// # Ok::<(), sse_core::id::ParseIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u128);

impl ConnectionId {
    /// The `seq`-th connection of node `node`.
    pub const fn new(node: u64, seq: u64) -> Self {
        Self(((node as u128) << 64) | seq as u128)
    }

    /// The node the connection lives on.
    pub const fn node(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The connection's number on its node.
    pub const fn seq(self) -> u64 {
        self.0 as u64
    }

    /// The id as one 128-bit number.
    pub const fn get(self) -> u128 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({:032x})", self.0)
    }
}

impl FromStr for ConnectionId {
    type Err = ParseIdError;

    /// Parses the 32 hex digits [`Display`](fmt::Display) writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseIdError);
        }
        u128::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| ParseIdError)
    }
}

impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A string is not the canonical decimal form of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a valid id: expected the form this crate writes (decimal digits fitting in a u64, or 32 hex digits for a connection)"
)]
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
        assert_eq!("0".parse::<NotificationId>(), Ok(NotificationId(0)));
        assert_eq!(
            "18446744073709551615".parse::<NotificationId>(),
            Ok(NotificationId(u64::MAX))
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
            assert_eq!(bad.parse::<NotificationId>(), Err(ParseIdError), "{bad:?}");
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
