//! The shared adapter suite against a real warp server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sse_adapter_suite::{Mounted, UserFromHeader};
use sse_warp::SseService;
use sse_warp::sse_core::{NewNotification, Notifier, Principal};
use warp::Filter;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn mount(sse: SseService) -> Mounted {
    let events = warp::path!("events").and(sse_warp::stream(&sse));
    let notify = warp::path!("notify")
        .and(warp::post())
        .and(sse_warp::authenticated(&sse))
        .and(sse_warp::notifier(&sse))
        .and(sse_warp::json())
        .and_then(
            |_sender: Principal, notifier: Notifier, new: NewNotification| async move {
                let notification = notifier.notify(new).await.map_err(sse_warp::reject)?;
                Ok::<_, warp::Rejection>(warp::reply::with_status(
                    warp::reply::json(&notification),
                    warp::http::StatusCode::CREATED,
                ))
            },
        );
    let whoami = warp::path!("whoami")
        .and(sse_warp::authenticated(&sse))
        .map(|principal: Principal| principal.user().to_string());
    let routes = events.or(notify).or(whoami).recover(sse_warp::recover);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    // The auth middleware stands in front of the warp service, whose
    // filters see the extensions it sets.
    let app = UserFromHeader(sse_warp::service(routes));
    let server = tokio::spawn(async move {
        sse_tower::serve(listener, app).await.unwrap();
    });
    Mounted {
        authority,
        guard: Box::new(AbortOnDrop(server)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warp_passes_the_adapter_suite() {
    sse_adapter_suite::run("warp", mount).await;
}
