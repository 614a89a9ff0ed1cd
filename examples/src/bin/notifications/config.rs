//! Command-line flags, each with an environment fallback (clap).

use std::time::Duration;

use clap::Parser;
use sse_tower::origin::Origin;

/// The notifications demo app, built only from the sse-layer crates.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "notifications",
    version,
    after_help = "Open the printed URL, log in with any name ([a-z0-9_-], up to 64 characters) \
in two browsers, and send notifications between them. Several instances with \
--hub redis://…, postgres://… or nats://… and a shared --store serve the same users."
)]
pub(crate) struct Config {
    /// Listen address.
    #[arg(long, env = "SSE_ADDR", default_value = "127.0.0.1:3000")]
    pub(crate) addr: String,

    /// Heartbeat interval in seconds, may be fractional.
    #[arg(
        long = "heartbeat-secs",
        env = "SSE_HEARTBEAT_SECS",
        value_name = "SECS",
        default_value = "15",
        value_parser = seconds,
        allow_hyphen_values = true
    )]
    pub(crate) heartbeat: Duration,

    /// Where notifications and sessions live: sqlite://PATH, memory,
    /// postgres://USER@HOST/DB or redis://HOST:PORT.
    #[arg(
        long,
        env = "SSE_STORE",
        value_name = "URL",
        default_value = "sqlite://notifications.db"
    )]
    pub(crate) store: String,

    /// How events reach connections: memory, redis://HOST:PORT,
    /// postgres://USER@HOST/DB (LISTEN/NOTIFY) or nats://HOST:PORT.
    #[arg(long, env = "SSE_HUB", value_name = "URL", default_value = "memory")]
    pub(crate) hub: String,

    /// Open streams per user.
    #[arg(
        long,
        env = "SSE_MAX_CONNECTIONS_PER_USER",
        value_name = "N",
        default_value = "16",
        value_parser = positive,
        allow_hyphen_values = true
    )]
    pub(crate) max_connections_per_user: usize,

    /// Open connections in total; past it 64 more are answered 503 with
    /// Retry-After: 1, then new ones wait.
    #[arg(
        long,
        env = "SSE_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "20000",
        value_parser = positive,
        allow_hyphen_values = true
    )]
    pub(crate) max_connections: usize,

    /// Time to send a request head, and a whole API request with its body,
    /// in seconds.
    #[arg(
        long = "request-timeout-secs",
        env = "SSE_REQUEST_TIMEOUT_SECS",
        value_name = "SECS",
        default_value = "10",
        value_parser = seconds,
        allow_hyphen_values = true
    )]
    pub(crate) request_timeout: Duration,

    /// The app's public origins; other origins' writes and streams get 403.
    #[arg(
        long = "origin",
        help = "The app's public origin(s), comma-separated, such as https://app.example \
(default: the request's Host over http, and on a loopback address only loopback names); \
requests from other origins get 403, streams included",
        env = "SSE_ORIGIN",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub(crate) origins: Vec<Origin>,

    /// Refuse cookie-carrying writes that say nothing of where they come
    /// from: no `Origin` header and no `Sec-Fetch-Site: same-origin`. Every
    /// browser sends one of them; without this flag such writes are
    /// allowed, so that scripts and tools keep working (`SameSite=Lax`
    /// already keeps the session cookie off cross-site writes).
    #[arg(long, env = "SSE_REQUIRE_ORIGIN")]
    pub(crate) require_origin: bool,

    /// Logins per minute from one client address (a burst of as many is
    /// allowed); past it `POST /api/login` answers `429`. 0 turns the limit
    /// off (load tests from one address).
    #[arg(
        long = "login-rate",
        env = "SSE_LOGIN_RATE",
        value_name = "PER_MINUTE",
        default_value = "20"
    )]
    pub(crate) login_rate: u32,

    /// Who may read /metrics: open, off, or bearer:TOKEN (then scrape with
    /// Authorization: Bearer TOKEN; at least 16 characters). Prefer the
    /// environment variable for a token: a command line is visible to
    /// every user of the machine (`ps`).
    #[arg(
        long,
        env = "SSE_METRICS",
        value_name = "MODE",
        default_value = "open",
        value_parser = metrics_mode
    )]
    pub(crate) metrics: Metrics,

    /// Largest request head (request line, cookies and every header) in
    /// bytes, at least 8192; larger ones get `431`. Each open stream keeps
    /// a read buffer of this size at most, so it bounds an idle stream's
    /// memory too.
    #[arg(
        long = "max-request-head",
        env = "SSE_MAX_REQUEST_HEAD",
        value_name = "BYTES",
        default_value = "8192",
        value_parser = request_head
    )]
    pub(crate) max_request_head: usize,

    /// Lets an operator broadcast to every user: `POST /api/broadcasts`
    /// with `Authorization: Bearer TOKEN`. Without it that endpoint is off.
    /// Prefer the environment variable: a command line is visible to every
    /// user of the machine (`ps`).
    #[arg(long, env = "SSE_ADMIN_TOKEN", value_name = "TOKEN", value_parser = token)]
    pub(crate) admin_token: Option<Token>,

    /// Names this app's channels on a shared Redis or NATS (`NAME:` keys,
    /// `NAME.` subjects) or its PostgreSQL NOTIFY channel, so that two apps
    /// on one broker never hear each other.
    #[arg(long, env = "SSE_HUB_PREFIX", value_name = "NAME", value_parser = hub_prefix)]
    pub(crate) hub_prefix: Option<String>,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this PEM certificate
    /// chain, the server's first; needs --tls-key. Renewed files are read
    /// again on SIGHUP, without a restart.
    #[arg(long, env = "SSE_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SSE_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
}

