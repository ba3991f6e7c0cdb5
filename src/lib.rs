//! File uploads for [tower] servers (axum, hyper, tonic): multipart bodies streamed to disk
//! with progress, limits, cancellation and clean failure, plus a status service that speaks
//! the protocol of the Ignite UI `igUpload` widget.
//!
//! ```
//! use axum::body::Body;
//! use axum::routing::get;
//! use axum::Router;
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_upload::{UploadLayer, UploadRegistry, UploadStatusService};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let registry = UploadRegistry::new();
//! let app = Router::new()
//!     .route("/", get(|| async { "the upload page" }))
//!     .route_service("/status", UploadStatusService::new(registry.clone()))
//!     .layer(UploadLayer::new(registry).upload_dir(dir.path()));
//!
//! // What the widget sends: `POST {uploadUrl}?key=K` with one file part.
//! let body = "--XyZ\r\n\
//!     Content-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\n\
//!     Content-Type: text/plain\r\n\r\n\
//!     Hello, upload!\r\n\
//!     --XyZ--\r\n";
//! let request = Request::post("/upload?key=k1")
//!     .header("content-type", "multipart/form-data; boundary=XyZ")
//!     .body(Body::from(body))?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let answer = response.into_body().collect().await?.to_bytes();
//! assert_eq!(answer, r#"{"status":2,"error":-1,"bytesUploaded":14,"size":14}"#);
//! assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt"))?, "Hello, upload!");
//!
//! // ...then asks `GET {progressUrl}?key=K&command=status` and obeys the answer.
//! let request = Request::get("/status?key=k1&command=status").body(Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let status: serde_json::Value =
//!     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(status["status"], 2); // Finished
//! assert_eq!(status["error"], -1); // no error
//! assert_eq!(status["bytesUploaded"], 14);
//!
//! // Everything else reaches the application untouched.
//! let response = app.oneshot(Request::get("/").body(Body::empty())?).await?;
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "the upload page");
//! # Ok(())
//! # }
//! ```
//!
//! # The parts
//!
//! - [`UploadLayer`] (the module, [`Upload`] once applied): every `POST` to the upload path
//!   (default `/upload`) is an upload, with the client's `key` or a generated one per file
//!   (curl, HTML forms, Uppy). It registers the key, streams each file part through one
//!   per-file pipeline into a temp file (or memory, or a sink of yours), enforces the limits,
//!   stops on a cancel, moves the file to its final, sanitised name and answers with JSON, or
//!   ([`UploadLayer::forward`]) hands [`UploadedFiles`] to your handler. With
//!   `resumable_path` it also serves tus 1.0 and the IETF resumable-upload draft. Other
//!   requests reach the inner service untouched. [`UploadService`] is the same as a leaf for
//!   one route.
//! - [`UploadStatusService`] (the handler): answers `?key=K&command=status|cancel|fileSize`
//!   as JSON, `command=watch` as Server-Sent Events, and nginx's `?X-Progress-ID=K`. Mount
//!   it where the widget's `progressUrl` points.
//! - [`UploadRegistry`]: the shared state both hold, a cheap `Clone` handle over a
//!   [`ProgressStore`] ([`MemoryStore`] by default).
//!
//! The status and error numbers on the wire are [`UploadStatus`] and [`FileError`] codes;
//! [`UploadInfo`] is the snapshot of one upload. The layer's docs ([`layer`]) list the HTTP
//! answer for every outcome; the status service's docs ([`status`]) list its commands and
//! errors.
//!
//! This crate only re-exports the workspace's crates: [`state`] (`tower-upload-state`),
//! [`layer`] (`tower-upload-layer`) and [`status`] (`tower-upload-status`).
//!
//! [tower]: https://docs.rs/tower

pub use tower_upload_layer as layer;
pub use tower_upload_state as state;
pub use tower_upload_status as status;

/// With the `object-store` feature: uploads streamed into S3, GCS or Azure.
#[cfg(feature = "object-store")]
pub use tower_upload_layer::ObjectStoreSink;
pub use tower_upload_layer::{
    BoxError, DigestAlgorithm, EventError, FinishOptions, MimeFilter, OverwritePolicy,
    ResponseBody, StartOptions, Stored, Upload, UploadFinished, UploadFinishing, UploadLayer,
    UploadService, UploadSink, UploadStarting, UploadedFile, UploadedFiles,
};
pub use tower_upload_state::{
    FileError, MemoryStore, ProgressStore, UploadInfo, UploadKey, UploadRegistry, UploadStatus,
};
pub use tower_upload_status::UploadStatusService;

/// The README's Rust examples, compiled as doc tests so that they stay true (with
/// `--all-features`, as `scripts/test` runs them: one of them uses the Redis store).
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
