//! The black-box checker: connects to a deployed stream endpoint and checks
//! what clients rely on, as the `sse-conformance check` binary does.
//!
//! | check | what it asserts |
//! | --- | --- |
//! | `status_and_headers` | `200`, `text/event-stream`, `Cache-Control: no-cache`, `X-Accel-Buffering: no`, no `Content-Length`, not compressed |
//! | `first_bytes_flush` | the first body bytes arrive before anything is published, within [`Target::first_byte_within`] |
//! | `framing` | the body is UTF-8 the WHATWG parser accepts, starting with a `connected` event |
//! | `heartbeat` | an idle stream sends a comment within the declared interval (the `connected` event's `heartbeatMs`) plus slack |
//! | `unauthenticated_is_401` | no credentials: `401`, and no stream |
//! | `wrong_method_is_405` | `POST`: `405` with `Allow` |
//! | `live_delivery` | a published notification arrives within [`Target::deliver_within`] |
//! | `replay_after_reconnect` | what was published while disconnected arrives after reconnecting with `Last-Event-ID` |
//! | `isolation` | two principals each receive their own notification and never the other's |
//!
//! The last three need a way to publish ([`Target::publish`]); `isolation`
//! also needs a second principal. Without them they are skipped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{ClientError, Request, Response};
use crate::parser::{Item, ParsedEvent};
use crate::report::{Failure, Report, ensure};

/// Which principal a publish is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The principal of [`Target::credentials`].
    First,
    /// The principal of [`Target::other_credentials`].
    Second,
}

/// The future a publisher returns.
pub type PublishFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Causes one notification for a recipient whose data contains `token`.
pub type Publisher = Arc<dyn Fn(Recipient, String) -> PublishFuture + Send + Sync>;

/// What to check.
#[derive(Clone)]
pub struct Target {
    /// `host:port` of the endpoint (plain HTTP/1.1).
    pub authority: String,
    /// The stream's path and query.
    pub path: String,
    /// Headers that authenticate the first principal (e.g. `cookie`).
    pub credentials: Vec<(String, String)>,
    /// Headers that authenticate a second principal, for `isolation`.
    pub other_credentials: Option<Vec<(String, String)>>,
    /// How to publish a notification whose data contains a token.
    pub publish: Option<Publisher>,
    /// How long the first body bytes may take (default 1 s).
    pub first_byte_within: Duration,
    /// The heartbeat interval to expect; by default the `heartbeatMs` the
    /// `connected` event declares.
    pub heartbeat_interval: Option<Duration>,
    /// How long a published notification may take to arrive (default 2 s).
    pub deliver_within: Duration,
}

impl Target {
    /// A target at `authority` and `path` with default limits, no
    /// credentials and no publisher.
    pub fn new(authority: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            authority: authority.into(),
            path: path.into(),
            credentials: Vec::new(),
            other_credentials: None,
            publish: None,
            first_byte_within: Duration::from_secs(1),
            heartbeat_interval: None,
            deliver_within: Duration::from_secs(2),
        }
    }

    /// Parses `http://host:port/path?query`.
    ///
    /// ```
    /// let target = sse_conformance::check::Target::from_url("http://127.0.0.1:3000/events?x=1").unwrap();
    /// assert_eq!((target.authority.as_str(), target.path.as_str()), ("127.0.0.1:3000", "/events?x=1"));
    /// assert!(sse_conformance::check::Target::from_url("https://example.com/").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: only http:// URLs are supported; check the upstream directly or through a local TLS terminator")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self::new(authority, path))
    }

    fn request(&self, credentials: &[(String, String)]) -> Request {
        credentials.iter().fold(
            Request::get(self.path.clone()).header("accept", "text/event-stream"),
            |r, (n, v)| r.header(n.clone(), v),
        )
    }

    async fn open(
        &self,
        credentials: &[(String, String)],
        last_event_id: Option<&str>,
    ) -> Result<Response, String> {
        let mut request = self.request(credentials);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send_within(
                &self.authority,
                self.first_byte_within.max(Duration::from_secs(5)),
            )
            .await
            .map_err(|e| format!("connecting to {} failed: {e}", self.authority))?;
        ensure!(
            response.status() == 200,
            "expected 200 for an authenticated stream request, got {}",
            response.status()
        );
        Ok(response)
    }

    async fn publish_token(&self, to: Recipient, token: &str) -> Result<(), Failure> {
        let Some(publish) = &self.publish else {
            return Err(Failure::Skip(
                "no way to publish was given (--publish)".into(),
            ));
        };
        publish(to, token.to_owned())
            .await
            .map_err(|e| Failure::Fail(format!("publishing failed: {e}")))
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("publish", &self.publish.is_some())
            .finish_non_exhaustive()
    }
}

