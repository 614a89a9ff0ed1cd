use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::request::Parts;
pub use jsonwebtoken;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::bearer::bearer_token;
use super::cookie::cookie_value;
use super::{AuthRejection, MAX_CREDENTIAL_LEN, SessionAuthenticator};
use crate::Principal;

type Claims = Map<String, Value>;
type MapClaims = dyn Fn(&Claims) -> Result<Principal, AuthRejection> + Send + Sync;

/// Authenticates by a signed JSON Web Token (feature `jwt`), from the
/// `Authorization: Bearer` header, a cookie, or (opt-in) a query parameter
/// for clients that cannot set headers.
///
/// What is checked, each failure a `401` whose body says which (never the
/// token):
///
/// - the signature, with only the algorithm you name (never `none`);
/// - `exp`: required, a whole number of seconds (RFC 7519's NumericDate
///   may be fractional; such a token is refused rather than read wrong),
///   in the future (with the [leeway](Self::leeway)), and in range;
/// - `nbf`, when present: not in the future;
/// - `aud` and `iss`, once [`audience`](Self::audience) and
///   [`issuer`](Self::issuer) are set: **required**, and one of those
///   configured (a token the same identity provider minted for another
///   service, with no `aud`, is refused).
///
/// The claims become the principal; a claim of the wrong type is refused,
/// never dropped or converted, and so are ids holding CR, LF or NUL:
///
/// | claim | principal |
/// | --- | --- |
/// | `sub` (string, required) | the user |
/// | `sid` (string) | the session (so logout and revocation reach its streams) |
/// | `groups` (array of strings) | the groups |
/// | `topics`, and Mercure's `mercure.subscribe` (arrays of strings) | the topics it may read |
/// | `exp` | the [expiry](Principal::expires_at): the stream ends then |
///
/// [`map_claims`](Self::map_claims) replaces that mapping with your own.
///
/// ```
/// use sse_core::auth::jsonwebtoken::{EncodingKey, Header, encode};
/// use sse_core::{JwtAuthenticator, SessionAuthenticator};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auth = JwtAuthenticator::hs256(b"a secret of at least 32 bytes....")
///     .expect("32 bytes")
///     .audience(["notifications"])
///     .cookie("token");
///
/// let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
/// let claims = serde_json::json!({
///     "sub": "alice", "aud": "notifications", "exp": exp,
///     "groups": ["acme"], "mercure": {"subscribe": ["deploys"]},
/// });
/// let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(b"a secret of at least 32 bytes....")).unwrap();
///
/// let request = http::Request::get("/events").header("authorization", format!("Bearer {token}")).body(()).unwrap();
/// let alice = auth.authenticate(&request.into_parts().0).await.unwrap();
/// assert_eq!(alice.user().as_str(), "alice");
/// assert_eq!(alice.groups()[0].as_str(), "acme");
/// assert!(alice.may_read(&"deploys".into()));
/// assert!(alice.expires_at().is_some());
///
/// let forged = http::Request::get("/events").header("cookie", "token=e30.e30.x").body(()).unwrap();
/// assert_eq!(auth.authenticate(&forged.into_parts().0).await.unwrap_err().status(), 401);
/// # }
/// ```
///
/// Only the algorithms you name are accepted (never `none`). With both of
/// `jsonwebtoken`'s crypto backends enabled in one build, install one with
/// `jsonwebtoken::crypto::CryptoProvider::install_default` first.
#[derive(Clone)]
pub struct JwtAuthenticator {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
    bearer: bool,
    cookie: Option<String>,
    query_param: Option<String>,
    map: Option<Arc<MapClaims>>,
}

