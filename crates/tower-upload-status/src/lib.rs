//! [`UploadStatusService`]: the igUpload status handler (`IGUploadStatusHandler.ashx`) as a
//! tower service.
//!
//! It answers the commands the Ignite UI `igUpload` widget sends to its `progressUrl`,
//! reading the [`UploadRegistry`] that the upload layer writes; it also pushes progress to
//! any client as Server-Sent Events (`command=watch`, see
//! [Pushed progress](#pushed-progress-server-sent-events)) and answers clients of nginx's
//! upload progress module (`?X-Progress-ID=K`):
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
//! | `watch` | a stream of Server-Sent Events: see [Pushed progress](#pushed-progress-server-sent-events) |
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
//! # Pushed progress (Server-Sent Events)
//!
//! `GET ?key=K&command=watch` (or `command=status` with `Accept: text/event-stream`, as an
//! `EventSource` sends it) answers `Content-Type: text/event-stream` instead of polling:
//!
//! ```text
//! retry: 2000
//! id: 1
//! data: {"status":1,"error":-1,"bytesUploaded":65536,"size":1048576,"serverMessage":""}
//!
//! id: 2
//! data: {"status":1,"error":-1,"bytesUploaded":524288,"size":1048576,"serverMessage":""}
//!
//! id: end
//! data: {"status":2,"error":-1,"bytesUploaded":1048576,"size":1048576,"serverMessage":""}
//! ```
//!
//! - The first event, at once, is the key's current state; then one event per change, with
//!   the same object as the `status` answer. Byte counts are coalesced to at most one event
//!   per [watch interval](UploadStatusService::watch_interval) (250 ms by default); a change
//!   of status, error or message is pushed at once.
//! - The last event has `id: end` and a terminal status (2, 4 to 8); then the stream ends.
//!   An unknown key (or another owner's, or an abandoned claim) is one status-3 event
//!   (`NoSuchFile`, error 5) with `id: end`, and the end: a client that opens the stream
//!   before its upload is registered opens it again a moment later.
//! - A batch, `key=K1;K2;K3&command=watch` (the keys of the widget's `useSingleRequest`),
//!   is one stream:
//!   every event then starts with a `"key"` member naming its upload, and the stream ends
//!   after the last key's terminal event.
//! - A comment line (`:`) is sent after 15 s of silence
//!   ([`heartbeat_interval`](UploadStatusService::heartbeat_interval)), so that proxies do not
//!   close an idle stream; `X-Accel-Buffering: no` asks nginx not to buffer it.
//! - Reconnects: ids count events. A reconnecting `EventSource` sends `Last-Event-ID`; the
//!   stream then goes on numbering from it, and its first event is again the current state,
//!   at once. A reconnect after the last event (`Last-Event-ID: end`) is answered
//!   `204 No Content`, which tells an `EventSource` to stop reconnecting.
//! - Bounds: at most [`max_watchers`](UploadStatusService::max_watchers) streams are open at
//!   once (10 000 by default; over every clone of the service); one more is answered 503
//!   `too_many_watchers` with `Retry-After: 5` (polling still works). A stream holds at most
//!   [`watch_buffer`](UploadStatusService::watch_buffer) unsent events (8 by default): a
//!   client that stops reading is dropped (the stream ends, its memory and its place are
//!   freed) and its `EventSource` reconnects to the current state. A client that goes away
//!   frees its place at once.
//! - Every kind of upload is watched alike: whatever the front-end, progress comes from the
//!   registry. Watching costs the upload nothing per chunk: a stream looks at the upload's
//!   byte counter at its interval, and is woken by the registry on a change of status.
//! - Across instances: with a shared store (the Redis store), a stream on instance B follows
//!   an upload streaming on instance A through the saves A publishes (at most one per the
//!   store's progress interval, 500 ms by default, plus each change of status at once): an
//!   update reaches B's watchers at most one progress interval plus one Redis round trip
//!   plus one watch interval after the bytes arrived on A (about 0.75 s by default), a
//!   status change one round trip after it happened. Records are also reloaded from the
//!   store every 5 s, in case a published save was lost.
//!
//! In a page:
//!
//! ```js
//! const events = new EventSource(`/status?key=${key}&command=watch`);
//! events.onmessage = (event) => {
//!   const answer = JSON.parse(event.data);
//!   showProgress(answer.bytesUploaded, answer.size, answer.status);
//!   if (event.lastEventId === "end") events.close();
//! };
//! ```
//!
//! The stream is a [`ResponseBody`], the body type of every answer of this service.
//!
//! # nginx's upload progress dialect
//!
//! Clients written for nginx's upload progress module ask with `X-Progress-ID` instead of
//! `key`, as a query parameter or a header (`GET /progress?X-Progress-ID=K`), and get the
//! module's JSON answer from the same registry:
//!
//! | upload | answer |
//! |---|---|
//! | unknown (or another owner's), or not started | `{"state":"starting"}` |
//! | streaming (status 1 or 9) | `{"state":"uploading","received":N,"size":M}` |
//! | finished (2) | `{"state":"done"}` |
//! | failed (4 to 8) | `{"state":"error","status":CODE}`: the HTTP status of the upload's answer, 413 for a file too large, 403 for a veto, 409 for a cancel, 400/415/500 for a failure, 499 for a disconnect |
//!
//! With `callback=NAME` the answer is JSONP, `NAME({...});` with
//! `Content-Type: application/javascript`; the name must be a plain (dotted) JavaScript name
//! of at most 64 characters, anything else is a 400. The upload itself names its key with
//! `key` (or, through the upload layer, `X-Progress-ID`).
//!
//! # Owners
//!
//! When the registry binds uploads to owners
//! ([`UploadRegistry::with_owner`](tower_upload_state::UploadRegistry::with_owner)), the
//! service finds each request's owner with
//! [`UploadRegistry::owner_of`](tower_upload_state::UploadRegistry::owner_of) and applies the
//! registry's rule to every command: a key that belongs to someone else answers `status` and
//! `cancel` as an unknown key (status 3 / error 5) and is not canceled, and its `fileSize`
//! answer is neither shown nor consumed; a `watch` stream or an `X-Progress-ID` question
//! sees another owner's key as unknown. Nothing needs configuring here.
//!
//! # Errors
//!
//! Requests the widget never sends get a 4xx answer, and a failing store a 503, each with a
//! JSON body `{"error":"<code>","message":"<sentence>"}`. The `error` code is stable and meant
//! for programs; the `message` is for people and may change.
//!
//! | HTTP | `error` | when |
//! |---|---|---|
//! | 400 | `missing_key` | no `key` (nor `X-Progress-ID`) parameter |
//! | 400 | `invalid_key` | the key is empty, too long, a `;` batch, or has a character outside `[A-Za-z0-9_.-]` |
//! | 400 | `missing_command` | no `command` parameter |
//! | 400 | `unknown_command` | a command other than `status`, `cancel`, `fileSize` or `watch` |
//! | 400 | `bad_query` | `key`, `command`, `cid`, `X-Progress-ID` or `callback` given more than once, a `cid` longer than 128 bytes, or a `callback` that is not a plain name |
//! | 405 | `method_not_allowed` | a method other than `GET` or `POST` (with `Allow: GET, POST`) |
//! | 503 | `too_many_watchers` | a `watch` beyond [`max_watchers`](UploadStatusService::max_watchers) (with `Retry-After: 5`) |
//! | 503 | `store_unavailable` | the registry's [`ProgressStore`](tower_upload_state::ProgressStore) failed |
//!
//! The checks run in this order: method, query, key, command. The 503 message does not
//! repeat the store's error, which may name internal hosts; the error is logged with
//! [`tracing`](https://docs.rs/tracing) at `WARN` level instead (with the `tracing` feature).
//!
//! Every answer, errors included, has `Content-Type: application/json` (event streams
//! `text/event-stream`, JSONP `application/javascript`) and `Cache-Control: no-store`.
//! `invalid_key` also covers a bad batch in `watch` (an empty, repeated or 257th key).
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
