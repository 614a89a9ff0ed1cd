use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{AuthRejection, SessionAuthenticator, SessionLookup, resolve};
use crate::Principal;

/// Authenticates by a bearer token: the `Authorization: Bearer …` header,
/// and, opted in with [`query_param`](BearerTokenAuthenticator::query_param)
/// because `EventSource` cannot set headers, a query parameter.
///
/// The query is off by default: query strings end up in proxies' access
/// logs and browser history. Turn it on only for short-lived, stream-only
/// tokens.
///
/// ```
/// use sse_core::{BearerTokenAuthenticator, InMemorySessions, Principal, SessionAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let tokens = InMemorySessions::new();
/// tokens.insert("t0k3n", Principal::new("bob"));
/// let header_only = BearerTokenAuthenticator::new(tokens.clone());
/// let with_query = BearerTokenAuthenticator::new(tokens).query_param("access_token");
///
/// let request = http::Request::get("/events?access_token=t0k3n").body(()).unwrap();
/// let parts = request.into_parts().0;
/// assert!(header_only.authenticate(&parts).await.is_err());
/// assert_eq!(with_query.authenticate(&parts).await.unwrap().user().as_str(), "bob");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BearerTokenAuthenticator<L> {
    lookup: L,
    query_param: Option<String>,
}

impl<L: SessionLookup> BearerTokenAuthenticator<L> {
    /// Reads the `Authorization` header only.
    pub fn new(lookup: L) -> Self {
        Self {
            lookup,
            query_param: None,
        }
    }

    /// Also reads the token from query parameter `name` (after the
    /// header), for clients that cannot set headers.
    #[must_use]
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.query_param = Some(name.into());
        self
    }

    /// Accepts the `Authorization` header only (the default).
    #[must_use]
    pub fn header_only(mut self) -> Self {
        self.query_param = None;
        self
    }

    /// The token in `request`, from the header or the query.
    pub fn credential(&self, request: &Parts) -> Option<String> {
        let from_header = bearer_token(&request.headers).map(str::to_owned);
        from_header.or_else(|| {
            let name = self.query_param.as_deref()?;
            crate::query::param(request.uri.query()?, name)
        })
    }
}

/// The token of an `Authorization: Bearer …` header (scheme matched
/// case-insensitively).
pub(crate) fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[async_trait]
impl<L: SessionLookup> SessionAuthenticator for BearerTokenAuthenticator<L> {
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        let token = self.credential(request).ok_or_else(|| {
            AuthRejection::unauthenticated("no bearer token in the Authorization header or query")
        })?;
        resolve(&self.lookup, &token, "token").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemorySessions;

    fn parts(uri: &str, auth: Option<&str>) -> Parts {
        let mut builder = http::Request::get(uri);
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_wins_over_the_opted_in_query() {
        let auth =
            BearerTokenAuthenticator::new(InMemorySessions::new()).query_param("access_token");
        assert_eq!(
            auth.credential(&parts("/?access_token=q", Some("Bearer h"))),
            Some("h".into())
        );
        assert_eq!(
            auth.credential(&parts("/?access_token=a%2Bb", None)),
            Some("a+b".into())
        );
        assert_eq!(auth.credential(&parts("/", Some("Basic x"))), None);
        let by_default = BearerTokenAuthenticator::new(InMemorySessions::new());
        assert_eq!(
            by_default.credential(&parts("/?access_token=q", None)),
            None,
            "query tokens reach proxy logs: off unless asked for"
        );
    }

    #[tokio::test]
    async fn unknown_and_oversized_tokens_are_401() {
        let auth =
            BearerTokenAuthenticator::new(InMemorySessions::new()).query_param("access_token");
        let long = format!(
            "/?access_token={}",
            "a".repeat(super::super::MAX_CREDENTIAL_LEN + 1)
        );
        for request in [
            parts("/", None),
            parts("/?access_token=nope", None),
            parts(&long, None),
        ] {
            let err = auth.authenticate(&request).await.unwrap_err();
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        }
    }
}
