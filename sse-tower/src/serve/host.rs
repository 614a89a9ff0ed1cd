//! The `Host` rule of RFC 9112 §3.2, on both paths: an HTTP/1.1 request
//! carries exactly one `Host`, an HTTP/1.0 one at most one, and its value
//! is an authority without userinfo (or empty); anything else is `400`.
//! hyper does not check it, so `serve` does, before the service sees the
//! request.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};

/// What a request with a bad `Host` gets, on either path: the connection
/// closes after it.
pub(super) const BAD_REQUEST_BODY: &str =
    "a request needs exactly one Host header naming the server (RFC 9112 section 3.2)\n";

/// The `400` for a bad `Host`, for hyper to write.
pub(super) fn bad_request() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(BAD_REQUEST_BODY.as_bytes()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether `headers` carry the `Host` that `version` requires.
pub(super) fn is_valid(version: Version, headers: &HeaderMap) -> bool {
    if version >= Version::HTTP_2 {
        // `:authority` travels in the URI; hyper checks its syntax.
        return true;
    }
    let mut hosts = headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host,
        (None, _) => return version < Version::HTTP_11,
        (Some(_), Some(_)) => return false,
    };
    let bytes = host.as_bytes();
    // Empty: the target URI has no authority (RFC 9112 §3.2).
    bytes.is_empty()
        || (!bytes.contains(&b'@')
            && std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<http::uri::Authority>().ok())
                .is_some_and(|authority| authority.as_str().len() == bytes.len())
            && port_is_digits(bytes))
}

/// `http` takes `host:port` with any port text; RFC 3986 wants digits.
fn port_is_digits(authority: &[u8]) -> bool {
    let after_ipv6 = match authority.iter().rposition(|&b| b == b']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    match after_ipv6.iter().rposition(|&b| b == b':') {
        Some(colon) => after_ipv6[colon + 1..].iter().all(u8::is_ascii_digit),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, http::HeaderValue::from_bytes(host).unwrap());
        }
        headers
    }

    #[test]
    fn one_well_formed_host_on_http_1_1() {
        for good in [
            &b"example.com"[..],
            b"example.com:8080",
            b"127.0.0.1:3000",
            b"[::1]:3000",
            b"",
            b"xn--bcher-kva.example",
        ] {
            assert!(
                is_valid(Version::HTTP_11, &headers(&[good])),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"a b/c@d"[..],
            b"user@example.com",
            b"example.com/path",
            b"example.com:port",
            b"[::1",
            b"exa mple.com",
            b"example.com?x",
        ] {
            assert!(
                !is_valid(Version::HTTP_11, &headers(&[bad])),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(!is_valid(Version::HTTP_11, &headers(&[])));
        assert!(!is_valid(Version::HTTP_11, &headers(&[b"a", b"a"])));
        assert!(is_valid(Version::HTTP_10, &headers(&[])));
        assert!(!is_valid(Version::HTTP_10, &headers(&[b"a", b"b"])));
        assert!(is_valid(Version::HTTP_2, &headers(&[])));
    }
}
