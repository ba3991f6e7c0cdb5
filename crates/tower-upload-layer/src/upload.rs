//! The upload path: what happens to a `POST {upload_path}`.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use tower_upload_state::{
    ClaimError, Command, FileError, KeyError, UploadHandle, UploadInfo, UploadKey, UploadQuery,
    UploadStatus,
};

use tempfile::NamedTempFile;

use crate::answer::{human_size, json, protocol_error, upload_answer, Failure};
use crate::config::Config;
use crate::events::{
    confined_folder, EventError, EventErrorKind, Events, FileChunk, FormField, UploadFinished,
    UploadFinishing, UploadStarting,
};
use crate::file::{blocking, discard, persist, sweep_orphans, PersistError, TempUpload};
use crate::names::sanitize_file_name;
use crate::sink::{FileWriter, SinkFile, UploadSink};
use crate::sniff::{content_allowed, sniff, SNIFF_LEN};
use crate::stream::{BodyError, BodyStream, Gauge};
use crate::trace::trace;
use crate::BoxError;
use futures_util::Stream;

use crate::multipart::{boundary, BoundaryError, Error as MultipartError, Field, Multipart};

/// Answers one request to the upload path. Never fails: every outcome is an HTTP answer.
pub(crate) async fn handle<B>(config: Arc<Config>, request: Request<B>) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    let query = match UploadQuery::parse(parts.uri.query().unwrap_or("")) {
        Ok(query) => query,
        Err(error) => return protocol_error(StatusCode::BAD_REQUEST, "bad_query", error),
    };
    match query.command() {
        Ok(None) => {}
        Ok(Some(Command::FileSize)) => {
            return record_file_size(&config, &query, &parts.headers).await
        }
        Ok(Some(command)) => {
            return protocol_error(
                StatusCode::BAD_REQUEST,
                "unsupported_command",
                format_args!(
                    "`command={}` is answered by the status service, not the upload URL",
                    command.as_str()
                ),
            )
        }
        Err(error) => return protocol_error(StatusCode::BAD_REQUEST, "unknown_command", error),
    }
    let keys = match query.keys() {
        Ok(keys) => keys,
        Err(error) => return key_error(&error),
    };
    if keys.len() > config.max_files_per_request {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            "too_many_files",
            format_args!(
                "the request names {} keys; at most {} files are allowed per request",
                keys.len(),
                config.max_files_per_request
            ),
        );
    }
    let boundary = match multipart_boundary(&parts.headers) {
        Ok(boundary) => boundary,
        Err(BoundaryError::NotMultipart) => {
            return protocol_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_multipart",
                "an upload must be a multipart/form-data body with a boundary",
            )
        }
        Err(BoundaryError::Invalid) => {
            return protocol_error(
                StatusCode::BAD_REQUEST,
                "invalid_boundary",
                "the multipart/form-data boundary is missing or invalid (RFC 2046: 1 to 70 \
                 characters)",
            )
        }
    };
    let Ok(_permit) = Arc::clone(&config.limiter).try_acquire_owned() else {
        return protocol_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_uploads",
            format_args!(
                "the server is receiving its maximum of {} uploads; try again later",
                config.max_concurrent_uploads
            ),
        );
    };
    let declared = content_length(&parts.headers);
    let cid = query.cid.as_deref().map(str::to_owned);
    let owner = config.owner.as_ref().and_then(|owner| owner(&parts));
    let handles = match register(&config, keys, cid.as_deref(), owner, declared).await {
        Ok(handles) => handles,
        Err(answer) => return answer,
    };
    sweep_once(&config);
    // Only event handlers read the headers: hand them over instead of copying them.
    let headers = match config.events {
        Some(_) => Arc::new(std::mem::take(&mut parts.headers)),
        None => Arc::default(),
    };
    let job = Job::new(config, handles, headers, cid.clone()).run(body, boundary, declared);
    #[cfg(feature = "tracing")]
    let job = tracing::Instrument::instrument(
        job,
        tracing::info_span!(
            "upload",
            keys = query.key.as_deref().unwrap_or_default(),
            cid = cid.as_deref().unwrap_or_default(),
            declared_size = declared,
            file_name = tracing::field::Empty,
        ),
    );
    job.await
}