/// A publisher that sends an HTTP request per publish. In `body` and
/// `path`, `{token}` becomes the token; `headers` authenticate the request.
/// Each recipient has its own request template.
///
/// ```
/// use sse_conformance::check::{http_publisher, HttpPublish};
/// let publish = http_publisher("127.0.0.1:3000", HttpPublish {
///     method: "POST".into(),
///     path: "/api/notifications".into(),
///     headers: vec![("cookie".into(), "sid=abc".into()), ("content-type".into(), "application/json".into())],
///     body: r#"{"user":"alice","title":"{token}"}"#.into(),
/// }, None);
/// # let _ = publish;
/// ```
pub fn http_publisher(
    authority: impl Into<String>,
    first: HttpPublish,
    second: Option<HttpPublish>,
) -> Publisher {
    let authority: Arc<str> = authority.into().into();
    let templates = Arc::new((first, second));
    Arc::new(move |to, token| {
        let authority = authority.clone();
        let templates = templates.clone();
        Box::pin(async move {
            let template = match to {
                Recipient::First => &templates.0,
                Recipient::Second => templates
                    .1
                    .as_ref()
                    .ok_or("no publish request was given for the second principal")?,
            };
            let request = template.headers.iter().fold(
                Request::new(
                    template.method.clone(),
                    template.path.replace("{token}", &token),
                )
                .body(template.body.replace("{token}", &token)),
                |r, (n, v)| r.header(n.clone(), v),
            );
            let mut response = request.send(&authority).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .read_to_end(Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            if !(200..300).contains(&status) {
                return Err(format!(
                    "{} {} answered {status}: {}",
                    template.method,
                    template.path,
                    String::from_utf8_lossy(body).trim()
                ));
            }
            Ok(())
        })
    })
}

/// One HTTP request template for [`http_publisher`].
#[derive(Debug, Clone)]
pub struct HttpPublish {
    /// The method, e.g. `POST`.
    pub method: String,
    /// Path and query; `{token}` is replaced.
    pub path: String,
    /// Headers (credentials, content type).
    pub headers: Vec<(String, String)>,
    /// The body; `{token}` is replaced.
    pub body: String,
}

/// Runs every check against `target`.
pub async fn run(target: &Target) -> Report {
    let mut report = Report::default();
    let limit = Duration::from_secs(120);
    report
        .run("status_and_headers", limit, || status_and_headers(target))
        .await;
    report
        .run("first_bytes_flush", limit, || first_bytes_flush(target))
        .await;
    report.run("framing", limit, || framing(target)).await;
    report.run("heartbeat", limit, || heartbeat(target)).await;
    report
        .run("unauthenticated_is_401", limit, || unauthenticated(target))
        .await;
    report
        .run("wrong_method_is_405", limit, || wrong_method(target))
        .await;
    report
        .run("live_delivery", limit, || live_delivery(target))
        .await;
    report
        .run("replay_after_reconnect", limit, || replay(target))
        .await;
    report.run("isolation", limit, || isolation(target)).await;
    report
}

fn token(label: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "check-{label}-{:016x}",
        RandomState::new().hash_one(Instant::now())
    )
}

async fn status_and_headers(target: &Target) -> Result<(), Failure> {
    let response = target.open(&target.credentials, None).await?;
    let content_type = response.header("content-type").unwrap_or_default();
    ensure!(
        content_type.split(';').next().map(str::trim) == Some("text/event-stream"),
        "Content-Type is {content_type:?}, expected text/event-stream"
    );
    let cache = response.header("cache-control").unwrap_or_default();
    ensure!(
        cache.contains("no-cache"),
        "Cache-Control is {cache:?}, expected it to contain no-cache (and ideally no-transform)"
    );
    let accel = response.header("x-accel-buffering");
    ensure!(
        accel == Some("no"),
        "X-Accel-Buffering is {accel:?}, expected \"no\" so nginx does not buffer the stream"
    );
    ensure!(
        response.header("content-length").is_none(),
        "the stream has a Content-Length; it must be open-ended"
    );
    let encoding = response.header("content-encoding");
    ensure!(
        encoding.is_none(),
        "the stream is compressed ({encoding:?}); compression buffers events"
    );
    Ok(())
}

