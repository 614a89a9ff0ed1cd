use async_trait::async_trait;
use http::header::COOKIE;
use http::request::Parts;

use super::{AuthRejection, SessionAuthenticator, SessionLookup, resolve};
use crate::Principal;

/// Authenticates by a session cookie, looked up in your session store.
///
/// `EventSource` sends cookies on same-origin requests (and cross-origin
/// with `withCredentials: true`), so this is the usual choice for browser
/// apps that already have a cookie session.
///
/// ```
/// use sse_core::{CookieSessionAuthenticator, InMemorySessions, Principal, SessionAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sessions = InMemorySessions::new();
/// let sid = sessions.create(Principal::new("alice"));
/// let auth = CookieSessionAuthenticator::new("sid", sessions);
///
/// let request = http::Request::get("/events")
///     .header("cookie", format!("theme=dark; sid={sid}"))
///     .body(()).unwrap();
/// let principal = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.user().as_str(), "alice");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CookieSessionAuthenticator<L> {
    cookie: String,
    lookup: L,
}

impl<L: SessionLookup> CookieSessionAuthenticator<L> {
    /// Reads the cookie named `cookie` and resolves it with `lookup`.
    pub fn new(cookie: impl Into<String>, lookup: L) -> Self {
        Self {
            cookie: cookie.into(),
            lookup,
        }
    }

    /// The cookie's value in `request`, if present.
    pub fn credential<'a>(&self, request: &'a Parts) -> Option<&'a str> {
        cookie_value(request, &self.cookie)
    }
}

#[async_trait]
impl<L: SessionLookup> SessionAuthenticator for CookieSessionAuthenticator<L> {
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        let value = self
            .credential(request)
            .ok_or_else(|| AuthRejection::unauthenticated("no session cookie; log in first"))?;
        resolve(&self.lookup, value, "session").await
    }
}

/// Finds cookie `name` in every `Cookie` header (HTTP/2 may send several).
/// Values may be quoted; headers that are not valid UTF-8 are skipped.
pub(crate) fn cookie_value<'a>(request: &'a Parts, name: &str) -> Option<&'a str> {
    request
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cookies: &[&str]) -> Parts {
        let mut builder = http::Request::get("/");
        for cookie in cookies {
            builder = builder.header(COOKIE, *cookie);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn finds_the_named_cookie() {
        assert_eq!(cookie_value(&parts(&["a=1; sid=xyz"]), "sid"), Some("xyz"));
        assert_eq!(
            cookie_value(&parts(&["a=1", "sid=\"q\""]), "sid"),
            Some("q")
        );
        assert_eq!(cookie_value(&parts(&["xsid=1; sidx=2"]), "sid"), None);
        assert_eq!(cookie_value(&parts(&["sid"]), "sid"), None);
        assert_eq!(cookie_value(&parts(&[]), "sid"), None);
    }

    #[test]
    fn non_utf8_headers_are_skipped() {
        let mut p = parts(&[]);
        p.headers
            .append(COOKIE, http::HeaderValue::from_bytes(b"sid=\xff").unwrap());
        assert_eq!(cookie_value(&p, "sid"), None);
    }
}