/// The widget's iframe transport posts `command=fileSize` first: keep the size, not the body.
async fn record_file_size(
    config: &Config,
    query: &UploadQuery<'_>,
    headers: &HeaderMap,
) -> Response<Bytes> {
    let key = match query.key() {
        Ok(key) => key,
        Err(error) => return key_error(&error),
    };
    let Some(size) = content_length(headers) else {
        return protocol_error(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "`command=fileSize` needs a Content-Length header",
        );
    };
    if let Err(error) = config.registry.record_file_size(&key, size).await {
        return protocol_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error);
    }
    json(
        StatusCode::OK,
        format!("{{\"fileSize\":{size}}}").into_bytes(),
    )
}

fn key_error(error: &KeyError) -> Response<Bytes> {
    let code = match error {
        KeyError::Missing => "missing_key",
        _ => "invalid_key",
    };
    protocol_error(StatusCode::BAD_REQUEST, code, error)
}

fn multipart_boundary(headers: &HeaderMap) -> Result<String, BoundaryError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    boundary(content_type).map(str::to_owned)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Claims every key before a byte of the body is read: the widget asks for the status right
/// after posting, and a key it cannot find counts against it.
async fn register(
    config: &Config,
    keys: Vec<UploadKey>,
    cid: Option<&str>,
    owner: Option<String>,
    declared: Option<u64>,
) -> Result<Vec<UploadHandle>, Response<Bytes>> {
    let single = keys.len() == 1;
    let mut handles = Vec::with_capacity(keys.len());
    for key in keys {
        let mut info = UploadInfo::new(key);
        info.cid = cid.map(str::to_owned);
        info.owner.clone_from(&owner);
        // One file per request: the body's length bounds the file's, and gives the widget a
        // progress bar from the first status answer on.
        info.size = declared.filter(|_| single);
        match config.registry.begin(info).await {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                for handle in handles {
                    handle.abandon().await;
                }
                return Err(claim_error(error));
            }
        }
    }
    Ok(handles)
}

fn claim_error(error: ClaimError) -> Response<Bytes> {
    trace!(info, reason = %error, "upload not registered");
    match error {
        ClaimError::InFlight => protocol_error(StatusCode::CONFLICT, "upload_in_progress", error),
        ClaimError::Rejected(previous) => {
            // A repeated POST (Chromium re-sends after a hang-up) gets the same verdict.
            let failure = Failure::from_info(&previous);
            upload_answer(std::slice::from_ref(&*previous), Some(&failure))
        }
        ClaimError::Full { .. } => {
            protocol_error(StatusCode::SERVICE_UNAVAILABLE, "registry_full", error)
        }
        error => protocol_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error),
    }
}

fn sweep_once(config: &Config) {
    // Again every retention period: right after a crash and a prompt restart, the crash's
    // temp files are younger than the retention.
    let now = now_millis();
    let due = config.next_sweep.load(Ordering::Relaxed);
    let next = now.saturating_add(config.registry.retention().as_millis() as u64);
    if now < due
        || config
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let dir = config.temp_dir();
    let min_age = config.registry.retention();
    tokio::task::spawn_blocking(move || sweep_orphans(&dir, min_age));
}

/// One upload request in progress.
struct Job {
    config: Arc<Config>,
    /// The handlers, when any are registered.
    events: Option<Arc<Events>>,
    /// The request headers, kept for the handlers only.
    headers: Arc<HeaderMap>,
    cid: Option<String>,
    /// Keys whose file part has not started, in order.
    pending: VecDeque<UploadHandle>,
    /// The key whose file part is streaming.
    current: Option<UploadHandle>,
    /// Final records, in key order, with where each file was stored.
    done: Vec<(UploadInfo, Option<PathBuf>)>,
    fields: Vec<FormField>,
}

/// A file's bytes once all are in.
enum Received {
    Disk(NamedTempFile),
    Memory(Bytes),
    Custom,
}

