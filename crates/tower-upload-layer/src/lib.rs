//! `UploadLayer`: tower middleware that takes file uploads out of the request stream, the
//! tower analogue of igUpload's `UploadModule`.
//!
//! Every request passes through [`Upload`]. A `POST` to the upload path (default `/upload`)
//! is an upload and is answered by the layer itself; every other request goes to the inner
//! service untouched (same request, no body wrapping, no allocation).
//!
//! An upload is a `multipart/form-data` body with `?key=K` (or `?key=K1;K2;K3` for several
//! files in one request). For each file part the layer:
//!
//! 1. registers the key in the [`UploadRegistry`] before reading the body, so the status
//!    service can answer for it at once (status 0, then 1 when the part starts);
//! 2. streams the part into a fresh temp file (exclusive create, mode 0600), in batches of
//!    [`buffer_size`](UploadLayer::buffer_size) bytes written off the async threads, counting
//!    the bytes into the registry as they are written; memory per upload stays bounded
//!    whatever the file size;
//! 3. enforces the limits as it goes, and stops within one chunk on `command=cancel`;
//! 4. renames the temp file to its final, sanitised name in the upload folder (status 9, then
//!    2).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_upload_layer::UploadLayer;
//! use tower_upload_state::{UploadKey, UploadRegistry, UploadStatus};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let registry = UploadRegistry::new();
//! let app = ServiceBuilder::new()
//!     .layer(UploadLayer::new(registry.clone()).upload_dir(dir.path()))
//!     .service(service_fn(|_request: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("app"))))
//!     }));
//!
//! let body = "--XyZ\r\n\
//!     Content-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\n\
//!     Content-Type: text/plain\r\n\r\n\
//!     Hello, upload!\r\n\
//!     --XyZ--\r\n";
//! let request = Request::post("/upload?key=k1")
//!     .header("content-type", "multipart/form-data; boundary=XyZ")
//!     .body(Full::new(Bytes::from(body)))?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! let answer = response.into_body().collect().await?.to_bytes();
//! assert_eq!(&answer[..], br#"{"status":2,"error":-1,"bytesUploaded":14,"size":14}"#);
//!
//! assert_eq!(std::fs::read_to_string(dir.path().join("hello.txt"))?, "Hello, upload!");
//! let info = registry.snapshot(&UploadKey::parse("k1")?).await?.unwrap();
//! assert_eq!(info.status, UploadStatus::Finished);
//!
//! // Anything else reaches the inner service.
//! let response = app.oneshot(Request::get("/").body(Full::default())?).await?;
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "app");
//! # Ok(())
//! # }
//! ```
//!
//! # What the layer answers
//!
//! | request | answer | registry |
//! |---|---|---|
//! | upload, success | 200 `{"status":2,"error":-1,"bytesUploaded":N,"size":N}` | 2 / -1 |
//! | file larger than `max_file_size` (or `Content-Length` proves it) | 413 | 5 / 2 |
//! | type not in `allowed_mime_types` (declared, or sniffed with `sniff_mime_types`) | 415 | 6 / 1 |
//! | unusable file name | 400 | 6 / 0 |
//! | malformed multipart | 400 | 6 / 4 |
//! | part headers too large | 431 | 6 / 4 |
//! | body silent for `idle_timeout`, or slower than `min_transfer_rate` | 408 | 6 / 7 |
//! | `command=cancel` while streaming | 409 | 4 / -1 |
//! | client disconnected | (nobody listens) | 8 / -1 |
//! | upload folder missing and cannot be created | 500 | 6 / 3 |
//! | disk full, write error | 500 | 6 / 7 |
//! | final name taken with [`OverwritePolicy::Reject`] | 409 | 6 / 6 |
//! | the same key already streaming | 409 `{"error":"upload_in_progress",...}` | unchanged |
//! | a key refused before for what the client sent (4, 5, 7; 6 with error 0, 1, 4) | the same verdict at once | unchanged |
//! | too many uploads at once | 503 `{"error":"too_many_uploads",...}` | not registered |
//! | missing or malformed `key` | 400 `{"error":"missing_key"/"invalid_key",...}` | not registered |
//! | not `multipart/form-data` | 415 `{"error":"not_multipart",...}` | not registered |
//! | `multipart/form-data` without a valid boundary | 400 `{"error":"invalid_boundary",...}` | not registered |
//! | `?key=K&command=fileSize` | 200 `{"fileSize":N}` from `Content-Length`; body not kept | size recorded |
//!
//! Failure answers carry the full status object with a `serverMessage` that names the cause
//! and the limit ("file is larger than the 4 MiB limit"). A success never carries
//! `serverMessage`: the igUpload widget hangs on one, and reads the message from the status
//! service instead.
//!
//! **Batches** (`key=K1;K2`): the i-th file part belongs to the i-th key. The answer is
//! `{"files":[{"key":"K1","status":2,...},...]}`; on failure the failed key's `status`,
//! `error` and `serverMessage` are also at the top level. The widget can only show the batch
//! as a whole: per-file errors of a batch do not reach it. A failure ends the key whose part
//! it happened in (or whose part was expected next); keys finished before keep their files;
//! keys not reached are released (a retry may post them), or end with status 8 when the
//! client disconnected. Once every key has its file the request has succeeded, and the rest
//! of the body is not read for files.
//!
//! **One pipeline per file.** Every file part goes through the same stages, whatever the
//! protocol front-end that feeds it: start (status 1, name and type checks,
//! `upload_starting`, the sink's writer), stream (limits, sniffing, `file_uploading`,
//! progress), finish (status 9, `upload_finishing`, the final name, status 2), or one
//! terminal failure that cleans up after itself.
//!
//! No temp file outlives its upload: failures delete it, and so does dropping the response
//! future (a `Drop` guard); the first upload, and then one every
//! [`orphan_age`](UploadLayer::orphan_age), sweeps what a crash left
//! ([`UploadLayer::sweep_orphans`]); a temp file a live upload holds is locked and never
//! swept.
//!
//! # Ordering with other layers
//!
//! Put this layer **outside** body-limiting layers such as tower-http's
//! `RequestBodyLimitLayer` or axum's `DefaultBodyLimit` only if you want them to apply to
//! uploads too (they would cut uploads off without a proper answer; the upload limits here
//! are the ones the widget understands). Concurrency limits and timeouts that should apply
//! to uploads belong outside this layer; a `TimeoutLayer` outside it ends long uploads, which
//! are then recorded as disconnects (status 8) and cleaned up.
//!
//! With the `tracing` feature, every upload request runs in an `upload` span (keys, `cid`,
//! declared size, file name) and every transition and rejection is an event; I/O errors are
//! logged with their cause, which the client's message leaves out.
//!
//! tonic applies its own `Server::timeout`, `concurrency_limit_per_connection` and
//! `load_shed` outside every user layer, so they reach uploads too: a tonic timeout ends an
//! upload with an empty answer that the widget takes for a success. Leave them unset on a
//! server that takes uploads, or set them well above the longest upload.
//!
//! The layer needs a tokio runtime with the time driver (as axum, hyper-util and tonic
//! servers have).

