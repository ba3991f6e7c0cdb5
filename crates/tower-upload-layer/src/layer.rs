//! [`UploadLayer`]: configuration and the tower `Layer`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_upload_state::UploadRegistry;

use std::future::Future;

use crate::config::{Config, Forwarding, MimeFilter, OverwritePolicy};
use crate::events::{
    EventError, Events, FileChunk, FinishOptions, StartOptions, UploadFinished, UploadFinishing,
    UploadStarting,
};
use crate::file::{blocking, sweep_orphans};
use crate::sink::UploadSink;
use crate::Upload;

/// The upload module as a tower [`Layer`]: wraps a service in [`Upload`].
///
/// Cloning is cheap (the configuration is behind an `Arc`); every clone shares the
/// concurrency limit.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_upload_layer::{OverwritePolicy, UploadLayer};
/// use tower_upload_state::UploadRegistry;
///
/// let registry = UploadRegistry::new();
/// let layer = UploadLayer::new(registry.clone())
///     .upload_path("/files/upload")
///     .upload_dir(std::env::temp_dir().join("my-app-uploads"))
///     .max_file_size(Some(100 * 1024 * 1024))
///     .allowed_mime_types("image/*|application/pdf")
///     .overwrite(OverwritePolicy::UniqueSuffix)
///     .idle_timeout(Some(Duration::from_secs(60)));
/// # let _ = layer;
/// ```
pub struct UploadLayer<M = Answer> {
    config: Arc<Config>,
    mode: PhantomData<fn() -> M>,
}

impl<M> Clone for UploadLayer<M> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            mode: PhantomData,
        }
    }
}

impl<M> fmt::Debug for UploadLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl UploadLayer {
    /// A layer with the defaults, recording uploads in `registry` (give a clone of it to the
    /// status service).
    ///
    /// | setting | default |
    /// |---|---|
    /// | [`upload_path`](Self::upload_path) | `/upload` |
    /// | [`upload_dir`](Self::upload_dir) | `tower-upload` in the system temp folder |
    /// | [`temp_dir`](Self::temp_dir) | `.tower-upload-tmp` inside the upload folder |
    /// | [`max_file_size`](Self::max_file_size) | 4 MiB |
    /// | [`max_request_size`](Self::max_request_size) | derived from the other limits |
    /// | [`max_files_per_request`](Self::max_files_per_request) | 32 |
    /// | [`max_concurrent_uploads`](Self::max_concurrent_uploads) | 256 |
    /// | [`max_part_header_size`](Self::max_part_header_size) | 16 KiB |
    /// | [`max_fields`](Self::max_fields) / [`max_field_size`](Self::max_field_size) | 64 / 64 KiB |
    /// | [`allowed_mime_types`](Self::allowed_mime_types) | `*` |
    /// | [`sniff_mime_types`](Self::sniff_mime_types) | off |
    /// | [`buffer_size`](Self::buffer_size) | 256 KiB |
    /// | [`idle_timeout`](Self::idle_timeout) | 30 s |
    /// | [`overwrite`](Self::overwrite) | [`OverwritePolicy::UniqueSuffix`] |
    #[must_use]
    pub fn new(registry: UploadRegistry) -> Self {
        Self {
            config: Arc::new(Config::new(registry)),
            mode: PhantomData,
        }
    }

    /// Forward mode: after the files of an upload request are stored (or refused), the layer
    /// calls the inner service with the request (its body consumed, an empty one in its place)
    /// and an [`UploadedFiles`](crate::UploadedFiles) request extension; the inner handler
    /// writes the answer. With the `axum` feature, `UploadedFiles` is an extractor.
    ///
    /// Requests refused before any file (not multipart, a bad key, a key in use, too many
    /// uploads at once) are still answered by the layer. Refused files reach the handler too,
    /// marked, with the request's [`failure`](crate::UploadedFiles::failure); see
    /// [`answer_refusals`](UploadLayer::answer_refusals) to keep the layer's own error
    /// answers.
    ///
    /// The inner service is cloned per upload request and called when the upload is over;
    /// the request body type must be [`Default`] (axum's `Body`, http-body-util's bodies).
    ///
    /// # Example
    ///
    /// ```
    /// use axum::{routing::post, Extension, Router};
    /// use tower_upload_layer::{UploadLayer, UploadedFiles};
    /// use tower_upload_state::UploadRegistry;
    ///
    /// // With the `axum` feature, `files: UploadedFiles` is an extractor of its own.
    /// async fn uploaded(Extension(files): Extension<UploadedFiles>) -> String {
    ///     format!("{} file(s) stored", files.stored().count())
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/upload", post(uploaded))
    ///     .layer(UploadLayer::new(UploadRegistry::new()).forward());
    /// # let _ = app;
    /// ```
    #[must_use]
    pub fn forward(mut self) -> UploadLayer<Forward> {
        self.config().forward = Some(Forwarding::default());
        UploadLayer {
            config: self.config,
            mode: PhantomData,
        }
    }

