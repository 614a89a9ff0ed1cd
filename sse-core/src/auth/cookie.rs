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
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse_core::auth::RandomUnavailable> {
/// let sessions = InMemorySessions::new();
/// let sid = sessions.create(Principal::new("alice"))?;
/// let auth = CookieSessionAuthenticator::new("sid", sessions);
///
/// let request = http::Request::get("/events")
///     .header("cookie", format!("theme=dark; sid={sid}"))
///     .body(()).unwrap();
/// let principal = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.user().as_str(), "alice");
/// # Ok(()) }
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
        cookie_value(&request.headers, &self.cookie)
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

/// The value of cookie `name`, from every `Cookie` header (HTTP/2 may send
/// several). Values may be quoted (the quotes are removed); headers that
/// are not valid UTF-8 are skipped.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("cookie", "theme=dark; sid=\"abc\"".parse().unwrap());
/// assert_eq!(sse_core::auth::cookie_value(&headers, "sid"), Some("abc"));
/// assert_eq!(sse_core::auth::cookie_value(&headers, "other"), None);
/// ```
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
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

    fn parts(cookies: &[&str]) -> http::HeaderMap {
        let mut builder = http::Request::get("/");
        for cookie in cookies {
            builder = builder.header(COOKIE, *cookie);
        }
        builder.body(()).unwrap().into_parts().0.headers
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
        p.append(COOKIE, http::HeaderValue::from_bytes(b"sid=\xff").unwrap());
        assert_eq!(cookie_value(&p, "sid"), None);
    }
}
