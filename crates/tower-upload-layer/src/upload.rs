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

use crate::answer::{human_size, json, protocol_error, upload_answer, Failure};
use crate::config::Config;
use crate::file::{blocking, persist, sweep_orphans, PersistError, TempUpload};
use crate::names::sanitize_file_name;
use crate::stream::{BodyError, BodyStream, Gauge};
use crate::BoxError;

type Multipart = multer::Multipart<'static>;
type Field = multer::Field<'static>;

/// Answers one request to the upload path. Never fails: every outcome is an HTTP answer.
pub(crate) async fn handle<B>(config: Arc<Config>, request: Request<B>) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
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
    let Some(boundary) = multipart_boundary(&parts.headers) else {
        return protocol_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_multipart",
            "an upload must be a multipart/form-data body with a boundary",
        );
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
    let cid = query.cid.as_deref();
    let handles = match register(&config, keys, cid, declared).await {
        Ok(handles) => handles,
        Err(answer) => return answer,
    };
    sweep_once(&config);
    Job::new(config, handles)
        .run(body, boundary, declared)
        .await
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

fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = content_type.split(';').next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    multer::parse_boundary(content_type).ok()
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
    declared: Option<u64>,
) -> Result<Vec<UploadHandle>, Response<Bytes>> {
    let single = keys.len() == 1;
    let mut handles = Vec::with_capacity(keys.len());
    for key in keys {
        let mut info = UploadInfo::new(key);
        info.cid = cid.map(str::to_owned);
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
    if config.swept.swap(true, Ordering::Relaxed) {
        return;
    }
    let dir = config.temp_dir();
    let min_age = config.registry.retention();
    tokio::task::spawn_blocking(move || sweep_orphans(&dir, min_age));
}

/// One upload request in progress.
struct Job {
    config: Arc<Config>,
    /// Keys whose file part has not started, in order.
    pending: VecDeque<UploadHandle>,
    /// The key whose file part is streaming.
    current: Option<UploadHandle>,
    /// Final records, in key order.
    done: Vec<UploadInfo>,
    saved: Vec<PathBuf>,
    fields: Vec<(String, String)>,
}

impl Job {
    fn new(config: Arc<Config>, handles: Vec<UploadHandle>) -> Self {
        Self {
            config,
            done: Vec::with_capacity(handles.len()),
            saved: Vec::with_capacity(handles.len()),
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
        upload_answer(&self.done, None)
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
        let temp_dir = self.config.temp_dir();
        blocking(move || {
            std::fs::create_dir_all(&upload_dir)?;
            std::fs::create_dir_all(&temp_dir)
        })
        .await
        .map_err(|_| Failure::io(FileError::UploadFolderNotFound, "create the upload folder"))
    }

    async fn next_field(
        &self,
        multipart: &mut Multipart,
        gauge: &Gauge,
    ) -> Result<Option<Field>, Failure> {
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
        next
    }

    async fn receive_file(&mut self, mut field: Field) -> Result<(), Failure> {
        let Some(handle) = self.pending.pop_front() else {
            return Err(Failure::parse(format_args!(
                "the request has more file parts than keys ({})",
                self.done.len()
            )));
        };
        let handle = &*self.current.insert(handle);
        let config = &*self.config;
        let raw_name = field.file_name().unwrap_or_default().to_owned();
        let mime_type = field
            .content_type()
            .map_or("application/octet-stream", |mime| mime.essence_str())
            .to_owned();
        handle.update(|info| {
            info.file_name = Some(raw_name.clone());
            info.mime_type = Some(mime_type.clone());
        });
        // A store failure must not stop the upload; the status degrades, the file is kept.
        let _ = handle.set_status(UploadStatus::Started).await;

        let name = sanitize_file_name(&raw_name).map_err(|error| {
            Failure::new(
                UploadStatus::ErrorUploading,
                FileError::EstablishingFileName,
                format!("the file name cannot be used: {error}"),
            )
        })?;
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

        let mut temp = TempUpload::create(config.temp_dir(), config.buffer_size)
            .await
            .map_err(|error| io_failure(&error, FileError::FileStarting, "create the file"))?;
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
                received += chunk.len() as u64;
                if let Some(max) = config.max_file_size {
                    if received > max {
                        return Err(Failure::file_too_large(max));
                    }
                }
                temp.push(chunk, handle).await.map_err(|error| {
                    io_failure(&error, FileError::FileWriting, "write the file")
                })?;
            }
        }
        let file = temp
            .finish(handle)
            .await
            .map_err(|error| io_failure(&error, FileError::FileWriting, "write the file"))?;
        handle.update(|info| info.size = Some(received));
        let _ = handle.set_status(UploadStatus::UploadFinishing).await;

        let path = persist(file, config.upload_dir.clone(), name, config.overwrite)
            .await
            .map_err(|error| match error {
                PersistError::Exists(path) => Failure::new(
                    UploadStatus::ErrorUploading,
                    FileError::FileSaving,
                    format!(
                        "a file named {:?} already exists",
                        path.file_name().unwrap_or_default()
                    ),
                ),
                PersistError::Io(error) if error.kind() == io::ErrorKind::NotFound => io_failure(
                    &error,
                    FileError::UploadFolderNotFound,
                    "find the upload folder",
                ),
                PersistError::Io(error) => {
                    io_failure(&error, FileError::FileSaving, "save the file")
                }
            })?;
        let handle = self.current.take().expect("set above");
        let info = handle
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        self.done.push(info);
        self.saved.push(path);
        Ok(())
    }

    /// Keeps a non-file form field (igUpload's `AdditionalDataFields`), bounded in count and
    /// size.
    async fn receive_field(&mut self, mut field: Field) -> Result<(), Failure> {
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
        self.fields.push((name, value));
        Ok(())
    }

    /// Ends the key in progress and every key not reached with `failure`; keys already
    /// finished keep their files.
    async fn fail(mut self, failure: Failure) -> Response<Bytes> {
        let message = Some(failure.message.clone()).filter(|message| !message.is_empty());
        let unfinished = self
            .current
            .take()
            .into_iter()
            .chain(self.pending.drain(..));
        for handle in unfinished.collect::<Vec<_>>() {
            let info = handle
                .finish(failure.status, failure.error, message.clone())
                .await;
            self.done.push(info);
        }
        upload_answer(&self.done, Some(&failure))
    }
}

fn multipart_failure(error: multer::Error) -> Failure {
    match error {
        multer::Error::StreamReadFailed(source) => match source.downcast::<BodyError>() {
            Ok(body_error) => body_failure(*body_error),
            Err(_) => Failure::disconnected(),
        },
        other => Failure::parse(other),
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
