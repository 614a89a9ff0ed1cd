//! The JSON API. Every handler authenticates like the stream does and
//! answers errors as `{"error": …, "field": …}` with the status
//! `sse_tower::ApiError` gives them.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sse_axum::{ApiError, Authenticated, Json, Notify, SseService};
use sse_core::{
    Audience, Event, GroupId, NewNotification, NotificationId, NotificationStore, Notifier,
    NotifyError, PageRequest, Principal, StoreError, Timestamp, UserId,
};

use crate::config::Metrics;
use crate::cookie::SessionCookie;
use crate::limit::LoginLimiter;
use crate::sessions::Sessions;

/// The client's address, as the server saw it (none in-process).
pub(crate) struct ClientAddr(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// An error response: an `ApiError` rendered as JSON.
pub(crate) struct AppError(ApiError);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        sse_axum::Error(self.0).into_response()
    }
}

macro_rules! app_error_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for AppError {
            fn from(error: $ty) -> Self {
                Self(error.into())
            }
        }
    )*};
}

app_error_from!(
    ApiError,
    StoreError,
    NotifyError,
    sse_core::HubError,
    sse_core::AuthRejection
);

impl From<sse_axum::Error> for AppError {
    fn from(error: sse_axum::Error) -> Self {
        Self(error.0)
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        Self(ApiError::bad_request(rejection.body_text()))
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        Self(ApiError::not_found(rejection.body_text()))
    }
}

/// `axum::extract::Query`, with rejections as JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(AppError))]
pub(crate) struct AppQuery<T>(pub T);

/// `axum::extract::Path`, with rejections as JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(AppError))]
pub(crate) struct AppPath<T>(pub T);

/// The notifier's inbox (every store of this app has one).
fn inbox(notifier: &Notifier) -> Result<&std::sync::Arc<dyn NotificationStore>, AppError> {
    notifier
        .inbox()
        .ok_or_else(|| AppError(NotifyError::NoInbox.into()))
}

/// Demo user and organization names: `[a-z0-9_-]{1,64}`.
pub(crate) fn valid_name(name: &str) -> bool {
    valid_user(name)
}

/// Demo user names: `[a-z0-9_-]{1,64}`.
pub(crate) fn valid_user(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn invalid_user() -> ApiError {
    ApiError::invalid(
        "user",
        "user must be 1 to 64 characters of a-z, 0-9, _ and -",
    )
}

#[derive(Deserialize)]
pub(crate) struct Login {
    user: String,
    /// The organization the session belongs to: its principal is in this
    /// group, so it receives (and replays) the org's announcements.
    #[serde(default)]
    org: Option<String>,
}

/// `POST /api/login`: a fresh session (the one the request presented, if
/// any, ends: a login never leaves an old credential valid), within the
/// per-address login rate.
pub(crate) async fn login(
    State(sessions): State<Sessions>,
    State(cookie): State<SessionCookie>,
    State(logins): State<LoginLimiter>,
    ClientAddr(addr): ClientAddr,
    Notify(notifier): Notify,
    headers: HeaderMap,
    Json(login): Json<Login>,
) -> Result<Response, AppError> {
    if let Some(addr) = addr
        && let Err(wait) = logins.take(addr)
    {
        let retry = wait.as_secs().max(1);
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many logins from this address: try again in {retry} s"),
        );
        let mut response = sse_axum::Error(error).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        return Ok(response);
    }
    if !valid_user(&login.user) {
        return Err(invalid_user().into());
    }
    let mut principal = Principal::new(login.user);
    if let Some(org) = login.org.filter(|org| !org.is_empty()) {
        if !valid_name(&org) {
            return Err(ApiError::invalid(
                "org",
                "org must be 1 to 64 characters of a-z, 0-9, _ and -",
            )
            .into());
        }
        principal = principal.with_groups([org]);
    }
    end_presented_sessions(&sessions, &notifier, cookie, &headers).await?;
    let sid = sessions.create(principal).await?;
    let set = cookie
        .set(&sid)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad session credential"))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, set)]).into_response())
}

