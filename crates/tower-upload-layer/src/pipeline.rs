//! One file's life, the same for every protocol front-end:
//!
//! ```text
//! FilePart::start ──> push, push, ... ──> finish ──> stored (status 2)
//!       │                  │                 │
//!       └──────────────────┴─────────────────┴──> fail: one terminal status, cleaned up
//! ```
//!
//! - **start**: status 1, the name and type checks, `upload_starting`, the sink's writer.
//! - **stream** ([`FilePart::push`]): the size limit, type sniffing, `file_uploading`,
//!   progress, the write.
//! - **finish**: the sniffing of a short file, the writer's end, status 9,
//!   `upload_finishing`, the final name (persist), status 2.
//! - **fail**: the writer aborted (temp file deleted, custom sink told), the terminal status
//!   recorded.
//!
//! A front-end feeds a part bytes and reads its [`Ended`] outcome; only the pipeline sets
//! statuses. If the part is dropped before it ends (the response future was dropped: the
//! client went away, a timeout fired, the server shut down), its `Drop` guard records status
//! 8 through the registry handle, deletes the temp file, aborts a custom writer, and still
//! tells the `upload_finished` handlers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use tower_upload_state::{
    lock_unpoisoned as lock, FileError, UploadHandle, UploadInfo, UploadStatus,
};

use crate::config::Config;
use crate::digest::Digester;
use crate::events::{
    confined_folder, EventError, Events, FileChunk, FormField, UploadFinished, UploadFinishing,
    UploadStarting,
};
use crate::failure::Failure;
use crate::file::{blocking, persist, PersistError, StoreOptions, TempUpload};
use crate::mime::essence;
use crate::names::sanitize_file_name;
use crate::results::{Stored, UploadedFile};
use crate::sink::{Received, SinkFile, UploadSink, Writer};
use crate::sniff::{content_allowed, sniff, SNIFF_LEN};
use crate::trace::trace;

/// The non-file form fields of a request, shared by every event that shows them.
pub(crate) type Fields = Arc<Vec<FormField>>;

/// What the files of one request share: the configuration, the request's `cid` and headers,
/// and the queue of `upload_finished` events.
#[derive(Debug)]
pub(crate) struct RequestContext {
    pub(crate) config: Arc<Config>,
    pub(crate) cid: Option<String>,
    /// The request's head, for the event handlers (and the application in forward mode).
    pub(crate) request: Arc<Parts>,
    announcer: Option<Announcer>,
}

impl RequestContext {
    pub(crate) fn new(config: Arc<Config>, cid: Option<String>, request: Arc<Parts>) -> Self {
        let announcer = config.events.clone().map(|events| Announcer {
            events,
            request: Arc::clone(&request),
            ended: Mutex::default(),
            fields: Mutex::default(),
        });
        Self {
            config,
            cid,
            request,
            announcer,
        }
    }

    pub(crate) fn events(&self) -> Option<&Events> {
        self.announcer.as_ref().map(|announcer| &*announcer.events)
    }

    /// Queues the `upload_finished` event of an upload that ended.
    pub(crate) fn ended(&self, info: &UploadInfo, file: Option<&UploadedFile>) {
        if let Some(announcer) = &self.announcer {
            let file = file
                .cloned()
                .unwrap_or_else(|| UploadedFile::from_info(info));
            lock(&announcer.ended).push((info.clone(), file));
        }
    }

    /// The request's fields as far as they were read, for the `upload_finished` events.
    pub(crate) fn set_fields(&self, fields: &Fields) {
        if let Some(announcer) = &self.announcer {
            *lock(&announcer.fields) = Arc::clone(fields);
        }
    }
}

/// Runs the `upload_finished` handlers once the request is over: when the last holder of the
/// request's context lets go of it (the front-end and every file part), whether the request
/// answered or its future was dropped. Spawned, so the answer never waits for them; each
/// upload's event is queued exactly once, by the part that ended it.
#[derive(Debug)]
struct Announcer {
    events: Arc<Events>,
    request: Arc<Parts>,
    ended: Mutex<Vec<(UploadInfo, UploadedFile)>>,
    fields: Mutex<Fields>,
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let ended = std::mem::take(&mut *lock(&self.ended));
        if ended.is_empty() {
            return;
        }
        let fields = Arc::clone(&lock(&self.fields));
        let (events, request) = (Arc::clone(&self.events), Arc::clone(&self.request));
        let announce = async move {
            for (info, file) in ended {
                let path = match &file.stored {
                    Stored::Path(path) => Some(path.clone()),
                    _ => None,
                };
                let event = UploadFinished {
                    info,
                    path,
                    file,
                    request: Arc::clone(&request),
                    fields: Arc::clone(&fields),
                };
                events.finished(event).await;
            }
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(announce);
        }
    }
}

