//! The notifications demo app: the scenario of the seeds on axum, built only
//! from the sse-layer crates. `cargo run --release -p examples --bin
//! notifications`, then open http://127.0.0.1:3000 (`--help` for options).

mod api;
mod config;
mod sessions;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use sse_axum::{ApiError, SseRouterExt, SseService};
use sse_core::{
    CookieSessionAuthenticator, Hub, InMemoryHub, InMemorySessions, InMemoryStore,
    NotificationStore,
};
use sse_redis::{RedisHub, RedisSessions, RedisStore};
use sse_sqlx::{SqlSessions, SqlStore};

use crate::config::Config;
use crate::sessions::Sessions;

#[derive(Clone, FromRef)]
struct AppState {
    sse: SseService,
    sessions: Sessions,
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
    let config = match config::parse(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            print!("{}", config::HELP);
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("error: {why}\n\n{}", config::HELP);
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let (store, sessions): (Arc<dyn NotificationStore>, Sessions) = if config.store == "memory" {
        (
            Arc::new(InMemoryStore::new()),
            Sessions::Memory(InMemorySessions::new()),
        )
    } else if config.store.starts_with("redis://") || config.store.starts_with("rediss://") {
        let store = RedisStore::connect(&config.store)
            .await
            .map_err(|e| e.to_string())?;
        let sessions = RedisSessions::connect(&config.store, "sse:")
            .await
            .map_err(|e| e.to_string())?;
        (Arc::new(store), Sessions::Redis(sessions))
    } else {
        let store = SqlStore::connect(&config.store)
            .await
            .map_err(|e| e.to_string())?;
        let sessions = Sessions::Sql(SqlSessions::new(&store));
        (Arc::new(store), sessions)
    };
    let hub: Arc<dyn Hub> = if config.hub == "memory" {
        Arc::new(InMemoryHub::new())
    } else if config.hub.starts_with("redis://") || config.hub.starts_with("rediss://") {
        Arc::new(
            RedisHub::connect(&config.hub)
                .await
                .map_err(|e| e.to_string())?,
        )
    } else {
        return Err(format!(
            "unsupported --hub {:?}: use memory or redis://HOST:PORT",
            config.hub
        ));
    };
    let sse = SseService::builder(CookieSessionAuthenticator::new(
        api::COOKIE,
        sessions.clone(),
    ))
    .notifier(&sse_core::Notifier::new(store, hub))
    .heartbeat(config.heartbeat)
    .max_connections_per_user(config.max_connections_per_user)
    .build();
    let app = router(AppState {
        sse: sse.clone(),
        sessions,
    });

    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "notifications demo listening on http://{addr} (store {}, hub {})",
        config.store, config.hub
    );
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
        // A client that stops reading is closed by the OS after 30 s.
        if let Err(error) =
            sse_tower::socket::close_stalled_readers(socket, Duration::from_secs(30))
        {
            tracing::warn!(%error, "could not set TCP_USER_TIMEOUT");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown(sse))
        .await
        .map_err(|e| e.to_string())
}

fn router(state: AppState) -> Router {
    let sse = state.sse.clone();
    Router::new()
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
        .sse_stream("/api/notifications/stream", &sse)
        .route(
            "/api/notifications",
            get(api::list).post(api::create).delete(api::delete_read),
        )
        .route("/api/notifications/unread-count", get(api::unread_count))
        .route("/api/notifications/read-all", post(api::mark_all_read))
        .route("/api/notifications/{id}/read", post(api::mark_read))
        .route(
            "/api/notifications/{id}",
            axum::routing::delete(api::delete),
        )
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(same_origin_writes))
        .with_state(state)
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

/// Refuses state-changing requests that a browser sent from another
/// origin (defence in depth next to `SameSite=Lax` and JSON bodies).
async fn same_origin_writes(request: Request, next: Next) -> Response {
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if writes {
        let origin_host = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(|o| o.split("://").nth(1).unwrap_or(o).to_owned());
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if let (Some(origin), Some(host)) = (origin_host, host) {
            if origin != host {
                let error = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross-origin requests may not change notifications",
                );
                return sse_axum::Error(error).into_response();
            }
        }
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
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
