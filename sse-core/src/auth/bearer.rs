use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{AuthRejection, SessionAuthenticator, SessionLookup, resolve};
use crate::Principal;

/// Authenticates by a bearer token: the `Authorization: Bearer …` header,
/// or, because `EventSource` cannot set headers, a query parameter
/// (`access_token` by default).
///
/// Query tokens end up in access logs and browser history: issue
/// short-lived, stream-only tokens for them, or disable the fallback with
/// [`BearerTokenAuthenticator::header_only`].
///
/// ```
/// use sse_core::{BearerTokenAuthenticator, InMemorySessions, Principal, SessionAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let tokens = InMemorySessions::new();
/// tokens.insert("t0k3n", Principal::new("bob"));
/// let auth = BearerTokenAuthenticator::new(tokens);
///
/// let request = http::Request::get("/events?access_token=t0k3n").body(()).unwrap();
/// let principal = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.user().as_str(), "bob");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BearerTokenAuthenticator<L> {
    lookup: L,
    query_param: Option<String>,
}

impl<L: SessionLookup> BearerTokenAuthenticator<L> {
    /// Reads the header, then the `access_token` query parameter.
    pub fn new(lookup: L) -> Self {
        Self {
            lookup,
            query_param: Some("access_token".to_owned()),
        }
    }

    /// Reads the query fallback from `name` instead of `access_token`.
    #[must_use]
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.query_param = Some(name.into());
        self
    }

    /// Accepts the `Authorization` header only.
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
    fn header_wins_over_query() {
        let auth = BearerTokenAuthenticator::new(InMemorySessions::new());
        assert_eq!(
            auth.credential(&parts("/?access_token=q", Some("Bearer h"))),
            Some("h".into())
        );
        assert_eq!(
            auth.credential(&parts("/?access_token=a%2Bb", None)),
            Some("a+b".into())
        );
        assert_eq!(auth.credential(&parts("/", Some("Basic x"))), None);
        let header_only = BearerTokenAuthenticator::new(InMemorySessions::new()).header_only();
        assert_eq!(
            header_only.credential(&parts("/?access_token=q", None)),
            None
        );
    }

    #[tokio::test]
    async fn unknown_and_oversized_tokens_are_401() {
        let auth = BearerTokenAuthenticator::new(InMemorySessions::new());
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
