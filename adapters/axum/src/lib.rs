//! Mount the SSE notification stream into an [axum] `Router`.
//!
//! Two lines: build an [`SseService`], mount it at a route. Handlers get
//! the caller's [`Principal`] with [`Authenticated`] and a [`Notifier`]
//! with [`Notify`], from any state that contains the service
//! (`SseService: FromRef<YourState>`); [`Json`] reads bodies so that a bad
//! one is a `400` naming the field; [`serve`] runs the app with the limits
//! a server of long-lived streams needs.
//!
//! ```
//! use axum::{Router, http::StatusCode, routing::post};
//! use sse_axum::{Authenticated, Json, Notify, SseRouterExt, SseService};
//! use sse_axum::sse_core::{CookieSessionAuthenticator, InMemorySessions, NewNotification, Notification};
//!
//! async fn notify(
//!     Authenticated(_sender): Authenticated,
//!     Notify(notifier): Notify,
//!     Json(new): Json<NewNotification>,
//! ) -> Result<(StatusCode, Json<Notification>), sse_axum::Error> {
//!     let notification = notifier.notify(new).await?;
//!     Ok((StatusCode::CREATED, Json(notification)))
//! }
//!
//! let sse = SseService::builder(CookieSessionAuthenticator::new("sid", InMemorySessions::new())).build();
//! let app: Router = Router::new()
//!     .sse_stream("/api/notifications/stream", &sse)
//!     .route("/api/notifications", post(notify))
//!     .with_state(sse);
//! # async fn run(app: Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! sse_axum::serve(listener, app).await
//! # }
//! # let _ = run;
//! ```
//!
//! # Behind the auth your app already has
//!
//! Most apps authenticate in a middleware (tower-sessions, axum-login, or
//! their own) that puts the user into the request extensions. Put the
//! stream behind the same layer and read the user from there with
//! [`ExtensionAuthenticator`](sse_core::ExtensionAuthenticator):
//!
//! ```
//! use axum::{Router, extract::Request, middleware::{self, Next}, response::Response};
//! use sse_axum::{SseRouterExt, SseService};
//! use sse_axum::sse_core::{AuthRejection, ExtensionAuthenticator, Principal};
//!
//! #[derive(Clone)]
//! struct CurrentUser { id: u64, team: String }
//!
//! // Your auth middleware, as it is today (here: a header, for brevity).
//! async fn auth(mut request: Request, next: Next) -> Response {
//!     if request.headers().contains_key("x-demo-user") {
//!         request.extensions_mut().insert(CurrentUser { id: 7, team: "core".into() });
//!     }
//!     next.run(request).await
//! }
//!
//! let sse = SseService::builder(ExtensionAuthenticator::with(|user: CurrentUser| async move {
//!     Ok::<_, AuthRejection>(Principal::new(user.id.to_string()).with_groups([user.team]))
//! }))
//! .build();
//! let app: Router = Router::new()
//!     .sse_stream("/events", &sse)
//!     .layer(middleware::from_fn(auth));
//! # let _ = app;
//! ```
//!
//! With tower-sessions, read the session itself:
//! `ExtensionAuthenticator::with(|session: tower_sessions::Session| async move { … })`
//! (tested in this crate's `tests/tower_sessions.rs`). For the stream's
//! expiry, do not use `Session::expiry_date()`: it is recomputed on every
//! request as now + the TTL, so a stream opened late would outlive its
//! session by up to that TTL. Record the end when you write the session
//! (at login, `session.expiry_date()` in Unix milliseconds under `"ends_at"`) and give
//! the stream that (`Principal::with_expiry`); the test
//! `a_stream_opened_late_ends_with_its_session_not_a_ttl_later` connects
//! late and checks the stream ends with the session. Several extensions
//! at once: `ExtensionAuthenticator::with_all(|(user, ends): (User, Ends)| …)`.
//!
//! The stream mounts the axum way too: `.route("/events", sse.method_router())`
//! (a `MethodRouter` that answers `GET` and gives axum's own `405` with
//! `Allow: GET` to other methods), or `Router::route_service(path,
//! sse.clone())`: [`SseService`] is a tower service whose response
//! implements `IntoResponse`. All stream behaviour lives in `sse-tower`.
//!
//! [axum]: https://docs.rs/axum
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sse_core::{AuthRejection, EventError, HubError, Notifier, NotifyError, Principal, StoreError};
use sse_tower::serve::RemoteAddr;
pub use sse_tower::{ApiError, SseService};
pub use {sse_core, sse_tower};

