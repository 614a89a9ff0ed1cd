//! Mount the SSE notification stream into an [axum] `Router`.
//!
//! Two lines: build an [`SseService`], mount it at a route. Handlers get
//! the caller's [`Principal`] with [`Authenticated`] and a [`Notifier`]
//! with [`Notify`], from any state that contains the service
//! (`SseService: FromRef<YourState>`).
//!
//! ```
//! use axum::{Json, Router, http::StatusCode, routing::post};
//! use sse_axum::{Authenticated, Notify, SseRouterExt, SseService};
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
//! # let _ = app;
//! ```
//!
//! `Router::route_service(path, sse.clone())` mounts it just as well:
//! [`SseService`] is a tower service whose response implements
//! `IntoResponse`. All stream behaviour lives in `sse-tower`.
//!
//! [axum]: https://docs.rs/axum
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sse_core::{AuthRejection, Notifier, NotifyError, Principal, StoreError};
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

/// The caller's principal, authenticated exactly as streams are.
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
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Notify(SseService::from_ref(state).notifier().clone()))
    }
}

/// An error handlers return: renders [`ApiError`] (status and JSON body).
///
/// Converts from the errors of the notifier, the store and authentication
/// with `?`.
#[derive(Debug)]
pub struct Error(pub ApiError);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.0.to_response().into_response()
    }
}

impl From<ApiError> for Error {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<NotifyError> for Error {
    fn from(error: NotifyError) -> Self {
        Self(error.into())
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Self(error.into())
    }
}

impl From<AuthRejection> for Error {
    fn from(rejection: AuthRejection) -> Self {
        Self(rejection.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}