impl JwtAuthenticator {
    /// Tokens signed with HMAC-SHA256 and `secret`, which must be at least
    /// [`MIN_SECRET_LEN`] bytes (a short or empty secret is guessed or
    /// brute-forced; generate 32 random bytes).
    ///
    /// ```
    /// use sse_core::JwtAuthenticator;
    /// assert!(JwtAuthenticator::hs256(b"").is_err());
    /// assert!(JwtAuthenticator::hs256([7u8; 32]).is_ok());
    /// ```
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, WeakSecret> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecret(secret.len()));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Tokens signed with `algorithm` and verified with `key` (an RSA or EC
    /// public key from PEM or JWK components, an Ed25519 key, a secret you
    /// checked is long enough).
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 5;
        validation.validate_nbf = true;
        Self {
            key: Arc::new(key),
            validation: Arc::new(validation),
            bearer: true,
            cookie: None,
            query_param: None,
            map: None,
        }
    }

    /// Accepts only tokens whose `aud` names one of `audiences`.
    #[must_use]
    pub fn audience<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let audiences: Vec<String> = audiences.into_iter().map(|a| a.to_string()).collect();
        let validation = Arc::make_mut(&mut self.validation);
        validation.set_audience(&audiences);
        validation.required_spec_claims.insert("aud".to_owned());
        self
    }

    /// Accepts only tokens whose `iss` is one of `issuers`.
    #[must_use]
    pub fn issuer<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let issuers: Vec<String> = issuers.into_iter().map(|i| i.to_string()).collect();
        let validation = Arc::make_mut(&mut self.validation);
        validation.set_issuer(&issuers);
        validation.required_spec_claims.insert("iss".to_owned());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (5 s by default). The
    /// principal expires at `exp` plus this.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.validation).leeway = leeway.as_secs();
        self
    }

    /// Also reads the token from cookie `name` (after the header).
    #[must_use]
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Also reads the token from query parameter `name` (last), for clients
    /// that can set neither headers nor cookies. Query strings reach access
    /// logs and browser history: issue short-lived, stream-only tokens.
    #[must_use]
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.query_param = Some(name.into());
        self
    }

    /// Ignores the `Authorization` header (a cookie-only deployment).
    #[must_use]
    pub fn without_bearer(mut self) -> Self {
        self.bearer = false;
        self
    }

    /// Builds the principal from the verified claims with `map` instead of
    /// the default mapping. The expiry from `exp` is added unless `map`
    /// sets one.
    ///
    /// ```
    /// use sse_core::{AuthRejection, JwtAuthenticator, Principal};
    ///
    /// let auth = JwtAuthenticator::hs256(b"a secret of at least 32 bytes....")?.map_claims(|claims| {
    ///     let user = claims.get("uid").and_then(|v| v.as_u64())
    ///         .ok_or_else(|| AuthRejection::unauthenticated("token has no uid"))?;
    ///     let tenant = claims.get("tenant").and_then(|v| v.as_str()).unwrap_or("public");
    ///     Ok(Principal::new(user.to_string()).with_groups([tenant]))
    /// });
    /// # let _ = auth;
    /// # Ok::<(), sse_core::auth::WeakSecret>(())
    /// ```
    #[must_use]
    pub fn map_claims<F>(mut self, map: F) -> Self
    where
        F: Fn(&Map<String, Value>) -> Result<Principal, AuthRejection> + Send + Sync + 'static,
    {
        self.map = Some(Arc::new(map));
        self
    }

    /// The token in `request`: the header, then the cookie, then the query.
    pub fn token<'a>(&self, request: &'a Parts) -> Option<Cow<'a, str>> {
        let header = self
            .bearer
            .then(|| bearer_token(&request.headers))
            .flatten();
        let cookie = || {
            self.cookie
                .as_deref()
                .and_then(|name| cookie_value(&request.headers, name))
        };
        header.or_else(cookie).map(Cow::Borrowed).or_else(|| {
            let name = self.query_param.as_deref()?;
            crate::query::param(request.uri.query()?, name).map(Cow::Owned)
        })
    }

    fn verify(&self, token: &str) -> Result<Principal, AuthRejection> {
        if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN {
            return Err(AuthRejection::unauthenticated("invalid token"));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| AuthRejection::unauthenticated(reason(error.kind())))?
            .claims;
        let leeway = Duration::from_secs(self.validation.leeway);
        // `exp` was required and read as whole seconds by the check above;
        // as an instant it must be in range (not near `i64::MAX`).
        let expires = match claims.get("exp").map(Value::as_u64) {
            Some(Some(_)) => expiry(&claims)
                .and_then(|exp| exp.checked_add(leeway))
                .ok_or_else(|| {
                    AuthRejection::unauthenticated("token's exp claim is out of range")
                })?,
            _ => {
                return Err(AuthRejection::unauthenticated(
                    "token's exp claim must be a whole number of seconds",
                ));
            }
        };
        let principal = match &self.map {
            Some(map) => map(&claims)?,
            None => default_principal(&claims)?,
        };
        Ok(match principal.expires_at() {
            None => principal.with_expiry(expires),
            Some(_) => principal,
        })
    }
}

#[async_trait]
impl SessionAuthenticator for JwtAuthenticator {
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthRejection> {
        let token = self
            .token(request)
            .ok_or_else(|| AuthRejection::unauthenticated("no token"))?;
        self.verify(&token)
    }
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("bearer", &self.bearer)
            .field("cookie", &self.cookie)
            .field("query_param", &self.query_param)
            .finish_non_exhaustive()
    }
}

