//! Serve the SSE notification stream as a [warp] `Filter`.
//!
//! [`stream`] serves an [`SseService`] at whatever path you put it behind;
//! [`authenticated`] gives handlers the caller's [`Principal`] and
//! [`notifier`] the [`Notifier`]. [`recover`] turns this crate's
//! rejections into the same status codes and JSON bodies as `sse-axum`.
//!
//! ```
//! use warp::Filter;
//! use sse_warp::SseService;
//! use sse_warp::sse_core::{CookieSessionAuthenticator, InMemorySessions, NewNotification, Notifier, Principal};
//!
//! let sse = SseService::builder(CookieSessionAuthenticator::new("sid", InMemorySessions::new())).build();
//!
//! let events = warp::path!("api" / "notifications" / "stream").and(sse_warp::stream(&sse));
//! let notify = warp::path!("api" / "notifications")
//!     .and(warp::post())
//!     .and(sse_warp::authenticated(&sse))
//!     .and(sse_warp::notifier(&sse))
//!     .and(warp::body::json())
//!     .and_then(|_sender: Principal, notifier: Notifier, new: NewNotification| async move {
//!         let notification = notifier.notify(new).await.map_err(sse_warp::reject)?;
//!         Ok::<_, warp::Rejection>(warp::reply::with_status(warp::reply::json(&notification), warp::http::StatusCode::CREATED))
//!     });
//! let routes = events.or(notify).recover(sse_warp::recover);
//! # let _ = routes;
//! ```
//!
//! All stream behaviour lives in `sse-tower`; this crate only translates
//! between warp's request and reply types and the tower service.
//!
//! [warp]: https://docs.rs/warp
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;

use http::{HeaderMap, Method, Request};
use http_body_util::BodyDataStream;
use sse_core::{Notifier, Principal};
pub use sse_tower::{ApiError, SseService};
use tower_service::Service;
use warp::reply::Reply;
use warp::{Filter, Rejection};
pub use {sse_core, sse_tower};

/// Serves the stream: every request that reaches this filter gets the
/// stream's answer (the stream itself, or `401`/`403`/`405`/`429`/`503`).
pub fn stream(
    sse: &SseService,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + use<> {
    let sse = sse.clone();
    request_head().and_then(move |request: Request<()>| {
        let mut sse = sse.clone();
        async move {
            let response = match sse.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(into_reply(response))
        }
    })
}

/// The request's method, URI (path and query) and headers, as the tower
/// service and the authenticators see them.
fn request_head() -> impl Filter<Extract = (Request<()>,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .map(
            |method: Method, path: warp::path::FullPath, query: String, headers: HeaderMap| {
                let target = if query.is_empty() {
                    path.as_str().to_owned()
                } else {
                    format!("{}?{query}", path.as_str())
                };
                let mut request = Request::new(());
                *request.method_mut() = method;
                *request.headers_mut() = headers;
                // A path warp routed is a valid URI; "/" only guards the impossible.
                *request.uri_mut() = target
                    .parse()
                    .unwrap_or_else(|_| http::Uri::from_static("/"));
                request
            },
        )
}

fn into_reply(response: http::Response<sse_tower::SseBody>) -> warp::reply::Response {
    let (parts, body) = response.into_parts();
    let mut reply = warp::reply::stream(BodyDataStream::new(body)).into_response();
    *reply.status_mut() = parts.status;
    *reply.headers_mut() = parts.headers;
    reply
}

/// Extracts the caller's principal, authenticated exactly as streams are;
/// rejects with [`Rejected`] (see [`recover`]).
pub fn authenticated(
    sse: &SseService,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone + use<> {
    let sse = sse.clone();
    request_head().and_then(move |request: Request<()>| {
        let sse = sse.clone();
        async move {
            let (parts, ()) = request.into_parts();
            sse.authenticate(&parts).await.map_err(reject)
        }
    })
}

/// Extracts the service's [`Notifier`]: store, then publish.
pub fn notifier(
    sse: &SseService,
) -> impl Filter<Extract = (Notifier,), Error = Infallible> + Clone + use<> {
    let notifier = sse.notifier().clone();
    warp::any().map(move || notifier.clone())
}

/// A rejection carrying an [`ApiError`]; [`recover`] renders it.
#[derive(Debug)]
pub struct Rejected(pub ApiError);

impl warp::reject::Reject for Rejected {}

/// Turns any error this layer produces (notifier, store, authentication)
/// into a rejection.
pub fn reject(error: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(Rejected(error.into()))
}

/// Renders [`Rejected`] rejections as their status and JSON body, the same
/// as `sse-axum`; other rejections pass on.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Rejection> {
    match rejection.find::<Rejected>() {
        Some(Rejected(error)) => Ok(api_reply(error)),
        None => Err(rejection),
    }
}

/// An [`ApiError`] as a warp reply.
pub fn api_reply(error: &ApiError) -> warp::reply::Response {
    let (parts, body) = error.to_response().into_parts();
    let mut reply = body.into_response();
    *reply.status_mut() = parts.status;
    *reply.headers_mut() = parts.headers;
    reply
}
