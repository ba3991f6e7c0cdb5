//! The multipart front-end: `POST {upload_path}?key=K` (or `key=K1;K2;K3`) with a
//! `multipart/form-data` body, as the igUpload widget, HTML forms and most clients send.
//!
//! The i-th file part belongs to the i-th key. Every key is claimed before a byte of the body
//! is read. Then:
//!
//! - a failure inside a file part ends that part's key (the pipeline records it);
//! - a failure between parts (a malformed or oversized part header, a field over its limit,
//!   a cancel or disconnect while waiting for the next part) ends the key whose part was
//!   expected next;
//! - keys finished before a failure keep their files; keys not reached are released, as if
//!   they had never been claimed (a retry may post them again), unless the client went away:
//!   then they end with status 8 as well, since the whole request was canceled by the client;
//! - once every key has its file, the request has succeeded: what follows is read only for
//!   the form fields, and a malformed remainder is logged and ignored.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use tower_upload_state::{
    ClaimError, Command, FileError, KeyError, UploadHandle, UploadInfo, UploadKey, UploadQuery,
    UploadStatus,
};

use crate::answer::{human_size, protocol_error, upload_answer};
use crate::config::Config;
use crate::events::FormField;
use crate::failure::Failure;
use crate::file::blocking;
use crate::front::sweep_when_due;
use crate::multipart::{boundary, BoundaryError, Field, Multipart};
use crate::pipeline::{end_with, Ended, Fields, FilePart, PartHead, RequestContext};
use crate::results::{RequestFailure, UploadedFile, UploadedFiles};
use crate::sink::UploadSink;
use crate::stream::{BodyError, BodyStream, Gauge, Pace};
use crate::trace::trace;
use crate::BoxError;

/// RFC 9530's header for the digest of the stored file.
const REPR_DIGEST: http::HeaderName = http::HeaderName::from_static("repr-digest");

/// The response header that names each generated key of a keyless upload, in part order.
const UPLOAD_KEY: http::HeaderName = http::HeaderName::from_static("upload-key");

/// What a multipart upload request turned into.
pub(crate) enum Processed {
    /// The layer's own answer, the only one: the request was refused before its files, or
    /// results are not forwarded.
    Answer(Response<Bytes>),
    /// The files were read (forward mode): the request's head and what it brought, for the
    /// application to answer.
    Uploaded {
        request: Arc<Parts>,
        files: UploadedFiles,
    },
}

/// Answers one request to the upload path. Never fails: every outcome is an HTTP answer.
pub(crate) async fn handle<B>(config: Arc<Config>, request: Request<B>) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match process(config, request).await {
        Processed::Answer(answer) => answer,
        Processed::Uploaded { .. } => unreachable!("results are forwarded only in forward mode"),
    }
}

/// Runs one request to the upload path: the layer's answer, or (in forward mode) the results
/// for the application.
pub(crate) async fn process<B>(config: Arc<Config>, request: Request<B>) -> Processed
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let started = match begin(&config, &parts).await {
        Ok(started) => started,
        Err(answer) => return Processed::Answer(answer),
    };
    #[cfg(feature = "tracing")]
    let keys = started.keys.clone();
    let Begun {
        boundary,
        permit,
        declared,
        cid,
        claimed,
        ..
    } = started;
    sweep_when_due(&config);
    let context = RequestContext::new(config, cid.clone(), Arc::new(parts));
    let upload = match claimed {
        Claimed::Keys(handles) => MultipartUpload::new(context, handles, None),
        Claimed::Keyless(owner) => {
            MultipartUpload::new(context, Vec::new(), Some(Keyless { owner }))
        }
    };
    let run = upload.run(body, boundary, declared);
    #[cfg(feature = "tracing")]
    let run = tracing::Instrument::instrument(
        run,
        tracing::info_span!(
            "upload",
            keys,
            cid = cid.as_deref().unwrap_or_default(),
            declared_size = declared,
            file_name = tracing::field::Empty,
        ),
    );
    let processed = run.await;
    drop(permit);
    processed
}