/// `POST /api/logout`: ends the presented session and its streams on every
/// node, and clears the cookie whatever it held (an unknown or expired
/// cookie too).
pub(crate) async fn logout(
    State(sessions): State<Sessions>,
    State(cookie): State<SessionCookie>,
    Notify(notifier): Notify,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    end_presented_sessions(&sessions, &notifier, cookie, &headers).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie.clear())],
    )
        .into_response())
}

/// Ends every session the request's cookies name (a tossed cookie next to
/// the real one included), and their open streams on every node, even one
/// cut off from the hub now (the revocation is in the log).
async fn end_presented_sessions(
    sessions: &Sessions,
    notifier: &Notifier,
    cookie: SessionCookie,
    headers: &HeaderMap,
) -> Result<(), AppError> {
    let presented: Vec<String> = sse_core::auth::cookie_values(headers, cookie.name)
        .take(4)
        .map(str::to_owned)
        .collect();
    for credential in presented {
        let Some(removed) = sessions.remove(&credential).await? else {
            continue;
        };
        let Some(session) = removed.session() else {
            continue;
        };
        match notifier.revoke(removed.user(), Some(session)).await {
            // Stored: every node ends the streams once it reads the log.
            Ok(()) | Err(NotifyError::Publish { .. }) => {}
            Err(error) => {
                tracing::warn!(%error, "revoking an ended session's streams failed");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the session ended, but its open streams could not be told",
                )
                .into());
            }
        }
    }
    Ok(())
}

pub(crate) async fn session(Authenticated(principal): Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": principal.user(),
        "org": principal.groups().first(),
    }))
}

#[derive(Deserialize)]
pub(crate) struct PresenceQuery {
    user: Option<String>,
    org: Option<String>,
}

/// How many online members `GET /api/presence?org=` lists at most.
const MAX_MEMBERS_LISTED: usize = 1_000;

