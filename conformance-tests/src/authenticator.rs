//! The [`SessionAuthenticator`] suite: run it against your authenticator
//! from a `#[tokio::test]`.
//!
//! Give it requests that must authenticate (at least two users), and it
//! checks that they do, that missing, wrong, tampered, oversized and
//! non-UTF-8 credentials are rejected with `401` (never another user, never
//! a panic), and that concurrent calls stay consistent. Requests only you
//! can make that must be refused (an expired token, one signed with another
//! key, a revoked session) go to [`run_with`] as [`RefusedRequest`]s.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use std::sync::Arc;
//! use sse_conformance::authenticator::{self, ValidRequest};
//! use sse_core::{CookieSessionAuthenticator, InMemorySessions, Principal};
//!
//! let sessions = InMemorySessions::new();
//! let alice = sessions.create(Principal::new("alice")).unwrap();
//! let bob = sessions.create(Principal::new("bob")).unwrap();
//! let auth = Arc::new(CookieSessionAuthenticator::new("sid", sessions));
//! authenticator::run(auth, vec![
//!     ValidRequest::new("/events", "alice").header("cookie", format!("sid={alice}")),
//!     ValidRequest::new("/events", "bob").header("cookie", format!("sid={bob}")),
//! ]).await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use sse_core::{AuthRejection, Principal, SessionAuthenticator, UserId};

use crate::report::{Report, ensure};

const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// A request that must authenticate as `user`.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    user: UserId,
}

impl ValidRequest {
    /// A `GET` of `uri` (path and query, which may carry a token) that must
    /// authenticate as `user`.
    pub fn new(uri: impl Into<String>, user: impl Into<UserId>) -> Self {
        Self {
            uri: uri.into(),
            headers: Vec::new(),
            user: user.into(),
        }
    }

    /// Adds a header (a cookie, an `Authorization`).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    fn parts(&self) -> Result<Parts, String> {
        parts(&self.uri, &self.headers)
    }

    /// The same request with every credential value replaced by `f(value)`:
    /// cookie values, the `Authorization` token and query values.
    fn map_credentials(&self, f: &dyn Fn(&str) -> String) -> Self {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let text = String::from_utf8_lossy(value);
                let mapped = match name.to_ascii_lowercase().as_str() {
                    "cookie" => text
                        .split(';')
                        .map(|pair| match pair.split_once('=') {
                            Some((k, v)) => format!("{k}={}", f(v.trim())),
                            None => pair.to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(";"),
                    "authorization" => match text.split_once(' ') {
                        Some((scheme, token)) => format!("{scheme} {}", f(token.trim())),
                        None => f(&text),
                    },
                    _ => text.into_owned(),
                };
                (name.clone(), mapped.into_bytes())
            })
            .collect();
        let uri = match self.uri.split_once('?') {
            Some((path, query)) => {
                let query = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, v)) => format!("{k}={}", percent_encode(&f(v))),
                        None => pair.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                format!("{path}?{query}")
            }
            None => self.uri.clone(),
        };
        Self {
            uri,
            headers,
            user: self.user.clone(),
        }
    }

    fn without_credentials(&self) -> Self {
        Self {
            uri: self.uri.split('?').next().unwrap_or("/").to_owned(),
            headers: self
                .headers
                .iter()
                .filter(|(n, _)| {
                    !matches!(n.to_ascii_lowercase().as_str(), "cookie" | "authorization")
                })
                .cloned()
                .collect(),
            user: self.user.clone(),
        }
    }
}

/// Encodes everything but unreserved characters, so any junk value is a
/// valid query value.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

fn parts(uri: &str, headers: &[(String, Vec<u8>)]) -> Result<Parts, String> {
    let mut builder = http::Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .map_err(|e| format!("the request to {} is not valid HTTP: {e}", shorten(uri)))
}

/// A request that must be refused, and with which status (`401` unless
/// [`status`](Self::status) says otherwise): credentials only the adopter
/// can make wrong in a way that matters, such as an expired token.
///
/// ```
/// use sse_conformance::authenticator::RefusedRequest;
/// let expired = RefusedRequest::new("/events", "an expired token")
///     .header("authorization", "Bearer eyJ…");
/// # let _ = expired;
/// ```
#[derive(Debug, Clone)]
pub struct RefusedRequest {
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    what: String,
    status: http::StatusCode,
}

