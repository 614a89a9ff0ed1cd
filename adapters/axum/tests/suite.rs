//! The shared adapter suite against a real axum server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use sse_adapter_suite::{Mounted, UserFromHeaderLayer};
use sse_axum::sse_core::{NewNotification, Notification};
use sse_axum::{Authenticated, Json, Notify, SseRouterExt, SseService};

async fn notify(
    Authenticated(_sender): Authenticated,
    Notify(notifier): Notify,
    Json(new): Json<NewNotification>,
) -> Result<(StatusCode, Json<Notification>), sse_axum::Error> {
    Ok((StatusCode::CREATED, Json(notifier.notify(new).await?)))
}

async fn whoami(Authenticated(principal): Authenticated, State(_sse): State<SseService>) -> String {
    principal.user().to_string()
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn mount(sse: SseService) -> Mounted {
    let app = Router::new()
        .sse_stream("/events", &sse)
        .route("/notify", post(notify))
        .route("/whoami", get(whoami))
        .with_state(sse)
        .layer(UserFromHeaderLayer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        sse_axum::serve(listener, app).await.unwrap();
    });
    Mounted {
        authority,
        guard: Box::new(AbortOnDrop(server)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_passes_the_adapter_suite() {
    sse_adapter_suite::run("axum", mount).await;
}
