//! [`Link`]: a Redis connection that fails fast while Redis is down and
//! recovers without failing a request once it is back.
//!
//! A bare `Connection` makes every request wait out its reconnect
//! attempts while Redis is down (seconds per request, so HTTP handlers
//! hang), and after a restart the first request on the old connection fails
//! with "broken pipe". A link instead:
//!
//! - keeps a background probe (`PING` every second) that notices a dead
//!   connection before a request does, and keeps probing (every 250 ms)
//!   while Redis is down;
//! - while the probe says Redis is down, answers at once with
//!   [`StoreError::Unavailable`] (streams answer `503`, handlers `503`);
//! - retries a request once when it failed because the connection was
//!   found closed (the request never reached a live server), so the first
//!   request after a restart succeeds.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::connection::Connection;
use sse_core::StoreError;

/// How often a healthy link is probed, and how often a down one.
const PROBE_UP: Duration = Duration::from_secs(1);
const PROBE_DOWN: Duration = Duration::from_millis(250);

/// A shared, self-healing connection; cloning is cheap.
#[derive(Clone)]
pub(crate) struct Link {
    manager: Connection,
    state: Arc<State>,
}

struct State {
    up: AtomicBool,
    probe_timeout: Duration,
}

impl Link {
    /// Wraps `manager` (connected) and starts its probe, which stops when
    /// the last clone of the link is dropped.
    pub(crate) fn new(manager: Connection, probe_timeout: Duration) -> Self {
        let state = Arc::new(State {
            up: AtomicBool::new(true),
            probe_timeout,
        });
        tokio::spawn(probe(manager.clone(), Arc::downgrade(&state)));
        Self { manager, state }
    }

    /// Runs `request` on the connection: fails fast while Redis is known to
    /// be down, and retries once if the connection turned out to be closed.
    pub(crate) async fn run<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.state.up.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "Redis is unreachable (reconnecting in the background)".into(),
            ));
        }
        match request(self.manager.clone()).await {
            Ok(value) => Ok(value),
            Err(error) if found_closed(&error) => {
                // The connection was dead before the request reached a
                // server (Redis restarted): the manager reconnects on this
                // error, and the retry goes out on the new connection.
                match request(self.manager.clone()).await {
                    Ok(value) => Ok(value),
                    Err(error) => Err(self.failed(error)),
                }
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    fn failed(&self, error: redis::RedisError) -> StoreError {
        if is_unavailable(&error) {
            self.state.up.store(false, Ordering::Relaxed);
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Backend(Box::new(error))
        }
    }
}

/// The connection was found closed: nothing was executed.
fn found_closed(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() || error.is_connection_refusal()
}

/// Redis cannot be reached (rather than refusing the request).
pub(crate) fn is_unavailable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || is_failing_over(error)
}

/// A Redis Cluster between a primary's death and its replica's promotion
/// (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`), also inside an aborted
/// transaction: nothing was applied, and it passes within seconds.
fn is_failing_over(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    let transient = |kind: Option<ServerErrorKind>| {
        matches!(
            kind,
            Some(
                ServerErrorKind::ClusterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
            )
        )
    };
    match error.kind() {
        ErrorKind::Server(kind) if transient(Some(kind)) => true,
        ErrorKind::Server(ServerErrorKind::ExecAbort) => {
            error.clone().into_server_errors().is_some_and(|errors| {
                !errors.is_empty() && errors.iter().all(|(_, e)| transient(e.kind()))
            })
        }
        _ => false,
    }
}

async fn probe(manager: Connection, state: Weak<State>) {
    loop {
        let Some(every) = state.upgrade().map(|s| {
            if s.up.load(Ordering::Relaxed) {
                PROBE_UP
            } else {
                PROBE_DOWN
            }
        }) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(state) = state.upgrade() else { return };
        let alive = match ping(&manager, state.probe_timeout).await {
            Ok(()) => true,
            // A restart: the manager reconnects on this error; try the
            // fresh connection before calling Redis down.
            Err(Some(error)) if found_closed(&error) => {
                ping(&manager, state.probe_timeout).await.is_ok()
            }
            Err(_) => false,
        };
        let was = state.up.swap(alive, Ordering::Relaxed);
        if was != alive {
            if alive {
                tracing::info!("Redis is reachable again");
            } else {
                tracing::warn!("Redis is unreachable; requests fail fast until it is back");
            }
        }
    }
}

/// `Err(None)` on a timeout.
async fn ping(manager: &Connection, timeout: Duration) -> Result<(), Option<redis::RedisError>> {
    let mut connection = manager.clone();
    let command = redis::cmd("PING");
    match tokio::time::timeout(
        timeout,
        command.query_async::<redis::Value>(&mut connection),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(Some(error)),
        Err(_) => Err(None),
    }
}