/// What a client is told about a refused token: enough to fix it, nothing
/// about the key.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet",
        ErrorKind::InvalidAudience => "token not meant for this service (aud)",
        ErrorKind::InvalidIssuer => "token from an issuer this service does not trust (iss)",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        ErrorKind::InvalidSignature => "token signature does not verify",
        ErrorKind::InvalidAlgorithm => {
            "token signed with an algorithm this service does not accept"
        }
        _ => "invalid token",
    }
}

fn expiry(claims: &Claims) -> Option<SystemTime> {
    let exp = claims.get("exp")?.as_u64()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(exp))
}

/// The shortest HMAC secret [`JwtAuthenticator::hs256`] takes, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// An HMAC secret shorter than [`MIN_SECRET_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an HS256 secret of {0} bytes is too short: use at least 32 random bytes (e.g. `openssl rand -base64 32`)"
)]
pub struct WeakSecret(pub usize);

fn default_principal(claims: &Claims) -> Result<Principal, AuthRejection> {
    let wrong = |claim: &str, want: &str| {
        AuthRejection::unauthenticated(format!("token's {claim} claim must be {want}"))
    };
    let user = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(_) => return Err(wrong("sub", "a non-empty string")),
        None => return Err(AuthRejection::unauthenticated("token has no sub claim")),
    };
    let strings = |name: &str, value: Option<&Value>| -> Result<Vec<String>, AuthRejection> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let items = value
            .as_array()
            .ok_or_else(|| wrong(name, "an array of strings"))?;
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| wrong(name, "an array of strings"))
            })
            .collect()
    };
    let mut topics = strings("topics", claims.get("topics"))?;
    let mercure = match claims.get("mercure") {
        None => None,
        Some(Value::Object(mercure)) => mercure.get("subscribe"),
        Some(_) => return Err(wrong("mercure", "an object")),
    };
    topics.extend(strings("mercure.subscribe", mercure)?);
    let mut principal = Principal::new(user)
        .with_groups(strings("groups", claims.get("groups"))?)
        .with_topics(topics);
    match claims.get("sid") {
        None => {}
        Some(Value::String(sid)) if !sid.is_empty() => {
            principal = principal.with_session(sid.as_str());
        }
        Some(_) => return Err(wrong("sid", "a non-empty string")),
    }
    principal.check_ids()?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: &Value, secret: &[u8]) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn bearer(token: &str) -> Parts {
        http::Request::get("/events")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    async fn refusal(auth: &JwtAuthenticator, request: &Parts) -> String {
        let error = auth.authenticate(request).await.unwrap_err();
        assert_eq!(error.status(), http::StatusCode::UNAUTHORIZED);
        error.to_string()
    }

    #[tokio::test]
    async fn every_way_a_token_can_be_wrong_is_a_401_that_says_which() {
        let auth = JwtAuthenticator::hs256(SECRET)
            .unwrap()
            .audience(["sse"])
            .issuer(["https://auth.example"]);
        let good =
            json!({"sub": "alice", "aud": "sse", "iss": "https://auth.example", "exp": now() + 60});
        assert!(
            auth.authenticate(&bearer(&token(&good, SECRET)))
                .await
                .is_ok()
        );
        let mut expired = good.clone();
        expired["exp"] = json!(now() - 3600);
        let mut other_aud = good.clone();
        other_aud["aud"] = json!("billing");
        let mut other_iss = good.clone();
        other_iss["iss"] = json!("https://evil.example");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        let mut no_sub = good.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        for (claims, secret, says) in [
            (&expired, SECRET, "expired"),
            (&other_aud, SECRET, "aud"),
            (&other_iss, SECRET, "iss"),
            (&no_exp, SECRET, "claim"),
            (&no_sub, SECRET, "sub"),
            (
                &good,
                &b"another secret of 32 bytes......."[..],
                "signature",
            ),
        ] {
            let message = refusal(&auth, &bearer(&token(claims, secret))).await;
            assert!(message.contains(says), "{message:?} should say {says}");
        }
        for junk in [
            "",
            "a.b.c",
            "not a token",
            &"x".repeat(MAX_CREDENTIAL_LEN + 1),
        ] {
            refusal(&auth, &bearer(junk)).await;
        }
        // An unsigned token (`alg: none`) is never accepted.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.";
        refusal(&auth, &bearer(none)).await;
    }

    #[tokio::test]
    async fn configured_claims_are_required_and_every_odd_claim_is_refused() {
        let strict = JwtAuthenticator::hs256(SECRET)
            .unwrap()
            .audience(["sse"])
            .issuer(["https://auth.example"]);
        let exp = now() + 60;
        // Minted by the same identity provider for another service: no aud.
        let no_aud = json!({"sub": "alice", "iss": "https://auth.example", "exp": exp});
        let no_iss = json!({"sub": "alice", "aud": "sse", "exp": exp});
        for claims in [&no_aud, &no_iss] {
            let message = refusal(&strict, &bearer(&token(claims, SECRET))).await;
            assert!(message.contains("required claim"), "{message}");
        }
        let plain = JwtAuthenticator::hs256(SECRET).unwrap();
        for (claims, says) in [
            // RFC 7519 allows a fractional NumericDate; one that cannot be
            // read as whole seconds is refused, never read as no expiry.
            (
                json!({"sub": "alice", "exp": now() as f64 + 60.5}),
                "whole number",
            ),
            (json!({"sub": "alice", "exp": "tomorrow"}), "claim"),
            (
                json!({"sub": "alice", "exp": exp, "nbf": now() + 3600}),
                "not valid yet",
            ),
            (json!({"sub": "alice", "exp": i64::MAX}), ""),
            (json!({"sub": "alice", "exp": u64::MAX}), ""),
            (json!({"sub": 42, "exp": exp}), "sub"),
            (
                json!({"sub": "alice", "exp": exp, "groups": "admins"}),
                "groups",
            ),
            (
                json!({"sub": "alice", "exp": exp, "groups": ["ok", 7]}),
                "groups",
            ),
            (
                json!({"sub": "alice", "exp": exp, "topics": {"a": 1}}),
                "topics",
            ),
            (
                json!({"sub": "alice", "exp": exp, "mercure": {"subscribe": "all"}}),
                "subscribe",
            ),
            (json!({"sub": "alice", "exp": exp, "sid": 9}), "sid"),
            (json!({"sub": "x\ndata: evil", "exp": exp}), "line break"),
            (
                json!({"sub": "alice", "exp": exp, "groups": ["a\rb"]}),
                "line break",
            ),
            (
                json!({"sub": "alice", "exp": exp, "sid": "s\0"}),
                "line break",
            ),
        ] {
            let message = refusal(&plain, &bearer(&token(&claims, SECRET))).await;
            assert!(
                message.contains(says),
                "{claims}: {message:?} should say {says}"
            );
        }
        for weak in [&b""[..], b"short", &[7u8; 31]] {
            assert_eq!(
                JwtAuthenticator::hs256(weak).unwrap_err(),
                WeakSecret(weak.len())
            );
        }
    }

    #[tokio::test]
    async fn claims_become_user_session_groups_topics_and_expiry() {
        let exp = now() + 600;
        let claims = json!({
            "sub": "42", "sid": "s-9", "exp": exp, "groups": ["acme", "ops"],
            "topics": ["a"], "mercure": {"subscribe": ["b"]},
        });
        let auth = JwtAuthenticator::hs256(SECRET)
            .unwrap()
            .leeway(Duration::ZERO);
        let p = auth
            .authenticate(&bearer(&token(&claims, SECRET)))
            .await
            .unwrap();
        assert_eq!(p.user().as_str(), "42");
        assert_eq!(p.session().unwrap().as_str(), "s-9");
        assert_eq!(p.groups().len(), 2);
        assert!(p.may_read(&"a".into()) && p.may_read(&"b".into()));
        assert_eq!(
            p.expires_at(),
            UNIX_EPOCH.checked_add(Duration::from_secs(exp))
        );
    }

    #[tokio::test]
    async fn sources_are_header_then_cookie_then_opt_in_query() {
        let t = token(&json!({"sub": "alice", "exp": now() + 60}), SECRET);
        let request = |uri: &str, cookie: Option<&str>| {
            let mut builder = http::Request::get(uri);
            if let Some(cookie) = cookie {
                builder = builder.header("cookie", cookie);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let plain = JwtAuthenticator::hs256(SECRET).unwrap();
        refusal(&plain, &request(&format!("/?access_token={t}"), None)).await;
        refusal(&plain, &request("/", Some(&format!("token={t}")))).await;
        let all = plain.cookie("token").query_param("access_token");
        assert!(
            all.authenticate(&request(&format!("/?access_token={t}"), None))
                .await
                .is_ok()
        );
        assert!(
            all.authenticate(&request("/", Some(&format!("token={t}"))))
                .await
                .is_ok()
        );
        let cookie_only = all.clone().without_bearer();
        refusal(&cookie_only, &bearer(&t)).await;
    }
}
