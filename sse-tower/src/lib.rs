//! A tower [`Service`](tower_service::Service) that turns a
//! [`SessionAuthenticator`](sse_core::SessionAuthenticator), a
//! [`Hub`](sse_core::Hub) and an [`EventLog`](sse_core::EventLog) into a
//! spec-compliant, authenticated, replaying `text/event-stream`.
//!
//! ```
//! use std::time::Duration;
//! use sse_core::{CookieSessionAuthenticator, InMemorySessions, NewNotification, Principal};
//! use sse_tower::SseService;
//! use tower::ServiceExt;
//! use http_body_util::BodyExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sessions = InMemorySessions::new();
//! let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions.clone()))
//!     .heartbeat(Duration::from_secs(15))
//!     .build();
//!
//! // Mount `sse` at a route of any tower-based server (axum, hyper, warp
//! // through sse-warp). Here it is called directly:
//! let sid = sessions.create(Principal::new("bob"))?;
//! let request = http::Request::get("/events").header("cookie", format!("sid={sid}")).body(())?;
//! let response = sse.clone().oneshot(request).await?;
//! assert_eq!(response.headers()["content-type"], "text/event-stream");
//!
//! // Handlers notify through the notifier: stored, then delivered live.
//! sse.notifier().notify(NewNotification::new("bob", "Hello")).await?;
//!
//! // The body holds its timers inline (no extra allocation), so pin it to
//! // read it. Events that are ready together arrive in one chunk.
//! let mut body = std::pin::pin!(response.into_body());
//! let mut received = String::new();
//! while !received.contains("event: notification") || !received.ends_with("\n\n") {
//!     let Some(frame) = body.frame().await else { break };
//!     let chunk = frame?.into_data().unwrap_or_default();
//!     received.push_str(std::str::from_utf8(&chunk)?);
//! }
//! assert!(received.starts_with("retry: 3000\nid: "));
//! assert!(received.contains("\nevent: connected\n"));
//! assert!(received.contains(".1\nevent: notification\n"));
//! # Ok(()) }
//! ```
//!
//! # The protocol
//!
//! 1. **Refusals first**, each with a one-line `text/plain` body saying why:
//!    `405` (with `Allow: GET`) for other methods; `403` for an `Origin`
//!    outside [`allowed_origins`](SseServiceBuilder::allowed_origins);
//!    `401` when the authenticator finds no principal, `403` when it
//!    forbids, `503` (with `Retry-After`) when its session store is down;
//!    `403` for a `?topic=` the principal may not read; `429` (with
//!    `Retry-After`) past the per-user limit and `503` past the global one
//!    or during shutdown; `503` when the hub or store cannot be reached;
//!    `500` when user code panics (the panic is contained to the request).
//! 2. **Headers**: `Content-Type: text/event-stream`,
//!    `Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no`; no
//!    `Content-Length` and no `Connection` (HTTP/2 forbids it).
//! 3. **First bytes at once**: a `retry:` hint with an event named
//!    `connected` whose data is
//!    `{"connectionId":"…","heartbeatMs":…,"user":"…"}` (the principal's
//!    user, so a browser shares the stream only among that user's tabs) and
//!    whose `id:` is where the client starts (its own cursor, or the log's
//!    head for a fresh client), so that a client that receives nothing
//!    else still resumes without a gap.
//! 4. **Replay without gap or duplicate**, for every durable audience the
//!    principal reads — its user, its groups, its topics, everyone — from
//!    one `Last-Event-ID` (or the `lastEventId` query parameter when the
//!    header is absent): the stream subscribes to the hub first, then sends
//!    what the [`EventLog`](sse_core::EventLog) has for it after that
//!    cursor, then live events, skipping live ones it already sent. Hubs
//!    deliver durable events in log order without gaps, so a client's id
//!    always means "everything for me up to here"; `sse_core::log`
//!    documents why this loses and duplicates nothing. When the log no
//!    longer has that history, the gap is over the
//!    [replay limit](SseServiceBuilder::replay_limit), or the id is not a
//!    cursor of this log (junk, non-UTF-8, oversized, another epoch), it
//!    sends one event named `reset` (data `{"reason":"…"}`) whose `id:` is
//!    the log's head: the client refetches its state and resumes from
//!    there.
//! 5. **Heartbeats**: a `: heartbeat` comment when nothing was sent for
//!    the heartbeat interval.
//! 6. **Slow consumers** are closed when their bounded queue overflows
//!    (or they fall that far behind a shared ring of the hub: events for
//!    everyone, a group or a topic); publishers and other connections
//!    never wait. The client reconnects and replays.
//! 7. **No leaks**: however a stream ends (client gone, write error,
//!    shutdown, lag, lifetime, logout via
//!    [`Notifier::disconnect`](sse_core::Notifier::disconnect)), its hub
//!    registration and limit slot are released.
//! 8. **Graceful shutdown**: [`SseService::shutdown`] ends every stream
//!    with a `retry:` drawn from a jitter range, so clients come back
//!    spread out.
//! 9. **Observable**: [`SseService::metrics`] (also as Prometheus text) and
//!    a `tracing` span per stream.
//!
//! Compression: tower-http's `CompressionLayer` with its default predicate
//! leaves `text/event-stream` uncompressed, so events are not buffered.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api_error;
mod body;
mod closer;
mod config;
mod connect;
pub mod json;
mod layer;
mod limits;
pub mod metrics;
pub mod origin;
pub mod presence;
mod replay;
mod response;
#[cfg(feature = "serve")]
pub mod serve;
mod service;
pub mod socket;

pub use api_error::ApiError;
pub use body::SseBody;
pub use closer::ConnectionCloser;
pub use config::SseServiceBuilder;
pub use connect::{CONNECTED_EVENT, TOPIC_QUERY};
pub use layer::{MiddlewareFuture, ResponseBody, SseLayer, SseMiddleware};
pub use metrics::{DisconnectCause, MetricsSnapshot, RejectCause};
pub use replay::RESET_EVENT;
#[cfg(feature = "serve")]
pub use serve::{Serve, serve};
pub use service::{ResponseFuture, SseService};

// Re-exported so one `use sse_tower::*` covers the common path.
pub use sse_core;
