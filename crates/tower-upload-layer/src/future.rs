//! [`ResponseFuture`]: the inner service's future, or the upload in progress.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::ResponseBody;

/// The upload in progress. Boxed: it holds the multipart reader and a temp file, and only upload
/// requests pay for the allocation.
pub(crate) type UploadFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

pin_project! {
    /// The response future of [`Upload`](crate::Upload).
    ///
    /// For requests the layer does not intercept it is the inner future, polled in place: no
    /// allocation, no boxing.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Upload { future: UploadFuture },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn upload(future: UploadFuture) -> Self {
        Self {
            kind: Kind::Upload { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Upload { future } => {
                let response = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(response.map(ResponseBody::answer)))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Upload { .. } => "Upload",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

/// The upload and the application's answer to it, in forward mode.
type ForwardedUpload<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`Upload`](crate::Upload) in forward mode.
    ///
    /// For requests the layer does not intercept it is the inner future, polled in place.
    pub struct ForwardFuture<F, B, E> {
        #[pin]
        kind: ForwardKind<F, B, E>,
    }
}

pin_project! {
    #[project = ForwardKindProj]
    enum ForwardKind<F, B, E> {
        Inner { #[pin] future: F },
        Upload { future: ForwardedUpload<B, E> },
    }
}

impl<F, B, E> ForwardFuture<F, B, E> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: ForwardKind::Inner { future },
        }
    }

    pub(crate) fn upload(future: ForwardedUpload<B, E>) -> Self {
        Self {
            kind: ForwardKind::Upload { future },
        }
    }
}

impl<F, B, E> Future for ForwardFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ForwardKindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            ForwardKindProj::Upload { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> fmt::Debug for ForwardFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ForwardKind::Inner { .. } => "Inner",
            ForwardKind::Upload { .. } => "Upload",
        };
        f.debug_struct("ForwardFuture")
            .field("kind", &kind)
            .finish()
    }
}