/// What the checks before the body leave for the upload.
struct Begun {
    boundary: String,
    /// One of `max_concurrent_uploads`, held until the upload ends.
    permit: tokio::sync::OwnedSemaphorePermit,
    declared: Option<u64>,
    cid: Option<String>,
    claimed: Claimed,
    /// The `key` parameter as sent, for the tracing span.
    #[cfg(feature = "tracing")]
    keys: String,
}

/// The keys of an upload request, claimed before its body is read.
enum Claimed {
    /// The request's own keys, in order.
    Keys(Vec<UploadHandle>),
    /// No keys: each file gets one as it starts, for this owner.
    Keyless(Option<String>),
}

/// The checks before the body: the query, the command, the keys, the content type, a
/// concurrency permit, and the keys' claims. `Err` is the layer's answer.
async fn begin(config: &Config, parts: &Parts) -> Result<Begun, Response<Bytes>> {
    let query = match UploadQuery::parse(parts.uri.query().unwrap_or("")) {
        Ok(query) => query,
        Err(error) => return Err(protocol_error(StatusCode::BAD_REQUEST, "bad_query", error)),
    };
    match query.command() {
        Ok(None) => {}
        Ok(Some(Command::FileSize)) => return Err(record_file_size(config, &query, parts).await),
        Ok(Some(command)) => {
            return Err(protocol_error(
                StatusCode::BAD_REQUEST,
                "unsupported_command",
                format_args!(
                    "`command={}` is answered by the status service, not the upload URL",
                    command.as_str()
                ),
            ))
        }
        Err(error) => {
            return Err(protocol_error(
                StatusCode::BAD_REQUEST,
                "unknown_command",
                error,
            ))
        }
    }
    // No `key`: nginx's progress clients name the upload `X-Progress-ID`; else a keyless
    // upload (curl, an HTML form), for which the layer makes a key per file.
    let keys = match query.keys() {
        Ok(keys) => Some(keys),
        Err(KeyError::Missing) => match progress_id(parts) {
            Some(id) => Some(vec![
                UploadKey::parse(&id).map_err(|error| key_error(&error))?
            ]),
            None => None,
        },
        Err(error) => return Err(key_error(&error)),
    };
    if let Some(keys) = keys
        .as_ref()
        .filter(|keys| keys.len() > config.max_files_per_request)
    {
        return Err(protocol_error(
            StatusCode::BAD_REQUEST,
            "too_many_files",
            format_args!(
                "the request names {} keys; at most {} files are allowed per request",
                keys.len(),
                config.max_files_per_request
            ),
        ));
    }
    let boundary = match multipart_boundary(&parts.headers) {
        Ok(boundary) => boundary,
        Err(BoundaryError::NotMultipart) => {
            return Err(protocol_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_multipart",
                "an upload must be a multipart/form-data body with a boundary",
            ))
        }
        Err(BoundaryError::Invalid) => {
            return Err(protocol_error(
                StatusCode::BAD_REQUEST,
                "invalid_boundary",
                "the multipart/form-data boundary is missing or invalid (RFC 2046: 1 to 70 \
                 characters)",
            ))
        }
    };
    let Ok(permit) = Arc::clone(&config.limiter).try_acquire_owned() else {
        return Err(protocol_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_uploads",
            format_args!(
                "the server is receiving its maximum of {} uploads; try again later",
                config.max_concurrent_uploads
            ),
        ));
    };
    let declared = content_length(&parts.headers);
    let cid = query.cid.as_deref().map(str::to_owned);
    let owner = config.registry.owner_of(parts);
    let claimed = match keys {
        Some(keys) => Claimed::Keys(claim(config, keys, cid.as_deref(), owner, declared).await?),
        None => Claimed::Keyless(owner),
    };
    Ok(Begun {
        boundary,
        permit,
        declared,
        cid,
        claimed,
        #[cfg(feature = "tracing")]
        keys: query.key.as_deref().unwrap_or_default().to_owned(),
    })
}

