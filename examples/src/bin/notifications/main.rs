//! The notifications demo app: the scenario of the seeds on axum, built only
//! from the sse-layer crates. `cargo run --release -p examples --bin
//! notifications`, then open http://127.0.0.1:3000 (`--help` for options).

mod api;
mod config;
mod cookie;
mod limit;
mod sessions;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sse_axum::{ApiError, SseRouterExt, SseService};
use sse_core::{
    Audience, CookieSessionAuthenticator, Hub, InMemoryHub, InMemorySessions, InMemoryStore,
    Notifier,
};
use sse_nats::NatsHub;
use sse_redis::{RedisHub, RedisSessions, RedisStore};
use sse_sqlx::{PostgresHub, SqlSessions, SqlStore};
use sse_tower::origin::{Origin, RequestOrigin};
use tower_http::timeout::TimeoutLayer;

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{Config, Metrics, Token};
use crate::cookie::SessionCookie;
use crate::limit::LoginLimiter;
use crate::sessions::Sessions;

#[derive(Clone, FromRef)]
struct AppState {
    sse: SseService,
    prometheus: PrometheusHandle,
    sessions: Sessions,
    metrics: Metrics,
    origins: Origins,
    admin: Admin,
    cookie: SessionCookie,
    logins: LoginLimiter,
}

/// Who may broadcast to every user (`--admin-token`), if anyone.
#[derive(Clone, Debug)]
struct Admin(Option<Token>);

/// Where requests may come from.
#[derive(Clone, Debug)]
struct Origins {
    /// The origins writes and streams may come from: configured, or else
    /// the request's own `Host` over http.
    allowed: Arc<[Origin]>,
    /// `--require-origin`: a cookie-carrying write must say where it
    /// comes from.
    required: bool,
    /// With no origin configured on a loopback address: only loopback
    /// names in `Host`, so that a page on another name that resolves here
    /// (DNS rebinding) is refused rather than taken for our own origin.
    loopback_only: bool,
    /// The scheme of the app's own origin when none is configured:
    /// `https` when it serves TLS itself.
    scheme: &'static str,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    // `--help` and bad flags (exit status 2) are clap's.
    let config = Config::parse();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The metrics recorder: what `/metrics` renders. Installed before the
/// service is built, which registers its metrics with it.
fn install_prometheus() -> Result<PrometheusHandle, String> {
    let seconds = [0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 86_400.0];
    let events = [0.0, 1.0, 10.0, 100.0, 1_000.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sse_stream_duration_seconds".into()),
            &seconds,
        )
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("sse_replay_events".into()), &events))
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    // Histograms are drained into their buckets by upkeep.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn run(config: Config) -> Result<(), String> {
    let prometheus = install_prometheus()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(sse_tower::serve::Tls::from_pem_files(cert, key).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let cookie = SessionCookie::for_origins(
        &config.origins,
        tls.is_some(),
        sse_core::auth::DEFAULT_SESSION_LIFETIME.as_secs(),
    );
    let hub = connect_hub(&config).await?;
    // Each store is the event log and the notification inbox at once.
    let (notifier, sessions) = if config.store == "memory" {
        (
            Notifier::with_store(Arc::new(InMemoryStore::new()), hub),
            Sessions::Memory(InMemorySessions::new()),
        )
    } else if config.store.starts_with("redis://") || config.store.starts_with("rediss://") {
        let store = RedisStore::connect(&config.store)
            .await
            .map_err(|e| e.to_string())?;
        let sessions = RedisSessions::connect(&config.store, "sse:")
            .await
            .map_err(|e| e.to_string())?;
        (
            Notifier::with_store(Arc::new(store), hub),
            Sessions::Redis(sessions),
        )
    } else {
        let store = SqlStore::connect(&config.store)
            .await
            .map_err(|e| e.to_string())?;
        let sessions = Sessions::Sql(SqlSessions::new(&store));
        (Notifier::with_store(Arc::new(store), hub), sessions)
    };
    let mut builder = SseService::builder(CookieSessionAuthenticator::new(
        cookie.name,
        sessions.clone(),
    ))
    .notifier(&notifier)
    // Members of an org hear when a member's first tab opens or last closes.
    .presence_events(|principal| {
        principal
            .groups()
            .iter()
            .cloned()
            .map(Audience::Group)
            .collect()
    })
    .heartbeat(config.heartbeat)
    .max_connections_per_user(config.max_connections_per_user)
    .max_connections(config.max_connections);
    if !config.origins.is_empty() {
        builder = builder.allowed_origins(config.origins.iter().cloned());
    }
    let sse = builder.build();
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if config.origins.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(
            "no --origin given: writes are checked against the request's own Host; \
             name the app's public origin with --origin"
        );
    }
    let app = router(
        AppState {
            sse: sse.clone(),
            prometheus,
            sessions,
            metrics: config.metrics.clone(),
            origins: Origins {
                allowed: config.origins.clone().into(),
                required: config.require_origin,
                loopback_only: config.origins.is_empty() && addr.ip().is_loopback(),
                scheme: if tls.is_some() { "https" } else { "http" },
            },
            admin: Admin(config.admin_token.clone()),
            cookie,
            logins: LoginLimiter::per_minute(config.login_rate),
        },
        config.request_timeout,
    );

    // Store and hub URLs may carry passwords: never printed as given.
    println!(
        "notifications demo listening on {}://{addr} (store {}, hub {})",
        if tls.is_some() { "https" } else { "http" },
        sse_core::redact_url(&config.store),
        sse_core::redact_url(&config.hub)
    );
    // Connections capped, request heads bounded in time, stalled readers
    // closed: see sse_tower::serve.
    let mut server = sse_axum::serve(listener, app)
        .max_connections(config.max_connections)
        .header_read_timeout(config.request_timeout)
        .max_read_buffer(config.max_request_head)
        .with_graceful_shutdown(shutdown(sse));
    if let Some(tls) = tls {
        tokio::spawn(reload_on_hangup(tls.clone()));
        server = server.tls(tls);
    }
    server.await.map_err(|e| e.to_string())
}

