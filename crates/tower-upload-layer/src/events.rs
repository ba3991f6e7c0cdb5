//! Server events: the application takes part in every upload (igUpload's `UploadStarting`,
//! `FileUploading`, `UploadFinishing` and `UploadFinished`).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use tower_upload_state::{UploadInfo, UploadKey};

use crate::BoxError;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A non-file field of the upload request (igUpload's `AdditionalDataFields`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormField {
    /// The field's name.
    pub name: String,
    /// Its value (invalid UTF-8 replaced).
    pub value: String,
}

/// What `upload_starting` handlers see: the part's headers are in, no byte of the file is
/// written yet.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UploadStarting {
    /// The upload's key.
    pub key: UploadKey,
    /// The widget's control id.
    pub cid: Option<String>,
    /// The file name as the client sent it.
    pub file_name: String,
    /// The name the file will be stored under (sanitised) unless a handler changes it.
    pub stored_name: String,
    /// The MIME type the client declared for the part.
    pub mime_type: String,
    /// The request's `Content-Length` when the request carries one file (an upper bound of
    /// the file's size).
    pub declared_size: Option<u64>,
    /// The request's head: method, URI, headers (cookies, authorization...) and the
    /// extensions that layers before this one added (an authenticated user, a request id).
    /// Shared by every event of the request, not copied.
    pub request: Arc<Parts>,
    /// The non-file fields that came before this file part (shared by every event of the
    /// request, not copied per event).
    pub fields: Arc<Vec<FormField>>,
}

/// What an `upload_starting` handler decides when it lets the upload go on.
///
/// ```
/// use tower_upload_layer::StartOptions;
///
/// let options = StartOptions::new()
///     .file_name("avatar.png")
///     .folder("users/42")
///     .server_message("thanks!");
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// Store the file under this name (sanitised again) instead of the client's.
    pub file_name: Option<String>,
    /// Store the file in this folder, relative to the upload folder (created if missing; it
    /// may not leave the upload folder).
    pub folder: Option<PathBuf>,
    /// A message for the user, shown by the widget with the status.
    pub server_message: Option<String>,
}

impl StartOptions {
    /// Go on, changing nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Store the file under `name`.
    #[must_use]
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = Some(name.into());
        self
    }

    /// Store the file in `folder`, relative to the upload folder.
    #[must_use]
    pub fn folder(mut self, folder: impl Into<PathBuf>) -> Self {
        self.folder = Some(folder.into());
        self
    }

    /// Set the message the user sees.
    #[must_use]
    pub fn server_message(mut self, message: impl Into<String>) -> Self {
        self.server_message = Some(message.into());
        self
    }

    fn merge(&mut self, later: Self) {
        if later.file_name.is_some() {
            self.file_name = later.file_name;
        }
        if later.folder.is_some() {
            self.folder = later.folder;
        }
        if later.server_message.is_some() {
            self.server_message = later.server_message;
        }
    }
}

/// A chunk of a file as it arrives (igUpload's `FileUploading`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FileChunk {
    /// The upload's key.
    pub key: UploadKey,
    /// The widget's control id.
    pub cid: Option<String>,
    /// Where the chunk starts in the file.
    pub offset: u64,
    /// The bytes (a cheap, reference-counted view).
    pub data: Bytes,
}

/// What `upload_finishing` handlers see: every byte is in and the file is closed, before it
/// gets its final name.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UploadFinishing {
    /// The upload's key.
    pub key: UploadKey,
    /// The widget's control id.
    pub cid: Option<String>,
    /// The file name as the client sent it.
    pub file_name: String,
    /// The name the file will be stored under.
    pub stored_name: String,
    /// The declared MIME type.
    pub mime_type: String,
    /// The file's exact size.
    pub size: u64,
    /// The file's digest (`sha-256=:<base64>:`) when [digests](crate::UploadLayer::digest) are
    /// on.
    pub digest: Option<String>,
    /// The temp file (disk sink): inspect it, or move or delete it and answer
    /// [`FinishOptions::file_taken`].
    pub temp_path: Option<PathBuf>,
    /// The whole file (in-memory sink).
    pub data: Option<Bytes>,
    /// Where a custom sink stored the file (e.g. the object key of
    /// [`ObjectStoreSink`](crate::UploadSink::Custom)).
    pub location: Option<String>,
    /// The request's head (method, URI, headers, extensions), shared by every event of the
    /// request.
    pub request: Arc<Parts>,
    /// The non-file fields received so far (those before the file part, for the widget).
    pub fields: Arc<Vec<FormField>>,
}

/// What an `upload_finishing` handler decides when it accepts the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FinishOptions {
    /// A message for the user, shown by the widget with the status.
    pub server_message: Option<String>,
    /// The handler moved or deleted the temp file itself: do not store it.
    pub file_taken: bool,
}