async fn first_bytes_flush(target: &Target) -> Result<(), Failure> {
    let mut response = target.open(&target.credentials, None).await?;
    match response.next_item(target.first_byte_within).await {
        Ok(Some(_)) | Ok(None) => {}
        Err(ClientError::Timeout(_)) => {
            return Err(format!(
                "no body bytes within {:?} of the request: the stream is buffered (by the server or a proxy) until the first event",
                target.first_byte_within
            )
            .into());
        }
        Err(e) => return Err(format!("reading the stream failed: {e}").into()),
    }
    let latency = response.first_byte_latency().unwrap_or_default();
    ensure!(
        latency <= target.first_byte_within,
        "the first body byte took {latency:?}, over {:?}",
        target.first_byte_within
    );
    Ok(())
}

async fn connected(response: &mut Response, within: Duration) -> Result<ParsedEvent, Failure> {
    let event = response
        .next_event(within)
        .await
        .map_err(|e| format!("expected a `connected` event first: {e}"))?;
    ensure!(
        event.event_type == "connected",
        "the first event is {:?}, expected `connected`",
        event.event_type
    );
    Ok(event)
}

async fn framing(target: &Target) -> Result<(), Failure> {
    let mut response = target.open(&target.credentials, None).await?;
    connected(
        &mut response,
        target.first_byte_within.max(Duration::from_secs(1)),
    )
    .await?;
    let body = response.body();
    ensure!(
        std::str::from_utf8(body).is_ok(),
        "the stream is not valid UTF-8: {:?}",
        String::from_utf8_lossy(body)
    );
    ensure!(!body.contains(&b'\0'), "the stream contains NUL bytes");
    Ok(())
}

async fn declared_heartbeat(target: &Target, response: &mut Response) -> Result<Duration, Failure> {
    let event = connected(response, Duration::from_secs(5)).await?;
    if let Some(interval) = target.heartbeat_interval {
        return Ok(interval);
    }
    let declared = serde_json::from_str::<serde_json::Value>(&event.data)
        .ok()
        .and_then(|v| v["heartbeatMs"].as_u64())
        .filter(|ms| *ms > 0);
    match declared {
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err(Failure::Skip(
            "the connected event declares no heartbeatMs and no --heartbeat-ms was given".into(),
        )),
    }
}

async fn heartbeat(target: &Target) -> Result<(), Failure> {
    let mut response = target.open(&target.credentials, None).await?;
    let interval = declared_heartbeat(target, &mut response).await?;
    let slack = (interval / 2).max(Duration::from_secs(1));
    let started = Instant::now();
    loop {
        let left = (interval + slack).saturating_sub(started.elapsed());
        match response.next_item(left).await {
            Ok(Some(Item::Comment(_))) => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err("the stream ended while waiting for a heartbeat".into()),
            Err(ClientError::Timeout(_)) => {
                return Err(format!(
                    "no heartbeat comment within {:?} (declared interval {interval:?} plus slack)",
                    interval + slack
                )
                .into());
            }
            Err(e) => return Err(format!("reading the stream failed: {e}").into()),
        }
    }
}

async fn unauthenticated(target: &Target) -> Result<(), Failure> {
    let mut response = Request::get(target.path.clone())
        .send(&target.authority)
        .await
        .map_err(|e| format!("connecting failed: {e}"))?;
    let status = response.status();
    let body = response
        .read_to_end(Duration::from_secs(5))
        .await
        .map(|b| String::from_utf8_lossy(b).into_owned());
    ensure!(
        status == 401,
        "a request without credentials got {status}, expected 401 (body: {body:?})"
    );
    Ok(())
}

async fn wrong_method(target: &Target) -> Result<(), Failure> {
    let request = target
        .credentials
        .iter()
        .fold(Request::new("POST", target.path.clone()), |r, (n, v)| {
            r.header(n.clone(), v)
        });
    let response = request
        .send(&target.authority)
        .await
        .map_err(|e| format!("connecting failed: {e}"))?;
    ensure!(
        response.status() == 405,
        "POST to the stream got {}, expected 405",
        response.status()
    );
    ensure!(
        response.header("allow").is_some_and(|a| a.contains("GET")),
        "the 405 has no Allow: GET"
    );
    Ok(())
}