/// The widget's iframe transport posts `command=fileSize` first: keep the size, not the body.
async fn record_file_size(
    config: &Config,
    query: &UploadQuery<'_>,
    parts: &http::request::Parts,
) -> Response<Bytes> {
    let key = match query.key() {
        Ok(key) => key,
        Err(error) => return key_error(&error),
    };
    let Some(size) = content_length(&parts.headers) else {
        return protocol_error(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "`command=fileSize` needs a Content-Length header",
        );
    };
    let owner = config.registry.owner_of(parts);
    let recorded = config
        .registry
        .record_file_size_for(&key, size, owner.as_deref())
        .await;
    if let Err(error) = recorded {
        return store_unavailable(&error);
    }
    tower_upload_state::json_response(StatusCode::OK, format!("{{\"fileSize\":{size}}}"))
}

/// The store failed: the client learns that, not the store's own words (they may name hosts).
fn store_unavailable(error: &dyn std::fmt::Display) -> Response<Bytes> {
    trace!(warn, %error, "the upload store failed");
    #[cfg(not(feature = "tracing"))]
    let _ = error;
    protocol_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the upload store is unavailable; try again later",
    )
}

/// nginx upload-progress module's key: the `X-Progress-ID` query parameter, or header.
fn progress_id(parts: &Parts) -> Option<String> {
    let query = parts.uri.query().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name.eq_ignore_ascii_case("x-progress-id"))
        .map(|(_, value)| value.into_owned())
        .or_else(|| {
            let header = parts.headers.get("x-progress-id")?;
            header.to_str().ok().map(str::to_owned)
        })
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
async fn claim(
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
        // Another owner's key: nothing about its record is told.
        ClaimError::Foreign => {
            protocol_error(StatusCode::CONFLICT, "upload_key_unavailable", error)
        }
        ClaimError::Rejected(previous) => {
            // A repeated POST (Chromium re-sends after a hang-up) gets the same verdict.
            let failure = Failure::from_info(&previous);
            upload_answer(std::slice::from_ref(&*previous), false, Some(&failure))
        }
        ClaimError::Full { .. } => {
            protocol_error(StatusCode::SERVICE_UNAVAILABLE, "registry_full", error)
        }
        error => store_unavailable(&error),
    }
}

/// What a keyless upload claims each file's generated key with.
struct Keyless {
    owner: Option<String>,
}

/// One multipart upload request in progress.
struct MultipartUpload {
    context: Arc<RequestContext>,
    /// Keys whose file part has not started, in order.
    pending: VecDeque<UploadHandle>,
    /// The final records of the keys that ended, in key order.
    ended: Vec<UploadInfo>,
    /// The non-file fields, kept while someone can read them (event handlers).
    fields: Fields,
    /// How many non-file fields were read (kept or not).
    field_count: usize,
    /// Whether the request names several keys, or none (it answers in the batch form).
    batch: bool,
    /// `Some` for a keyless upload: each file part gets a key of its own when it starts.
    keyless: Option<Keyless>,
    /// In forward mode: what the application learns of each file, in key order.
    files: Option<Vec<UploadedFile>>,
}

impl MultipartUpload {
    fn new(context: RequestContext, handles: Vec<UploadHandle>, keyless: Option<Keyless>) -> Self {
        let forward = context.config.forward.is_some();
        Self {
            context: Arc::new(context),
            ended: Vec::with_capacity(handles.len()),
            batch: handles.len() > 1 || keyless.is_some(),
            keyless,
            files: forward.then(|| Vec::with_capacity(handles.len())),
            pending: handles.into(),
            fields: Fields::default(),
            field_count: 0,
        }
    }

    fn config(&self) -> &Config {
        &self.context.config
    }