/// How a file part ended: its final record, what the application learns of it, and the
/// failure if it failed.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) info: UploadInfo,
    pub(crate) file: UploadedFile,
    pub(crate) failure: Option<Failure>,
}

/// What a front-end knows of a file part when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartHead<'a> {
    /// The form field's name.
    pub(crate) field_name: Option<&'a str>,
    /// The client's file name.
    pub(crate) file_name: &'a str,
    /// The declared `Content-Type`.
    pub(crate) content_type: Option<&'a str>,
    /// The client's digest of the file (`Content-Digest` / `Repr-Digest`), as sent.
    pub(crate) digest: Option<&'a str>,
}

/// The most bytes of a client's file name the registry keeps.
const MAX_KEPT_NAME: usize = 1024;

/// One file on its way through the pipeline.
pub(crate) struct FilePart {
    context: Arc<RequestContext>,
    /// `None` once the part has ended.
    handle: Option<UploadHandle>,
    /// `None` until the sink's writer is open, and after it finished.
    writer: Option<Writer>,
    field_name: Option<String>,
    raw_name: String,
    stored_name: String,
    folder: PathBuf,
    mime_type: String,
    /// The most bytes the file may have.
    limit: Option<u64>,
    received: u64,
    /// The first bytes, while they are still needed to check the content's type.
    head: Option<Vec<u8>>,
    /// The type the first bytes showed.
    sniffed: Option<&'static str>,
    /// The digests computed while the bytes pass (configured, or asked for by the client).
    digester: Option<Digester>,
    /// The client's digest header, until the digester is made from it.
    digest_header: Option<String>,
    /// A resumable upload's file (see the resumable section below), opened by `open`
    /// instead of the sink's writer.
    resumable_file: Option<PathBuf>,
}

impl FilePart {
    /// Starts the file `file_name` of declared type `content_type` under `handle`'s key:
    /// status 1, the checks, `upload_starting`, the sink's writer.
    pub(crate) async fn start(
        context: Arc<RequestContext>,
        handle: UploadHandle,
        part: PartHead<'_>,
        fields: &Fields,
    ) -> Result<Self, Ended> {
        let PartHead {
            field_name,
            file_name,
            content_type,
            digest,
        } = part;
        let config = &context.config;
        let limit = match (&config.sink, config.max_file_size) {
            (UploadSink::Memory { max_bytes }, Some(limit)) => Some(limit.min(*max_bytes)),
            (UploadSink::Memory { max_bytes }, None) => Some(*max_bytes),
            (_, limit) => limit,
        };
        let sniffing = config.sniff_mime_types && !config.allowed_mime_types.is_any();
        let mime_type =
            essence(content_type.unwrap_or("application/octet-stream")).to_ascii_lowercase();
        let folder = config.upload_dir.clone();
        let mut part = Self {
            handle: Some(handle),
            writer: None,
            field_name: field_name.map(str::to_owned),
            raw_name: file_name.to_owned(),
            stored_name: String::new(),
            folder,
            mime_type,
            limit,
            received: 0,
            head: sniffing.then(|| Vec::with_capacity(SNIFF_LEN)),
            sniffed: None,
            digester: None,
            digest_header: digest.map(str::to_owned),
            resumable_file: None,
            context,
        };
        match part.open(fields).await {
            Ok(()) => Ok(part),
            Err(failure) => Err(part.fail(failure).await),
        }
    }

    fn handle(&self) -> &UploadHandle {
        self.handle.as_ref().expect("a part is live until it ends")
    }

