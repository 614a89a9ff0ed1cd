//! JSON request bodies, read the same way by every adapter: a body that is
//! not the expected JSON is a `400` whose [`ApiError`] names the offending
//! field wherever one can be named.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! struct Login { user: String, age: Option<u8> }
//!
//! let error = sse_tower::json::from_slice::<Login>(br#"{"age": 7}"#).unwrap_err();
//! assert_eq!(error.status(), http::StatusCode::BAD_REQUEST);
//! assert_eq!(error.field(), Some("user"));
//!
//! let error = sse_tower::json::from_slice::<Login>(br#"{"user": "a", "age": "x"}"#).unwrap_err();
//! assert_eq!(error.field(), Some("age"));
//!
//! let login: Login = sse_tower::json::from_slice(br#"{"user": "a"}"#)?;
//! assert_eq!(login.user, "a");
//! # Ok::<(), sse_tower::ApiError>(())
//! ```

use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Deserializes a JSON body; every failure is a `400` [`ApiError`], with
/// [`field`](ApiError::field) set to the path of the field at fault
/// (`title`, `data.size`, `items[2].id`) when there is one.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(from_error)?;
    // Trailing garbage after the value is an error too.
    deserializer.end().map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    Ok(value)
}

/// Whether the request says its body is JSON (`application/json`, with or
/// without parameters, or any `+json` type). Adapters answer `415` when it
/// does not: a cross-site form cannot send this type without a CORS
/// preflight, which is part of the CSRF defence.
pub fn is_json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The `415` adapters answer a body that is not declared as JSON.
pub fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "send a JSON body with content-type: application/json",
    )
}

fn from_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.inner();
    let message = inner.to_string();
    if !inner.is_data() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {message}"),
        );
    }
    // serde reports a missing field at the struct that lacks it, naming
    // the field only in its message; an unknown field is reported at the
    // field itself, or at its struct when the struct refuses it.
    let path = if path == "." { String::new() } else { path };
    let named = backticked(&message)
        .filter(|_| message.starts_with("missing field") || message.starts_with("unknown field"));
    let field = match named {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) if path == name || path.ends_with(&format!(".{name}")) => path,
        Some(name) => format!("{path}.{name}"),
        None => path,
    };
    let message = format!("invalid body: {message}");
    if field.is_empty() {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    } else {
        ApiError::invalid(field, message)
    }
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        size: u32,
    }

    fn field(body: &str) -> (StatusCode, Option<String>) {
        let error = from_slice::<Outer>(body.as_bytes()).unwrap_err();
        (error.status(), error.field().map(str::to_owned))
    }

    #[test]
    fn every_json_error_is_400_naming_what_it_can() {
        let cases = [
            (r#"{"inner":{"size":1}}"#, Some("name")),
            (r#"{"name":"a"}"#, Some("inner")),
            (r#"{"name":"a","inner":{}}"#, Some("inner.size")),
            (r#"{"name":"a","inner":{"size":"x"}}"#, Some("inner.size")),
            (r#"{"name":1,"inner":{"size":1}}"#, Some("name")),
            (
                r#"{"name":"a","inner":{"size":1},"extra":1}"#,
                Some("extra"),
            ),
            (
                r#"{"name":"a","inner":{"size":1,"more":1}}"#,
                Some("inner.more"),
            ),
            (r#"{not json"#, None),
            (r#"[]"#, None),
            (r#"{"name":"a","inner":{"size":1}} x"#, None),
            ("", None),
        ];
        for (body, expected) in cases {
            assert_eq!(
                field(body),
                (StatusCode::BAD_REQUEST, expected.map(str::to_owned)),
                "{body}"
            );
        }
    }

    #[test]
    fn content_types() {
        let headers = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        assert!(is_json_content_type(&headers("application/json")));
        assert!(is_json_content_type(&headers(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json_content_type(&headers(
            "application/merge-patch+json"
        )));
        assert!(!is_json_content_type(&headers("text/plain")));
        assert!(!is_json_content_type(&headers("application/jsonx")));
        assert!(!is_json_content_type(&http::HeaderMap::new()));
    }
}