    async fn run<B>(mut self, body: B, boundary: String, declared: Option<u64>) -> Processed
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(failure) = self.refuse_by_length(declared) {
            return self.refuse_all(failure).await;
        }
        if let Err(failure) = self.prepare_temp_folder().await {
            return self.refuse_all(failure).await;
        }
        let config = &self.context.config;
        let gauge = Gauge::new();
        let pace = Pace {
            idle_timeout: config.idle_timeout,
            min_rate: config.min_transfer_rate,
        };
        let stream = BodyStream::new(
            body,
            Arc::clone(&gauge),
            config.max_request_size,
            pace,
            config.max_part_header_size,
        );
        let mut multipart = Multipart::new(stream, boundary);
        loop {
            let field = match self.next_field(&mut multipart, &gauge).await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(failure) => return self.fail_next(failure).await,
            };
            let Some(file_name) = field.file_name().map(str::to_owned) else {
                if let Err(failure) = self.receive_field(field).await {
                    return self.fail_next(failure).await;
                }
                continue;
            };
            if self.pending.is_empty() && self.keyless.is_none() {
                trace!(info, "a file part after the last key's file is not read");
                break;
            }
            if let Some(failure) = self.receive_file(field, &file_name).await {
                return self.answer(Some(failure)).await;
            }
        }
        if !self.pending.is_empty() {
            let failure = Failure::parse(format_args!(
                "the request has {} file part(s) for {} key(s)",
                self.ended.len(),
                self.ended.len() + self.pending.len()
            ));
            return self.fail_next(failure).await;
        }
        self.answer(None).await
    }

    /// `Content-Length` alone can prove a request too large: refuse before reading it.
    fn refuse_by_length(&self, declared: Option<u64>) -> Option<Failure> {
        let config = self.config();
        let files = match self.keyless {
            Some(_) => config.max_files_per_request,
            None => self.pending.len(),
        };
        let limit = config.request_limit(files)?;
        if declared? <= limit {
            return None;
        }
        Some(match (config.max_request_size, config.max_file_size) {
            (Some(explicit), _) if explicit == limit => Failure::request_too_large(limit),
            (_, Some(max_file)) => Failure::file_too_large(max_file),
            _ => Failure::request_too_large(limit),
        })
    }

    /// The disk sink's temp folder (and so, by default, the upload folder it sits in). The
    /// memory and custom sinks need no folder at all.
    async fn prepare_temp_folder(&self) -> Result<(), Failure> {
        if !matches!(self.config().sink, UploadSink::Disk) {
            return Ok(());
        }
        let temp_dir = self.config().temp_dir();
        blocking(move || std::fs::create_dir_all(temp_dir))
            .await
            .map_err(|error| {
                Failure::io(
                    &error,
                    FileError::UploadFolderNotFound,
                    "create the upload folder",
                )
            })
    }

    async fn next_field<'m, S>(
        &self,
        multipart: &'m mut Multipart<S>,
        gauge: &Gauge,
    ) -> Result<Option<Field<'m, S>>, Failure>
    where
        S: Stream<Item = Result<Bytes, BodyError>>,
    {
        let limit = self.config().max_part_header_size;
        gauge.begin_headers(limit);
        let next = match self.pending.front() {
            // A cancel of the next key stops the request even while the client stalls.
            Some(next_key) => tokio::select! {
                biased;
                () = next_key.cancelled() => Err(Failure::canceled()),
                field = multipart.next_field() => field.map_err(Failure::from),
            },
            None => multipart.next_field().await.map_err(Failure::from),
        };
        gauge.end_headers();
        let field = next?;
        if let Some(field) = &field {
            // A read that starts within the budget may carry headers of any size: check them.
            if field.header_len() > limit {
                return Err(BodyError::HeadersTooLarge(limit).into());
            }
        }
        Ok(field)
    }

    /// Runs the next key's file through the pipeline; returns its failure, if it failed.
    async fn receive_file<S>(&mut self, mut field: Field<'_, S>, file_name: &str) -> Option<Failure>
    where
        S: Stream<Item = Result<Bytes, BodyError>>,
    {
        let mut first = None;
        if file_name.is_empty() {
            // What browsers send for an optional file input left empty: no file, no key used.
            match field.chunk().await {
                Ok(None) => return None,
                Ok(Some(chunk)) => first = Some(chunk),
                Err(error) => return self.fail_next_key(error.into()).await,
            }
        }
        let handle = match self.pending.pop_front() {
            Some(handle) => handle,
            None => match self.claim_generated_key().await {
                Ok(handle) => handle,
                Err(failure) => return Some(failure),
            },
        };
        let context = Arc::clone(&self.context);
        let head = PartHead {
            field_name: field.name(),
            file_name,
            content_type: field.content_type(),
            digest: field.digest(),
        };
        let ended = match FilePart::start(context, handle, head, &self.fields).await {
            Ok(part) => stream_part(part, field, first, &self.fields).await,
            Err(ended) => ended,
        };
        self.record(ended.info, ended.file);
        ended.failure
    }

    /// Keeps the final record of a key that ended (and, in forward mode, what the
    /// application learns of its file).
    fn record(&mut self, info: UploadInfo, file: UploadedFile) {
        if let Some(files) = self.files.as_mut() {
            files.push(file);
        }
        self.ended.push(info);
    }

    /// A keyless upload's next file: a fresh, unguessable key, claimed before the part's first
    /// byte is read.
    async fn claim_generated_key(&mut self) -> Result<UploadHandle, Failure> {
        let config = self.config();
        if self.ended.len() >= config.max_files_per_request {
            return Err(Failure::parse(format_args!(
                "the request has more than {} files",
                config.max_files_per_request
            ))
            .with_http(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let mut info = UploadInfo::new(UploadKey::generate());
        info.cid.clone_from(&self.context.cid);
        info.owner = self
            .keyless
            .as_ref()
            .and_then(|keyless| keyless.owner.clone());
        config.registry.begin(info).await.map_err(|error| {
            trace!(warn, %error, "a generated key could not be claimed");
            #[cfg(not(feature = "tracing"))]
            let _ = error;
            Failure::new(
                UploadStatus::ErrorUploading,
                FileError::FileStarting,
                "the server cannot take more uploads now; try again later",
            )
            .with_http(StatusCode::SERVICE_UNAVAILABLE)
        })
    }

    /// Reads a non-file form field (igUpload's `AdditionalDataFields`), bounded in count and
    /// size; its value is kept only when event handlers or the application can read it.
    async fn receive_field<S>(&mut self, mut field: Field<'_, S>) -> Result<(), Failure>
    where
        S: Stream<Item = Result<Bytes, BodyError>>,
    {
        let config = &*self.context.config;
        if self.field_count >= config.max_fields {
            return Err(Failure::parse(format_args!(
                "the request has more than {} form fields",
                config.max_fields
            ))
            .with_http(StatusCode::PAYLOAD_TOO_LARGE));
        }
        self.field_count += 1;
        // Kept for whoever reads them: event handlers, or the application in forward mode.
        let keep = self.context.events().is_some() || self.files.is_some();
        let name = field.name().unwrap_or_default().to_owned();
        let mut value = Vec::new();
        let mut size = 0;
        while let Some(chunk) = field.chunk().await? {
            size += chunk.len();
            if size > config.max_field_size {
                return Err(Failure::parse(format_args!(
                    "the form field {name:?} is larger than the {} limit",
                    human_size(config.max_field_size as u64)
                ))
                .with_http(StatusCode::PAYLOAD_TOO_LARGE));
            }
            if keep {
                value.extend_from_slice(&chunk);
            }
        }
        if keep {
            let value = String::from_utf8(value)
                .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
            // Copies the list only if a handler still holds the previous one.
            Arc::make_mut(&mut self.fields).push(FormField { name, value });
        }
        Ok(())
    }

    /// Ends the key whose part was expected next with `failure`, and answers. Once every key
    /// has its file, the failure concerns nothing stored: the request has succeeded.
    async fn fail_next(mut self, failure: Failure) -> Processed {
        if self.keyless.is_some() {
            // No key was expected next: the failure concerns the request.
            return self.answer(Some(failure)).await;
        }
        if self.pending.is_empty() {
            trace!(info, message = %failure.message, "ignored after the last file");
            return self.answer(None).await;
        }
        let failure = self.fail_next_key(failure).await;
        self.answer(failure).await
    }

    async fn fail_next_key(&mut self, failure: Failure) -> Option<Failure> {
        let handle = self.pending.pop_front()?;
        let info = end_with(handle, &failure).await;
        self.context.ended(&info, None);
        let file = UploadedFile::from_info(&info);
        self.record(info, file);
        Some(failure)
    }

    /// A refusal of the whole request before any part was read: every key ends with it.
    async fn refuse_all(mut self, failure: Failure) -> Processed {
        trace!(info, message = %failure.message, "upload request refused");
        while let Some(handle) = self.pending.pop_front() {
            let info = end_with(handle, &failure).await;
            self.context.ended(&info, None);
            let file = UploadedFile::from_info(&info);
            self.record(info, file);
        }
        self.answer(Some(failure)).await
    }

    /// Ends or releases the keys not reached; then the layer's answer from the records of
    /// those that ended, or (forward mode) the results for the application.
    async fn answer(mut self, failure: Option<Failure>) -> Processed {
        let client_left = failure
            .as_ref()
            .is_some_and(|failure| failure.status == UploadStatus::CanceledByClientConnection);
        for handle in self.pending.drain(..) {
            if client_left {
                // Not listed in the answer: nobody reads it.
                let info = end_with(handle, failure.as_ref().expect("checked")).await;
                self.context.ended(&info, None);
            } else {
                handle.abandon().await;
            }
        }
        self.context.set_fields(&self.fields);
        let config = &self.context.config;
        if let (Some(forward), Some(files)) = (&config.forward, self.files.take()) {
            if failure.is_none() || !forward.answer_refusals {
                let failure = failure.map(|failure| RequestFailure {
                    http: failure.http,
                    status: failure.status,
                    error: failure.error,
                    message: failure.message,
                });
                let files = UploadedFiles {
                    files,
                    fields: Arc::clone(&self.fields),
                    failure,
                };
                return Processed::Uploaded {
                    request: Arc::clone(&self.context.request),
                    files,
                };
            }
        }
        if let Some(location) = &config.redirect {
            return Processed::Answer(see_other(location, &self.ended, failure.as_ref()));
        }
        let mut response = upload_answer(&self.ended, self.batch, failure.as_ref());
        if let (false, [info]) = (self.batch, self.ended.as_slice()) {
            // RFC 9530: the digest of the stored file, for a client that checks it.
            let digest = info.digest.as_deref().filter(|_| failure.is_none());
            if let Some(value) = digest.and_then(|d| http::HeaderValue::from_str(d).ok()) {
                response.headers_mut().insert(REPR_DIGEST, value);
            }
        }
        if self.keyless.is_some() {
            // The keys the layer made, in part order, for clients that read headers only.
            let headers = response.headers_mut();
            for info in &self.ended {
                if let Ok(value) = http::HeaderValue::from_str(info.key.as_str()) {
                    headers.append(UPLOAD_KEY, value);
                }
            }
        }
        Processed::Answer(response)
    }
}

impl Drop for MultipartUpload {
    /// The response future was dropped (the client went away, a timeout fired, the server
    /// shut down): the part in progress cleans up by itself; the keys not reached record
    /// status 8 as their handles drop; the handlers hear of them with the fields read so far.
    fn drop(&mut self) {
        for handle in self.pending.drain(..) {
            let mut info = handle.snapshot();
            info.status = UploadStatus::CanceledByClientConnection;
            info.finished_at = Some(std::time::SystemTime::now());
            drop(handle);
            self.context.ended(&info, None);
        }
        self.context.set_fields(&self.fields);
    }
}

/// `303 See Other` to `location`, with the outcome in its query.
fn see_other(location: &str, ended: &[UploadInfo], failure: Option<&Failure>) -> Response<Bytes> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(failure) = failure {
        query
            .append_pair("status", &failure.status.code().to_string())
            .append_pair("error", &failure.error.code().to_string());
    }
    let keys: Vec<&str> = ended.iter().map(|info| info.key.as_str()).collect();
    query.append_pair("keys", &keys.join(";"));
    let separator = if location.contains('?') { '&' } else { '?' };
    let target = format!("{location}{separator}{}", query.finish());
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = http::HeaderValue::from_str(&target) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Feeds one file part's body through its pipeline until the part ends.
async fn stream_part<S>(
    mut part: FilePart,
    mut field: Field<'_, S>,
    first: Option<Bytes>,
    fields: &Fields,
) -> Ended
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    if let Some(chunk) = first {
        if let Err(failure) = part.push(chunk).await {
            return part.fail(failure).await;
        }
    }
    loop {
        let next = tokio::select! {
            biased;
            () = part.cancelled() => Err(Failure::canceled()),
            chunk = field.chunk() => chunk.map_err(Failure::from),
        };
        let result = match next {
            Ok(Some(chunk)) => part.push(chunk).await,
            Ok(None) => return part.finish(fields).await,
            Err(failure) => Err(failure),
        };
        if let Err(failure) = result {
            return part.fail(failure).await;
        }
    }
}