    /// The same configuration as a leaf service for one route: see [`UploadService`](crate::UploadService) for when
    /// to use it instead of the layer. The upload path ([`upload_path`](Self::upload_path)) is
    /// not used: the router decides which requests reach the service.
    #[must_use]
    pub fn into_service(self) -> crate::UploadService {
        crate::UploadService::new(self.config)
    }
}

impl UploadLayer<Forward> {
    /// In forward mode, answer failed upload requests with the layer's own JSON answers (as
    /// without forward mode) and forward successes only.
    #[must_use]
    pub fn answer_refusals(mut self, answer: bool) -> Self {
        if let Some(forward) = self.config().forward.as_mut() {
            forward.answer_refusals = answer;
        }
        self
    }
}

impl<M> UploadLayer<M> {
    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The registry uploads are recorded in.
    #[must_use]
    pub fn registry(&self) -> &UploadRegistry {
        &self.config.registry
    }

    /// The URL path whose `POST`s are uploads (igUpload's `uploadUrl`). Compared exactly with
    /// the request's path; the widget appends `?key=...` to it, so give a plain path.
    ///
    /// # Panics
    ///
    /// If `path` does not start with `/` or contains a `?`.
    #[must_use]
    pub fn upload_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        assert!(
            path.starts_with('/') && !path.contains('?'),
            "the upload path must be a plain absolute path such as /upload, got {path:?}"
        );
        self.config().upload_path = path;
        self
    }

    /// Where finished files are stored (igUpload's `fileUploadPath`). Created on the first
    /// upload if missing.
    #[must_use]
    pub fn upload_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config().upload_dir = dir.into();
        self
    }

    /// Where files are written while they stream in. Must be on the same file system as the
    /// upload folder, so that the final move is an atomic rename.
    #[must_use]
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config().temp_dir = Some(dir.into());
        self
    }

    /// The largest file accepted (igUpload's `maxFileSizeLimit`); `None` for no limit. A larger
    /// file is stopped at the limit: 413, status 5, error 2, nothing kept.
    #[must_use]
    pub fn max_file_size(mut self, limit: Option<u64>) -> Self {
        self.config().max_file_size = limit;
        self
    }

    /// The largest request body; `None` (the default) derives the bound from the file, field
    /// and header limits.
    #[must_use]
    pub fn max_request_size(mut self, limit: Option<u64>) -> Self {
        self.config().max_request_size = limit;
        self
    }

    /// The most files (keys) one request may carry.
    #[must_use]
    pub fn max_files_per_request(mut self, max: usize) -> Self {
        self.config().max_files_per_request = max.max(1);
        self
    }

    /// The most upload requests streaming at once; beyond it, 503.
    #[must_use]
    pub fn max_concurrent_uploads(mut self, max: usize) -> Self {
        let config = self.config();
        config.max_concurrent_uploads = max;
        config.limiter = Arc::new(Semaphore::new(max));
        self
    }

    /// The most bytes of one part's headers (also bounds the preamble before the first
    /// part); beyond it, 431.
    #[must_use]
    pub fn max_part_header_size(mut self, max: usize) -> Self {
        self.config().max_part_header_size = max;
        self
    }

    /// The most non-file form fields per request.
    #[must_use]
    pub fn max_fields(mut self, max: usize) -> Self {
        self.config().max_fields = max;
        self
    }

    /// The most bytes of one non-file form field.
    #[must_use]
    pub fn max_field_size(mut self, max: usize) -> Self {
        self.config().max_field_size = max;
        self
    }

    /// The MIME types a file part may declare, in igUpload's `allowedMIMEType` form: `*`, or
    /// `image/png|image/jpeg` (`image/*` allows a whole family). Others are refused with 415,
    /// status 6, error 1.
    #[must_use]
    pub fn allowed_mime_types(mut self, types: impl AsRef<str>) -> Self {
        let filter: MimeFilter = types.as_ref().parse().unwrap_or_default();
        self.config().allowed_mime_types = filter;
        self
    }

    /// Also checks a file's first bytes against [`allowed_mime_types`](Self::allowed_mime_types),
    /// so that a client cannot pass an executable or an HTML page off as an image by
    /// declaring `image/png`. Known signatures (images, PDF, archives, executables, audio,
    /// video, HTML, SVG, XML) must be allowed types; content of no known signature is judged
    /// by its declared type alone, and ZIP content passes when an allowed ZIP-based type
    /// (an office document, a JAR, an EPUB) was declared. Off by default; no effect while every
    /// type is allowed. A refusal is 415, status 6, error 1, the file deleted.
    #[must_use]
    pub fn sniff_mime_types(mut self, sniff: bool) -> Self {
        self.config().sniff_mime_types = sniff;
        self
    }

    /// How many bytes are gathered before a write (igUpload's `bufferSize`). Each upload holds
    /// at most about twice this in memory.
    ///
    /// # Panics
    ///
    /// If `bytes` is 0.
    #[must_use]
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "buffer_size must be at least 1 byte");
        self.config().buffer_size = bytes;
        self
    }

    /// How long a request body may send nothing before the upload is cut off (408, status 6);
    /// `None` to wait forever.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config().idle_timeout = timeout;
        self
    }

    /// The slowest a request body may arrive: `Some((bytes_per_second, window))` cuts off an
    /// upload that brought fewer than `bytes_per_second` per second over a `window` of time
    /// spent waiting for its body (408, status 6, error 7; a retry may start over). Time the
    /// server spends elsewhere (writing, event handlers) does not count. `None` turns the
    /// check off. Default: [`DEFAULT_MIN_TRANSFER_RATE`](crate::DEFAULT_MIN_TRANSFER_RATE),
    /// 1 KiB/s over 60 s: a client dripping a byte every few seconds no longer holds a
    /// permit forever.
    #[must_use]
    pub fn min_transfer_rate(mut self, rate: Option<(u64, Duration)>) -> Self {
        self.config().min_transfer_rate = rate;
        self
    }

    /// What happens when the final name is taken.
    #[must_use]
    pub fn overwrite(mut self, policy: OverwritePolicy) -> Self {
        self.config().overwrite = policy;
        self
    }

    /// `fsync` each file's data before it gets its final name, and the folder after the
    /// rename, so that a stored file survives a power loss. Off by default: it costs about
    /// half the throughput on this project's benchmark machine (see BENCHMARKS.md).
    #[must_use]
    pub fn durable(mut self, durable: bool) -> Self {
        self.config().durable = durable;
        self
    }

    /// The permissions of stored files (Unix mode bits, e.g. `0o640`). By default they keep
    /// the temp file's `0o600`. Ignored on other platforms.
    #[must_use]
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.config().file_mode = Some(mode & 0o7777);
        self
    }

    /// How old a temp file must be before the orphan sweep deletes it, and how often the
    /// sweep runs (default [`DEFAULT_ORPHAN_AGE`](crate::DEFAULT_ORPHAN_AGE), an hour). The
    /// sweep never deletes a temp file a live upload holds, whatever its age (each holds a
    /// file lock, also seen by other instances sharing the folder).
    #[must_use]
    pub fn orphan_age(mut self, age: Duration) -> Self {
        self.config().orphan_age = age;
        self
    }

    fn events(&mut self) -> &mut Events {
        Arc::make_mut(self.config().events.get_or_insert_with(Default::default))
    }

    /// Registers an `upload_starting` handler: it runs after a file part's headers, before
    /// the first byte is written. It sees the key, `cid`, file name, declared type and size,
    /// the request headers and the form fields before the part; it may choose the final name
    /// and folder and set the user's message ([`StartOptions`]), or refuse the upload with
    /// [`EventError::veto`] (status 7, error 10, HTTP 403, the body not read further).
    ///
    /// # Example
    ///
    /// Server-side validation: refuse by extension and by declared size, with a message.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Request;
    /// use http_body_util::{BodyExt, Full};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_upload_layer::{EventError, StartOptions, UploadLayer, UploadStarting};
    /// use tower_upload_state::UploadRegistry;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let layer = UploadLayer::new(UploadRegistry::new())
    ///     .upload_dir(dir.path())
    ///     .on_upload_starting(|event: UploadStarting| async move {
    ///         if !event.file_name.to_ascii_lowercase().ends_with(".pdf") {
    ///             return Err(EventError::veto("only PDF files are accepted"));
    ///         }
    ///         if event.declared_size.is_some_and(|size| size > 10 << 20) {
    ///             return Err(EventError::veto("PDF files must be under 10 MiB"));
    ///         }
    ///         Ok(StartOptions::new().server_message("PDF received"))
    ///     });
    /// let app = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
    /// }));
    ///
    /// let body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"setup.exe\"\r\n\r\n\
    ///             MZ...\r\n--b--\r\n";
    /// let request = Request::post("/upload?key=k1")
    ///     .header("content-type", "multipart/form-data; boundary=b")
    ///     .body(Full::new(Bytes::from(body)))?;
    /// let response = app.oneshot(request).await?;
    /// assert_eq!(response.status(), 403);
    /// let answer: serde_json::Value =
    ///     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    /// assert_eq!((answer["status"].as_u64(), answer["error"].as_u64()), (Some(7), Some(10)));
    /// assert_eq!(answer["serverMessage"], "only PDF files are accepted");
    /// assert_eq!(std::fs::read_dir(dir.path())?.filter(|e| e.as_ref().unwrap().path().is_file()).count(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn on_upload_starting<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(UploadStarting) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StartOptions, EventError>> + Send + 'static,
    {
        self.events().on_starting(None, handler);
        self
    }

    /// Like [`on_upload_starting`](Self::on_upload_starting), for uploads whose `cid` (the
    /// widget's control id) is `cid` only.
    #[must_use]
    pub fn on_upload_starting_for<F, Fut>(mut self, cid: impl Into<String>, handler: F) -> Self
    where
        F: Fn(UploadStarting) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StartOptions, EventError>> + Send + 'static,
    {
        self.events().on_starting(Some(cid.into()), handler);
        self
    }

    /// Registers a `file_uploading` handler, called with every chunk as it arrives (before it
    /// is written). An error fails the upload (a veto: status 7; anything else: status 6).
    #[must_use]
    pub fn on_file_uploading<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(FileChunk) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), EventError>> + Send + 'static,
    {
        self.events().on_uploading(None, handler);
        self
    }

    /// Like [`on_file_uploading`](Self::on_file_uploading), for one `cid` only.
    #[must_use]
    pub fn on_file_uploading_for<F, Fut>(mut self, cid: impl Into<String>, handler: F) -> Self
    where
        F: Fn(FileChunk) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), EventError>> + Send + 'static,
    {
        self.events().on_uploading(Some(cid.into()), handler);
        self
    }

    /// Registers an `upload_finishing` handler: every byte is in under the temp name (or in
    /// memory), the file is closed. It may inspect the file, move or delete it (answer
    /// [`FinishOptions::file_taken`]), set the user's message, or veto (the temp file is
    /// deleted, status 7, error 10).
    ///
    /// # Example
    ///
    /// Move accepted files into the application's own storage.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Request;
    /// use http_body_util::Full;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_upload_layer::{EventError, FinishOptions, UploadFinishing, UploadLayer};
    /// use tower_upload_state::{UploadKey, UploadRegistry};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let uploads = tempfile::tempdir()?;
    /// let archive = tempfile::tempdir()?.keep();
    /// let registry = UploadRegistry::new();
    /// let layer = UploadLayer::new(registry.clone())
    ///     .upload_dir(uploads.path())
    ///     .on_upload_finishing({
    ///         let archive = archive.clone();
    ///         move |event: UploadFinishing| {
    ///             let archive = archive.clone();
    ///             async move {
    ///                 let temp = event.temp_path.expect("the disk sink has a temp file");
    ///                 tokio::fs::rename(&temp, archive.join(&event.stored_name)).await?;
    ///                 Ok::<_, EventError>(FinishOptions::new().file_taken().server_message("archived"))
    ///             }
    ///         }
    ///     });
    /// let app = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
    /// }));
    ///
    /// let body = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"report.txt\"\r\n\r\n\
    ///             quarterly numbers\r\n--b--\r\n";
    /// let request = Request::post("/upload?key=k1")
    ///     .header("content-type", "multipart/form-data; boundary=b")
    ///     .body(Full::new(Bytes::from(body)))?;
    /// assert_eq!(app.oneshot(request).await?.status(), 200);
    /// assert_eq!(std::fs::read_to_string(archive.join("report.txt"))?, "quarterly numbers");
    /// let info = registry.snapshot(&UploadKey::parse("k1")?).await?.unwrap();
    /// assert_eq!(info.server_message.as_deref(), Some("archived"));
    /// # std::fs::remove_dir_all(&archive)?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn on_upload_finishing<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(UploadFinishing) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<FinishOptions, EventError>> + Send + 'static,
    {
        self.events().on_finishing(None, handler);
        self
    }

    /// Like [`on_upload_finishing`](Self::on_upload_finishing), for one `cid` only.
    #[must_use]
    pub fn on_upload_finishing_for<F, Fut>(mut self, cid: impl Into<String>, handler: F) -> Self
    where
        F: Fn(UploadFinishing) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<FinishOptions, EventError>> + Send + 'static,
    {
        self.events().on_finishing(Some(cid.into()), handler);
        self
    }

    /// Registers an `upload_finished` handler: it runs for every upload that ends, stored,
    /// vetoed, failed, canceled or disconnected, with its final record, once the request is
    /// done (so it sees every form field). It runs exactly once per upload, in a task of its
    /// own: the answer never waits for it, and a dropped request future (the client went
    /// away) still announces its uploads. For audits and clean-up; a panic in it is
    /// contained.
    #[must_use]
    pub fn on_upload_finished<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(UploadFinished) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events().on_finished(None, handler);
        self
    }

    /// Like [`on_upload_finished`](Self::on_upload_finished), for one `cid` only.
    #[must_use]
    pub fn on_upload_finished_for<F, Fut>(mut self, cid: impl Into<String>, handler: F) -> Self
    where
        F: Fn(UploadFinished) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events().on_finished(Some(cid.into()), handler);
        self
    }

    /// Answers every upload request that got as far as its files with `303 See Other` to
    /// `location` instead of JSON: what a plain HTML form (no JavaScript) needs, so that the
    /// browser shows a page of yours and a reload does not post the files again.
    ///
    /// The location gets the outcome in its query: `keys=K1;K2` (the keys, in part order,
    /// for status queries) after a success; `status=S&error=E&keys=...` after a failure.
    /// Requests refused before any file (not multipart, a bad key) keep their JSON answers.
    ///
    /// ```
    /// use tower_upload_layer::UploadLayer;
    /// use tower_upload_state::UploadRegistry;
    ///
    /// let layer = UploadLayer::new(UploadRegistry::new()).redirect_to("/uploaded");
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// If `location` is not a valid header value.
    #[must_use]
    pub fn redirect_to(mut self, location: impl Into<String>) -> Self {
        let location = location.into();
        assert!(
            http::HeaderValue::from_str(&location).is_ok(),
            "redirect_to needs a valid Location value"
        );
        self.config().redirect = Some(location);
        self
    }

    /// Computes a digest of every file while its bytes pass (off by default: nothing is
    /// hashed then). The value, `sha-256=:<base64>:` as RFC 9530 writes it, is in the upload
    /// answer (`"digest"`, and a `Repr-Digest` header for a one-file request), the status
    /// answer, `upload_finishing`, the final record and [`UploadedFiles`](crate::UploadedFiles).
    ///
    /// Independently of this setting, a file part whose headers carry `Content-Digest` or
    /// `Repr-Digest` (`sha-256` or `sha-512`) is checked against it: a mismatch is refused
    /// with 400, status 6 / error 7, nothing kept (a retry may start over).
    ///
    /// ```
    /// use tower_upload_layer::{DigestAlgorithm, UploadLayer};
    /// use tower_upload_state::UploadRegistry;
    ///
    /// let layer = UploadLayer::new(UploadRegistry::new()).digest(DigestAlgorithm::Sha256);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn digest(mut self, algorithm: crate::DigestAlgorithm) -> Self {
        self.config().digest = Some(algorithm);
        self
    }

    /// Where file bytes go: the disk (default), memory, or a custom [`FileSink`](crate::FileSink).
    #[must_use]
    pub fn sink(mut self, sink: UploadSink) -> Self {
        self.config().sink = sink;
        self
    }

    /// Binds every upload to an owner taken from the request (a session cookie, a user id).
    ///
    /// Deprecated: owner binding is defined once, on the registry
    /// ([`UploadRegistry::with_owner`]), which both the layer and the status service apply.
    /// This sets the binding of the layer's registry (and so of every clone of it).
    ///
    /// ```
    /// use tower_upload_layer::UploadLayer;
    /// use tower_upload_state::UploadRegistry;
    ///
    /// fn session(parts: &http::request::Parts) -> Option<String> {
    ///     let cookies = parts.headers.get("cookie")?.to_str().ok()?;
    ///     cookies
    ///         .split(';')
    ///         .find_map(|c| c.trim().strip_prefix("session="))
    ///         .map(str::to_owned)
    /// }
    ///
    /// // Preferred: the registry carries the binding for both services.
    /// let registry = UploadRegistry::new().with_owner(session);
    /// let layer = UploadLayer::new(registry);
    /// # let _ = layer;
    /// ```
    #[deprecated(since = "0.1.0", note = "use `UploadRegistry::with_owner`")]
    #[must_use]
    pub fn owner<F>(self, owner: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        let _ = self.config.registry.clone().with_owner(owner);
        self
    }

    // ---- Resumable uploads (tus 1.0, the IETF draft) -----------------------------------

    /// Serves resumable uploads under `path` (e.g. `"/files/"`): tus 1.0.0 (core, creation,
    /// creation-with-upload, creation-defer-length, termination, expiration, checksum) and
    /// the IETF resumable-upload draft. `POST {path}` creates an upload at `{path}{id}`;
    /// `HEAD`, `PATCH` and `DELETE` on it resume, append and terminate. `GET` requests pass
    /// through to the inner service. The same limits, events, owner binding and registry
    /// apply as for multipart uploads: `max_file_size` is `Tus-Max-Size`,
    /// `allowed_mime_types` applies to the `filetype` metadata, the id is the registry key.
    ///
    /// Resumable uploads need the disk sink: with another sink, creation answers 501.
    #[must_use]
    pub fn resumable_path(mut self, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        let config = self.config();
        let expiration = config
            .resumable
            .as_ref()
            .map_or(Some(crate::DEFAULT_RESUMABLE_EXPIRATION), |r| r.expiration);
        config.resumable = Some(crate::config::ResumableConfig {
            path,
            expiration,
            next_sweep: Arc::default(),
        });
        self
    }

    /// How long an unfinished resumable upload is kept after its last request (default
    /// [`DEFAULT_RESUMABLE_EXPIRATION`](crate::DEFAULT_RESUMABLE_EXPIRATION), a day; `None`
    /// keeps it until finished or terminated). Expired uploads answer 404 and are deleted,
    /// data and record, by a sweep that runs at most once a minute as uploads are created
    /// (or by [`sweep_expired`](Self::sweep_expired)). Call after
    /// [`resumable_path`](Self::resumable_path).
    #[must_use]
    pub fn resumable_expiration(mut self, expiration: Option<Duration>) -> Self {
        if let Some(resumable) = self.config().resumable.as_mut() {
            resumable.expiration = expiration;
        }
        self
    }

    /// Deletes the resumable uploads that expired, data and record; returns how many.
    ///
    /// # Errors
    ///
    /// The folder of resumable uploads cannot be read (a missing folder is not an error).
    pub async fn sweep_expired(&self) -> io::Result<usize> {
        crate::front::tus::sweep_expired(Arc::clone(&self.config)).await
    }

    /// Deletes temp files that a crash or kill left in the temp folder: older than
    /// [`orphan_age`](Self::orphan_age) and held by no live upload. Runs by itself on the
    /// first upload and then once per `orphan_age`; call it at start-up to run it sooner.
    /// Returns how many files were deleted.
    ///
    /// # Errors
    ///
    /// The temp folder cannot be read (a missing folder is not an error).
    pub async fn sweep_orphans(&self) -> io::Result<usize> {
        let dir = self.config.temp_dir();
        let min_age = self.config.orphan_age;
        let next = crate::front::now_millis().saturating_add(min_age.as_millis() as u64);
        self.config
            .next_sweep
            .store(next, std::sync::atomic::Ordering::Relaxed);
        blocking(move || sweep_orphans(&dir, min_age)).await
    }
}

impl<S, M> Layer<S> for UploadLayer<M> {
    type Service = Upload<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Upload::from_config(inner, Arc::clone(&self.config))
    }
}

/// Whether the layer answers upload requests itself or forwards their results.
pub mod mode {
    /// The layer answers every upload request itself (the default).
    #[derive(Debug)]
    pub enum Answer {}

    /// The layer forwards each upload request's results to the inner service
    /// ([`UploadLayer::forward`](crate::UploadLayer::forward)).
    #[derive(Debug)]
    pub enum Forward {}
}

use mode::{Answer, Forward};
