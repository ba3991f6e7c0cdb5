//! Run with: cargo run --example axum_app --features axum
//!
//! The application in the loop, in an axum app, two ways:
//!
//! - `POST /photos`: [`UploadLayer`] in forward mode stores the files, then the app's own
//!   handler answers from [`UploadedFiles`] (an extractor with the `axum` feature): here a
//!   small JSON receipt, or the refusal in the app's own words.
//! - `POST /api/upload`: [`UploadService`], the leaf, on a route of a nested router behind a
//!   route-level authentication layer: a request without `Authorization: Bearer demo-token`
//!   gets 401 before a byte of its body is read.
//!
//! `GET /status?key=K&command=status` answers for both (one registry).
//!
//! Try it:
//!
//! ```sh
//! curl -F photo=@Cargo.toml -F caption=hello http://127.0.0.1:3002/photos
//! curl -H 'Authorization: Bearer demo-token' -F f=@Cargo.toml http://127.0.0.1:3002/api/upload
//! curl -F f=@Cargo.toml http://127.0.0.1:3002/api/upload    # 401
//! ```
//!
//! Flags: `--addr <ADDR>` (default `127.0.0.1:3002`) and `--upload-dir <DIR>` (default
//! `tower-upload-axum` in the system temp folder).

use std::future::Future;
use std::path::PathBuf;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_upload::{
    Stored, UploadLayer, UploadRegistry, UploadService, UploadStatusService, UploadedFiles,
};

/// The token the demo's API accepts.
const TOKEN: &str = "Bearer demo-token";

/// The app's answer to a photo upload: its own JSON, from what the layer stored.
async fn photos(files: UploadedFiles) -> Response {
    if let Some(failure) = &files.failure {
        let body = json!({ "ok": false, "reason": failure.message });
        return (failure.http, Json(body)).into_response();
    }
    let photos: Vec<_> = files
        .stored()
        .map(|file| {
            let name = match &file.stored {
                Stored::Path(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
                _ => None,
            };
            json!({ "key": file.key.as_str(), "stored_as": name, "bytes": file.size })
        })
        .collect();
    let caption = files.field("caption").unwrap_or("(no caption)");
    (
        StatusCode::CREATED,
        Json(json!({ "ok": true, "caption": caption, "photos": photos })),
    )
        .into_response()
}

/// A route-level authentication layer: runs before the upload reads anything.
async fn require_token(request: Request, next: Next) -> Result<Response, StatusCode> {
    match request.headers().get("authorization") {
        Some(value) if value == TOKEN => Ok(next.run(request).await),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

/// The app: forward mode on `/photos`, the leaf on `/api/upload`, the status service.
pub fn app(registry: UploadRegistry, upload_dir: PathBuf) -> Router {
    let api_upload: UploadService = UploadLayer::new(registry.clone())
        .upload_dir(upload_dir.join("api"))
        .into_service();
    let api = Router::new()
        .route_service("/upload", api_upload)
        .route_layer(middleware::from_fn(require_token));
    Router::new()
        .route("/photos", post(photos))
        .route_service("/status", UploadStatusService::new(registry.clone()))
        .nest("/api", api)
        .layer(
            UploadLayer::new(registry)
                .upload_path("/photos")
                .upload_dir(upload_dir.join("photos"))
                .allowed_mime_types("image/*|text/*")
                .forward(),
        )
}

/// Serves the app on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: UploadRegistry,
    upload_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(registry, upload_dir))
        .with_graceful_shutdown(shutdown)
        .await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:3002".to_owned();
    let mut upload_dir = std::env::temp_dir().join("tower-upload-axum");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            ("--upload-dir", Some(value)) => upload_dir = value.into(),
            _ => {
                eprintln!("usage: axum_app [--addr ADDR] [--upload-dir DIR]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&addr).await?;
    println!("axum_app listening on http://{}", listener.local_addr()?);
    serve(listener, UploadRegistry::new(), upload_dir, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
