//! [`Upload`]: the middleware service.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;
use tower_upload_state::UploadRegistry;

use crate::config::Config;
use crate::front::multipart::Processed;
use crate::future::{ForwardFuture, UploadFuture};
use crate::layer::mode::{Answer, Forward};
use crate::{front, BoxError, ResponseBody, ResponseFuture, UploadLayer};

/// Middleware that takes the file uploads out of a request stream: every `POST` to the upload
/// path is answered by this service, everything else goes to the inner service untouched.
///
/// See [`UploadLayer`] for the configuration and the crate docs for the protocol.
///
/// In [forward mode](UploadLayer::forward) (`M` = [`Forward`]) the inner service answers
/// upload requests too, from their [`UploadedFiles`](crate::UploadedFiles).
pub struct Upload<S, M = Answer> {
    inner: S,
    config: Arc<Config>,
    mode: PhantomData<fn() -> M>,
}

impl<S: Clone, M> Clone for Upload<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, M> fmt::Debug for Upload<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S> Upload<S> {
    /// Wraps `inner` with the default configuration and `registry`.
    pub fn new(inner: S, registry: UploadRegistry) -> Self {
        Self::from_config(inner, Arc::new(Config::new(registry)))
    }

    /// An [`UploadLayer`] with the default configuration and `registry`.
    pub fn layer(registry: UploadRegistry) -> UploadLayer {
        UploadLayer::new(registry)
    }
}

impl<S, M> Upload<S, M> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Self {
            inner,
            config,
            mode: PhantomData,
        }
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
    #[inline]
    fn intercepts<B>(&self, request: &Request<B>) -> Route {
        // The method first: most requests are not POSTs and never look at their path here.
        if request.method() == Method::POST && request.uri().path() == self.config.upload_path {
            return Route::Multipart;
        }
        match &self.config.resumable {
            None => Route::Pass,
            Some(resumable) if front::tus::is_resumable_request(resumable, request) => {
                Route::Resumable
            }
            Some(_) => Route::Pass,
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Upload<S, Answer>
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
            Route::Pass => ResponseFuture::inner(self.inner.call(request)),
            route => ResponseFuture::upload(upload(Arc::clone(&self.config), request, route)),
        }
    }
}

/// The layer's own handling of an intercepted request. Out of line and cold, so that `call`
/// stays small on the pass-through path (it is inlined into the caller's future there).
#[cold]
#[inline(never)]
fn upload<B>(config: Arc<Config>, request: Request<B>, route: Route) -> UploadFuture
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match route {
        Route::Resumable => Box::pin(front::tus::handle(config, request)),
        Route::Multipart | Route::Pass => Box::pin(front::multipart::handle(config, request)),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Upload<S, Forward>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Body<Data = Bytes> + Default + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ForwardFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.intercepts(&request) {
            Route::Pass => return ForwardFuture::inner(self.inner.call(request)),
            Route::Resumable => {
                // Resumable uploads answer in their protocol's terms.
                let config = Arc::clone(&self.config);
                return ForwardFuture::upload(Box::pin(async move {
                    let answer = front::tus::handle(config, request).await;
                    Ok(answer.map(ResponseBody::answer))
                }));
            }
            Route::Multipart => {}
        }
        // The service that was polled ready goes with the upload; a clone takes its place
        // (tower's guide: "cloning the inner service").
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        ForwardFuture::upload(Box::pin(async move {
            match front::multipart::process(config, request).await {
                Processed::Answer(answer) => Ok(answer.map(ResponseBody::answer)),
                Processed::Uploaded { request, files } => {
                    let parts = Arc::try_unwrap(request).unwrap_or_else(|shared| (*shared).clone());
                    let mut request = Request::from_parts(parts, ReqBody::default());
                    request.extensions_mut().insert(files);
                    let response = inner.call(request).await?;
                    Ok(response.map(ResponseBody::inner))
                }
            }
        }))
    }
}
