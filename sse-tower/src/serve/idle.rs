//! How long a connection may sit with no request in flight.
//!
//! hyper bounds an idle HTTP/1.1 keep-alive connection by its header read
//! timer, but an HTTP/2 connection has no such timer: after one request it
//! could stay open, silent, for as long as the client liked, holding a
//! connection slot. So every connection `serve` runs counts its requests
//! in flight (from the call until the response body is dropped) and is
//! shut down gracefully (a `GOAWAY` on HTTP/2) once none has been in
//! flight for the idle timeout, from its first byte on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;

/// A connection's requests in flight, and since when none is.
#[derive(Clone, Copy)]
struct State {
    in_flight: usize,
    idle_since: Instant,
    ever_started: bool,
}

/// One connection's activity, shared by its requests.
#[derive(Clone)]
pub(super) struct Activity {
    state: watch::Sender<State>,
}

impl Activity {
    pub(super) fn new() -> Self {
        let (state, _) = watch::channel(State {
            in_flight: 0,
            idle_since: Instant::now(),
            ever_started: false,
        });
        Self { state }
    }

    /// A request started; it is in flight until the guard drops.
    pub(super) fn start(&self) -> InFlight {
        self.state.send_modify(|state| {
            state.in_flight += 1;
            state.ever_started = true;
        });
        InFlight {
            activity: self.clone(),
        }
    }

    /// Whether any request has started on the connection.
    pub(super) fn ever_started(&self) -> bool {
        self.state.borrow().ever_started
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            if state.in_flight > 0 {
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(state.idle_since + timeout) => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Counts one request as in flight while it lives.
pub(super) struct InFlight {
    activity: Activity,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.state.send_modify(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
            }
        });
    }
}

pin_project! {
    /// A service's response future, whose body keeps the request in flight;
    /// or the answer `serve` gives itself (a `400` for a bad `Host`).
    #[project = TrackedProj]
    pub(super) enum Tracked<F> {
        Call {
            #[pin]
            inner: F,
            in_flight: Option<InFlight>,
        },
        Answered {
            response: Option<Response<Bytes>>,
            in_flight: Option<InFlight>,
        },
    }
}

impl<F> Tracked<F> {
    pub(super) fn new(inner: F, in_flight: InFlight) -> Self {
        Self::Call {
            inner,
            in_flight: Some(in_flight),
        }
    }

    /// Answers with `response` without calling the service.
    pub(super) fn answered(response: Response<Bytes>, in_flight: InFlight) -> Self {
        Self::Answered {
            response: Some(response),
            in_flight: Some(in_flight),
        }
    }
}

impl<F, B, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TrackedProj::Call { inner, in_flight } => {
                let result = std::task::ready!(inner.poll(cx));
                let in_flight = in_flight.take();
                Poll::Ready(result.map(|response| {
                    response.map(|body| TrackedBody::Inner {
                        inner: body,
                        _in_flight: in_flight,
                    })
                }))
            }
            TrackedProj::Answered {
                response,
                in_flight,
            } => {
                let in_flight = in_flight.take();
                let response = response.take().unwrap_or_default();
                Poll::Ready(Ok(response.map(|data| TrackedBody::Answer {
                    data: Some(data),
                    _in_flight: in_flight,
                })))
            }
        }
    }
}

pin_project! {
    /// A response body that keeps its request in flight until dropped.
    #[project = TrackedBodyProj]
    pub(super) enum TrackedBody<B> {
        Inner {
            #[pin]
            inner: B,
            _in_flight: Option<InFlight>,
        },
        Answer {
            data: Option<Bytes>,
            _in_flight: Option<InFlight>,
        },
    }
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            TrackedBodyProj::Inner { inner, .. } => inner.poll_frame(cx),
            TrackedBodyProj::Answer { data, .. } => Poll::Ready(
                data.take()
                    .filter(|d| !d.is_empty())
                    .map(|d| Ok(Frame::data(d))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner { inner, .. } => inner.is_end_stream(),
            Self::Answer { data, .. } => data.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner { inner, .. } => inner.size_hint(),
            Self::Answer { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_means_no_request_in_flight_for_the_whole_timeout() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let started = Instant::now();
        let request = activity.start();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(timeout).await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!idle.is_finished(), "idle with a request in flight");
        drop(request);
        tokio::time::sleep(Duration::from_secs(9)).await;
        let again = activity.start();
        drop(again);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!idle.is_finished(), "a request restarts the timer");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(idle.is_finished());
        assert!(started.elapsed() >= Duration::from_secs(50));
    }
}