    async fn open(&mut self, fields: &Fields) -> Result<(), Failure> {
        let handle = self.handle.as_ref().expect("live until it ends");
        handle.update(|info| {
            info.file_name = Some(kept_name(&self.raw_name));
            info.mime_type = Some(self.mime_type.clone());
        });
        #[cfg(feature = "tracing")]
        tracing::Span::current().record("file_name", self.raw_name.as_str());
        trace!(debug, key = %handle.key(), mime_type = %self.mime_type, "file part started");
        // A store failure must not stop the upload; the status degrades, the file is kept.
        let _ = handle.set_status(UploadStatus::Started).await;

        let context = Arc::clone(&self.context);
        let config = &context.config;
        self.digester = Digester::new(config.digest, self.digest_header.take().as_deref())
            .map_err(Failure::parse)?;
        self.stored_name = usable_name(&self.raw_name)?;
        if !config.allowed_mime_types.allows(&self.mime_type) {
            return Err(Failure::refused(
                FileError::MimeTypeValidation,
                format!(
                    "files of type {} are not allowed (allowed: {})",
                    self.mime_type, config.allowed_mime_types
                ),
            ));
        }
        if let Some(events) = context.events() {
            let event = UploadStarting {
                key: handle.key().clone(),
                cid: context.cid.clone(),
                file_name: self.raw_name.clone(),
                stored_name: self.stored_name.clone(),
                mime_type: self.mime_type.clone(),
                declared_size: handle.snapshot().size,
                request: Arc::clone(&context.request),
                fields: Arc::clone(fields),
            };
            let options = events
                .starting(event)
                .await
                .map_err(|error| Failure::event(error, FileError::FileStarting))?;
            if let Some(name) = options.file_name {
                self.stored_name = usable_name(&name)?;
            }
            if let Some(sub) = options.folder {
                let sub = confined_folder(&sub).ok_or_else(|| {
                    Failure::event(
                        EventError::from("the chosen folder leaves the upload folder"),
                        FileError::UploadFolderNotFound,
                    )
                })?;
                self.folder = self.folder.join(sub);
            }
            if let Some(message) = options.server_message {
                handle.update(|info| info.server_message = Some(message));
            }
        }
        let sink_file = SinkFile {
            key: handle.key().clone(),
            name: self.stored_name.clone(),
            mime_type: self.mime_type.clone(),
            original_name: self.raw_name.clone(),
        };
        let writer = match self.resumable_file.take() {
            Some(path) => TempUpload::open_resumable(path, 0, true, config.buffer_size)
                .await
                .map(|(file, _)| Writer::Disk(file)),
            None => {
                Writer::open(
                    &config.sink,
                    || config.temp_dir(),
                    config.buffer_size,
                    sink_file,
                )
                .await
            }
        }
        .map_err(|error| match error.kind() {
            // A sink that refuses to replace an object (the `Reject` policy) says so.
            std::io::ErrorKind::AlreadyExists => name_taken(&self.stored_name),
            _ => Failure::io(&error, FileError::FileStarting, "create the file"),
        })?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Resolves once a cancel of this upload is requested. (It borrows only the registry
    /// handle: the part itself need not be `Sync`.)
    pub(crate) fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.handle().cancelled()
    }

    /// The next chunk of the file.
    pub(crate) async fn push(&mut self, chunk: Bytes) -> Result<(), Failure> {
        let offset = self.received;
        self.received += chunk.len() as u64;
        if let Some(limit) = self.limit {
            if self.received > limit {
                return Err(Failure::file_too_large(limit));
            }
        }
        if let Some(digester) = self.digester.as_mut() {
            digester.update(&chunk);
        }
        if let Some(head) = self.head.as_mut() {
            let wanted = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..wanted]);
            if head.len() == SNIFF_LEN {
                self.check_content()?;
            }
        }
        if let Some(events) = self
            .context
            .events()
            .filter(|events| events.has_uploading())
        {
            let event = FileChunk {
                key: self.handle().key().clone(),
                cid: self.context.cid.clone(),
                offset,
                data: chunk.clone(),
            };
            events
                .uploading(event)
                .await
                .map_err(|error| Failure::event(error, FileError::FileWriting))?;
        }
        let len = chunk.len() as u64;
        let writer = self.writer.as_mut().expect("open while streaming");
        writer
            .push(chunk)
            .await
            .map_err(|error| Failure::io(&error, FileError::FileWriting, "write the file"))?;
        let handle = self.handle();
        // Counted as received, not as written: a batch reaches the disk later, and a slow
        // upload must not look stalled meanwhile. Status 2 waits for the disk.
        handle.add_bytes(len);
        // Publishes progress to a shared store when due; free otherwise.
        handle.checkpoint().await;
        Ok(())
    }

    /// Refuses a file whose first bytes show a type that is not allowed; done with the
    /// first bytes either way.
    fn check_content(&mut self) -> Result<(), Failure> {
        let Some(head) = self.head.take() else {
            return Ok(());
        };
        let config = &self.context.config;
        let sniffed = sniff(&head);
        self.sniffed = sniffed;
        if content_allowed(&config.allowed_mime_types, &self.mime_type, sniffed) {
            return Ok(());
        }
        Err(Failure::refused(
            FileError::MimeTypeValidation,
            format!(
                "the file's content is {}, not an allowed type (allowed: {})",
                sniffed.unwrap_or("unknown"),
                config.allowed_mime_types
            ),
        ))
    }

    /// All bytes are in: status 9, `upload_finishing`, the final name, status 2.
    pub(crate) async fn finish(mut self, fields: &Fields) -> Ended {
        match self.store(fields).await {
            Ok(stored) => {
                let handle = self.handle.take().expect("live until it ends");
                let info = handle
                    .finish(UploadStatus::Finished, FileError::None, None)
                    .await;
                let path = match &stored {
                    Stored::Path(path) => Some(path.clone()),
                    _ => None,
                };
                trace!(info, key = %info.key, bytes = info.bytes_uploaded, path = ?path, "upload finished");
                #[cfg(not(feature = "tracing"))]
                let _ = path;
                let file = self.uploaded_file(&info, stored);
                self.context.ended(&info, Some(&file));
                Ended {
                    info,
                    file,
                    failure: None,
                }
            }
            Err(failure) => self.fail(failure).await,
        }
    }

    /// What the application learns of this file, once it ended with `info`.
    fn uploaded_file(&mut self, info: &UploadInfo, stored: Stored) -> UploadedFile {
        let mut file = UploadedFile::from_info(info);
        file.field_name = self.field_name.take();
        file.file_name = Some(std::mem::take(&mut self.raw_name));
        file.declared_type = Some(std::mem::take(&mut self.mime_type));
        file.sniffed_type = self.sniffed;
        file.digest.clone_from(&info.digest);
        file.stored = stored;
        file
    }

    async fn store(&mut self, fields: &Fields) -> Result<Stored, Failure> {
        self.check_content()?;
        let writer = self.writer.take().expect("open until finished");
        let received = writer.finish().await.map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => name_taken(&self.stored_name),
            _ => Failure::io(&error, FileError::FileWriting, "write the file"),
        })?;
        if let Some(digester) = self.digester.take() {
            let (digest, matches) = digester.finish();
            if !matches {
                received.discard().await;
                return Err(Failure::new(
                    UploadStatus::ErrorUploading,
                    FileError::FileWriting,
                    "the file's digest does not match the one the client sent with it: the \
                     bytes did not arrive intact",
                )
                .with_http(http::StatusCode::BAD_REQUEST));
            }
            self.handle().update(|info| info.digest = digest);
        }
        let handle = self.handle();
        handle.update(|info| info.size = Some(self.received));
        let _ = handle.set_status(UploadStatus::UploadFinishing).await;

        let mut file_taken = false;
        if let Some(events) = self.context.events() {
            let (temp_path, data, location) = match &received {
                Received::Disk(file) => (Some(file.path().to_owned()), None, None),
                Received::Memory(data) => (None, Some(data.clone()), None),
                Received::Custom(_, file) => (None, None, Some(file.name.clone())),
            };
            let event = UploadFinishing {
                key: handle.key().clone(),
                cid: self.context.cid.clone(),
                file_name: self.raw_name.clone(),
                stored_name: self.stored_name.clone(),
                mime_type: self.mime_type.clone(),
                size: self.received,
                digest: handle.snapshot().digest,
                temp_path,
                data,
                location,
                request: Arc::clone(&self.context.request),
                fields: Arc::clone(fields),
            };
            let options = match events.finishing(event).await {
                Ok(options) => options,
                Err(error) => {
                    received.discard().await;
                    return Err(Failure::event(error, FileError::FileSaving));
                }
            };
            if let Some(message) = options.server_message {
                handle.update(|info| info.server_message = Some(message));
            }
            file_taken = options.file_taken;
        }
        let file = match received {
            Received::Disk(file) if !file_taken => file,
            Received::Disk(file) => {
                // The handler moved or deleted it; deleting what may be left is harmless.
                crate::file::discard(file);
                return Ok(Stored::Taken);
            }
            Received::Memory(data) => return Ok(Stored::Memory(data)),
            Received::Custom(_, file) => return Ok(Stored::Sink(file.name)),
        };
        let config = &self.context.config;
        let options = StoreOptions {
            overwrite: config.overwrite,
            durable: config.durable,
            mode: config.file_mode,
            create_dir: true,
        };
        let folder = std::mem::take(&mut self.folder);
        let name = std::mem::take(&mut self.stored_name);
        persist(file, folder, name, options)
            .await
            .map(Stored::Path)
            .map_err(|error| match error {
                PersistError::Exists(path) => {
                    name_taken(&path.file_name().unwrap_or_default().to_string_lossy())
                }
                PersistError::Folder(error) => Failure::io(
                    &error,
                    FileError::UploadFolderNotFound,
                    "create the upload folder",
                ),
                PersistError::Io(error) => {
                    Failure::io(&error, FileError::FileSaving, "save the file")
                }
            })
    }

    /// Ends the part with `failure`: the writer is aborted (the temp file deleted, a custom
    /// sink told) and the terminal status recorded.
    pub(crate) async fn fail(mut self, failure: Failure) -> Ended {
        trace!(
            info,
            status = %failure.status,
            error = %failure.error,
            http = failure.http.as_u16(),
            message = %failure.message,
            "upload failed"
        );
        if let Some(writer) = self.writer.take() {
            writer.abort().await;
        }
        let handle = self.handle.take().expect("live until it ends");
        let info = end_with(handle, &failure).await;
        let file = self.uploaded_file(&info, Stored::Nowhere);
        self.context.ended(&info, Some(&file));
        Ended {
            info,
            file,
            failure: Some(failure),
        }
    }
}