impl FinishOptions {
    /// Store the file as planned.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the message the user sees.
    #[must_use]
    pub fn server_message(mut self, message: impl Into<String>) -> Self {
        self.server_message = Some(message.into());
        self
    }

    /// The handler took care of the file (moved or deleted it): the layer leaves it alone and
    /// records the upload as finished.
    #[must_use]
    pub fn file_taken(mut self) -> Self {
        self.file_taken = true;
        self
    }

    fn merge(&mut self, later: Self) {
        if later.server_message.is_some() {
            self.server_message = later.server_message;
        }
        self.file_taken |= later.file_taken;
    }
}

/// What `upload_finished` handlers see, for every upload that ends: finished, vetoed,
/// failed, canceled or disconnected.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UploadFinished {
    /// The final record: status, error, message, sizes, names.
    pub info: UploadInfo,
    /// Where the file was stored, when it was on disk.
    pub path: Option<PathBuf>,
    /// What the application learns of the file, as forward mode hands it over in
    /// [`UploadedFiles`](crate::UploadedFiles): field name, types, where it is stored (disk,
    /// memory, a sink), digest. For resumable uploads (tus, the IETF draft) this event is how
    /// the application hears of a completed file.
    pub file: crate::UploadedFile,
    /// The request's head (method, URI, headers, extensions), shared by every event of the
    /// request.
    pub request: Arc<Parts>,
    /// Every non-file field of the request (as far as it was read).
    pub fields: Arc<Vec<FormField>>,
}

/// Why a handler stops an upload: a veto (status 7, error 10) or a failure (status 6).
///
/// Any error converts into a failure, so `?` works in handlers; a veto is made with
/// [`EventError::veto`].
///
/// ```
/// use tower_upload_layer::EventError;
///
/// let veto = EventError::veto("only PDF files, please");
/// assert_eq!(veto.to_string(), "vetoed: only PDF files, please");
/// let failure: EventError = std::io::Error::other("database down").into();
/// assert!(failure.to_string().contains("database down"));
/// ```
pub struct EventError {
    kind: EventErrorKind,
}

pub(crate) enum EventErrorKind {
    Veto { message: String, status: StatusCode },
    Failed(BoxError),
}

impl EventError {
    /// Refuse the upload with `message` for the user: status 7, error 10, HTTP 403.
    pub fn veto(message: impl Into<String>) -> Self {
        Self {
            kind: EventErrorKind::Veto {
                message: message.into(),
                status: StatusCode::FORBIDDEN,
            },
        }
    }

    /// Use another 4xx status for the veto's answer (e.g. 401 or 422).
    ///
    /// # Panics
    ///
    /// If `status` is not a client error (4xx).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        assert!(status.is_client_error(), "a veto answers with a 4xx status");
        if let EventErrorKind::Veto { status: slot, .. } = &mut self.kind {
            *slot = status;
        }
        self
    }

    pub(crate) fn into_kind(self) -> EventErrorKind {
        self.kind
    }
}

impl<E: Into<BoxError>> From<E> for EventError {
    fn from(error: E) -> Self {
        Self {
            kind: EventErrorKind::Failed(error.into()),
        }
    }
}

impl fmt::Debug for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EventErrorKind::Veto { message, status } => f
                .debug_struct("Veto")
                .field("message", message)
                .field("status", status)
                .finish(),
            EventErrorKind::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EventErrorKind::Veto { message, .. } => write!(f, "vetoed: {message}"),
            EventErrorKind::Failed(error) => write!(f, "event handler failed: {error}"),
        }
    }
}

type Handler<E, T> = Arc<dyn Fn(E) -> BoxFuture<T> + Send + Sync>;
/// Handlers with the `cid` they are for (`None`: every upload).
type Handlers<E, T> = Vec<(Option<String>, Handler<E, T>)>;

/// The registered handlers; `None` in the layer when there are none, so uploads without
/// handlers pay nothing.
#[derive(Clone, Default)]
pub(crate) struct Events {
    starting: Handlers<UploadStarting, Result<StartOptions, EventError>>,
    uploading: Handlers<FileChunk, Result<(), EventError>>,
    finishing: Handlers<UploadFinishing, Result<FinishOptions, EventError>>,
    finished: Handlers<UploadFinished, ()>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("upload_starting", &self.starting.len())
            .field("file_uploading", &self.uploading.len())
            .field("upload_finishing", &self.finishing.len())
            .field("upload_finished", &self.finished.len())
            .finish()
    }
}

fn boxed<E, T, F, Fut>(handler: F) -> Handler<E, T>
where
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Arc::new(move |event| Box::pin(handler(event)))
}

/// Runs one handler, turning a panic (while making or polling its future) into a failure.
async fn guarded<E, T>(
    handler: &Handler<E, Result<T, EventError>>,
    event: E,
) -> Result<T, EventError> {
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
        Ok(future) => future,
        Err(_) => return Err(EventError::from("the event handler panicked")),
    };
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(EventError::from("the event handler panicked")),
    }
}

