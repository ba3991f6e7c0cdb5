//! [`UploadStatusService`]: the igUpload status handler (`IGUploadStatusHandler.ashx`) as a
//! tower service.
//!
//! It answers the commands the Ignite UI `igUpload` widget sends to its `progressUrl`,
//! reading the [`UploadRegistry`] that the upload layer writes:
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::{BodyExt, Empty};
//! use bytes::Bytes;
//! use tower::ServiceExt;
//! use tower_upload_state::{UploadInfo, UploadKey, UploadRegistry, UploadStatus};
//! use tower_upload_status::UploadStatusService;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = UploadRegistry::new();
//!
//! // What the upload layer does while a file streams in:
//! let upload = registry.begin(UploadInfo::new(UploadKey::parse("k1")?)).await?;
//! upload.set_status(UploadStatus::Started).await?;
//! upload.update(|info| info.size = Some(100));
//! upload.add_bytes(40);
//!
//! // What the widget asks meanwhile:
//! let service = UploadStatusService::new(registry.clone());
//! let request = Request::get("/upload/status?key=k1&command=status&_=1700000000")
//!     .body(Empty::<Bytes>::new())?;
//! let response = service.oneshot(request).await?;
//!
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(
//!     body,
//!     r#"{"status":1,"error":-1,"bytesUploaded":40,"size":100,"serverMessage":""}"#
//! );
//! # drop(upload);
//! # Ok(())
//! # }
//! ```
//!
//! # Mounting
//!
//! The service is a leaf: it never calls another service, never reads the request body, its
//! error type is [`Infallible`](std::convert::Infallible) and it is always ready. It does not
//! look at the path either, so mount it wherever the widget's `progressUrl` points, for
//! example with axum's `Router::route_service("/upload/status", service)`, or as the whole
//! service of a hyper connection. The path must not carry a query string of its own: the
//! widget appends `?key=...` to `progressUrl` by string concatenation.
//!
//! It answers `GET` and `POST` alike (the widget uses `GET`); cross-origin setups need a CORS
//! layer in front (the widget sends credentials, so the origin must be exact).
//!
//! # Protocol
//!
//! Every request names one upload key and one command: `?key=K&command=C`. Other query
//! parameters, such as jQuery's `_=<nonce>` cache buster, are ignored, and so is the
//! command's ASCII case. Keys and commands are percent-decoded before they are checked.
//!
//! | command | answer (200) |
//! |---|---|
//! | `status` | `{"status":S,"error":E,"bytesUploaded":N,"size":N,"serverMessage":"..."}` |
//! | `cancel` | asks the upload to stop, then the same object as `status`, as it was when asked |
//! | `fileSize` | `{"fileSize":N}`, once: the recorded size is removed when it is read |
//!
//! The status and error numbers are [`UploadStatus`](tower_upload_state::UploadStatus) and
//! [`FileError`](tower_upload_state::FileError) codes. A key the registry does not know (never
//! registered, or its record expired) is not an HTTP error, because the widget reads the
//! answer's body:
//!
//! - `status` and `cancel` answer status 3 (`NoSuchFile`) with error 5 (`KeyFileNotFound`):
//!   [`StatusAnswer::NO_SUCH_FILE`](tower_upload_state::StatusAnswer::NO_SUCH_FILE). The
//!   widget tolerates one such answer while an upload registers.
//! - `fileSize` answers `{"fileSize":null,"error":5}`. The widget reads
//!   `parseInt(data.fileSize)`; for `null` that is `NaN`, on which it changes nothing and
//!   waits for the status answers to bring the size. A `0` would make it draw a `0 B / 0 B`
//!   row, and any non-2xx answer would mark the file as failed before it was even sent.
//!
//! A `cancel` of a key that is not in flight (unknown, finished or failed) changes nothing
//! and answers the key's current state. A `cancel` of an upload streaming in this process
//! wakes it at once; it stops within one chunk and then reports status 4
//! (`CanceledByClientCommand`). The cancel answer itself still shows the state before the
//! upload noticed.
//!
//! # Owners
//!
//! When the registry binds uploads to owners
//! ([`UploadRegistry::with_owner`](tower_upload_state::UploadRegistry::with_owner)), the
//! service finds each request's owner with
//! [`UploadRegistry::owner_of`](tower_upload_state::UploadRegistry::owner_of) and applies the
//! registry's rule to every command: a key that belongs to someone else answers `status` and
//! `cancel` as an unknown key (status 3 / error 5) and is not canceled, and its `fileSize`
//! answer is neither shown nor consumed. Nothing needs configuring here.
//!
//! # Errors
//!
//! Requests the widget never sends get a 4xx answer, and a failing store a 503, each with a
//! JSON body `{"error":"<code>","message":"<sentence>"}`. The `error` code is stable and meant
//! for programs; the `message` is for people and may change.
//!
//! | HTTP | `error` | when |
//! |---|---|---|
//! | 400 | `missing_key` | no `key` parameter |
//! | 400 | `invalid_key` | the key is empty, too long, a `;` batch, or has a character outside `[A-Za-z0-9_.-]` |
//! | 400 | `missing_command` | no `command` parameter |
//! | 400 | `unknown_command` | a command other than `status`, `cancel` or `fileSize` |
//! | 400 | `bad_query` | `key`, `command` or `cid` given more than once, or a `cid` longer than 128 bytes |
//! | 405 | `method_not_allowed` | a method other than `GET` or `POST` (with `Allow: GET, POST`) |
//! | 503 | `store_unavailable` | the registry's [`ProgressStore`](tower_upload_state::ProgressStore) failed |
//!
//! The checks run in this order: method, query, key, command. The 503 message does not
//! repeat the store's error, which may name internal hosts; the error is logged with
//! [`tracing`](https://docs.rs/tracing) at `WARN` level instead (with the `tracing` feature).
//!
//! Every answer, errors included, has `Content-Type: application/json` and
//! `Cache-Control: no-store`.
//!
//! [`UploadRegistry`]: tower_upload_state::UploadRegistry

mod answer;
mod body;
mod future;
mod nginx;
mod query;
mod service;
mod watch;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use service::UploadStatusService;