/// Records `failure` as the terminal state of `handle`'s upload.
pub(crate) async fn end_with(handle: UploadHandle, failure: &Failure) -> UploadInfo {
    let message = Some(failure.message.clone()).filter(|message| !message.is_empty());
    handle.finish(failure.status, failure.error, message).await
}

impl Drop for FilePart {
    /// Dropped before it ended: the registry handle records status 8 as it drops, the writer
    /// cleans up as it drops, and the `upload_finished` handlers still hear of it.
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        trace!(info, key = %handle.key(), "upload dropped before it ended");
        let mut info = handle.snapshot();
        info.status = UploadStatus::CanceledByClientConnection;
        info.error = FileError::None;
        info.finished_at = Some(std::time::SystemTime::now());
        drop(handle);
        self.context.ended(&info, None);
    }
}

/// The final name is taken and the policy is `Reject`: 409, status 6 / error 6.
fn name_taken(name: &str) -> Failure {
    Failure::new(
        UploadStatus::ErrorUploading,
        FileError::FileSaving,
        format!("a file named {name:?} already exists"),
    )
    .with_http(http::StatusCode::CONFLICT)
}

fn usable_name(raw: &str) -> Result<String, Failure> {
    sanitize_file_name(raw).map_err(|error| {
        Failure::refused(
            FileError::EstablishingFileName,
            format!("the file name cannot be used: {error}"),
        )
    })
}