/// Where a file part's bytes are going.
enum Writer {
    Disk(TempUpload),
    Memory(Vec<Bytes>),
    Custom(CustomWriter),
}

/// A custom sink's writer; dropped before `finish`, it is aborted.
struct CustomWriter(Option<Box<dyn FileWriter>>);

impl Drop for CustomWriter {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(writer.abort());
            }
        }
    }
}

impl Writer {
    async fn open(config: &Config, file: SinkFile) -> io::Result<Self> {
        Ok(match &config.sink {
            UploadSink::Disk => {
                Self::Disk(TempUpload::create(config.temp_dir(), config.buffer_size).await?)
            }
            UploadSink::Memory { .. } => Self::Memory(Vec::new()),
            UploadSink::Custom(sink) => Self::Custom(CustomWriter(Some(sink.open(&file).await?))),
        })
    }

    async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Self::Disk(temp) => temp.push(chunk).await,
            Self::Memory(chunks) => {
                chunks.push(chunk);
                Ok(())
            }
            Self::Custom(writer) => {
                writer
                    .0
                    .as_mut()
                    .expect("open until finished")
                    .write(chunk)
                    .await
            }
        }
    }

    async fn finish(self) -> io::Result<Received> {
        match self {
            Self::Disk(temp) => Ok(Received::Disk(temp.finish().await?)),
            Self::Memory(chunks) => Ok(Received::Memory(concat(chunks))),
            Self::Custom(mut writer) => {
                writer
                    .0
                    .take()
                    .expect("open until finished")
                    .finish()
                    .await?;
                Ok(Received::Custom)
            }
        }
    }
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(chunks) {
        Ok([only]) => only,
        Err(chunks) => {
            let mut whole = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in &chunks {
                whole.extend_from_slice(chunk);
            }
            Bytes::from(whole)
        }
    }
}

impl Job {
    fn new(
        config: Arc<Config>,
        handles: Vec<UploadHandle>,
        headers: Arc<HeaderMap>,
        cid: Option<String>,
    ) -> Self {
        Self {
            events: config.events.clone(),
            config,
            headers,
            cid,
            done: Vec::with_capacity(handles.len()),
            pending: handles.into(),
            current: None,
            fields: Vec::new(),
        }
    }