impl RefusedRequest {
    /// A `GET` of `uri` that must be refused; `what` names it in failures.
    pub fn new(uri: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            headers: Vec::new(),
            what: what.into(),
            status: http::StatusCode::UNAUTHORIZED,
        }
    }

    /// Adds a header (a cookie, an `Authorization`).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// The status it must be refused with (`401` by default; `403` for
    /// valid credentials that may not connect).
    #[must_use]
    pub fn status(mut self, status: http::StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// Runs every check and panics with the table if any failed.
pub async fn run<A: SessionAuthenticator>(authenticator: Arc<A>, valid: Vec<ValidRequest>) {
    check(authenticator, valid).await.assert_passed();
}

/// Runs every check, and checks that each of `refused` is refused with its
/// status; panics with the table if any failed.
pub async fn run_with<A: SessionAuthenticator>(
    authenticator: Arc<A>,
    valid: Vec<ValidRequest>,
    refused: Vec<RefusedRequest>,
) {
    check_with(authenticator, valid, refused)
        .await
        .assert_passed();
}

/// Runs every check and returns the report.
pub async fn check<A: SessionAuthenticator>(
    authenticator: Arc<A>,
    valid: Vec<ValidRequest>,
) -> Report {
    check_with(authenticator, valid, Vec::new()).await
}

/// Runs every check, and the refusal of each of `refused`, and returns
/// the report.
pub async fn check_with<A: SessionAuthenticator>(
    authenticator: Arc<A>,
    valid: Vec<ValidRequest>,
    refused: Vec<RefusedRequest>,
) -> Report {
    let mut report = Report::default();
    if !refused.is_empty() {
        let (auth, refused) = (authenticator.clone(), Arc::new(refused));
        report
            .run(
                "authenticator::the_adopters_refused_requests_are_refused",
                CHECK_TIMEOUT,
                || the_adopters_refused_requests_are_refused(auth, refused),
            )
            .await;
    }
    let requests = Arc::new(valid);
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            let (auth, valid) = (authenticator.clone(), requests.clone());
            report.run(concat!("authenticator::", stringify!($name)), CHECK_TIMEOUT, || $name(auth, valid)).await;
        )*};
    }
    checks!(
        valid_credentials_yield_their_user,
        missing_credentials_are_401,
        wrong_credentials_are_401,
        tampered_credentials_are_401,
        oversized_credentials_are_401,
        non_utf8_credentials_are_401,
        concurrent_calls_stay_consistent,
    );
    report
}

/// Authenticates in a separate task so a panic is reported, not
/// propagated. An expired principal counts as a `401`, as streams refuse it.
async fn authenticate<A: SessionAuthenticator>(
    auth: &Arc<A>,
    parts: Parts,
) -> Result<Result<Principal, AuthRejection>, String> {
    let auth = auth.clone();
    tokio::spawn(async move {
        auth.authenticate(&parts).await.and_then(|principal| {
            if principal.is_expired() {
                Err(AuthRejection::unauthenticated("credentials expired"))
            } else {
                Ok(principal)
            }
        })
    })
    .await
    .map_err(|e| {
        if e.is_panic() {
            "the authenticator panicked".to_owned()
        } else {
            e.to_string()
        }
    })
}

async fn expect_401<A: SessionAuthenticator>(
    auth: &Arc<A>,
    request: &ValidRequest,
    what: &str,
) -> Result<(), String> {
    match authenticate(auth, request.parts()?).await? {
        Err(AuthRejection::Unauthenticated(_)) => Ok(()),
        Err(other) => Err(format!(
            "{what}: expected a 401 rejection, got {other:?} ({})",
            other.status()
        )),
        Ok(principal) => Err(format!(
            "{what}: authenticated as {:?}; must be rejected with 401",
            principal.user()
        )),
    }
}

