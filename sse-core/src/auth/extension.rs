use std::future::{Future, Ready, ready};
use std::marker::PhantomData;

use async_trait::async_trait;
use http::Extensions;
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
///
/// Several extensions at once (the user, when the session ends, its id),
/// as a tuple of up to four; a request missing any of them is a `401`:
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use sse_core::{AuthRejection, ExtensionAuthenticator, Principal, SessionAuthenticator};
///
/// #[derive(Clone)]
/// struct CurrentUser(String);
/// #[derive(Clone)]
/// struct SessionEnds(SystemTime);
/// #[derive(Clone)]
/// struct SessionKey(String);
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auth = ExtensionAuthenticator::with_all(
///     |(user, ends, key): (CurrentUser, SessionEnds, SessionKey)| async move {
///         Ok::<_, AuthRejection>(Principal::new(user.0).with_session(key.0).with_expiry(ends.0))
///     },
/// );
/// let ends = SystemTime::now() + Duration::from_secs(60);
/// let mut request = http::Request::get("/events").body(()).unwrap();
/// request.extensions_mut().insert(CurrentUser("alice".into()));
/// request.extensions_mut().insert(SessionEnds(ends));
/// request.extensions_mut().insert(SessionKey("s1".into()));
/// let principal = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(principal.expires_at(), Some(ends));
///
/// let mut partial = http::Request::get("/events").body(()).unwrap();
/// partial.extensions_mut().insert(CurrentUser("alice".into()));
/// assert!(auth.authenticate(&partial.into_parts().0).await.is_err());
/// # }
/// ```
///
/// For anything else of the request head (a header your gateway sets),
/// [`FnAuthenticator`](super::FnAuthenticator) gets the whole `Parts`.
pub struct ExtensionAuthenticator<E, F> {
    map: F,
    _extension: PhantomData<fn(E)>,
}

/// What an [`ExtensionAuthenticator`] reads from a request's extensions:
/// [`One`] type ([`ExtensionAuthenticator::with`]) or [`All`] of a tuple's
/// ([`ExtensionAuthenticator::with_all`]).
pub trait FromExtensions: 'static {
    /// What the authenticator's closure is given.
    type Output: Send;

    /// The extensions' values, cloned; `None` when one is missing.
    fn from_extensions(extensions: &Extensions) -> Option<Self::Output>;
}

/// One extension of type `T`; see [`ExtensionAuthenticator::with`].
#[derive(Debug)]
pub struct One<T>(PhantomData<fn() -> T>);

/// An extension of each type of the tuple `T` (two to four); see
/// [`ExtensionAuthenticator::with_all`].
#[derive(Debug)]
pub struct All<T>(PhantomData<fn() -> T>);

impl<T: Clone + Send + Sync + 'static> FromExtensions for One<T> {
    type Output = T;

    fn from_extensions(extensions: &Extensions) -> Option<T> {
        extensions.get::<T>().cloned()
    }
}

macro_rules! all_of {
    ($($name:ident),+) => {
        impl<$($name: Clone + Send + Sync + 'static),+> FromExtensions for All<($($name,)+)> {
            type Output = ($($name,)+);

            fn from_extensions(extensions: &Extensions) -> Option<Self::Output> {
                Some(($(extensions.get::<$name>()?.clone(),)+))
            }
        }
    };
}

all_of!(A, B);
all_of!(A, B, C);
all_of!(A, B, C, D);

type Identity = fn(Principal) -> Ready<Result<Principal, AuthRejection>>;

impl ExtensionAuthenticator<One<Principal>, Identity> {
    /// Reads a [`Principal`] from the extensions.
    pub fn principal() -> Self {
        Self {
            map: |principal| ready(Ok(principal)),
            _extension: PhantomData,
        }
    }
}

impl<T, F, Fut> ExtensionAuthenticator<One<T>, F>
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

impl<T, F, Fut> ExtensionAuthenticator<All<T>, F>
where
    All<T>: FromExtensions<Output = T>,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthRejection>> + Send,
{
    /// Reads an extension of each type of the tuple `T` (two to four) and
    /// turns them into a principal with `map`; a request missing any of
    /// them is a `401`.
    pub fn with_all(map: F) -> Self {
        Self {
            map,
            _extension: PhantomData,
        }
    }
}

#[async_trait]
impl<E, F, Fut> SessionAuthenticator for ExtensionAuthenticator<E, F>
where
    E: FromExtensions,
    F: Fn(E::Output) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthRejection>> + Send,
{
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        let Some(extensions) = E::from_extensions(&request.extensions) else {
            return Err(AuthRejection::unauthenticated("not authenticated"));
        };
        (self.map)(extensions).await
    }
}

impl<E, F: Clone> Clone for ExtensionAuthenticator<E, F> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            _extension: PhantomData,
        }
    }
}

impl<E, F> std::fmt::Debug for ExtensionAuthenticator<E, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionAuthenticator")
            .field("extension", &std::any::type_name::<E>())
            .finish_non_exhaustive()
    }
}
