use async_trait::async_trait;
use http::request::Parts;

use super::{AuthRejection, SessionAuthenticator};
use crate::Principal;

/// Two authenticators, the second tried when the first finds no valid
/// credentials: built by [`SessionAuthenticator::or`].
///
/// Only a `401` ([`AuthRejection::Unauthenticated`]) falls through. A `403`
/// (valid credentials that may not do this) and a `503` (the session store
/// could not be asked) are the answer: a store outage must not turn into
/// "log in again", nor a refusal into a second chance with other
/// credentials. When both find nothing, the second's `401` is the answer.
///
/// ```
/// use sse_core::{BearerTokenAuthenticator, CookieSessionAuthenticator, InMemorySessions, Principal, SessionAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sessions = InMemorySessions::new();
/// sessions.insert("c00k1e", Principal::new("alice"));
/// sessions.insert("t0k3n", Principal::new("bob"));
/// let auth = CookieSessionAuthenticator::new("sid", sessions.clone())
///     .or(BearerTokenAuthenticator::new(sessions));
///
/// let cookie = http::Request::get("/events").header("cookie", "sid=c00k1e").body(()).unwrap();
/// let bearer = http::Request::get("/events").header("authorization", "Bearer t0k3n").body(()).unwrap();
/// assert_eq!(auth.authenticate(&cookie.into_parts().0).await.unwrap().user().as_str(), "alice");
/// assert_eq!(auth.authenticate(&bearer.into_parts().0).await.unwrap().user().as_str(), "bob");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A, B> Or<A, B> {
    pub(super) fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

#[async_trait]
impl<A, B> SessionAuthenticator for Or<A, B>
where
    A: SessionAuthenticator,
    B: SessionAuthenticator,
{
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        match self.first.authenticate(request).await {
            Err(AuthRejection::Unauthenticated(_)) => self.second.authenticate(request).await,
            verdict => verdict,
        }
    }
}