/// Reads the certificate and key again on each `SIGHUP` (a renewal); a
/// pair that does not load is logged and the one in use kept.
async fn reload_on_hangup(tls: sse_tower::serve::Tls) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the certificate is not reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("certificate reloaded"),
            Err(error) => tracing::error!(%error, "certificate not reloaded; the old one stays"),
        }
    }
}

/// The app. A request other than the stream (its body included) may take
/// `request_timeout`: a client that sends its body one byte at a time gets
/// `408`.
fn router(state: AppState, request_timeout: Duration) -> Router {
    let sse = state.sse.clone();
    let api = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../../../static/index.html")) }),
        )
        .route(
            "/app.js",
            get(|| {
                static_file(
                    "text/javascript; charset=utf-8",
                    include_str!("../../../static/app.js"),
                )
            }),
        )
        // The browser client (clients/js), served as its ES modules.
        .route(
            "/client/index.js",
            get(|| static_file(JS, include_str!("../../../../clients/js/src/index.js"))),
        )
        .route(
            "/client/backoff.js",
            get(|| static_file(JS, include_str!("../../../../clients/js/src/backoff.js"))),
        )
        .route(
            "/client/election.js",
            get(|| static_file(JS, include_str!("../../../../clients/js/src/election.js"))),
        )
        .route(
            "/client/parser.js",
            get(|| static_file(JS, include_str!("../../../../clients/js/src/parser.js"))),
        )
        .route(
            "/client/stream.js",
            get(|| static_file(JS, include_str!("../../../../clients/js/src/stream.js"))),
        )
        .route(
            "/style.css",
            get(|| {
                static_file(
                    "text/css; charset=utf-8",
                    include_str!("../../../static/style.css"),
                )
            }),
        )
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/session", get(api::session))
        .route(
            "/api/notifications",
            get(api::list).post(api::create).delete(api::delete_read),
        )
        .route("/api/notifications/unread-count", get(api::unread_count))
        .route("/api/announcements", post(api::announce))
        .route("/api/broadcasts", post(api::broadcast))
        .route("/api/presence", get(api::presence))
        .route("/api/notifications/read-all", post(api::mark_all_read))
        .route("/api/notifications/{id}/read", post(api::mark_read))
        .route(
            "/api/notifications/{id}",
            axum::routing::delete(api::delete),
        )
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ));
    Router::new()
        .sse_stream("/api/notifications/stream", &sse)
        .merge(api)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_writes,
        ))
        .with_state(state)
}

