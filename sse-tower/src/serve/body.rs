//! [`RequestBody`]: the request body [`serve`](super::serve()) hands to the
//! service.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The body of a request served by [`serve`](super::serve()): hyper's
/// [`Incoming`] body, or empty for an event-stream `GET` that `serve`
/// read and answers itself (see the [module docs](super)).
///
/// An axum `Router`, a `warp::service` and an `SseService` take any body
/// type, so this only shows in the bounds of a hand-written service.
///
/// ```
/// use http_body::Body;
/// use sse_tower::serve::RequestBody;
///
/// let body = RequestBody::empty();
/// assert!(body.is_end_stream());
/// assert_eq!(body.size_hint().exact(), Some(0));
/// ```
#[derive(Default)]
pub struct RequestBody {
    incoming: Option<Incoming>,
}

impl RequestBody {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Self::default()
    }
}

impl From<Incoming> for RequestBody {
    fn from(incoming: Incoming) -> Self {
        Self {
            incoming: Some(incoming),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().incoming {
            Some(incoming) => Pin::new(incoming).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("empty", &self.incoming.is_none())
            .finish()
    }
}
