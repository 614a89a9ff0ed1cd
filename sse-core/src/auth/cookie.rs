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

    /// The cookie's (first) value in `request`, if present.
    pub fn credential<'a>(&self, request: &'a Parts) -> Option<&'a str> {
        cookie_value(&request.headers, &self.cookie)
    }
}

/// Cookies of one name tried per request, at most: a request carrying
/// more is refused rather than make the session store answer for each.
const MAX_COOKIE_VALUES: usize = 4;

#[async_trait]
impl<L: SessionLookup> SessionAuthenticator for CookieSessionAuthenticator<L> {
    /// Tries every value of the cookie, in order: a sibling subdomain can
    /// set a cookie of the same name (cookie tossing), and the browser may
    /// send it first. The first value that is a live session wins.
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        let values: Vec<&str> = cookie_values(&request.headers, &self.cookie).collect();
        if values.is_empty() {
            return Err(AuthRejection::unauthenticated(
                "no session cookie; log in first",
            ));
        }
        if values.len() > MAX_COOKIE_VALUES {
            return Err(AuthRejection::unauthenticated(
                "too many session cookies of one name",
            ));
        }
        let mut refused = None;
        for value in values {
            match resolve(&self.lookup, value, "session").await {
                Ok(principal) => return Ok(principal),
                // The store cannot answer: no other value would fare better.
                Err(unavailable @ AuthRejection::Unavailable(_)) => return Err(unavailable),
                Err(rejection) => refused = Some(rejection),
            }
        }
        Err(refused.unwrap_or_else(|| AuthRejection::unauthenticated("unknown or expired session")))
    }
}

/// Every value of cookie `name`, in the order the request carries them.
pub fn cookie_values<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| key.trim() == name)
        .map(|(_, value)| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
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
    cookie_values(headers, name).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_value_of_the_cookie_is_tried() {
        let sessions = crate::InMemorySessions::new();
        let good = sessions.create(Principal::new("alice")).unwrap();
        let auth = CookieSessionAuthenticator::new("sid", sessions);
        // A sibling subdomain tossed its own `sid` in front of ours.
        let tossed = http::Request::get("/")
            .header(COOKIE, format!("sid=tossed-by-evil; sid={good}"))
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(
            auth.authenticate(&tossed).await.unwrap().user().as_str(),
            "alice"
        );
        let flood = (0..10)
            .map(|i| format!("sid=x{i}"))
            .collect::<Vec<_>>()
            .join("; ");
        let flood = http::Request::get("/")
            .header(COOKIE, flood)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(auth.authenticate(&flood).await.is_err());
    }

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