/// A bearer token of the operator's (`--admin-token`, `--metrics
/// bearer:…`). Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(pub(crate) String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Whether `presented` is the token, in time that does not depend on
    /// where they first differ.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn token(text: &str) -> Result<Token, String> {
    if text.len() < 16 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("takes at least 16 printable ASCII characters, no spaces".to_owned());
    }
    Ok(Token(text.to_owned()))
}

fn hub_prefix(text: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "takes 1 to 32 characters of a-z, 0-9 and _, not {text:?}"
        ))
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Metrics {
    Open,
    Off,
    Bearer(Token),
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("takes a number of seconds between 0 and 3600, not {text:?}"))
}

fn positive(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|n: &usize| *n > 0)
        .ok_or_else(|| format!("takes a positive number, not {text:?}"))
}

fn request_head(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|n: &usize| (8192..=1 << 20).contains(n))
        .ok_or_else(|| format!("takes a number of bytes from 8192 to 1048576, not {text:?}"))
}

fn metrics_mode(text: &str) -> Result<Metrics, String> {
    match text {
        "open" => Ok(Metrics::Open),
        "off" => Ok(Metrics::Off),
        other => match other.strip_prefix("bearer:") {
            Some(text) => token(text)
                .map(Metrics::Bearer)
                .map_err(|why| format!("bearer:TOKEN {why}")),
            None => Err("takes open, off or bearer:TOKEN".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        Config::command().debug_assert();
        let config = Config::try_parse_from([
            "notifications",
            "--heartbeat-secs",
            "0.5",
            "--origin",
            "https://a.example,https://b.example",
            "--metrics",
            "bearer:s3cret-s3cret-s3cret",
            "--login-rate",
            "5",
            "--require-origin",
            "--admin-token",
            "0123456789abcdef",
            "--hub-prefix",
            "app_2",
            "--max-request-head",
            "16384",
        ])
        .unwrap();
        assert_eq!(config.max_request_head, 16384);
        assert_eq!(config.heartbeat, Duration::from_millis(500));
        assert_eq!(config.origins.len(), 2);
        assert_eq!(
            config.metrics,
            Metrics::Bearer(Token("s3cret-s3cret-s3cret".into()))
        );
        assert_eq!(config.login_rate, 5);
        assert!(config.require_origin);
        let admin = config.admin_token.unwrap();
        assert!(admin.matches("0123456789abcdef"));
        assert!(!admin.matches("0123456789abcdeF"));
        assert!(!admin.matches("0123456789abcde"));
        assert!(!format!("{admin:?}").contains("0123"));
        assert_eq!(config.hub_prefix.as_deref(), Some("app_2"));
        for bad in [
            &["--heartbeat-secs", "-1"][..],
            &["--max-connections", "0"],
            &["--metrics", "bearer:"],
            &["--metrics", "bearer:short"],
            &["--login-rate", "-1"],
            &["--origin", "not an origin"],
            &["--admin-token", "short"],
            &["--hub-prefix", "has.dot"],
            &["--max-request-head", "4096"],
        ] {
            let args = std::iter::once("notifications").chain(bad.iter().copied());
            assert!(
                Config::try_parse_from(args).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
