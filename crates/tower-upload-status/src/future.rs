//! [`ResponseFuture`]: what [`UploadStatusService`](crate::UploadStatusService) returns.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::answer::StatusResponse;
use crate::ResponseBody;

/// The response future of [`UploadStatusService`](crate::UploadStatusService).
///
/// An answer that needs no waiting is made in `call` and handed out by the first poll,
/// without an allocation: a refused request, and a `status` (or nginx-dialect) answer for an
/// upload streaming in this process or a key of an in-process store
/// ([`UploadRegistry::inspect_for`](tower_upload_state::UploadRegistry::inspect_for)). An
/// answer that must wait for the store (a shared store, `cancel`, `fileSize`, the start of
/// an event stream) holds the registry's future in a box: the
/// [`UploadRegistry`](tower_upload_state::UploadRegistry) methods are `async fn`s, whose
/// future types cannot be named on stable Rust, and a
/// [`ProgressStore`](tower_upload_state::ProgressStore) answers through boxed futures anyway.
///
/// It is [`Send`] and `'static` whatever the request body type, since the body is dropped
/// in `call`.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    /// Answered in `call`; `None` once handed out.
    Ready(Option<StatusResponse>),
    /// Waiting for the registry.
    Registry(Pin<Box<dyn Future<Output = StatusResponse> + Send>>),
}

impl ResponseFuture {
    pub(crate) fn ready(response: StatusResponse) -> Self {
        Self {
            kind: Kind::Ready(Some(response)),
        }
    }

    pub(crate) fn registry(future: impl Future<Output = StatusResponse> + Send + 'static) -> Self {
        Self {
            kind: Kind::Registry(Box::pin(future)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    /// # Panics
    ///
    /// When polled again after it returned the response.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().kind {
            Kind::Ready(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Registry(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ResponseFuture");
        match &self.kind {
            Kind::Ready(Some(response)) => debug.field("answered", &response.status()),
            Kind::Ready(None) => debug.field("done", &true),
            Kind::Registry(_) => debug.field("asking_registry", &true),
        };
        debug.finish()
    }
}
