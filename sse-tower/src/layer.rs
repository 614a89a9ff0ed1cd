//! [`SseLayer`]: the stream at one path in front of any service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{SseBody, SseService};

/// Serves the event stream at one path and passes every other request to
/// the inner service; see [`SseService::layer`].
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use sse_core::{AuthRejection, FnAuthenticator};
/// use sse_tower::SseService;
/// use tower::{ServiceBuilder, service_fn};
///
/// let sse = SseService::builder(FnAuthenticator::new(|_| Err(AuthRejection::unauthenticated("no")))).build();
/// let app = ServiceBuilder::new()
///     .layer(sse.layer("/events"))
///     .service(service_fn(|_req: Request<()>| async {
///         Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
///     }));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct SseLayer {
    service: SseService,
    path: Arc<str>,
}

impl SseLayer {
    /// Serves `service` at `path` (an exact match on the request path).
    pub fn new(service: SseService, path: impl Into<String>) -> Self {
        Self {
            service,
            path: path.into().into(),
        }
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = SseMiddleware<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseMiddleware {
            sse: self.service.clone(),
            path: self.path.clone(),
            inner,
        }
    }
}

/// The service [`SseLayer`] produces.
#[derive(Clone, Debug)]
pub struct SseMiddleware<S> {
    sse: SseService,
    path: Arc<str>,
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseMiddleware<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = MiddlewareFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let kind = if request.uri().path() == &*self.path {
            FutureKind::Sse {
                future: self.sse.call(request),
            }
        } else {
            FutureKind::Inner {
                future: self.inner.call(request),
            }
        };
        MiddlewareFuture { kind }
    }
}

pin_project! {
    /// The response future of [`SseMiddleware`].
    pub struct MiddlewareFuture<F> {
        #[pin]
        kind: FutureKind<F>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F> {
        Sse { #[pin] future: crate::ResponseFuture },
        Inner { #[pin] future: F },
    }
}

impl<F, ResBody, E> Future for MiddlewareFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Sse { future } => future.poll(cx).map(|result| {
                let response = result.unwrap_or_else(|never: Infallible| match never {});
                Ok(response.map(|body| ResponseBody {
                    kind: BodyKind::Sse { body },
                }))
            }),
            FutureKindProj::Inner { future } => future.poll(cx).map(|result| {
                result.map(|response| {
                    response.map(|body| ResponseBody {
                        kind: BodyKind::Inner { body },
                    })
                })
            }),
        }
    }
}

pin_project! {
    /// The body of [`SseMiddleware`]'s responses: the stream's or the inner service's.
    pub struct ResponseBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Sse { #[pin] body: SseBody },
        Inner { #[pin] body: B },
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Sse { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            BodyKindProj::Inner { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Sse { body } => body.is_end_stream(),
            BodyKind::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Sse { body } => body.size_hint(),
            BodyKind::Inner { body } => body.size_hint(),
        }
    }
}