fn kept_name(raw: &str) -> String {
    let mut end = raw.len().min(MAX_KEPT_NAME);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    raw[..end].to_owned()
}

// ---- Resumable uploads (tus, the IETF draft) ------------------------------------------
//
// A resumable upload is one file part spread over several requests: `start_resumable` at
// creation (status 1, the checks, `upload_starting`), `resume` for every later request, and
// between requests `pause` (the data written so far is kept, the record waits in the store).
// The last request ends it with `finish` (or `fail`) as any part.

/// What a resumed part needs to know of its upload (kept by the front-end between requests).
#[derive(Debug, Clone)]
pub(crate) struct ResumedFile {
    /// The data file.
    pub(crate) path: PathBuf,
    /// The bytes stored so far (the offset).
    pub(crate) offset: u64,
    /// The client's file name and declared type.
    pub(crate) file_name: String,
    pub(crate) mime_type: String,
    /// The sanitised final name and folder chosen at creation.
    pub(crate) stored_name: String,
    pub(crate) folder: PathBuf,
}

impl FilePart {
    /// Creation of a resumable upload whose data goes to `path` (created empty): status 1, the
    /// name and type checks, `upload_starting`. The caller then pushes any body and pauses.
    pub(crate) async fn start_resumable(
        context: Arc<RequestContext>,
        handle: UploadHandle,
        file_name: &str,
        content_type: Option<&str>,
        path: PathBuf,
    ) -> Result<Self, Ended> {
        let fields = Fields::default();
        let mut part = Self::start_deferred(context, handle, file_name, content_type);
        part.resumable_file = Some(path);
        match part.open(&fields).await {
            Ok(()) => Ok(part),
            Err(failure) => Err(part.fail(failure).await),
        }
    }

