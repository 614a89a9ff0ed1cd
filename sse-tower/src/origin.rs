//! Origins as browsers send them (`Origin: https://app.example`), compared
//! the way the web compares them: scheme, host and port, ASCII
//! case-insensitively, with a default port equal to no port.
//!
//! A request with several `Origin` headers, or one that is not an origin,
//! is treated as hostile: no browser sends either.
//!
//! ```
//! use sse_tower::origin::{Origin, RequestOrigin};
//!
//! let allowed: Origin = "https://App.Example:443".parse()?;
//! assert_eq!(allowed, "https://app.example".parse()?);
//! assert_ne!(allowed, "http://app.example".parse()?);
//!
//! let mut headers = http::HeaderMap::new();
//! headers.append("origin", "https://app.example".parse().unwrap());
//! assert_eq!(RequestOrigin::of(&headers), RequestOrigin::One(allowed));
//! headers.append("origin", "https://evil.example".parse().unwrap());
//! assert_eq!(RequestOrigin::of(&headers), RequestOrigin::Invalid);
//! # Ok::<(), sse_tower::origin::InvalidOrigin>(())
//! ```

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;
use http::header::ORIGIN;

/// A tuple origin: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// A string is not an origin (`scheme://host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an origin: {0:?}; write it as scheme://host[:port], such as https://app.example")]
pub struct InvalidOrigin(pub String);

impl Origin {
    /// The scheme, lowercase (`https`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lowercase.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, if it is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The origin a request to `host` (a `Host` header value) over `scheme`
    /// comes from when it is same-origin.
    ///
    /// ```
    /// use sse_tower::origin::Origin;
    /// let own = Origin::from_host("http", "127.0.0.1:3000")?;
    /// assert_eq!(own, "http://127.0.0.1:3000".parse()?);
    /// # Ok::<(), sse_tower::origin::InvalidOrigin>(())
    /// ```
    pub fn from_host(scheme: &str, host: &str) -> Result<Self, InvalidOrigin> {
        format!("{scheme}://{host}").parse()
    }
}

impl FromStr for Origin {
    type Err = InvalidOrigin;

    /// Parses `scheme://host[:port]`; a trailing `/` is tolerated (people
    /// write origins in configuration that way), nothing else is.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidOrigin(text.to_owned());
        let (scheme, rest) = text.split_once("://").ok_or_else(invalid)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok || rest.is_empty() {
            return Err(invalid());
        }
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal's colons are inside brackets.
            Some((host, port)) if !port.contains(']') => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|_| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(invalid)?;
                (host, Some(port))
            }
            _ => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~[]:!$&'()*+,;=%".contains(&b))
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
        if !host_ok {
            return Err(invalid());
        }
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        };
        Ok(Self {
            port: port.filter(|p| Some(*p) != default_port),
            host: host.to_ascii_lowercase(),
            scheme,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// What a request's `Origin` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOrigin {
    /// No `Origin` header (a same-origin `GET` in some browsers, or not a
    /// browser).
    Absent,
    /// `Origin: null`: an opaque origin (a sandboxed frame, a `file:` page,
    /// some redirects).
    Opaque,
    /// Exactly one origin.
    One(Origin),
    /// Several `Origin` headers, or one that is not an origin.
    Invalid,
}

impl RequestOrigin {
    /// Reads the `Origin` headers of a request.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(ORIGIN).iter();
        let Some(value) = values.next() else {
            return Self::Absent;
        };
        if values.next().is_some() {
            return Self::Invalid;
        }
        match value.to_str() {
            Ok("null") => Self::Opaque,
            Ok(text) => text.parse().map_or(Self::Invalid, Self::One),
            Err(_) => Self::Invalid,
        }
    }

    /// Whether a request with this origin may proceed under `allowed`:
    /// absent is allowed (browsers send `Origin` on every cross-origin
    /// request), one origin must be in the list, anything else is refused.
    pub fn is_allowed(&self, allowed: &[Origin]) -> bool {
        match self {
            Self::Absent => true,
            Self::One(origin) => allowed.contains(origin),
            Self::Opaque | Self::Invalid => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_normalises_what_browsers_treat_as_equal() {
        let o = |s: &str| s.parse::<Origin>();
        assert_eq!(o("HTTPS://App.Example"), o("https://app.example:443"));
        assert_eq!(o("http://a.example:80/"), o("http://a.example"));
        assert_ne!(o("http://a.example:8080"), o("http://a.example"));
        assert_ne!(o("http://a.example"), o("https://a.example"));
        assert_eq!(o("http://[::1]:3000").unwrap().host(), "[::1]");
        assert_eq!(o("http://[::1]").unwrap().port(), None);
        for bad in [
            "",
            "app.example",
            "https://",
            "https://a.example/path",
            "https://a b",
            "https://a.example:99999",
            "https://a.example:",
            "https://a:b:c",
            "1http://a",
        ] {
            assert!(o(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            o("https://app.example:8443").unwrap().to_string(),
            "https://app.example:8443"
        );
    }

    #[test]
    fn requests() {
        let allowed = ["https://app.example".parse().unwrap()];
        let of = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(ORIGIN, http::HeaderValue::from_bytes(value).unwrap());
            }
            RequestOrigin::of(&headers)
        };
        assert!(of(&[]).is_allowed(&allowed));
        assert!(of(&[b"https://APP.example"]).is_allowed(&allowed));
        assert!(!of(&[b"http://app.example"]).is_allowed(&allowed));
        assert!(!of(&[b"null"]).is_allowed(&allowed));
        assert!(!of(&[b"https://app.example", b"https://app.example"]).is_allowed(&allowed));
        assert!(!of(&[b"https://app.example\xff"]).is_allowed(&allowed));
        assert!(!of(&[b"garbage"]).is_allowed(&allowed));
    }
}