/// Reads events until one whose data contains `token`; fails on one that
/// contains `forbidden`.
async fn expect_token(
    response: &mut Response,
    token: &str,
    forbidden: Option<&str>,
    within: Duration,
    who: &str,
) -> Result<ParsedEvent, Failure> {
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        let event = response.next_event(left).await.map_err(|e| {
            format!("{who}: expected the notification carrying {token} within {within:?}: {e}")
        })?;
        if let Some(forbidden) = forbidden {
            ensure!(
                !event.data.contains(forbidden),
                "{who} received {forbidden}, which was published for the other principal"
            );
        }
        if event.data.contains(token) {
            return Ok(event);
        }
    }
}

fn require_publisher(target: &Target) -> Result<(), Failure> {
    match target.publish {
        Some(_) => Ok(()),
        None => Err(Failure::Skip(
            "no way to publish was given (--publish)".into(),
        )),
    }
}

async fn live_delivery(target: &Target) -> Result<(), Failure> {
    require_publisher(target)?;
    let mut response = target.open(&target.credentials, None).await?;
    connected(&mut response, Duration::from_secs(5)).await?;
    let token = token("live");
    let sent = Instant::now();
    target.publish_token(Recipient::First, &token).await?;
    expect_token(
        &mut response,
        &token,
        None,
        target.deliver_within,
        "the stream",
    )
    .await?;
    let latency = sent.elapsed();
    ensure!(
        latency <= target.deliver_within,
        "delivery took {latency:?}"
    );
    Ok(())
}

async fn replay(target: &Target) -> Result<(), Failure> {
    require_publisher(target)?;
    let mut response = target.open(&target.credentials, None).await?;
    connected(&mut response, Duration::from_secs(5)).await?;
    let before = token("before");
    target.publish_token(Recipient::First, &before).await?;
    let seen = expect_token(
        &mut response,
        &before,
        None,
        target.deliver_within,
        "the first connection",
    )
    .await?;
    ensure!(
        !seen.last_event_id.is_empty(),
        "notifications carry no id, so a reconnecting client cannot resume"
    );
    let last_id = seen.last_event_id.clone();
    drop(response);

    let missed = token("missed");
    target.publish_token(Recipient::First, &missed).await?;
    let mut again = target.open(&target.credentials, Some(&last_id)).await?;
    connected(&mut again, Duration::from_secs(5)).await?;
    let event = expect_token(
        &mut again,
        &missed,
        Some(&before),
        target.deliver_within,
        "the reconnected stream",
    )
    .await?;
    ensure!(
        event.event_type != "reset",
        "the reconnect got a reset instead of the missed notification"
    );
    Ok(())
}

async fn isolation(target: &Target) -> Result<(), Failure> {
    let Some(other) = &target.other_credentials else {
        return Err(Failure::Skip(
            "no second principal was given (--other-cookie / --other-header)".into(),
        ));
    };
    if target.publish.is_none() {
        return Err(Failure::Skip(
            "no way to publish was given (--publish)".into(),
        ));
    }
    let mut first = target.open(&target.credentials, None).await?;
    let mut second = target.open(other, None).await?;
    connected(&mut first, Duration::from_secs(5)).await?;
    connected(&mut second, Duration::from_secs(5)).await?;
    let for_second = token("second");
    let for_first = token("first");
    target.publish_token(Recipient::Second, &for_second).await?;
    target.publish_token(Recipient::First, &for_first).await?;
    expect_token(
        &mut first,
        &for_first,
        Some(&for_second),
        target.deliver_within,
        "the first principal",
    )
    .await?;
    expect_token(
        &mut second,
        &for_second,
        Some(&for_first),
        target.deliver_within,
        "the second principal",
    )
    .await?;
    // A later notification to each proves nothing else was queued for them.
    let (first_again, second_again) = (token("first-2"), token("second-2"));
    target.publish_token(Recipient::First, &first_again).await?;
    target
        .publish_token(Recipient::Second, &second_again)
        .await?;
    expect_token(
        &mut first,
        &first_again,
        Some(&for_second),
        target.deliver_within,
        "the first principal",
    )
    .await?;
    expect_token(
        &mut second,
        &second_again,
        Some(&for_first),
        target.deliver_within,
        "the second principal",
    )
    .await?;
    Ok(())
}
