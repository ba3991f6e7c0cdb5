//! [`Upload`]: the middleware service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;
use tower_upload_state::UploadRegistry;

use crate::config::Config;
use crate::{front, BoxError, ResponseBody, ResponseFuture, UploadLayer};

/// Middleware that takes the file uploads out of a request stream: every `POST` to the upload
/// path is answered by this service, everything else goes to the inner service untouched.
///
/// See [`UploadLayer`] for the configuration and the crate docs for the protocol.
#[derive(Clone, Debug)]
pub struct Upload<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Upload<S> {
    /// Wraps `inner` with the default configuration and `registry`.
    pub fn new(inner: S, registry: UploadRegistry) -> Self {
        Self {
            inner,
            config: Arc::new(Config::new(registry)),
        }
    }

    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// An [`UploadLayer`] with the default configuration and `registry`.
    pub fn layer(registry: UploadRegistry) -> UploadLayer {
        UploadLayer::new(registry)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Which front-end, if any, answers `request`.
    fn intercepts<B>(&self, request: &Request<B>) -> Route {
        let path = request.uri().path();
        if request.method() == Method::POST && path == self.config.upload_path {
            return Route::Multipart;
        }
        match &self.config.resumable {
            Some(resumable) if front::tus::is_resumable_request(resumable, request) => {
                Route::Resumable
            }
            _ => Route::Pass,
        }
    }
}

/// How [`Upload`] classifies a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// A multipart `POST` to the upload path.
    Multipart,
    /// A request of a resumable protocol (tus, the IETF draft) under the resumable path.
    Resumable,
    /// Anything else: the inner service's, untouched.
    Pass,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Upload<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.intercepts(&request) {
            Route::Multipart => {
                let config = Arc::clone(&self.config);
                ResponseFuture::upload(Box::pin(front::multipart::handle(config, request)))
            }
            Route::Resumable => {
                let config = Arc::clone(&self.config);
                ResponseFuture::upload(Box::pin(front::tus::handle(config, request)))
            }
            Route::Pass => ResponseFuture::inner(self.inner.call(request)),
        }
    }
}
