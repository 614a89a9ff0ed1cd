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
/// The token's signature, `exp` (required), `nbf`, and, when configured,
/// `aud` and `iss` are checked by the [`jsonwebtoken`] crate; a token that
/// fails any of them is a `401` whose body says which (never the token).
/// Its claims become the principal:
///
/// | claim | principal |
/// | --- | --- |
/// | `sub` (string or number, required) | the user |
/// | `sid` | the session (so logout and revocation reach its streams) |
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
    /// Tokens signed with HMAC-SHA256 and `secret` (use at least 32 random
    /// bytes).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::new(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS256)
    }

    /// Tokens signed with `algorithm` and verified with `key` (an RSA or EC
    /// public key from PEM or JWK components, an Ed25519 key, a secret).
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 5;
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
        Arc::make_mut(&mut self.validation).set_audience(&audiences);
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
        Arc::make_mut(&mut self.validation).set_issuer(&issuers);
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
    /// let auth = JwtAuthenticator::hs256(b"a secret of at least 32 bytes....").map_claims(|claims| {
    ///     let user = claims.get("uid").and_then(|v| v.as_u64())
    ///         .ok_or_else(|| AuthRejection::unauthenticated("token has no uid"))?;
    ///     let tenant = claims.get("tenant").and_then(|v| v.as_str()).unwrap_or("public");
    ///     Ok(Principal::new(user.to_string()).with_groups([tenant]))
    /// });
    /// # let _ = auth;
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
        let principal = match &self.map {
            Some(map) => map(&claims)?,
            None => default_principal(&claims)?,
        };
        let leeway = Duration::from_secs(self.validation.leeway);
        Ok(match (principal.expires_at(), expiry(&claims)) {
            (None, Some(exp)) => principal.with_expiry(exp + leeway),
            _ => principal,
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

fn default_principal(claims: &Claims) -> Result<Principal, AuthRejection> {
    let user = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::Number(sub)) => sub.to_string(),
        _ => return Err(AuthRejection::unauthenticated("token has no sub claim")),
    };
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut topics = strings(claims.get("topics"));
    topics.extend(strings(
        claims.get("mercure").and_then(|m| m.get("subscribe")),
    ));
    let mut principal = Principal::new(user)
        .with_groups(strings(claims.get("groups")))
        .with_topics(topics);
    if let Some(Value::String(sid)) = claims.get("sid") {
        principal = principal.with_session(sid.as_str());
    }
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
    async fn claims_become_user_session_groups_topics_and_expiry() {
        let exp = now() + 600;
        let claims = json!({
            "sub": 42, "sid": "s-9", "exp": exp, "groups": ["acme", "ops"],
            "topics": ["a"], "mercure": {"subscribe": ["b"]},
        });
        let auth = JwtAuthenticator::hs256(SECRET).leeway(Duration::ZERO);
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
        let plain = JwtAuthenticator::hs256(SECRET);
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
