//! The smallest axum server with a notification stream (in memory).
//! `cargo run -p examples --bin minimal-axum`, then see the README.
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::{Router, http::header, response::IntoResponse, routing::post};
use sse_axum::sse_core::*;
use sse_axum::{Authenticated, Json, Notify, SseRouterExt, SseService};

#[derive(Clone, FromRef)]
struct App {
    sse: SseService,
    sessions: InMemorySessions,
}

async fn login(
    State(sessions): State<InMemorySessions>,
    Path(user): Path<String>,
) -> Result<impl IntoResponse, sse_axum::Error> {
    let sid = sessions.create(Principal::new(user)).map_err(|e| {
        sse_axum::ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    })?;
    Ok((
        [(
            header::SET_COOKIE,
            format!("sid={sid}; HttpOnly; SameSite=Lax; Path=/"),
        )],
        "logged in\n",
    ))
}

async fn notify(
    _: Authenticated,
    Notify(n): Notify,
    Json(new): Json<NewNotification>,
) -> Result<Json<Notification>, sse_axum::Error> {
    Ok(Json(n.notify(new).await?))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let sessions = InMemorySessions::new();
    let heartbeat_ms = std::env::var("HEARTBEAT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok());
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions.clone()))
        .heartbeat(Duration::from_millis(heartbeat_ms.unwrap_or(15_000)))
        .build();
    let app = Router::new()
        .sse_stream("/events", &sse)
        .route("/login/{user}", post(login))
        .route("/notify", post(notify))
        .with_state(App { sse, sessions });
    let addr = std::env::var("ADDR").unwrap_or("127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_axum::serve(listener, app).await
}