fn applies(filter: &Option<String>, cid: Option<&str>) -> bool {
    filter.as_deref().is_none_or(|wanted| Some(wanted) == cid)
}

impl Events {
    pub(crate) fn on_starting<F, Fut>(&mut self, cid: Option<String>, handler: F)
    where
        F: Fn(UploadStarting) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StartOptions, EventError>> + Send + 'static,
    {
        self.starting.push((cid, boxed(handler)));
    }

    pub(crate) fn on_uploading<F, Fut>(&mut self, cid: Option<String>, handler: F)
    where
        F: Fn(FileChunk) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), EventError>> + Send + 'static,
    {
        self.uploading.push((cid, boxed(handler)));
    }

    pub(crate) fn on_finishing<F, Fut>(&mut self, cid: Option<String>, handler: F)
    where
        F: Fn(UploadFinishing) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<FinishOptions, EventError>> + Send + 'static,
    {
        self.finishing.push((cid, boxed(handler)));
    }

    pub(crate) fn on_finished<F, Fut>(&mut self, cid: Option<String>, handler: F)
    where
        F: Fn(UploadFinished) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.finished.push((cid, boxed(handler)));
    }

    pub(crate) fn has_uploading(&self) -> bool {
        !self.uploading.is_empty()
    }

    /// Runs the `upload_starting` handlers in registration order; the first error stops.
    pub(crate) async fn starting(&self, event: UploadStarting) -> Result<StartOptions, EventError> {
        let mut options = StartOptions::new();
        let cid = event.cid.clone();
        for (filter, handler) in &self.starting {
            if applies(filter, cid.as_deref()) {
                options.merge(guarded(handler, event.clone()).await?);
            }
        }
        Ok(options)
    }

    pub(crate) async fn uploading(&self, chunk: FileChunk) -> Result<(), EventError> {
        let cid = chunk.cid.clone();
        for (filter, handler) in &self.uploading {
            if applies(filter, cid.as_deref()) {
                guarded(handler, chunk.clone()).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn finishing(
        &self,
        event: UploadFinishing,
    ) -> Result<FinishOptions, EventError> {
        let mut options = FinishOptions::new();
        let cid = event.cid.clone();
        for (filter, handler) in &self.finishing {
            if applies(filter, cid.as_deref()) {
                options.merge(guarded(handler, event.clone()).await?);
            }
        }
        Ok(options)
    }

    /// Runs the `upload_finished` handlers; a panic is contained and ignored.
    pub(crate) async fn finished(&self, event: UploadFinished) {
        let cid = event.info.cid.clone();
        for (filter, handler) in &self.finished {
            if applies(filter, cid.as_deref()) {
                let event = event.clone();
                if let Ok(future) = std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))) {
                    let _ = AssertUnwindSafe(future).catch_unwind().await;
                }
            }
        }
    }
}

/// Checks a handler-chosen folder: relative, and only normal components.
pub(crate) fn confined_folder(folder: &Path) -> Option<&Path> {
    let normal = folder
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (normal && folder.components().next().is_some()).then_some(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_must_stay_inside_the_upload_folder() {
        assert!(confined_folder(Path::new("users/42")).is_some());
        for bad in ["", "/etc", "../x", "a/../../b", "./a"] {
            assert!(confined_folder(Path::new(bad)).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn panics_become_failures_and_per_cid_dispatch_filters() {
        let mut events = Events::default();
        events.on_uploading(None, |_chunk: FileChunk| async { Ok(()) });
        events.on_uploading(Some("other".into()), |_chunk: FileChunk| async {
            panic!("never called for cid=mine")
        });
        let chunk = FileChunk {
            key: UploadKey::parse("k").unwrap(),
            cid: Some("mine".into()),
            offset: 0,
            data: Bytes::new(),
        };
        assert!(events.uploading(chunk.clone()).await.is_ok());
        events.on_uploading(Some("mine".into()), |_chunk: FileChunk| async {
            panic!("boom")
        });
        let error = events.uploading(chunk.clone()).await.unwrap_err();
        assert!(error.to_string().contains("panicked"), "{error}");
        let mut sync_panic = Events::default();
        sync_panic.on_uploading(
            None,
            |_chunk: FileChunk| -> std::future::Ready<Result<(), EventError>> {
                panic!("before the future exists")
            },
        );
        assert!(sync_panic.uploading(chunk).await.is_err());
    }
}

macro_rules! request_headers {
    ($($event:ty),*) => {$(
        impl $event {
            /// The request's headers (a shortcut for `request.headers`).
            #[must_use]
            pub fn headers(&self) -> &HeaderMap {
                &self.request.headers
            }
        }
    )*};
}

request_headers!(UploadStarting, UploadFinishing, UploadFinished);
