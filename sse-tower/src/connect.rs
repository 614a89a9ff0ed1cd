//! From a request head to a response: the checks in the order the crate
//! docs list them (see "The protocol"), each refusal a short body that says why.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use sse_core::{AuthRejection, Cursor, Event, Principal, Subscription, Topic};

use crate::ConnectionCloser;
use crate::body::{Opened, SseBody};
use crate::limits::LimitExceeded;
use crate::metrics::RejectCause;
use crate::origin::RequestOrigin;
use crate::replay::{self, Position};
use crate::response::{method_not_allowed, refuse, retry_later, stream};
use crate::service::Shared;

/// The query parameter that narrows a stream to some of the principal's topics.
pub const TOPIC_QUERY: &str = "topic";

/// The SSE event name of the first event of every stream.
pub const CONNECTED_EVENT: &str = "connected";

pub(crate) async fn open(shared: Arc<Shared>, parts: Parts) -> Response<SseBody> {
    let outcome = AssertUnwindSafe(open_inner(shared.clone(), parts))
        .catch_unwind()
        .await;
    match outcome {
        Ok(response) => response,
        Err(_) => {
            // The panic message went to the panic hook; the connection's
            // subscription and permit were dropped while unwinding.
            shared.metrics.rejected(RejectCause::Panic);
            tracing::error!("a panic in user code while opening an event stream was contained");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the event stream failed to open; try again",
            )
        }
    }
}

async fn open_inner(shared: Arc<Shared>, parts: Parts) -> Response<SseBody> {
    let config = &shared.config;
    if parts.method != Method::GET {
        shared.metrics.rejected(RejectCause::Method);
        return method_not_allowed();
    }
    if let Some(allowed) = &config.allowed_origins
        && !RequestOrigin::of(&parts.headers).is_allowed(allowed)
    {
        shared.metrics.rejected(RejectCause::Origin);
        return refuse(
            StatusCode::FORBIDDEN,
            "this origin may not open the event stream",
        );
    }
    if shared.shutdown.is_started() || shared.limits.full() {
        shared.metrics.rejected(RejectCause::Overloaded);
        let reason = if shared.shutdown.is_started() {
            "the server is shutting down; reconnect shortly"
        } else {
            "the server is at its connection limit; reconnect shortly"
        };
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            reason,
            config.limit_retry_after,
        );
    }

    let principal = match run_authenticator(&shared, &parts).await {
        Ok(Ok(principal)) => principal,
        Ok(Err(rejection)) => return rejected(&shared, &rejection),
        Err(Panicked) => {
            shared.metrics.rejected(RejectCause::Panic);
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "authentication failed unexpectedly; try again",
            );
        }
    };
    let principal = match narrow_topics(principal, &parts) {
        Ok(principal) => principal,
        Err(topic) => {
            shared.metrics.rejected(RejectCause::Forbidden);
            return refuse(
                StatusCode::FORBIDDEN,
                &format!("topic {topic:?} is not readable by this user"),
            );
        }
    };
    let permit = match shared.limits.acquire(principal.user()) {
        Ok(permit) => permit,
        Err(LimitExceeded::User) => {
            shared.metrics.rejected(RejectCause::UserLimit);
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too many open event streams for this user; close a tab or retry later",
                config.limit_retry_after,
            );
        }
        Err(LimitExceeded::Global) => {
            shared.metrics.rejected(RejectCause::Overloaded);
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is at its connection limit; reconnect shortly",
                config.limit_retry_after,
            );
        }
    };

    // Subscribe first, then ask the log: anything published in between
    // arrives on the subscription, and the watermark drops what the log
    // already returned. No gap, no duplicate (see `sse_core::log`). A poll
    // reads the log alone: it ends with what the log has.
    let position = Position::from_request(&parts, config.last_event_id_query.as_deref());
    let notifier = &shared.notifier;
    let polling = is_poll(&parts, config.poll_query.as_deref());
    let subscription = if polling {
        None
    } else {
        match subscribe(&shared, &parts, &principal).await {
            Ok(subscription) => Some(subscription),
            Err(refused) => return refused,
        }
    };
    let caught_up = match replay::catch_up(
        &**notifier.log(),
        &principal,
        position,
        config.replay_limit,
    )
    .await
    {
        Ok(caught_up) => caught_up,
        Err(error) => {
            tracing::warn!(%error, "replaying from the log failed");
            shared.metrics.rejected(RejectCause::Unavailable);
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "notification history is unavailable; reconnect shortly",
                config.limit_retry_after,
            );
        }
    };

    let id = subscription.as_ref().map(Subscription::id);
    let span = match id {
        Some(id) => tracing::info_span!("sse_stream", connection = %id, user = %principal.user()),
        None => tracing::info_span!("sse_poll", user = %principal.user()),
    };
    let mut prelude = Vec::with_capacity(1 + caught_up.frames.len());
    prelude.push(connected_frame(
        &shared,
        id,
        principal.user(),
        caught_up.start,
    ));
    prelude.extend(caught_up.frames);
    shared.metrics.connected();
    shared.metrics.hub(|| notifier.hub().stats());
    if subscription.is_some() {
        crate::presence::changed(&shared, &principal);
    }
    shared.metrics.replayed(caught_up.replayed);
    if caught_up.reset {
        shared.metrics.reset();
    }
    span.in_scope(|| {
        tracing::info!(
            replayed = caught_up.replayed,
            reset = caught_up.reset,
            resume_after = %caught_up.watermark,
            "event stream opened"
        )
    });
    stream(SseBody::stream(Opened {
        shared: shared.clone(),
        principal,
        subscription,
        prelude,
        watermark: caught_up.watermark,
        permit,
        span,
    }))
}

