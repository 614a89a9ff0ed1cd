use std::future::{Future, Ready, ready};
use std::marker::PhantomData;

use async_trait::async_trait;
use http::request::Parts;

use super::{AuthRejection, SessionAuthenticator};
use crate::Principal;

/// Authenticates with what your auth middleware already put into the
/// request extensions: a [`Principal`], your own user type, or a session
/// handle (`tower_sessions::Session`, `axum_login::AuthSession`) to read
/// the user from.
///
/// Most axum apps authenticate in a layer before any handler runs. Put
/// that layer in front of the stream too, and this authenticator turns its
/// result into a principal. A request without the extension is a `401`
/// (the layer let it through unauthenticated).
///
/// A principal your middleware inserted:
///
/// ```
/// use sse_core::{ExtensionAuthenticator, Principal, SessionAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auth = ExtensionAuthenticator::principal();
/// let mut request = http::Request::get("/events").body(()).unwrap();
/// request.extensions_mut().insert(Principal::new("alice"));
/// let principal = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.user().as_str(), "alice");
///
/// let anonymous = http::Request::get("/events").body(()).unwrap();
/// assert!(auth.authenticate(&anonymous.into_parts().0).await.is_err());
/// # }
/// ```
///
/// Your own user type, or a session to ask (the closure may await):
///
/// ```
/// use sse_core::{AuthRejection, ExtensionAuthenticator, Principal, SessionAuthenticator};
///
/// #[derive(Clone)]
/// struct CurrentUser { id: u64, org: String }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auth = ExtensionAuthenticator::with(|user: CurrentUser| async move {
///     Ok::<_, AuthRejection>(Principal::new(user.id.to_string()).with_groups([user.org]))
/// });
/// let mut request = http::Request::get("/events").body(()).unwrap();
/// request.extensions_mut().insert(CurrentUser { id: 7, org: "acme".into() });
/// let principal = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.user().as_str(), "7");
/// assert_eq!(principal.groups()[0].as_str(), "acme");
/// # }
/// ```
pub struct ExtensionAuthenticator<T, F> {
    map: F,
    _extension: PhantomData<fn(T)>,
}

type Identity = fn(Principal) -> Ready<Result<Principal, AuthRejection>>;

impl ExtensionAuthenticator<Principal, Identity> {
    /// Reads a [`Principal`] from the extensions.
    pub fn principal() -> Self {
        Self {
            map: |principal| ready(Ok(principal)),
            _extension: PhantomData,
        }
    }
}

impl<T, F, Fut> ExtensionAuthenticator<T, F>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthRejection>> + Send,
{
    /// Reads a `T` from the extensions and turns it into a principal with
    /// `map` (which may refuse: `Err(AuthRejection::…)`).
    pub fn with(map: F) -> Self {
        Self {
            map,
            _extension: PhantomData,
        }
    }
}

#[async_trait]
impl<T, F, Fut> SessionAuthenticator for ExtensionAuthenticator<T, F>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthRejection>> + Send,
{
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        let Some(extension) = request.extensions.get::<T>().cloned() else {
            return Err(AuthRejection::unauthenticated("not authenticated"));
        };
        (self.map)(extension).await
    }
}

impl<T, F: Clone> Clone for ExtensionAuthenticator<T, F> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _extension: PhantomData,
        }
    }
}

impl<T, F> std::fmt::Debug for ExtensionAuthenticator<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionAuthenticator")
            .field("extension", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}