    async fn run<B>(mut self, body: B, boundary: String, declared: Option<u64>) -> Response<Bytes>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(failure) = self.refuse_by_length(declared) {
            return self.fail(failure).await;
        }
        if let Err(failure) = self.prepare_folders().await {
            return self.fail(failure).await;
        }
        let gauge = Gauge::new();
        let stream = BodyStream::new(
            body,
            Arc::clone(&gauge),
            self.config.max_request_size,
            self.config.idle_timeout,
            self.config.max_part_header_size,
        );
        let mut multipart = Multipart::new(stream, boundary);
        loop {
            let next = self.next_field(&mut multipart, &gauge).await;
            let result = match next {
                Ok(Some(field)) if field.file_name().is_some() => self.receive_file(field).await,
                Ok(Some(field)) => self.receive_field(field).await,
                Ok(None) => break,
                Err(failure) => Err(failure),
            };
            if let Err(failure) = result {
                return self.fail(failure).await;
            }
        }
        if !self.pending.is_empty() {
            let failure = Failure::parse(format_args!(
                "the request has {} file part(s) for {} key(s)",
                self.done.len(),
                self.done.len() + self.pending.len()
            ));
            return self.fail(failure).await;
        }
        self.announce().await;
        self.answer(None)
    }

    fn answer(&self, failure: Option<&Failure>) -> Response<Bytes> {
        let records: Vec<UploadInfo> = self.done.iter().map(|(info, _)| info.clone()).collect();
        upload_answer(&records, failure)
    }

    /// Runs the `upload_finished` handlers for every key of the request.
    async fn announce(&self) {
        let Some(events) = &self.events else { return };
        for (info, path) in &self.done {
            let event = UploadFinished {
                info: info.clone(),
                path: path.clone(),
                headers: Arc::clone(&self.headers),
                fields: self.fields.clone(),
            };
            events.finished(event).await;
        }
    }

    /// `Content-Length` alone can prove a request too large: refuse before reading it.
    fn refuse_by_length(&self, declared: Option<u64>) -> Option<Failure> {
        let limit = self.config.request_limit(self.pending.len())?;
        if declared? <= limit {
            return None;
        }
        Some(
            match (self.config.max_request_size, self.config.max_file_size) {
                (Some(explicit), _) if explicit == limit => Failure::request_too_large(limit),
                (_, Some(max_file)) => Failure::file_too_large(max_file),
                _ => Failure::request_too_large(limit),
            },
        )
    }

    async fn prepare_folders(&self) -> Result<(), Failure> {
        let upload_dir = self.config.upload_dir.clone();
        let temp_dir = matches!(self.config.sink, UploadSink::Disk).then(|| self.config.temp_dir());
        blocking(move || {
            std::fs::create_dir_all(&upload_dir)?;
            temp_dir.map_or(Ok(()), std::fs::create_dir_all)
        })
        .await
        .map_err(|_| Failure::io(FileError::UploadFolderNotFound, "create the upload folder"))
    }

    async fn next_field<'m, S>(
        &self,
        multipart: &'m mut Multipart<S>,
        gauge: &Gauge,
    ) -> Result<Option<Field<'m, S>>, Failure>
    where
        S: Stream<Item = Result<Bytes, BodyError>>,
    {
        gauge.begin_headers(self.config.max_part_header_size);
        let next = match self.pending.front() {
            // A cancel of the next key stops the request even while the client stalls.
            Some(next_key) => tokio::select! {
                biased;
                () = next_key.cancelled() => Err(Failure::canceled()),
                field = multipart.next_field() => field.map_err(multipart_failure),
            },
            None => multipart.next_field().await.map_err(multipart_failure),
        };
        gauge.end_headers();
        let field = next?;
        if let Some(field) = &field {
            // A read that starts within the budget may carry headers of any size: check them.
            let limit = self.config.max_part_header_size;
            if field.header_len() > limit {
                return Err(body_failure(BodyError::HeadersTooLarge(limit)));
            }
        }
        Ok(field)
    }

    async fn receive_file<S>(&mut self, mut field: Field<'_, S>) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes, BodyError>>,
    {
        let Some(handle) = self.pending.pop_front() else {
            return Err(Failure::parse(format_args!(
                "the request has more file parts than keys ({})",
                self.done.len()
            )));
        };
        let handle = &*self.current.insert(handle);
        let config = &*self.config;
        let events = self.events.as_deref();
        let raw_name = field.file_name().unwrap_or_default().to_owned();
        let mime_type = field
            .content_type()
            .map_or("application/octet-stream", |mime| {
                mime.split(';').next().unwrap_or_default().trim()
            })
            .to_ascii_lowercase();
        handle.update(|info| {
            // Kept for the retention: at most MAX_KEPT_NAME bytes of the client's name.
            info.file_name = Some(kept_name(&raw_name));
            info.mime_type = Some(mime_type.clone());
        });
        #[cfg(feature = "tracing")]
        tracing::Span::current().record("file_name", raw_name.as_str());
        trace!(debug, key = %handle.key(), mime_type, "file part started");
        // A store failure must not stop the upload; the status degrades, the file is kept.
        let _ = handle.set_status(UploadStatus::Started).await;

        let mut stored_name = usable_name(&raw_name)?;
        if !config.allowed_mime_types.allows(&mime_type) {
            return Err(Failure::new(
                UploadStatus::ErrorUploading,
                FileError::MimeTypeValidation,
                format!(
                    "files of type {mime_type} are not allowed (allowed: {})",
                    config.allowed_mime_types
                ),
            ));
        }
        let mut folder = config.upload_dir.clone();
        if let Some(events) = events {
            let event = UploadStarting {
                key: handle.key().clone(),
                cid: self.cid.clone(),
                file_name: raw_name.clone(),
                stored_name: stored_name.clone(),
                mime_type: mime_type.clone(),
                declared_size: handle.snapshot().size,
                headers: Arc::clone(&self.headers),
                fields: self.fields.clone(),
            };
            let options = events
                .starting(event)
                .await
                .map_err(|error| event_failure(error, FileError::FileStarting))?;
            if let Some(name) = options.file_name {
                stored_name = usable_name(&name)?;
            }
            if let Some(sub) = options.folder {
                let sub = confined_folder(&sub).ok_or_else(|| {
                    event_failure(
                        EventError::from("the chosen folder leaves the upload folder"),
                        FileError::UploadFolderNotFound,
                    )
                })?;
                folder = folder.join(sub);
            }
            if let Some(message) = options.server_message {
                handle.update(|info| info.server_message = Some(message));
            }
        }

        let sink_file = SinkFile {
            key: handle.key().clone(),
            name: stored_name.clone(),
            mime_type: mime_type.clone(),
        };
        let mut writer = Writer::open(config, sink_file)
            .await
            .map_err(|error| io_failure(&error, FileError::FileStarting, "create the file"))?;
        let max = match (&config.sink, config.max_file_size) {
            (UploadSink::Memory { max_bytes }, Some(limit)) => Some(limit.min(*max_bytes)),
            (UploadSink::Memory { max_bytes }, None) => Some(*max_bytes),
            (_, limit) => limit,
        };
        let watch_chunks = events.filter(|events| events.has_uploading());
        // The first bytes, while they are still needed to check the content's type.
        let mut head = (config.sniff_mime_types && !config.allowed_mime_types.is_any())
            .then(|| Vec::with_capacity(SNIFF_LEN));
        let mut received = 0u64;
        {
            let mut cancelled = pin!(handle.cancelled());
            loop {
                let chunk = tokio::select! {
                    biased;
                    () = &mut cancelled => return Err(Failure::canceled()),
                    chunk = field.chunk() => chunk.map_err(multipart_failure)?,
                };
                let Some(chunk) = chunk else { break };
                let offset = received;
                received += chunk.len() as u64;
                if let Some(max) = max {
                    if received > max {
                        return Err(Failure::file_too_large(max));
                    }
                }
                if let Some(buffer) = head.as_mut() {
                    let wanted = (SNIFF_LEN - buffer.len()).min(chunk.len());
                    buffer.extend_from_slice(&chunk[..wanted]);
                    if buffer.len() == SNIFF_LEN {
                        check_content(config, &mime_type, buffer)?;
                        head = None;
                    }
                }
                if let Some(events) = watch_chunks {
                    let event = FileChunk {
                        key: handle.key().clone(),
                        cid: self.cid.clone(),
                        offset,
                        data: chunk.clone(),
                    };
                    events
                        .uploading(event)
                        .await
                        .map_err(|error| event_failure(error, FileError::FileWriting))?;
                }
                let len = chunk.len() as u64;
                writer.push(chunk).await.map_err(|error| {
                    io_failure(&error, FileError::FileWriting, "write the file")
                })?;
                // Counted as received, not as written: a batch reaches the disk later, and
                // a slow upload must not look stalled meanwhile. Status 2 waits for the disk.
                handle.add_bytes(len);
                // Publishes progress to a shared store when due; free otherwise.
                handle.checkpoint().await;
            }
        }
        if let Some(buffer) = head {
            check_content(config, &mime_type, &buffer)?;
        }
        let received_file = writer
            .finish()
            .await
            .map_err(|error| io_failure(&error, FileError::FileWriting, "write the file"))?;
        handle.update(|info| info.size = Some(received));
        let _ = handle.set_status(UploadStatus::UploadFinishing).await;

        let mut file_taken = false;
        if let Some(events) = events {
            let (temp_path, data) = match &received_file {
                Received::Disk(file) => (Some(file.path().to_owned()), None),
                Received::Memory(data) => (None, Some(data.clone())),
                Received::Custom => (None, None),
            };
            let event = UploadFinishing {
                key: handle.key().clone(),
                cid: self.cid.clone(),
                file_name: raw_name,
                stored_name: stored_name.clone(),
                mime_type,
                size: received,
                temp_path,
                data,
                headers: Arc::clone(&self.headers),
                fields: self.fields.clone(),
            };
            let options = match events.finishing(event).await {
                Ok(options) => options,
                Err(error) => {
                    if let Received::Disk(file) = received_file {
                        discard(file);
                    }
                    return Err(event_failure(error, FileError::FileSaving));
                }
            };
            if let Some(message) = options.server_message {
                handle.update(|info| info.server_message = Some(message));
            }
            file_taken = options.file_taken;
        }

        let path = match received_file {
            Received::Disk(file) if file_taken => {
                // The handler moved or deleted it; deleting what may be left is harmless.
                discard(file);
                None
            }
            Received::Disk(file) => Some(store_file(file, folder, stored_name, config).await?),
            Received::Memory(_) | Received::Custom => None,
        };
        let handle = self.current.take().expect("set above");
        let info = handle
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        trace!(info, key = %info.key, bytes = info.bytes_uploaded, path = ?path, "upload finished");
        self.done.push((info, path));
        Ok(())
    }

    /// Keeps a non-file form field (igUpload's `AdditionalDataFields`), bounded in count and
    /// size.
    async fn receive_field<S>(&mut self, mut field: Field<'_, S>) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes, BodyError>>,
    {
        let config = &*self.config;
        if self.fields.len() >= config.max_fields {
            return Err(Failure::parse(format_args!(
                "the request has more than {} form fields",
                config.max_fields
            ))
            .with_http(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let name = field.name().unwrap_or_default().to_owned();
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_failure)? {
            if value.len() + chunk.len() > config.max_field_size {
                return Err(Failure::parse(format_args!(
                    "the form field {name:?} is larger than the {} limit",
                    human_size(config.max_field_size as u64)
                ))
                .with_http(StatusCode::PAYLOAD_TOO_LARGE));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        self.fields.push(FormField { name, value });
        Ok(())
    }

    /// The key in progress and the keys not reached, in order.
    fn take_unfinished(&mut self) -> Vec<UploadHandle> {
        self.current
            .take()
            .into_iter()
            .chain(self.pending.drain(..))
            .collect()
    }

    /// Ends the key in progress and every key not reached with `failure`; keys already
    /// finished keep their files.
    async fn fail(mut self, failure: Failure) -> Response<Bytes> {
        trace!(
            info,
            status = %failure.status,
            error = %failure.error,
            http = failure.http.as_u16(),
            message = %failure.message,
            "upload failed"
        );
        let message = Some(failure.message.clone()).filter(|message| !message.is_empty());
        let unfinished = self.take_unfinished();
        for handle in unfinished {
            let info = handle
                .finish(failure.status, failure.error, message.clone())
                .await;
            self.done.push((info, None));
        }
        self.announce().await;
        self.answer(Some(&failure))
    }
}

impl Drop for Job {
    /// The response future was dropped mid-upload (the connection went away, a timeout layer
    /// fired, the server shut down): the handles record status 8 as they drop; the
    /// `upload_finished` handlers still hear of every key, from a spawned task.
    fn drop(&mut self) {
        let unfinished = self.take_unfinished();
        let Some(events) = self.events.clone().filter(|_| !unfinished.is_empty()) else {
            return;
        };
        let events_for_keys: Vec<UploadFinished> = unfinished
            .iter()
            .map(|handle| {
                let mut info = handle.snapshot();
                info.status = UploadStatus::CanceledByClientConnection;
                info.error = FileError::None;
                info.finished_at = Some(std::time::SystemTime::now());
                UploadFinished {
                    info,
                    path: None,
                    headers: Arc::clone(&self.headers),
                    fields: self.fields.clone(),
                }
            })
            .collect();
        drop(unfinished);
        trace!(
            info,
            keys = events_for_keys.len(),
            "upload dropped before it ended"
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for event in events_for_keys {
                    events.finished(event).await;
                }
            });
        }
    }
}

/// Refuses a file whose first bytes show a type that is not allowed.
fn check_content(config: &Config, declared: &str, head: &[u8]) -> Result<(), Failure> {
    let sniffed = sniff(head);
    if content_allowed(&config.allowed_mime_types, declared, sniffed) {
        return Ok(());
    }
    Err(Failure::new(
        UploadStatus::ErrorUploading,
        FileError::MimeTypeValidation,
        format!(
            "the file's content is {}, not an allowed type (allowed: {})",
            sniffed.unwrap_or("unknown"),
            config.allowed_mime_types
        ),
    ))
}

fn usable_name(raw: &str) -> Result<String, Failure> {
    sanitize_file_name(raw).map_err(|error| {
        Failure::new(
            UploadStatus::ErrorUploading,
            FileError::EstablishingFileName,
            format!("the file name cannot be used: {error}"),
        )
    })
}

async fn store_file(
    file: NamedTempFile,
    folder: PathBuf,
    name: String,
    config: &Config,
) -> Result<PathBuf, Failure> {
    if folder != config.upload_dir {
        let create = folder.clone();
        blocking(move || std::fs::create_dir_all(create))
            .await
            .map_err(|error| {
                io_failure(&error, FileError::UploadFolderNotFound, "create the folder")
            })?;
    }
    persist(file, folder, name, config.overwrite)
        .await
        .map_err(|error| match error {
            PersistError::Exists(path) => Failure::new(
                UploadStatus::ErrorUploading,
                FileError::FileSaving,
                format!(
                    "a file named {:?} already exists",
                    path.file_name().unwrap_or_default()
                ),
            )
            .with_http(StatusCode::CONFLICT),
            PersistError::Io(error) if error.kind() == io::ErrorKind::NotFound => io_failure(
                &error,
                FileError::UploadFolderNotFound,
                "find the upload folder",
            ),
            PersistError::Io(error) => io_failure(&error, FileError::FileSaving, "save the file"),
        })
}

fn event_failure(error: EventError, code: FileError) -> Failure {
    match error.into_kind() {
        EventErrorKind::Veto { message, status } => Failure::new(
            UploadStatus::CanceledByEvent,
            FileError::ServerSideCancel,
            message,
        )
        .with_http(status),
        EventErrorKind::Failed(error) => {
            trace!(warn, %error, "an upload event handler failed");
            #[cfg(not(feature = "tracing"))]
            let _ = error;
            Failure::new(
                UploadStatus::ErrorUploading,
                code,
                "the server failed to process the upload",
            )
        }
    }
}

fn multipart_failure(error: MultipartError) -> Failure {
    match error {
        MultipartError::Stream(body_error) => body_failure(body_error),
        MultipartError::Parse(message) => Failure::parse(message),
    }
}

fn body_failure(error: BodyError) -> Failure {
    match error {
        BodyError::Read(_) => Failure::disconnected(),
        BodyError::Idle(after) => Failure::new(
            UploadStatus::ErrorUploading,
            FileError::FileWriting,
            format!(
                "no data was received for {} s; the upload was cut off",
                after.as_secs()
            ),
        )
        .with_http(StatusCode::REQUEST_TIMEOUT),
        BodyError::TooLarge(limit) => Failure::request_too_large(limit),
        BodyError::HeadersTooLarge(limit) => {
            Failure::parse(format_args!("part headers are larger than {limit} bytes"))
                .with_http(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
    }
}

/// A file-system failure. The message names the kind of problem, never a server path.
fn io_failure(error: &io::Error, code: FileError, what: &str) -> Failure {
    trace!(warn, %error, what, "upload I/O failure");
    let cause = match error.kind() {
        io::ErrorKind::StorageFull => "no space left",
        io::ErrorKind::PermissionDenied => "permission denied",
        io::ErrorKind::NotFound => "folder not found",
        io::ErrorKind::ReadOnlyFilesystem => "read-only storage",
        io::ErrorKind::QuotaExceeded => "quota exceeded",
        _ => "I/O error",
    };
    let code = if error.kind() == io::ErrorKind::NotFound {
        FileError::UploadFolderNotFound
    } else {
        code
    };
    Failure::io(code, &format!("{what} ({cause})"))
}

/// The most bytes of a client's file name the registry keeps.
const MAX_KEPT_NAME: usize = 1024;

fn kept_name(raw: &str) -> String {
    let mut end = raw.len().min(MAX_KEPT_NAME);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    raw[..end].to_owned()
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