async fn the_adopters_refused_requests_are_refused<A: SessionAuthenticator>(
    auth: Arc<A>,
    refused: Arc<Vec<RefusedRequest>>,
) -> Result<(), String> {
    for request in refused.iter() {
        match authenticate(&auth, parts(&request.uri, &request.headers)?).await? {
            Ok(principal) => {
                return Err(format!(
                    "{}: authenticated as {:?}; must be refused with {}",
                    request.what,
                    principal.user(),
                    request.status
                ));
            }
            Err(rejection) => ensure!(
                rejection.status() == request.status,
                "{}: refused with {} ({rejection}), expected {}",
                request.what,
                rejection.status(),
                request.status
            ),
        }
    }
    Ok(())
}

async fn valid_credentials_yield_their_user<A: SessionAuthenticator>(
    auth: Arc<A>,
    valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    let users: std::collections::HashSet<_> = valid.iter().map(|v| v.user.clone()).collect();
    ensure!(
        users.len() >= 2,
        "give valid requests for at least two users, so isolation can be checked"
    );
    for request in valid.iter() {
        match authenticate(&auth, request.parts()?).await? {
            Ok(principal) => ensure!(
                principal.user() == &request.user,
                "a request for {:?} authenticated as {:?}",
                request.user,
                principal.user()
            ),
            Err(rejection) => {
                return Err(format!(
                    "a valid request for {:?} was rejected: {rejection}",
                    request.user
                ));
            }
        }
    }
    Ok(())
}

async fn missing_credentials_are_401<A: SessionAuthenticator>(
    auth: Arc<A>,
    valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    for request in valid.iter() {
        expect_401(
            &auth,
            &request.without_credentials(),
            "a request without cookie, Authorization or query",
        )
        .await?;
    }
    Ok(())
}

async fn wrong_credentials_are_401<A: SessionAuthenticator>(
    auth: Arc<A>,
    valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    for request in valid.iter() {
        for junk in ["0", "not-a-session", "' OR 1=1 --", "%00", "Bearer"] {
            let wrong = request.map_credentials(&|_| junk.to_owned());
            expect_401(&auth, &wrong, &format!("credentials replaced by {junk:?}")).await?;
        }
    }
    Ok(())
}

async fn tampered_credentials_are_401<A: SessionAuthenticator>(
    auth: Arc<A>,
    valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    for request in valid.iter() {
        let flipped = request.map_credentials(&|value| {
            let mut chars: Vec<char> = value.chars().collect();
            if let Some(last) = chars.last_mut() {
                *last = if *last == 'a' { 'b' } else { 'a' };
            }
            chars.into_iter().collect()
        });
        expect_401(
            &auth,
            &flipped,
            "credentials with their last character changed",
        )
        .await?;
        let extended = request.map_credentials(&|value| format!("{value}x"));
        expect_401(&auth, &extended, "credentials with a character appended").await?;
    }
    Ok(())
}

async fn oversized_credentials_are_401<A: SessionAuthenticator>(
    auth: Arc<A>,
    valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    let huge = "a".repeat(64 * 1024);
    // URIs are capped below 64 KiB by HTTP libraries; 16 KiB is far beyond
    // what servers accept for a query anyway.
    let long = "a".repeat(16 * 1024);
    for request in valid.iter() {
        let in_query = request.uri.contains('?');
        let oversized =
            request.map_credentials(&|_| if in_query { long.clone() } else { huge.clone() });
        expect_401(&auth, &oversized, "oversized (16-64 KiB) credentials").await?;
    }
    let bare = ValidRequest::new("/", "nobody")
        .header("cookie", format!("sid={huge}"))
        .header("authorization", format!("Bearer {huge}"));
    expect_401(&auth, &bare, "a 64 KiB cookie and bearer token").await
}

async fn non_utf8_credentials_are_401<A: SessionAuthenticator>(
    auth: Arc<A>,
    _valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    let request = ValidRequest::new("/", "nobody")
        .header("cookie", b"sid=\xff\xfe\xfd".as_slice())
        .header("authorization", b"Bearer \xc3\x28".as_slice());
    expect_401(
        &auth,
        &request,
        "non-UTF-8 cookie and Authorization headers",
    )
    .await
}