const JS: &str = "text/javascript; charset=utf-8";

/// `127.0.0.1`, `localhost` or `[::1]`, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().map(|ip| format!("[{ip}]")),
        None => host.split(':').next().map(str::to_owned),
    };
    name.is_some_and(|name| {
        let name = name.to_ascii_lowercase();
        name == "localhost" || name == "127.0.0.1" || name == "[::1]"
    })
}

async fn static_file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Refuses requests that a browser sent from another origin (for writes,
/// defence in depth next to `SameSite=Lax` and JSON bodies; for streams,
/// what keeps other sites from opening them), requests naming a host this
/// server does not answer to, and (`--require-origin`) cookie writes that
/// say nothing of their origin; sets the page's security headers on every
/// response.
async fn same_origin_writes(
    State(origins): State<Origins>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    // HTTP/2 names the host in `:authority`, which hyper puts in the URI.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if origins.loopback_only && !host.is_some_and(is_loopback_host) {
        let error = ApiError::bad_request(
            "this server answers only to 127.0.0.1, localhost and [::1]: \
             start it with --origin to serve another name",
        );
        return sse_axum::Error(error).into_response();
    }
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    // Browsers send `Origin` on every cross-origin request (and on
    // same-origin writes): one from elsewhere gets 403, stream and page
    // included; an app that wants cross-origin streams names its origins.
    let origin = RequestOrigin::of(headers);
    if !matches!(origin, RequestOrigin::Absent) {
        let own = host.and_then(|host| Origin::from_host(origins.scheme, host).ok());
        let allowed_here: Vec<Origin> = if origins.allowed.is_empty() {
            own.into_iter().collect()
        } else {
            origins.allowed.to_vec()
        };
        if !origin.is_allowed(&allowed_here) {
            let error = ApiError::forbidden(
                "cross-origin requests are refused: start the app with --origin to allow one",
            );
            return sse_axum::Error(error).into_response();
        }
    }
    if writes {
        // No Origin: a browser says `Sec-Fetch-Site` instead (or is one old
        // enough to send neither on a same-origin request).
        let same_site_fetch = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin");
        if origins.required
            && matches!(origin, RequestOrigin::Absent)
            && !same_site_fetch
            && headers.contains_key(header::COOKIE)
        {
            let error = ApiError::forbidden(
                "writes with a session cookie need an Origin header (--require-origin)",
            );
            return sse_axum::Error(error).into_response();
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The hub `--hub` names, its channels named by `--hub-prefix`.
async fn connect_hub(config: &Config) -> Result<Arc<dyn Hub>, String> {
    let url = config.hub.as_str();
    let prefix = config.hub_prefix.as_deref();
    let hub: Arc<dyn Hub> = if url == "memory" {
        Arc::new(InMemoryHub::new())
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        let mut builder = RedisHub::builder(url);
        if let Some(prefix) = prefix {
            builder = builder.prefix(format!("{prefix}:"));
        }
        Arc::new(builder.connect().await.map_err(|e| e.to_string())?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut builder = PostgresHub::builder(url);
        if let Some(prefix) = prefix {
            builder = builder.channel(prefix);
        }
        Arc::new(builder.connect().await.map_err(|e| e.to_string())?)
    } else if url.starts_with("nats://") {
        let mut builder = NatsHub::builder(url);
        if let Some(prefix) = prefix {
            builder = builder.prefix(prefix);
        }
        Arc::new(builder.connect().await.map_err(|e| e.to_string())?)
    } else {
        return Err(format!(
            "unsupported --hub {url:?}: use memory, redis://HOST:PORT, postgres://USER@HOST/DB or nats://HOST:PORT"
        ));
    };
    Ok(hub)
}

/// On Ctrl+C or SIGTERM: end every stream with a jittered retry hint, then
/// let the server finish.
async fn shutdown(sse: SseService) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: ending streams with a retry hint");
    sse.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), sse.closed()).await;
}