/// `GET /api/presence?user=NAME`: whether `NAME` has a stream open, on any
/// node, and how many. Only about yourself and users who share an org with
/// you: anyone else is `404`, the same answer as for a name nobody uses,
/// so presence tells nothing across orgs.
///
/// `GET /api/presence?org=ORG`: the org's online members, each with its
/// open streams (`[{"user": "alice", "streams": 2}, …]`, by name, at most
/// 1,000), on every node. Only for members of `ORG` (`404` otherwise).
pub(crate) async fn presence(
    Authenticated(principal): Authenticated,
    State(sessions): State<Sessions>,
    Notify(notifier): Notify,
    AppQuery(query): AppQuery<PresenceQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let user = match (query.user, query.org) {
        (Some(user), None) => user,
        (None, Some(org)) => {
            if !valid_name(&org) {
                return Err(ApiError::bad_request(
                    "org must be 1 to 64 characters of a-z, 0-9, _ and -",
                )
                .into());
            }
            let org = GroupId::from(org.as_str());
            if !principal.groups().contains(&org) {
                return Err(ApiError::not_found("no org by that name of yours").into());
            }
            let members = notifier
                .hub()
                .members(&Audience::Group(org), None, MAX_MEMBERS_LISTED)
                .await?;
            return Ok(Json(serde_json::to_value(members).unwrap_or_default()));
        }
        _ => {
            return Err(ApiError::bad_request(
                "ask about one user (?user=NAME) or your org (?org=ORG)",
            )
            .into());
        }
    };
    if !valid_name(&user) {
        return Err(invalid_user().into());
    }
    let name = user;
    let user = UserId::from(name.as_str());
    if &user != principal.user() {
        let theirs = sessions.of_user(&user).await?;
        let shared = theirs
            .iter()
            .flat_map(|session| session.groups())
            .any(|group| principal.groups().contains(group));
        if !shared {
            return Err(ApiError::not_found("no user by that name in your org").into());
        }
    }
    let presence = notifier.hub().presence(&Audience::User(user)).await?;
    Ok(Json(serde_json::json!({
        "user": name,
        "online": presence.is_online(),
        "streams": presence.streams,
    })))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

pub(crate) async fn list(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
    AppQuery(query): AppQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let mut page = PageRequest::first(query.limit.unwrap_or(20));
    if let Some(before) = query.before {
        page = page.before(NotificationId(before));
    }
    let page = inbox(&notifier)?.list(principal.user(), page).await?;
    Ok(Json(
        serde_json::json!({ "items": page.items, "nextBefore": page.next_before }),
    ))
}

pub(crate) async fn unread_count(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
) -> Result<Json<serde_json::Value>, AppError> {
    let count = inbox(&notifier)?.unread_count(principal.user()).await?;
    Ok(Json(serde_json::json!({ "count": count })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Create {
    user: String,
    title: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    action_url: Option<String>,
    /// Any JSON object the sender attaches; returned as `data`.
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// Any logged-in user may notify any user; the notification's `data.from`
/// says who (set here, whatever the request's `data` held), and the page
/// shows it.
pub(crate) async fn create(
    Authenticated(sender): Authenticated,
    Notify(notifier): Notify,
    Json(create): Json<Create>,
) -> Result<Response, AppError> {
    if !valid_user(&create.user) {
        return Err(invalid_user().into());
    }
    let mut new = NewNotification::new(create.user, create.title).message(create.message);
    if let Some(kind) = create.kind {
        new = new.kind(kind);
    }
    if let Some(url) = create.action_url.filter(|url| !url.is_empty()) {
        new = new.action_url(url);
    }
    let mut data = match create.data {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(data)) => data,
        Some(_) => return Err(ApiError::invalid("data", "data must be a JSON object").into()),
    };
    data.insert("from".to_owned(), sender.user().as_str().into());
    new = new.data(serde_json::Value::Object(data));
    let notification = match notifier.notify(new).await {
        Ok(notification) => notification,
        // Stored: clients get it when their stream reconnects and replays.
        Err(NotifyError::Publish {
            change: Some(change),
            source,
            ..
        }) => match change.kind {
            sse_core::ChangeKind::Created { notification } => {
                tracing::warn!(error = %source, "stored, but live delivery failed");
                notification
            }
            _ => {
                return Err(
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "notifying failed").into(),
                );
            }
        },
        Err(error) => return Err(error.into()),
    };
    Ok((StatusCode::CREATED, Json(notification)).into_response())
}

pub(crate) async fn mark_read(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
    AppPath(id): AppPath<u64>,
) -> Result<StatusCode, AppError> {
    notifier
        .mark_read(principal.user(), NotificationId(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn mark_all_read(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
) -> Result<StatusCode, AppError> {
    notifier.mark_all_read(principal.user()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
    AppPath(id): AppPath<u64>,
) -> Result<StatusCode, AppError> {
    notifier
        .delete(principal.user(), NotificationId(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct DeleteQuery {
    read: Option<bool>,
}

/// `DELETE /api/notifications?read=true`: only read ones may be bulk-deleted.
pub(crate) async fn delete_read(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
    AppQuery(query): AppQuery<DeleteQuery>,
) -> Result<StatusCode, AppError> {
    if query.read != Some(true) {
        return Err(ApiError::invalid(
            "read",
            "only read notifications can be deleted in bulk: add ?read=true",
        )
        .into());
    }
    notifier.delete_all_read(principal.user()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prometheus text, as `--metrics` allows.
pub(crate) async fn metrics(
    State(sse): State<SseService>,
    State(prometheus): State<metrics_exporter_prometheus::PrometheusHandle>,
    State(access): State<Metrics>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    match &access {
        Metrics::Open => {}
        Metrics::Off => return Err(ApiError::not_found("metrics are off (--metrics)").into()),
        Metrics::Bearer(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !presented.is_some_and(|presented| token.matches(presented)) {
                return Err(ApiError::unauthorized(
                    "metrics need Authorization: Bearer <the --metrics token>",
                )
                .into());
            }
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            // The snapshot brings the hub's counters up to date in the
            // recorder; the exporter renders everything recorded.
            let _ = sse.metrics();
            prometheus.render()
        },
    )
        .into_response())
}

/// Healthy when the store answers.
pub(crate) async fn healthz(State(sse): State<SseService>) -> Result<&'static str, AppError> {
    inbox(sse.notifier())?
        .unread_count(&UserId::from("__healthz__"))
        .await
        .map_err(|error| match error {
            StoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
            }
            other => ApiError::from(other),
        })?;
    Ok("ok\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Announce {
    title: String,
    #[serde(default)]
    message: String,
}

/// An announcement, as stored in the org's history and sent to its
/// members.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Announcement {
    id: String,
    org: String,
    title: String,
    message: String,
    created_at: Timestamp,
    from: UserId,
}

/// `POST /api/announcements`: a durable event to the sender's org. Every
/// member receives it live; a member who was offline replays it from the
/// org's history with `Last-Event-ID`; other orgs never see it.
pub(crate) async fn announce(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
    Json(announce): Json<Announce>,
) -> Result<Response, AppError> {
    let Some(org) = principal.groups().first() else {
        return Err(
            ApiError::forbidden("only members of an org can announce: log in with an org").into(),
        );
    };
    let title = checked_title_and_message(&announce.title, &announce.message)?;
    let announcement = Announcement {
        id: random_id(),
        org: org.to_string(),
        title: title.to_owned(),
        message: announce.message,
        created_at: Timestamp::now(),
        from: principal.user().clone(),
    };
    let event = Event::builder()
        .event("announcement")
        .json_data(&announcement)
        .build()
        .map_err(ApiError::from)?;
    match notifier
        .publish(&Audience::Group(org.clone()), &event)
        .await
    {
        // Stored: members get it when their stream reconnects and replays.
        Ok(_) | Err(NotifyError::Publish { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    Ok((StatusCode::CREATED, Json(announcement)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Broadcast {
    title: String,
    #[serde(default)]
    message: String,
}

/// A broadcast, as stored in the everyone history and sent to every user.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Broadcasted {
    id: String,
    title: String,
    message: String,
    created_at: Timestamp,
}

/// `POST /api/broadcasts` with `Authorization: Bearer <--admin-token>`: a
/// durable `broadcast` event to every user. Every open stream receives it
/// live; a stream that was away replays it with `Last-Event-ID`.
pub(crate) async fn broadcast(
    State(crate::Admin(admin)): State<crate::Admin>,
    Notify(notifier): Notify,
    headers: HeaderMap,
    Json(broadcast): Json<Broadcast>,
) -> Result<Response, AppError> {
    let Some(admin) = admin else {
        return Err(ApiError::not_found("broadcasts are off: start with --admin-token").into());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|token| admin.matches(token)) {
        return Err(ApiError::unauthorized(
            "broadcasts need Authorization: Bearer <the --admin-token>",
        )
        .into());
    }
    let title = checked_title_and_message(&broadcast.title, &broadcast.message)?;
    let broadcasted = Broadcasted {
        id: random_id(),
        title: title.to_owned(),
        message: broadcast.message,
        created_at: Timestamp::now(),
    };
    let event = Event::builder()
        .event("broadcast")
        .json_data(&broadcasted)
        .build()
        .map_err(ApiError::from)?;
    match notifier.publish(&Audience::Everyone, &event).await {
        // Stored: streams get it when they reconnect and replay.
        Ok(_) | Err(NotifyError::Publish { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    Ok((StatusCode::CREATED, Json(broadcasted)).into_response())
}

/// An announcement's or broadcast's title (trimmed) once both fields are
/// valid: a title of 1 to 200 characters on one line, a message of at most
/// 2,000.
fn checked_title_and_message<'a>(title: &'a str, message: &str) -> Result<&'a str, AppError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return Err(ApiError::invalid("title", "must be 1 to 200 characters on one line").into());
    }
    if message.chars().count() > 2_000 {
        return Err(ApiError::invalid("message", "must be at most 2000 characters").into());
    }
    Ok(title)
}

/// 64 random bits, as 16 hex digits.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return format!("{:016x}", Timestamp::now().as_millis());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