/// Mounts the stream on a router.
pub trait SseRouterExt {
    /// Serves `sse` at `path` (any method reaches it; it answers `405` to
    /// all but `GET`).
    fn sse_stream(self, path: &str, sse: &SseService) -> Self;
}

impl<S: Clone + Send + Sync + 'static> SseRouterExt for axum::Router<S> {
    fn sse_stream(self, path: &str, sse: &SseService) -> Self {
        self.route_service(path, sse.clone())
    }
}

/// The stream as an axum [`MethodRouter`] answering `GET`, for
/// `.route(path, …)` beside other methods on the same path.
///
/// ```
/// use axum::Router;
/// use sse_axum::{SseService, sse_core::{AuthRejection, FnAuthenticator}};
/// let sse = SseService::builder(FnAuthenticator::new(|_| Err(AuthRejection::unauthenticated("no")))).build();
/// let app: Router = Router::new().route("/events", sse_axum::method_router(&sse));
/// # let _ = app;
/// ```
pub fn method_router<S: Clone + Send + Sync + 'static>(sse: &SseService) -> MethodRouter<S> {
    axum::routing::get_service(sse.clone())
}

/// Serves `app` on `listener` with `sse_tower::serve`: connections capped,
/// request heads bounded in time, stalled readers closed at once; see
/// [`sse_tower::serve`](sse_tower::serve()) for the options (chain them
/// before `.await`). Handlers can extract `ConnectInfo<SocketAddr>`.
///
/// With the `tls` feature, `.tls(sse_tower::serve::Tls::from_pem_files(cert, key)?)`
/// serves HTTPS, HTTP/2 by ALPN.
///
/// Bound request *bodies* with a timeout around your handlers, e.g.
/// `tower_http::timeout::TimeoutLayer` on the API routes (not on the
/// stream).
pub fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> sse_tower::Serve<WithConnectInfo> {
    sse_tower::serve(listener, WithConnectInfo(app))
}

/// `app` with the peer address as axum's `ConnectInfo<SocketAddr>`; what
/// [`serve`] runs.
#[derive(Clone, Debug)]
pub struct WithConnectInfo(axum::Router);

impl<B> tower_service::Service<axum::http::Request<B>> for WithConnectInfo
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        if let Some(RemoteAddr(addr)) = request.extensions().get::<RemoteAddr>().copied() {
            request.extensions_mut().insert(ConnectInfo(addr));
        }
        self.0.call(request)
    }
}

/// The caller's principal, authenticated exactly as streams are (so it sees
/// whatever your middleware put into the request's extensions).
///
/// Rejects with the same status as a stream would (`401`, `403`, `503`)
/// and a JSON body saying why.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<S> for Authenticated
where
    SseService: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        SseService::from_ref(state)
            .authenticate(parts)
            .await
            .map(Authenticated)
            .map_err(Error::from)
    }
}

/// The service's [`Notifier`]: store, then publish.
#[derive(Debug, Clone)]
pub struct Notify(pub Notifier);

impl<S> FromRequestParts<S> for Notify
where
    SseService: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Notify(SseService::from_ref(state).notifier().clone()))
    }
}

/// A JSON body in, or a JSON response out, like `axum::Json`, except that
/// a body that is not the expected JSON is a `400` whose JSON error names
/// the field at fault (`{"error": "...", "field": "title"}`), a body not
/// declared as JSON a `415`, and one over the body limit a `413`.
///
/// ```
/// use sse_axum::Json;
/// #[derive(serde::Deserialize)]
/// struct Login { user: String }
/// async fn login(Json(login): Json<Login>) -> String { login.user }
/// # let _: axum::routing::MethodRouter = axum::routing::post(login);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !sse_tower::json::is_json_content_type(request.headers()) {
            return Err(Error(sse_tower::json::unsupported_media_type()));
        }
        let body = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Error(ApiError::new(rejection.status(), rejection.body_text())))?;
        sse_tower::json::from_slice(&body).map(Json).map_err(Error)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "serializing a JSON response failed");
                Error(ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "the response could not be serialized",
                ))
                .into_response()
            }
        }
    }
}

/// An error handlers return: renders [`ApiError`] (status and JSON body).
///
/// Converts with `?` from the errors of the notifier, the store, the hub,
/// event building and authentication; build others with [`ApiError`]'s
/// constructors (`ApiError::not_found("…").into()`).
#[derive(Debug)]
pub struct Error(pub ApiError);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.0.to_response().into_response()
    }
}

macro_rules! error_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(error: $ty) -> Self {
                Self(error.into())
            }
        }
    )*};
}

error_from!(
    ApiError,
    NotifyError,
    StoreError,
    HubError,
    EventError,
    AuthRejection
);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}