    fn start_deferred(
        context: Arc<RequestContext>,
        handle: UploadHandle,
        file_name: &str,
        content_type: Option<&str>,
    ) -> Self {
        let config = &context.config;
        let sniffing = config.sniff_mime_types && !config.allowed_mime_types.is_any();
        let mime_type =
            essence(content_type.unwrap_or("application/octet-stream")).to_ascii_lowercase();
        Self {
            handle: Some(handle),
            writer: None,
            field_name: None,
            raw_name: file_name.to_owned(),
            stored_name: String::new(),
            folder: config.upload_dir.clone(),
            mime_type,
            limit: config.max_file_size,
            received: 0,
            head: sniffing.then(|| Vec::with_capacity(SNIFF_LEN)),
            sniffed: None,
            // tus has a checksum extension of its own; the configured digest covers the
            // bytes of one request only here, so it is not computed for resumable uploads.
            digester: None,
            digest_header: None,
            resumable_file: None,
            context,
        }
    }

    /// A later request of a resumable upload: reopens its file at the stored offset (the
    /// checks and `upload_starting` ran at creation). Status stays 1.
    pub(crate) async fn resume(
        context: Arc<RequestContext>,
        handle: UploadHandle,
        file: ResumedFile,
    ) -> Result<Self, Ended> {
        let mut part =
            Self::start_deferred(context, handle, &file.file_name, Some(&file.mime_type));
        part.stored_name = file.stored_name;
        part.folder = file.folder;
        let buffer_size = part.context.config.buffer_size;
        let opened =
            TempUpload::open_resumable(file.path.clone(), file.offset, false, buffer_size).await;
        let (temp, len) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let failure = Failure::io(&error, FileError::FileWriting, "open the file");
                return Err(part.fail(failure).await);
            }
        };
        part.received = len;
        part.handle().set_bytes(len);
        part.writer = Some(Writer::Disk(temp));
        if let Some(head) = part.head.as_mut() {
            if len >= SNIFF_LEN as u64 {
                // Checked when the first bytes arrived.
                part.head = None;
            } else if len > 0 {
                let path = file.path;
                let first = blocking(move || std::fs::read(path))
                    .await
                    .unwrap_or_default();
                head.extend_from_slice(&first[..first.len().min(len as usize)]);
            }
        }
        Ok(part)
    }

    /// The sanitised final name.
    pub(crate) fn stored_name(&self) -> &str {
        &self.stored_name
    }

    /// The folder the file is stored in.
    pub(crate) fn folder(&self) -> &Path {
        &self.folder
    }

    /// The bytes stored (or being stored) so far: the offset.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Sets the most bytes the file may have (the declared length, the size limit).
    pub(crate) fn set_limit(&mut self, limit: Option<u64>) {
        self.limit = limit;
    }

    /// The registry handle of the live part.
    pub(crate) fn upload(&self) -> &UploadHandle {
        self.handle()
    }

    /// Discards what was received after `offset` (a chunk that failed its checksum or went
    /// past the length): the file is cut back and the count goes back.
    pub(crate) async fn rewind(&mut self, offset: u64) -> Result<(), Failure> {
        if let Some(Writer::Disk(temp)) = self.writer.as_mut() {
            temp.truncate(offset)
                .await
                .map_err(|error| Failure::io(&error, FileError::FileWriting, "write the file"))?;
        }
        self.received = offset;
        self.handle().set_bytes(offset);
        if let Some(head) = self.head.as_mut() {
            head.truncate(offset as usize);
        }
        Ok(())
    }

    /// Ends this request of a resumable upload without ending the upload: what was received
    /// is written and kept, the record is paused at that offset. A write failure ends the
    /// upload instead.
    pub(crate) async fn pause(mut self) -> Result<UploadInfo, Ended> {
        let durable = self.context.config.durable;
        if let Some(Writer::Disk(temp)) = self.writer.take() {
            if let Err(error) = temp.keep(durable).await {
                let failure = Failure::io(&error, FileError::FileWriting, "write the file");
                return Err(self.fail(failure).await);
            }
        }
        let handle = self.handle.take().expect("live until it ends");
        handle.set_bytes(self.received);
        Ok(handle.pause().await)
    }
}
