//! [`ApiError`]: how handlers that notify or read the store answer a
//! failure. Every adapter renders it the same way.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use sse_core::{AuthRejection, EventError, HubError, NotifyError, StoreError};

/// A failed API call as a status and a JSON body
/// `{"error":"…","field":"…"}` (`field` only for invalid input).
///
/// ```
/// use sse_core::StoreError;
/// use sse_tower::ApiError;
///
/// let error = ApiError::from(StoreError::Invalid { field: "title", reason: "must not be empty".into() });
/// assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
/// assert_eq!(error.to_json(), r#"{"error":"invalid `title`: must not be empty","field":"title"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<Cow<'static, str>>,
}

impl ApiError {
    /// An error with any status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A `400 Bad Request` about one input field (its name as the client
    /// sent it, or a path such as `data.size` for a nested one).
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// A `400 Bad Request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A `401 Unauthorized`: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A `403 Forbidden`: valid credentials that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// A `404 Not Found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The offending input field, for `400`s.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(field) = &self.field {
            body["field"] = field.as_ref().into();
        }
        body.to_string()
    }

    /// The error as a response with a JSON body.
    pub fn to_response(&self) -> http::Response<String> {
        let mut response = http::Response::new(self.to_json());
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, error.to_string()),
            StoreError::Invalid { field, .. } => Self::invalid(*field, error.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(%error, "notification store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the notification store is unavailable; retry later",
                )
            }
            _ => {
                tracing::error!(%error, "notification store failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the notification store failed",
                )
            }
        }
    }
}

impl From<NotifyError> for ApiError {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::Store(error) => error.into(),
            NotifyError::Hub(error) => error.into(),
            NotifyError::Publish { event, source, .. } => {
                tracing::warn!(id = event.id().unwrap_or_default(), %source, "stored but not delivered live");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stored, but live delivery is unavailable; streams receive it from the log",
                )
            }
            NotifyError::PublishMany {
                stored,
                failed,
                source,
            } => {
                tracing::warn!(stored = stored.len(), failed = failed.len(), %source, "stored but not all delivered live");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stored, but live delivery is unavailable; streams receive them from the log",
                )
            }
            other => {
                tracing::error!(error = %other, "notifying failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "notifying failed")
            }
        }
    }
}

impl From<HubError> for ApiError {
    fn from(error: HubError) -> Self {
        match &error {
            HubError::Unavailable(_) => {
                tracing::warn!(%error, "hub unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "live delivery is unavailable; retry later",
                )
            }
            HubError::Unsupported(what) => {
                tracing::error!(%error, "hub lacks an operation");
                Self::new(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("{what} is not supported by this server's hub"),
                )
            }
            _ => {
                tracing::error!(%error, "hub refused an event");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "live delivery failed")
            }
        }
    }
}

impl From<EventError> for ApiError {
    /// An event that cannot be built from the values given is the caller's
    /// `400`, except a JSON serialization failure, which is the server's.
    fn from(error: EventError) -> Self {
        match error {
            EventError::Json(_) => {
                tracing::error!(%error, "encoding an event failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding the event failed",
                )
            }
            other => Self::bad_request(other.to_string()),
        }
    }
}

impl From<AuthRejection> for ApiError {
    fn from(rejection: AuthRejection) -> Self {
        let message = match &rejection {
            AuthRejection::Unavailable(_) => {
                "authentication is unavailable; retry later".to_owned()
            }
            other => other.to_string(),
        };
        Self::new(rejection.status(), message)
    }
}
