//! The responses a stream request can get: the stream's headers, and short
//! plain-text refusals that say why.

use std::time::Duration;

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::SseBody;

/// `X-Accel-Buffering: no` tells nginx (and proxies that copy it) not to
/// buffer the stream.
pub(crate) const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// The head of a stream response. No `Content-Length` (the body is open
/// ended) and never `Connection`, which HTTP/2 forbids.
pub(crate) fn stream(body: SseBody) -> Response<SseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    response
}

/// A refusal: `status` with `reason` as a one-line plain-text body.
pub(crate) fn refuse(status: StatusCode, reason: &str) -> Response<SseBody> {
    let mut response = Response::new(SseBody::full(format!("{reason}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn method_not_allowed() -> Response<SseBody> {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "the event stream only answers GET",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET"));
    response
}

/// A refusal the client should retry later.
pub(crate) fn retry_later(status: StatusCode, reason: &str, after: Duration) -> Response<SseBody> {
    let mut response = refuse(status, reason);
    let seconds = after.as_secs().max(1);
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}
