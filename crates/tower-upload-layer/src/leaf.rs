//! [`UploadService`]: the upload path as a leaf service, for a router's route.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use crate::answer::protocol_error;
use crate::config::Config;
use crate::{front, BoxError};

/// The upload path as a leaf service: every `POST` it receives is an upload (the router has
/// chosen the path), any other method gets `405` with `Allow: POST`.
///
/// Made from an [`UploadLayer`](crate::UploadLayer) with
/// [`into_service`](crate::UploadLayer::into_service), so it has the same configuration
/// (limits, sinks, events, the registry). Mount it with axum's
/// `Router::route_service("/upload", ...)`, like tower-http's `ServeDir`:
///
/// - **`UploadService`** when the upload route needs layers of its own (authentication, rate
///   limits: `route_layer` runs them before a byte of the body is read), or lives in a
///   nested router;
/// - **`UploadLayer`** to intercept one path in front of a whole application (the igUpload
///   module's way), or to forward results to the application's own handler.
///
/// # Example
///
/// ```
/// use axum::{middleware, routing::post, Router};
/// use tower_upload_layer::UploadLayer;
/// use tower_upload_state::UploadRegistry;
///
/// # async fn require_user(
/// #     request: axum::extract::Request,
/// #     next: middleware::Next,
/// # ) -> Result<axum::response::Response, http::StatusCode> {
/// #     Ok(next.run(request).await)
/// # }
/// let upload = UploadLayer::new(UploadRegistry::new())
///     .max_file_size(Some(10 << 20))
///     .into_service();
/// let app: Router = Router::new().nest(
///     "/api",
///     Router::new()
///         .route_service("/upload", upload)
///         // Runs before the upload reads anything.
///         .route_layer(middleware::from_fn(require_user)),
/// );
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct UploadService {
    config: Arc<Config>,
}

impl UploadService {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        Self { config }
    }
}

impl fmt::Debug for UploadService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadService")
            .field("config", &self.config)
            .finish()
    }
}

impl<B> Service<Request<B>> for UploadService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = UploadServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() != Method::POST {
            let mut answer = protocol_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "uploads are POST requests",
            );
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return UploadServiceFuture::ready(answer);
        }
        let config = Arc::clone(&self.config);
        UploadServiceFuture {
            future: Box::pin(front::multipart::handle(config, request)),
        }
    }
}

/// The response future of [`UploadService`].
pub struct UploadServiceFuture {
    future: Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>,
}

impl UploadServiceFuture {
    fn ready(answer: Response<Bytes>) -> Self {
        Self {
            future: Box::pin(std::future::ready(answer)),
        }
    }
}

impl fmt::Debug for UploadServiceFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadServiceFuture")
            .finish_non_exhaustive()
    }
}

impl Future for UploadServiceFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.future
            .as_mut()
            .poll(cx)
            .map(|answer| Ok(answer.map(Full::new)))
    }
}