/// Registers the stream with the hub, closing its connection from the
/// publisher's side should it fall behind.
async fn subscribe(
    shared: &Shared,
    parts: &Parts,
    principal: &Principal,
) -> Result<Subscription, Response<SseBody>> {
    let config = &shared.config;
    let mut subscription = match shared
        .notifier
        .hub()
        .subscribe(principal, config.queue_capacity)
        .await
    {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%error, "subscribing to the hub failed");
            shared.metrics.rejected(RejectCause::Unavailable);
            return Err(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "live delivery is unavailable; reconnect shortly",
                config.limit_retry_after,
            ));
        }
    };
    if let Some(closer) = parts.extensions.get::<ConnectionCloser>() {
        // The server stops polling a body whose client stopped reading, so
        // the stream would not see its own overflow: close the connection
        // from the publisher's side.
        let closer = closer.clone();
        subscription.on_lagged(move || closer.close());
    }
    Ok(subscription)
}

/// Whether the request asks for a poll (`?poll=1`, or the configured name).
fn is_poll(parts: &Parts, name: Option<&str>) -> bool {
    let (Some(name), Some(query)) = (name, parts.uri.query()) else {
        return false;
    };
    sse_core::query::params(query, name).any(|value| value != "0" && value != "false")
}

/// The authenticator panicked.
pub(crate) struct Panicked;

/// Runs the authenticator with panics contained. A principal whose
/// credentials have expired is refused here, whatever the authenticator
/// (streams and handlers alike).
async fn run_authenticator(
    shared: &Shared,
    parts: &Parts,
) -> Result<Result<Principal, AuthRejection>, Panicked> {
    let verdict = AssertUnwindSafe(shared.authenticator.authenticate(parts))
        .catch_unwind()
        .await
        .map_err(|_| {
            tracing::error!("the session authenticator panicked; the request was refused");
            Panicked
        })?;
    Ok(verdict.and_then(|principal| {
        if principal.is_expired() {
            return Err(AuthRejection::unauthenticated("credentials expired"));
        }
        // Whatever the authenticator: an id with a line break or NUL never
        // opens a stream (see `Principal::check_ids`).
        principal.check_ids()?;
        Ok(principal)
    }))
}

/// Authenticates like a stream does, for handlers; a panic in the
/// authenticator becomes [`AuthRejection::Unavailable`].
pub(crate) async fn authenticate(
    shared: &Shared,
    parts: &Parts,
) -> Result<Principal, AuthRejection> {
    run_authenticator(shared, parts)
        .await
        .unwrap_or_else(|Panicked| {
            Err(AuthRejection::Unavailable(
                "the session authenticator panicked".into(),
            ))
        })
}

fn rejected(shared: &Shared, rejection: &AuthRejection) -> Response<SseBody> {
    let (cause, status) = match rejection {
        AuthRejection::Forbidden(_) => (RejectCause::Forbidden, StatusCode::FORBIDDEN),
        AuthRejection::Unavailable(_) => {
            (RejectCause::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
        }
        _ => (RejectCause::Unauthenticated, StatusCode::UNAUTHORIZED),
    };
    shared.metrics.rejected(cause);
    match rejection {
        AuthRejection::Unavailable(error) => {
            tracing::warn!(%error, "authentication could not be completed");
            retry_later(
                status,
                "authentication is unavailable; reconnect shortly",
                shared.config.limit_retry_after,
            )
        }
        other => refuse(status, &other.to_string()),
    }
}

/// Keeps the topics the request asks for (`?topic=a&topic=b`), all of which
/// the principal must be allowed to read; without the parameter, every
/// allowed topic. Returns the first topic that is not allowed.
fn narrow_topics(principal: Principal, parts: &Parts) -> Result<Principal, String> {
    let Some(query) = parts.uri.query() else {
        return Ok(principal);
    };
    let requested: Vec<Topic> = sse_core::query::params(query, TOPIC_QUERY)
        .map(Topic::from)
        .collect();
    if requested.is_empty() {
        return Ok(principal);
    }
    if let Some(denied) = requested.iter().find(|t| !principal.may_read(t)) {
        return Err(denied.to_string());
    }
    Ok(principal.with_topics(requested))
}

/// The first event: a `retry:` hint, and as `id:` where the client starts
/// (its own cursor, or the log's head for a fresh client), so that even a
/// client that receives nothing else resumes without a gap. Its data says
/// whose stream it is, so that a browser's tabs share it only among tabs of
/// that user (and notice when the cookie under them changed hands).
fn connected_frame(
    shared: &Shared,
    id: Option<sse_core::ConnectionId>,
    user: &sse_core::UserId,
    start: Cursor,
) -> Bytes {
    let heartbeat_ms = shared.config.heartbeat.map_or(0, |h| h.as_millis());
    let mut data = serde_json::json!({
        "heartbeatMs": heartbeat_ms,
        "user": user.as_str(),
    });
    match id {
        Some(id) => data["connectionId"] = id.to_string().into(),
        // A poll is no connection of the hub's.
        None => data["poll"] = true.into(),
    }
    let data = data.to_string();
    Event::builder()
        .retry(shared.config.retry)
        .id(start.to_string())
        .event(CONNECTED_EVENT)
        .data(data)
        .build()
        .map(Event::into_frame)
        .unwrap_or_else(|_| Event::retry_hint(shared.config.retry).into_frame())
}
