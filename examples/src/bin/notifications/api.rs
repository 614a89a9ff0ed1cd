//! The JSON API. Every handler authenticates like the stream does and
//! answers errors as `{"error": …, "field": …}` with the status
//! `sse_tower::ApiError` gives them.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sse_axum::{ApiError, Authenticated, Notify, SseService};
use sse_core::{
    Audience, NewNotification, NotificationId, NotifyError, PageRequest, StoreError, UserId,
};

use crate::sessions::Sessions;

pub(crate) const COOKIE: &str = "sid";

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

app_error_from!(ApiError, StoreError, NotifyError, sse_core::AuthRejection);

fn bad_request(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message.to_string())
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let message = match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "send a JSON body with content-type: application/json".to_owned()
            }
            other if status == StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the body is too large: {other}")
            }
            other => format!("the body is not the expected JSON: {}", other.body_text()),
        };
        Self(ApiError::new(status, message))
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        Self(bad_request(rejection.body_text()))
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        Self(ApiError::new(StatusCode::NOT_FOUND, rejection.body_text()))
    }
}

/// `axum::Json`, with rejections as JSON errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub(crate) struct AppJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
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
}

pub(crate) async fn login(
    State(sessions): State<Sessions>,
    AppJson(login): AppJson<Login>,
) -> Result<Response, AppError> {
    if !valid_user(&login.user) {
        return Err(invalid_user().into());
    }
    let sid = sessions.create(&UserId::from(login.user)).await?;
    let cookie = format!("{COOKIE}={sid}; HttpOnly; SameSite=Lax; Path=/");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

pub(crate) async fn logout(
    State(sessions): State<Sessions>,
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
) -> Result<Response, AppError> {
    if let Some(session) = principal.session() {
        sessions.remove(session.as_str()).await?;
        // The session's open streams end on every node; their reconnect gets 401.
        notifier
            .disconnect(&Audience::Session(session.clone()))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "ending the logged-out session's streams failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "logged out, but open streams could not be told",
                )
            })?;
    }
    let expired = HeaderValue::from_static("sid=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response())
}

pub(crate) async fn session(Authenticated(principal): Authenticated) -> AppJson<serde_json::Value> {
    AppJson(serde_json::json!({ "user": principal.user() }))
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
) -> Result<AppJson<serde_json::Value>, AppError> {
    let mut page = PageRequest::first(query.limit.unwrap_or(20));
    if let Some(before) = query.before {
        page = page.before(NotificationId(before));
    }
    let page = notifier.store().list(principal.user(), page).await?;
    Ok(AppJson(
        serde_json::json!({ "items": page.items, "nextBefore": page.next_before }),
    ))
}

pub(crate) async fn unread_count(
    Authenticated(principal): Authenticated,
    Notify(notifier): Notify,
) -> Result<AppJson<serde_json::Value>, AppError> {
    let count = notifier.store().unread_count(principal.user()).await?;
    Ok(AppJson(serde_json::json!({ "count": count })))
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
}

/// Any logged-in user may notify any user.
pub(crate) async fn create(
    Authenticated(_sender): Authenticated,
    Notify(notifier): Notify,
    AppJson(create): AppJson<Create>,
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
    let notification = match notifier.notify(new).await {
        Ok(notification) => notification,
        // Stored: clients get it when their stream reconnects and replays.
        Err(NotifyError::Publish { change, source }) => match change.kind {
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
    Ok((StatusCode::CREATED, AppJson(notification)).into_response())
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

pub(crate) async fn metrics(State(sse): State<SseService>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        sse.metrics().to_prometheus(),
    )
}

/// Healthy when the store answers.
pub(crate) async fn healthz(State(sse): State<SseService>) -> Result<&'static str, AppError> {
    sse.notifier()
        .store()
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
