//! [`SessionAuthenticator`]: from a request to a [`Principal`], or a
//! rejection.
//!
//! Ready implementations cover the usual cases:
//! - [`CookieSessionAuthenticator`]: a session cookie looked up in your
//!   session store (any [`SessionLookup`]; [`InMemorySessions`] for demos);
//! - [`BearerTokenAuthenticator`]: `Authorization: Bearer …`, or an
//!   `?access_token=` query parameter for `EventSource`, which cannot set
//!   headers;
//! - [`ExtensionAuthenticator`]: what your auth middleware (tower-sessions,
//!   axum-login, your own layer) put into the request extensions, one type
//!   or several;
//! - `JwtAuthenticator` (feature `jwt`): a signed token from a cookie or
//!   `Authorization: Bearer`, its claims mapped to user, groups and topics;
//! - [`FnAuthenticator`]: a closure.
//!
//! They compose: `cookie.or(bearer)` tries the second when the first finds
//! no valid credentials ([`SessionAuthenticator::or`]).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use http::request::Parts;

use crate::Principal;

mod bearer;
mod closure;
mod compose;
mod cookie;
pub mod credential;
mod extension;
#[cfg(feature = "jwt")]
mod jwt;
mod sessions;

pub use bearer::BearerTokenAuthenticator;
pub use closure::FnAuthenticator;
pub use compose::Or;
pub use cookie::{CookieSessionAuthenticator, cookie_value, cookie_values};
pub use credential::{IssuedSession, RandomUnavailable, credential_digest};
pub use extension::{All, ExtensionAuthenticator, FromExtensions, One};
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthenticator, MIN_SECRET_LEN, WeakSecret, jsonwebtoken};
pub use sessions::{DEFAULT_SESSION_LIFETIME, DEFAULT_SESSIONS_PER_USER, InMemorySessions};

/// The error type lookups wrap backend failures in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The longest credential (cookie value or token) authenticators look up.
/// Longer ones are rejected without touching the session store.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// Decides who a request comes from.
///
/// Implement it with `#[async_trait]` and the `http` types, both
/// re-exported by this crate (`use sse_core::{async_trait, http}`); the
/// ready authenticators of this module cover most apps without it.
///
/// Called once per stream connection, before anything is registered. It
/// sees the request head only (method, URI, headers, extensions). A
/// principal whose [expiry](Principal::expires_at) has passed is refused by
/// the stream whatever the authenticator answered.
///
/// ```
/// use sse_core::http::request::Parts;
/// use sse_core::{AuthRejection, Principal, SessionAuthenticator, async_trait};
///
/// struct HeaderUser;
///
/// #[async_trait]
/// impl SessionAuthenticator for HeaderUser {
///     async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
///         let user = request.headers.get("x-user").and_then(|v| v.to_str().ok());
///         user.map(Principal::new)
///             .ok_or_else(|| AuthRejection::unauthenticated("missing x-user header"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = http::Request::get("/events").header("x-user", "ada").body(()).unwrap();
/// let principal = HeaderUser.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.user().as_str(), "ada");
/// # }
/// ```
#[async_trait]
pub trait SessionAuthenticator: Send + Sync + 'static {
    /// The principal the request authenticates as.
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection>;

    /// This authenticator, then `other` when this one finds no valid
    /// credentials (a `401`); see [`Or`] for what falls through.
    fn or<B>(self, other: B) -> Or<Self, B>
    where
        Self: Sized,
        B: SessionAuthenticator,
    {
        Or::new(self, other)
    }
}

#[async_trait]
impl<A: SessionAuthenticator + ?Sized> SessionAuthenticator for Arc<A> {
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        (**self).authenticate(request).await
    }
}

/// Why a request was not authenticated. Streams answer with the status
/// each variant names and the message as a short body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No valid credentials: `401 Unauthorized`.
    #[error("{0}")]
    Unauthenticated(Cow<'static, str>),
    /// Valid credentials that may not do this: `403 Forbidden`.
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// The session store could not be asked: `503 Service Unavailable`.
    #[error("the session store is unavailable: {0}")]
    Unavailable(#[source] BoxError),
}

impl AuthRejection {
    /// A `401` with `reason` as the body.
    pub fn unauthenticated(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unauthenticated(reason.into())
    }

    /// A `403` with `reason` as the body.
    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden(reason.into())
    }

    /// The HTTP status this rejection maps to.
    ///
    /// ```
    /// use sse_core::AuthRejection;
    /// assert_eq!(AuthRejection::unauthenticated("no").status(), http::StatusCode::UNAUTHORIZED);
    /// ```
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Unauthenticated(_) => http::StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => http::StatusCode::FORBIDDEN,
            Self::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Resolves a credential (a session id, a token) to a principal.
///
/// Implement it with `#[async_trait]`, re-exported by this crate (`use
/// sse_core::async_trait`). Plug your session store in here and reuse the
/// ready authenticators. `Ok(None)` means "no such session"; `Err` means
/// the store failed.
///
/// ```
/// use sse_core::auth::BoxError;
/// use sse_core::{CookieSessionAuthenticator, Principal, SessionAuthenticator, SessionLookup, async_trait};
///
/// struct StaticTokens;
///
/// #[async_trait]
/// impl SessionLookup for StaticTokens {
///     async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
///         Ok((credential == "let-me-in").then(|| Principal::new("admin")))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auth = CookieSessionAuthenticator::new("sid", StaticTokens);
/// let request = http::Request::get("/events").header("cookie", "sid=let-me-in").body(()).unwrap();
/// assert_eq!(auth.authenticate(&request.into_parts().0).await.unwrap().user().as_str(), "admin");
/// # }
/// ```
#[async_trait]
pub trait SessionLookup: Send + Sync + 'static {
    /// The principal `credential` belongs to, if any.
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError>;
}

#[async_trait]
impl<L: SessionLookup + ?Sized> SessionLookup for Arc<L> {
    async fn lookup(&self, credential: &str) -> Result<Option<Principal>, BoxError> {
        (**self).lookup(credential).await
    }
}

/// Looks a credential up, turning the answer into a stream's verdict.
async fn resolve<L: SessionLookup + ?Sized>(
    lookup: &L,
    credential: &str,
    what: &'static str,
) -> Result<Principal, AuthRejection> {
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
        return Err(AuthRejection::unauthenticated(format!("invalid {what}")));
    }
    match lookup.lookup(credential).await {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err(AuthRejection::unauthenticated(format!(
            "unknown or expired {what}"
        ))),
        Err(error) => Err(AuthRejection::Unavailable(error)),
    }
}