mod answer;
mod body;
mod config;
pub mod cors;
mod digest;
mod events;
mod failure;
mod file;
mod front;
mod future;
mod layer;
mod leaf;
mod mime;
mod multipart;
mod names;
#[cfg(feature = "object-store")]
mod object_store;
mod pipeline;
mod results;
mod service;
mod sink;
mod sniff;
mod stream;
mod trace;

#[cfg(feature = "object-store")]
pub use self::object_store::{
    ObjectStoreSink, ResumableObject, ResumableWriter, DEFAULT_MAX_PARTS_IN_FLIGHT,
    DEFAULT_PART_SIZE, MIN_PART_SIZE,
};
pub use body::ResponseBody;
pub use config::{
    MimeFilter, OverwritePolicy, DEFAULT_BUFFER_SIZE, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_UPLOADS, DEFAULT_MAX_FIELDS, DEFAULT_MAX_FIELD_SIZE,
    DEFAULT_MAX_FILES_PER_REQUEST, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_PART_HEADER_SIZE,
    DEFAULT_MIN_TRANSFER_RATE, DEFAULT_ORPHAN_AGE, DEFAULT_RESUMABLE_EXPIRATION,
    DEFAULT_TEMP_SUBDIR, DEFAULT_UPLOAD_PATH, RESUMABLE_SUBDIR,
};
pub use digest::DigestAlgorithm;
pub use events::{
    EventError, FileChunk, FinishOptions, FormField, StartOptions, UploadFinished, UploadFinishing,
    UploadStarting,
};
pub use failure::http_status;
pub use future::{ForwardFuture, ResponseFuture};
pub use layer::{mode, UploadLayer};
pub use leaf::{UploadService, UploadServiceFuture};
#[cfg(feature = "axum")]
pub use results::MissingUploadedFiles;
pub use results::{RequestFailure, Stored, UploadedFile, UploadedFiles};
pub use service::Upload;
pub use sink::{FileSink, FileWriter, SinkFile, SinkFuture, UploadSink};
pub use tower_upload_state::UploadRegistry;

/// The boxed error request bodies' errors are converted into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the crate-private
/// multipart reader and file-name rules. Not an API: it may change in any release.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    use bytes::Bytes;
    use futures_util::FutureExt as _;

    /// One part of a multipart body, read whole.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Part {
        /// `Content-Disposition`'s `name`.
        pub name: Option<String>,
        /// The file name (`filename*`, continuations or `filename`), as sent.
        pub file_name: Option<String>,
        /// `Content-Type`, as sent.
        pub content_type: Option<String>,
        /// The size of the part's header block.
        pub header_len: usize,
        /// The part's body.
        pub body: Vec<u8>,
    }

    /// Reads `chunks`, in this order, as a multipart body with `boundary`: every part, or
    /// the first error's message.
    ///
    /// # Panics
    ///
    /// If the reader waits on the always-ready stream of `chunks` (it never should).
    pub fn read_multipart(chunks: Vec<Bytes>, boundary: &str) -> Result<Vec<Part>, String> {
        let stream =
            futures_util::stream::iter(chunks.into_iter().map(Ok::<_, crate::stream::BodyError>));
        let mut multipart = crate::multipart::Multipart::new(stream, boundary);
        let read = async move {
            let mut parts = Vec::new();
            while let Some(mut field) = multipart.next_field().await.map_err(|e| e.to_string())? {
                let mut part = Part {
                    name: field.name().map(str::to_owned),
                    file_name: field.file_name().map(str::to_owned),
                    content_type: field.content_type().map(str::to_owned),
                    header_len: field.header_len(),
                    body: Vec::new(),
                };
                while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
                    part.body.extend_from_slice(&chunk);
                }
                parts.push(part);
            }
            Ok(parts)
        };
        read.now_or_never()
            .expect("the reader waited on an always-ready stream")
    }

    /// The boundary of a `multipart/form-data` content type, if it has a valid one.
    pub fn boundary(content_type: &str) -> Option<&str> {
        crate::multipart::boundary(content_type).ok()
    }

    /// The name a client's file name is stored under, if it is usable.
    pub fn sanitize_file_name(raw: &str) -> Option<String> {
        crate::names::sanitize_file_name(raw).ok()
    }

    /// Whether `name` is one normal path component.
    pub fn is_single_normal_component(name: &str) -> bool {
        crate::names::is_single_normal_component(name)
    }
}
