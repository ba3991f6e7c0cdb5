//! Run with: cargo run --example tonic
//!
//! gRPC and uploads on one port. A tonic server serves the standard gRPC health service
//! (`grpc.health.v1.Health`, from `tonic-health`) and [`UploadStatusService`] at `/status`;
//! `Server::layer` puts [`UploadLayer`] in front of both. The layer answers every
//! `POST /upload?key=K` itself and hands everything else, gRPC calls included, to tonic's
//! router untouched. The igUpload widget speaks HTTP/1.1, so the server accepts HTTP/1.1 next
//! to gRPC's HTTP/2.
//!
//! Try it:
//!
//! ```sh
//! curl -F file=@Cargo.toml 'http://127.0.0.1:3002/upload?key=abc'
//! curl 'http://127.0.0.1:3002/status?key=abc&command=status'
//! grpc_health_probe -addr=127.0.0.1:3002   # github.com/grpc-ecosystem/grpc-health-probe
//! ```
//!
//! Flags: `--addr <ADDR>` (default `127.0.0.1:3002`, or the `ADDR` environment variable) and
//! `--upload-dir <DIR>` (default `tower-upload-tonic` in the system temp folder).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower_upload::{UploadLayer, UploadRegistry, UploadStatusService};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the widget's `progressUrl` points.
const STATUS_PATH: &str = "/status";

/// Serves gRPC health checks and uploads configured by `layer` (the status service reads
/// `layer`'s registry) on `listener` until `shutdown` completes and the connections close.
///
/// `pub` so that `tests/examples.rs` can run it on `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    layer: UploadLayer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // The reporter sets per-service health; the overall health ("") starts as SERVING.
    let (_reporter, health) = tonic_health::server::health_reporter();

    // tonic's `Routes` is an axum router underneath: a plain tower service goes on a path of
    // its own with axum's `route_service`, next to the gRPC services.
    let status = UploadStatusService::new(layer.registry().clone());
    let routes = Routes::new(health)
        .into_axum_router()
        .route_service(STATUS_PATH, status);

    // tonic's own `Server::timeout` and `concurrency_limit_per_connection` wrap *outside* the
    // layers, so they apply to uploads too: a timeout answers an upload with an empty 200 and a
    // `grpc-status` header (the layer records a disconnect). Leave them unset or generous.
    Server::builder()
        .accept_http1(true)
        // Wraps the whole router, per connection: gRPC calls are `POST`s to
        // `/<package>.<Service>/<Method>`, never to the upload path, so they pass through.
        .layer(layer)
        .add_routes(Routes::from(routes))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (addr, upload_dir) = parse_args()?;
    let layer = UploadLayer::new(UploadRegistry::new()).upload_dir(&upload_dir);
    let listener = TcpListener::bind(addr).await?;
    println!(
        "listening on http://{} (gRPC and HTTP/1.1), storing uploads in {}",
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
    let mut addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let mut upload_dir = std::env::temp_dir().join("tower-upload-tonic");
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
