//! The session cookie: `__Host-sid; Secure` when every configured origin is
//! `https`, `sid` otherwise (a plain-http origin cannot set a `Secure`
//! cookie). It lives as long as the server keeps the session.

use axum::http::HeaderValue;
use sse_tower::origin::Origin;

/// How the session cookie is named and flagged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionCookie {
    /// `__Host-sid` (https) or `sid`.
    pub(crate) name: &'static str,
    secure: bool,
    max_age_secs: u64,
}

impl SessionCookie {
    /// For an app served at `origins` (none: plain http on loopback),
    /// whose sessions last `max_age_secs`.
    pub(crate) fn for_origins(origins: &[Origin], tls: bool, max_age_secs: u64) -> Self {
        // `__Host-` makes the browser refuse the cookie unless it is
        // `Secure`, has `Path=/` and no `Domain`: a sibling subdomain can
        // then neither set nor shadow it.
        let secure = if origins.is_empty() {
            tls
        } else {
            origins.iter().all(|o| o.scheme() == "https")
        };
        Self {
            name: if secure { "__Host-sid" } else { "sid" },
            secure,
            max_age_secs,
        }
    }

    fn attributes(&self, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("HttpOnly; SameSite=Lax; Path=/{secure}; Max-Age={max_age}")
    }

    /// `Set-Cookie` for a fresh session.
    pub(crate) fn set(
        &self,
        credential: &str,
    ) -> Result<HeaderValue, axum::http::header::InvalidHeaderValue> {
        HeaderValue::try_from(format!(
            "{}={credential}; {}",
            self.name,
            self.attributes(self.max_age_secs)
        ))
    }

    /// `Set-Cookie` that deletes it.
    pub(crate) fn clear(&self) -> HeaderValue {
        HeaderValue::try_from(format!("{}=; {}", self.name, self.attributes(0)))
            .unwrap_or(HeaderValue::from_static("sid=; Path=/; Max-Age=0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_origins_get_a_host_prefixed_secure_cookie() {
        let https: Origin = "https://app.example".parse().unwrap();
        let http: Origin = "http://app.example".parse().unwrap();
        let secure = SessionCookie::for_origins(std::slice::from_ref(&https), false, 60);
        let set = secure.set("abc").unwrap();
        assert_eq!(
            set,
            "__Host-sid=abc; HttpOnly; SameSite=Lax; Path=/; Secure; Max-Age=60"
        );
        assert!(secure.clear().to_str().unwrap().starts_with("__Host-sid=;"));
        for plain in [vec![], vec![http.clone()], vec![https, http]] {
            let cookie = SessionCookie::for_origins(&plain, false, 60);
            assert_eq!(cookie.name, "sid");
            assert!(
                !cookie
                    .set("abc")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .contains("Secure")
            );
        }
        // Served over TLS itself (--tls-cert) with no --origin.
        let tls = SessionCookie::for_origins(&[], true, 60);
        assert_eq!(tls.name, "__Host-sid");
        assert!(
            tls.set("abc")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("; Secure")
        );
    }
}