async fn concurrent_calls_stay_consistent<A: SessionAuthenticator>(
    auth: Arc<A>,
    valid: Arc<Vec<ValidRequest>>,
) -> Result<(), String> {
    let mut tasks = Vec::new();
    for i in 0..200 {
        let request = valid[i % valid.len()].clone();
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let parts = request.parts()?;
            match auth.authenticate(&parts).await {
                Ok(p) if p.user() == &request.user => Ok(()),
                Ok(p) => Err(format!(
                    "under concurrency a request for {:?} authenticated as {:?}",
                    request.user,
                    p.user()
                )),
                Err(e) => Err(format!(
                    "under concurrency a valid request for {:?} was rejected: {e}",
                    request.user
                )),
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| format!("an authentication task failed: {e}"))??;
    }
    Ok(())
}

/// How to make tokens for the token checks ([`run_tokens`]): sign claims
/// with your key, and put a token in a request the way your clients do.
pub struct Tokens<M, R> {
    /// Signs `claims` (a JSON object) with the key your authenticator
    /// trusts.
    pub mint: M,
    /// A request carrying `token` (in `Authorization`, a cookie, ...).
    pub request: R,
    /// The `aud` your authenticator requires, if it is configured with one.
    pub audience: Option<String>,
    /// The `iss` it requires, if configured.
    pub issuer: Option<String>,
}

/// Runs the checks of a token authenticator's claims (a JWT one, yours or
/// `sse_core::JwtAuthenticator`) and panics with the
/// table if any failed:
///
/// - a good token authenticates its `sub`, and expires at its `exp`;
/// - with an audience or issuer configured, a token without `aud` (or
///   `iss`) is refused: the identity provider mints tokens for other
///   services too;
/// - an `exp` that cannot be read as whole seconds (RFC 7519 allows a
///   fractional NumericDate) is refused or read as an expiry no later than
///   it; never as none;
/// - a future `nbf` is refused;
/// - an `exp` near `i64::MAX` is a `401`, not a panic;
/// - a `sub` holding CR, LF or NUL is refused.
pub async fn run_tokens<A, M, R>(authenticator: Arc<A>, tokens: Tokens<M, R>)
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String + Send + Sync + 'static,
    R: Fn(&str) -> ValidRequest + Send + Sync + 'static,
{
    check_tokens(authenticator, tokens).await.assert_passed();
}

/// Runs the token checks and returns the report.
pub async fn check_tokens<A, M, R>(authenticator: Arc<A>, tokens: Tokens<M, R>) -> Report
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String + Send + Sync + 'static,
    R: Fn(&str) -> ValidRequest + Send + Sync + 'static,
{
    let mut report = Report::default();
    let shared = Arc::new(tokens);
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {$(
            let (auth, tokens) = (authenticator.clone(), shared.clone());
            report.run(concat!("authenticator::tokens::", stringify!($name)), CHECK_TIMEOUT, || $name(auth, tokens)).await;
        )*};
    }
    checks!(
        a_good_token_yields_its_sub_and_expires_at_its_exp,
        configured_audience_and_issuer_are_required,
        an_unreadable_exp_never_means_no_expiry,
        a_future_nbf_is_refused,
        an_exp_out_of_range_is_a_401,
        a_sub_with_a_line_break_or_nul_is_refused,
    );
    report
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<M, R> Tokens<M, R>
where
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    /// Good claims for `sub`, expiring `exp`, with `aud` and `iss` if
    /// configured.
    fn claims(&self, sub: &str, exp: serde_json::Value) -> serde_json::Value {
        let mut claims = serde_json::json!({"sub": sub, "exp": exp});
        if let Some(aud) = &self.audience {
            claims["aud"] = aud.clone().into();
        }
        if let Some(iss) = &self.issuer {
            claims["iss"] = iss.clone().into();
        }
        claims
    }

    fn request(&self, claims: &serde_json::Value) -> ValidRequest {
        (self.request)(&(self.mint)(claims))
    }
}

