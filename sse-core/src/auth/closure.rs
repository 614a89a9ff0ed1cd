use async_trait::async_trait;
use http::request::Parts;

use super::{AuthRejection, SessionAuthenticator};
use crate::Principal;

/// An authenticator from a closure over the request head.
///
/// For checks that need no I/O (a header set by a trusted proxy, a test
/// fixture). For lookups that await, implement [`SessionAuthenticator`] or
/// use a [`SessionLookup`](super::SessionLookup) with the ready
/// authenticators.
///
/// ```
/// use sse_core::{AuthRejection, FnAuthenticator, Principal};
///
/// let auth = FnAuthenticator::new(|request| {
///     request.headers.get("x-forwarded-user")
///         .and_then(|v| v.to_str().ok())
///         .map(Principal::new)
///         .ok_or_else(|| AuthRejection::unauthenticated("no user header"))
/// });
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct FnAuthenticator<F> {
    f: F,
}

impl<F> FnAuthenticator<F>
where
    F: Fn(&Parts) -> Result<Principal, AuthRejection> + Send + Sync + 'static,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

#[async_trait]
impl<F> SessionAuthenticator for FnAuthenticator<F>
where
    F: Fn(&Parts) -> Result<Principal, AuthRejection> + Send + Sync + 'static,
{
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        (self.f)(request)
    }
}

impl<F> std::fmt::Debug for FnAuthenticator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnAuthenticator").finish_non_exhaustive()
    }
}
