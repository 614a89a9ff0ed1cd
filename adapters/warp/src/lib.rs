//! Serve the SSE notification stream as a [warp] `Filter`.
//!
//! [`stream`] serves an [`SseService`] at whatever path you put it behind;
//! [`authenticated`] gives handlers the caller's [`Principal`] and
//! [`notifier`] the [`Notifier`]; [`json`] reads bodies so that a bad one
//! is a `400` naming the field; [`recover`] turns this crate's rejections
//! into the same status codes and JSON bodies as `sse-axum`; [`serve`] runs
//! the routes with the limits a server of long-lived streams needs.
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
//!     .and(sse_warp::json())
//!     .and_then(|_sender: Principal, notifier: Notifier, new: NewNotification| async move {
//!         let notification = notifier.notify(new).await.map_err(sse_warp::reject)?;
//!         Ok::<_, warp::Rejection>(warp::reply::with_status(warp::reply::json(&notification), warp::http::StatusCode::CREATED))
//!     });
//! let routes = events.or(notify).recover(sse_warp::recover);
//! # async fn run(routes: impl warp::Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! sse_warp::serve(listener, routes).await
//! # }
//! ```
//!
//! # Request extensions
//!
//! Authenticators see the request's extensions, where auth middleware puts
//! the user (tower-sessions, your own layer). warp keeps them out of reach
//! of filters, so the service [`service`] builds (and [`serve`] runs)
//! copies them into the request before warp routes it; put your tower
//! layers around that service, and read the user with
//! [`ExtensionAuthenticator`](sse_core::ExtensionAuthenticator) (the
//! shared adapter suite checks this under warp and axum alike):
//!
//! ```
//! # use warp::Filter;
//! # let routes = warp::any().map(|| "hi");
//! # #[derive(Clone)] struct User;
//! let app = tower::ServiceBuilder::new()
//!     .map_request(|mut request: http::Request<sse_tower::serve::RequestBody>| { request.extensions_mut().insert(User); request })
//!     .service(sse_warp::service(routes));
//! # let _ = app;
//! ```
//!
//! All stream behaviour lives in `sse-tower`; this crate only translates
//! between warp's request and reply types and the tower service.
//!
//! [warp]: https://docs.rs/warp
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, Method, Request};
use http_body_util::BodyDataStream;
use serde::de::DeserializeOwned;
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

/// The request's extensions, as copied by [`service`] before warp routes
/// the request.
#[derive(Clone, Debug)]
struct ForwardedExtensions(Extensions);

/// The request's method, URI (path and query), headers and extensions, as
/// the tower service and the authenticators see them.
fn request_head() -> impl Filter<Extract = (Request<()>,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<ForwardedExtensions>())
        .map(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             extensions: Option<ForwardedExtensions>| {
                let target = if query.is_empty() {
                    path.as_str().to_owned()
                } else {
                    format!("{}?{query}", path.as_str())
                };
                let mut request = Request::new(());
                *request.method_mut() = method;
                *request.headers_mut() = headers;
                if let Some(ForwardedExtensions(extensions)) = extensions {
                    *request.extensions_mut() = extensions;
                }
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

/// Reads a JSON body (up to `limit` bytes; see [`json_limited`]) into `T`:
/// a body that is not the expected JSON is rejected with a `400` naming
/// the field at fault, one not declared as JSON with `415` (render them
/// with [`recover`]).
pub fn json<T: DeserializeOwned + Send + 'static>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    json_limited(64 * 1024)
}

/// [`json`] with a body limit of `limit` bytes (`413` past it).
pub fn json_limited<T: DeserializeOwned + Send + 'static>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(|headers: HeaderMap| async move {
            if sse_tower::json::is_json_content_type(&headers) {
                Ok(())
            } else {
                Err(reject(sse_tower::json::unsupported_media_type()))
            }
        })
        .untuple_one()
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and_then(|body: bytes::Bytes| async move {
            sse_tower::json::from_slice::<T>(&body).map_err(reject)
        })
}

/// A rejection carrying an [`ApiError`]; [`recover`] renders it.
#[derive(Debug)]
pub struct Rejected(pub ApiError);

impl warp::reject::Reject for Rejected {}

/// Turns any error this layer produces (notifier, store, hub, event,
/// authentication, or an [`ApiError`] of your own) into a rejection.
pub fn reject(error: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(Rejected(error.into()))
}

/// Renders [`Rejected`] rejections as their status and JSON body, the same
/// as `sse-axum`, and warp's own body-too-large rejection as a JSON `413`;
/// other rejections pass on.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Rejection> {
    if let Some(Rejected(error)) = rejection.find::<Rejected>() {
        return Ok(api_reply(error));
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(api_reply(&ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "the body is too large",
        )));
    }
    Err(rejection)
}

/// An [`ApiError`] as a warp reply.
pub fn api_reply(error: &ApiError) -> warp::reply::Response {
    let (parts, body) = error.to_response().into_parts();
    let mut reply = body.into_response();
    *reply.status_mut() = parts.status;
    *reply.headers_mut() = parts.headers;
    reply
}

/// `routes` as a tower service that hands the request's extensions on to
/// [`stream`] and [`authenticated`] (see the [crate docs](crate#request-extensions)).
pub fn service<F>(routes: F) -> WithExtensions<impl WarpService>
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
    F::Future: Send,
{
    WithExtensions(warp::service(routes))
}

/// What `warp::service` returns (its type is not nameable), as [`serve`]
/// needs it.
pub trait WarpService:
    Service<
        Request<sse_tower::serve::RequestBody>,
        Response = warp::reply::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> WarpService for S where
    S: Service<
            Request<sse_tower::serve::RequestBody>,
            Response = warp::reply::Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A warp service that first copies each request's extensions where warp's
/// filters can read them; see [`service`].
#[derive(Clone, Debug)]
pub struct WithExtensions<S>(S);

impl<S, B> Service<Request<B>> for WithExtensions<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let extensions = request.extensions().clone();
        request
            .extensions_mut()
            .insert(ForwardedExtensions(extensions));
        self.0.call(request)
    }
}

/// Serves `routes` on `listener` with `sse_tower::serve`: connections
/// capped, request heads bounded in time, stalled readers closed at once;
/// see [`sse_tower::serve`](sse_tower::serve()) for the options (chain
/// them before `.await`).
/// With the `tls` feature, `.tls(sse_tower::serve::Tls::from_pem_files(cert, key)?)`
/// serves HTTPS, HTTP/2 by ALPN.
pub fn serve<F>(
    listener: tokio::net::TcpListener,
    routes: F,
) -> sse_tower::Serve<WithExtensions<impl WarpService>>
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
    F::Future: Send,
{
    sse_tower::serve(listener, service(routes))
}