async fn a_good_token_yields_its_sub_and_expires_at_its_exp<A, M, R>(
    auth: Arc<A>,
    tokens: Arc<Tokens<M, R>>,
) -> Result<(), String>
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    let exp = now_secs() + 600;
    let request = tokens.request(&tokens.claims("alice", exp.into()));
    match authenticate(&auth, request.parts()?).await? {
        Ok(principal) => {
            ensure!(
                principal.user().as_str() == "alice",
                "authenticated as {:?}",
                principal.user()
            );
            let expires = principal
                .expires_at()
                .ok_or("the principal has no expiry: its streams would outlive the token")?;
            let latest = std::time::UNIX_EPOCH + Duration::from_secs(exp + 60);
            ensure!(
                expires <= latest,
                "the principal expires after the token's exp"
            );
            Ok(())
        }
        Err(rejection) => Err(format!("a good token was refused: {rejection}")),
    }
}

async fn configured_audience_and_issuer_are_required<A, M, R>(
    auth: Arc<A>,
    tokens: Arc<Tokens<M, R>>,
) -> Result<(), String>
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    let exp = now_secs() + 600;
    for (claim, configured) in [("aud", &tokens.audience), ("iss", &tokens.issuer)] {
        if configured.is_none() {
            continue;
        }
        let mut claims = tokens.claims("alice", exp.into());
        if let Some(object) = claims.as_object_mut() {
            object.remove(claim);
        }
        expect_401(
            &auth,
            &tokens.request(&claims),
            &format!("a token without {claim}"),
        )
        .await?;
        let mut other = tokens.claims("alice", exp.into());
        other[claim] = "https://another-service.example".into();
        expect_401(
            &auth,
            &tokens.request(&other),
            &format!("a token with another {claim}"),
        )
        .await?;
    }
    Ok(())
}

async fn an_unreadable_exp_never_means_no_expiry<A, M, R>(
    auth: Arc<A>,
    tokens: Arc<Tokens<M, R>>,
) -> Result<(), String>
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    let exp = now_secs() as f64 + 60.5;
    let request = tokens.request(&tokens.claims("alice", exp.into()));
    if let Ok(principal) = authenticate(&auth, request.parts()?).await? {
        let expires = principal.expires_at().ok_or(
            "a token with a fractional exp authenticated with no expiry: its streams outlive it",
        )?;
        let latest = std::time::UNIX_EPOCH + Duration::from_secs_f64(exp + 60.0);
        ensure!(
            expires <= latest,
            "a fractional exp was read as a later expiry"
        );
    }
    let text = tokens.request(&tokens.claims("alice", "tomorrow".into()));
    expect_401(&auth, &text, "a token whose exp is a string").await
}

async fn a_future_nbf_is_refused<A, M, R>(
    auth: Arc<A>,
    tokens: Arc<Tokens<M, R>>,
) -> Result<(), String>
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    let mut claims = tokens.claims("alice", (now_secs() + 7_200).into());
    claims["nbf"] = (now_secs() + 3_600).into();
    expect_401(
        &auth,
        &tokens.request(&claims),
        "a token not valid for an hour (nbf)",
    )
    .await
}

async fn an_exp_out_of_range_is_a_401<A, M, R>(
    auth: Arc<A>,
    tokens: Arc<Tokens<M, R>>,
) -> Result<(), String>
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    for exp in [serde_json::Value::from(i64::MAX), u64::MAX.into()] {
        let request = tokens.request(&tokens.claims("alice", exp.clone()));
        if let Ok(principal) = authenticate(&auth, request.parts()?).await? {
            ensure!(
                principal.expires_at().is_some(),
                "a token with exp {exp} authenticated with no expiry"
            );
        }
    }
    Ok(())
}

async fn a_sub_with_a_line_break_or_nul_is_refused<A, M, R>(
    auth: Arc<A>,
    tokens: Arc<Tokens<M, R>>,
) -> Result<(), String>
where
    A: SessionAuthenticator,
    M: Fn(&serde_json::Value) -> String,
    R: Fn(&str) -> ValidRequest,
{
    let exp = now_secs() + 600;
    for sub in ["alice\ndata: evil", "alice\r", "alice\0"] {
        let request = tokens.request(&tokens.claims(sub, exp.into()));
        expect_401(&auth, &request, &format!("a token whose sub is {sub:?}")).await?;
    }
    Ok(())
}
