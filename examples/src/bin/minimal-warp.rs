//! The smallest warp server with a notification stream (in memory).
//! `cargo run -p examples --bin minimal-warp`, then see the README.
use std::time::Duration;

use sse_warp::SseService;
use sse_warp::sse_core::*;
use warp::Filter;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let sessions = InMemorySessions::new();
    let heartbeat_ms = std::env::var("HEARTBEAT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok());
    let sse = SseService::builder(CookieSessionAuthenticator::new("sid", sessions.clone()))
        .heartbeat(Duration::from_millis(heartbeat_ms.unwrap_or(15_000)))
        .build();
    let login = warp::path!("login" / String)
        .and(warp::post())
        .and_then(move |user: String| {
            let sessions = sessions.clone();
            async move {
                let sid = sessions.create(Principal::new(user)).map_err(|e| {
                    sse_warp::reject(sse_warp::ApiError::new(
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                        e.to_string(),
                    ))
                })?;
                let cookie = format!("sid={sid}; HttpOnly; SameSite=Lax; Path=/");
                Ok::<_, warp::Rejection>(warp::reply::with_header(
                    "logged in\n",
                    "set-cookie",
                    cookie,
                ))
            }
        });
    let events = warp::path!("events").and(sse_warp::stream(&sse));
    let notify = warp::path!("notify")
        .and(
            warp::post()
                .and(sse_warp::authenticated(&sse))
                .and(sse_warp::notifier(&sse)),
        )
        .and(sse_warp::json())
        .and_then(
            |_: Principal, notifier: Notifier, new: NewNotification| async move {
                let notification = notifier.notify(new).await.map_err(sse_warp::reject)?;
                Ok::<_, warp::Rejection>(warp::reply::json(&notification))
            },
        );
    let addr = std::env::var("ADDR").unwrap_or("127.0.0.1:3002".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    sse_warp::serve(
        listener,
        events.or(login).or(notify).recover(sse_warp::recover),
    )
    .await
}
