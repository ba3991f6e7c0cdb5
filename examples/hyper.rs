//! Run with: cargo run --example hyper
//!
//! tower-upload on plain hyper 1 and hyper-util, without axum. A `tower::ServiceBuilder`
//! puts [`UploadLayer`] around a small `service_fn` app: the layer answers every
//! `POST /upload?key=K` itself, and everything else reaches the app untouched, which sends
//! `/status` to [`UploadStatusService`], echoes `POST /echo` and answers the rest with a hello
//! page. `TowerToHyperService` turns the tower stack into a hyper service, and hyper-util's
//! `auto::Builder` serves it (HTTP/1.1 and HTTP/2) until Ctrl-C.
//!
//! Try it:
//!
//! ```sh
//! curl -F file=@Cargo.toml 'http://127.0.0.1:3001/upload?key=abc'
//! curl 'http://127.0.0.1:3001/status?key=abc&command=status'
//! ```
//!
//! Flags: `--addr <ADDR>` (default `127.0.0.1:3001`, or the `ADDR` environment variable) and
//! `--upload-dir <DIR>` (default `tower-upload-hyper` in the system temp folder).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_upload::{UploadLayer, UploadRegistry, UploadStatusService};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the widget's `progressUrl` points.
const STATUS_PATH: &str = "/status";

/// How long a shutdown waits for requests in flight (uploads included) before it gives up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const HELLO: &str = "Hello from hyper. POST a multipart file to /upload?key=K, \
    then ask /status?key=K&command=status.\n";

/// The one body type of the app's answers. The status service answers its `ResponseBody` and the
/// echo route answers hyper's `Incoming`: boxing makes them one type. The upload layer then
/// wraps it once more, in `ResponseBody<AppBody>`, which is either this body untouched or the
/// layer's own JSON answer.
type AppBody = BoxBody<Bytes, BoxError>;

fn boxed<B>(body: B) -> AppBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// The application: everything the upload layer lets through.
async fn app(
    status: UploadStatusService,
    request: Request<Incoming>,
) -> Result<Response<AppBody>, Infallible> {
    if request.uri().path() == STATUS_PATH {
        // A leaf service for any body type, any method (it answers 405 itself).
        let response = status.oneshot(request).await?;
        return Ok(response.map(boxed));
    }
    if request.method() == Method::POST && request.uri().path() == "/echo" {
        // Non-upload POSTs keep their bodies: stream this one straight back.
        return Ok(Response::new(boxed(request.into_body())));
    }
    let mut response = Response::new(boxed(Full::new(Bytes::from_static(HELLO.as_bytes()))));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// Serves uploads configured by `layer` (the status service reads `layer`'s registry) on
/// `listener` until `shutdown` completes, then waits a little for requests in flight.
///
/// `pub` so that `tests/examples.rs` can run it on `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    layer: UploadLayer,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let status = UploadStatusService::new(layer.registry().clone());
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |request| app(status.clone(), request)));
    // hyper 1 has a `Service` trait of its own (`&self`, no `poll_ready`); the adapter calls a
    // clone of the tower service for each request.
    let service = TowerToHyperService::new(service);

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    eprintln!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("connection failed: {error}");
            }
        });
    }

    // Idle connections close now; an upload in flight may finish. One still running when the
    // process exits is dropped, and the layer deletes its temp file.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => eprintln!("requests still in flight; stopping"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (addr, upload_dir) = parse_args()?;
    let layer = UploadLayer::new(UploadRegistry::new()).upload_dir(&upload_dir);
    let listener = TcpListener::bind(addr).await?;
    println!(
        "listening on http://{}, storing uploads in {}",
        listener.local_addr()?,
        upload_dir.display()
    );
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, layer, ctrl_c).await?;
    Ok(())
}

fn parse_args() -> Result<(SocketAddr, PathBuf), BoxError> {
    let mut addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let mut upload_dir = std::env::temp_dir().join("tower-upload-hyper");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--upload-dir" => upload_dir = value()?.into(),
            _ => return Err(format!("unknown argument {flag}; try --addr, --upload-dir").into()),
        }
    }
    Ok((addr.parse()?, upload_dir))
}
