//! The tus 1.0.0 front-end (<https://tus.io/protocols/resumable-upload>): resumable uploads
//! under [`resumable_path`](crate::UploadLayer::resumable_path).
//!
//! | request | answer |
//! |---|---|
//! | `OPTIONS {path}` or `{path}{id}` | 204, `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`, `Tus-Checksum-Algorithm` |
//! | `POST {path}` (creation, with or without a body) | 201 + `Location` (+ `Upload-Offset` with a body, `Upload-Expires`) |
//! | `HEAD {path}{id}` | 200, `Upload-Offset`, `Upload-Length` or `Upload-Defer-Length: 1`, `Upload-Metadata`, `Cache-Control: no-store` |
//! | `PATCH {path}{id}` | 204 + `Upload-Offset` (+ `Upload-Expires`) |
//! | `DELETE {path}{id}` | 204; the upload ends with status 4 and its data is deleted |
//!
//! An upload is one registry key (its id: 32 random alphanumerics, the last segment of its
//! URL). Its data lives in `{temp}/resumable/.tu-{id}.part` and its description in
//! `.tu-{id}.info` next to it, so that any instance sharing the folder (or this one after a
//! restart) can take it up. Between requests the upload is *paused*: its registry record is
//! in flight (status 1, `bytesUploaded` = the offset), and the status service reports it.
//! Once its length is reached it goes through the pipeline's finish (status 9,
//! `upload_finishing`, the final name from the `filename` metadata, status 2).
//!
//! **One request at a time.** A request for an upload that another request of this process
//! still holds (a PATCH whose client went away unnoticed, typically) *takes over*: the old
//! request is asked to stop, keeps what it received, and the new one goes on from there (the
//! IETF draft's recommendation: a lock would make the client wait for a timeout). A request
//! held by another instance cannot be stopped from here: the new one is refused with 423
//! (`Retry-After`) until that request ends or its lease lapses (the instance died).
//!
//! **Disconnects keep data.** The request runs in a task of its own, so a client that goes
//! away mid-PATCH does not drop it: what was received is written and the upload paused at
//! that offset, which the next HEAD reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use serde::{Deserialize, Serialize};
use tower_upload_state::{
    ClaimError, ClaimToken, FileError, Resumable, UploadHandle, UploadInfo, UploadKey, UploadStatus,
};

use crate::config::{Config, ResumableConfig};
use crate::failure::Failure;
use crate::file::{blocking, TEMP_PREFIX, TEMP_SUFFIX};
use crate::pipeline::{FilePart, RequestContext, ResumedFile};
use crate::sink::UploadSink;
use crate::stream::{BodyError, BodyStream, Gauge, Pace};
use crate::trace::trace;
use crate::BoxError;

/// The one version served.
const TUS_VERSION: &str = "1.0.0";
/// The extensions served, for `Tus-Extension`.
const TUS_EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,\
     expiration,checksum,concatenation";
/// The checksum algorithms served.
const CHECKSUM_ALGORITHMS: &str = "sha1,sha256,md5";
/// tus' "Checksum Mismatch".
const CHECKSUM_MISMATCH: u16 = 460;
/// How long a request waits for the request it takes over to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// How often a long request renews its lease on the upload.
const LEASE_RENEWAL: Duration = Duration::from_secs(20);
/// How often uploads are checked for expiry, at most.
const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// The length of an upload id.
const ID_LEN: usize = 32;
/// The suffix of an upload's description file.
const INFO_SUFFIX: &str = ".info";

/// Whether `request` is for the resumable front-end: any method but `GET` on the collection
/// path (with or without its trailing slash) or on one upload under it.
pub(crate) fn is_resumable_request<B>(config: &ResumableConfig, request: &Request<B>) -> bool {
    if request.method() == Method::GET {
        return false;
    }
    let path = request.uri().path();
    let base = &config.path;
    if path == base || path == &base[..base.len() - 1] {
        return true;
    }
    path.strip_prefix(base.as_str())
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Answers one request of the resumable front-end. The work runs in a task of its own, so
/// that a client's disconnect does not drop it halfway: the data received is kept.
pub(crate) async fn handle<B>(config: Arc<Config>, request: Request<B>) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match tokio::spawn(route(config, request)).await {
        Ok(response) => response,
        Err(error) => {
            trace!(error, %error, "a resumable upload request failed");
            #[cfg(not(feature = "tracing"))]
            let _ = error;
            text(StatusCode::INTERNAL_SERVER_ERROR, "the server failed")
        }
    }
}

async fn route<B>(config: Arc<Config>, request: Request<B>) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let method = method_of(&parts);
    if method == Method::OPTIONS {
        return options(&config);
    }
    if let Some(version) = super::draft::interop_version(&parts.headers) {
        return super::draft::handle(config, parts, body, method, version).await;
    }
    // tus 1.0: every request but OPTIONS carries the version it speaks.
    match parts
        .headers
        .get("tus-resumable")
        .map(HeaderValue::as_bytes)
    {
        Some(b"1.0.0") => {}
        Some(_) | None => {
            let mut response = text(
                StatusCode::PRECONDITION_FAILED,
                "unsupported or missing Tus-Resumable version; this server speaks 1.0.0",
            );
            response
                .headers_mut()
                .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            return response;
        }
    }
    dispatch(config, parts, body, method).await
}

/// Serves a tus request (the IETF draft's requests come here translated).
pub(super) async fn dispatch<B>(
    config: Arc<Config>,
    parts: http::request::Parts,
    body: B,
    method: Method,
) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let resumable = config
        .resumable
        .clone()
        .expect("routed only when configured");
    let id = parts
        .uri
        .path()
        .strip_prefix(resumable.path.as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let upload = match &id {
        None => None,
        Some(id) => match UploadKey::parse(id) {
            Ok(key) => Some(key),
            Err(_) => return not_found(),
        },
    };
    match (method, upload) {
        (Method::POST, None) => create(config, &resumable, parts, body).await,
        (Method::HEAD, Some(key)) => {
            // A HEAD answer has no body (a message would only confuse a client's framing).
            let mut response = head(&config, &parts, key).await;
            *response.body_mut() = Bytes::new();
            response.headers_mut().remove(CONTENT_TYPE);
            response
        }
        (Method::PATCH, Some(key)) => patch(config, parts, body, key).await,
        (Method::DELETE, Some(key)) => terminate(&config, &parts, key).await,
        (_, None) => method_not_allowed("OPTIONS, POST"),
        (_, Some(_)) => method_not_allowed("OPTIONS, HEAD, PATCH, DELETE"),
    }
}

/// The method, after `X-HTTP-Method-Override` (for clients behind proxies that allow only
/// GET and POST).
fn method_of(parts: &http::request::Parts) -> Method {
    parts
        .headers
        .get("x-http-method-override")
        .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
        .unwrap_or_else(|| parts.method.clone())
}

// ---- answers ----------------------------------------------------------------------------

/// An answer of this front-end: every one carries `Tus-Resumable`.
fn answer(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

/// An error answer with a plain-text message the client can show.
fn text(status: StatusCode, message: impl Into<String>) -> Response<Bytes> {
    let mut response = answer(status);
    *response.body_mut() = Bytes::from(message.into());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn not_found() -> Response<Bytes> {
    text(StatusCode::NOT_FOUND, "no such upload")
}

fn method_not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn bad_request(message: impl Into<String>) -> Response<Bytes> {
    text(StatusCode::BAD_REQUEST, message)
}

/// The answer for a failure of the pipeline (a veto, a refused type, an I/O error).
fn failure_answer(failure: &Failure) -> Response<Bytes> {
    text(failure.http, failure.message.clone())
}

fn too_large(config: &Config, message: impl Into<String>) -> Response<Bytes> {
    let mut response = text(StatusCode::PAYLOAD_TOO_LARGE, message);
    if let Some(max) = config.max_file_size {
        set(&mut response, "tus-max-size", max);
    }
    response
}

fn set(response: &mut Response<Bytes>, name: &'static str, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        response.headers_mut().insert(name, value);
    }
}

fn set_expires(response: &mut Response<Bytes>, expires_at: Option<u64>) {
    if let Some(at) = expires_at {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
        set(response, "upload-expires", httpdate::fmt_http_date(at));
    }
}

fn options(config: &Config) -> Response<Bytes> {
    let mut response = answer(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    // The IETF draft's clients look for this.
    headers.insert(
        "accept-patch",
        HeaderValue::from_static("application/partial-upload, application/offset+octet-stream"),
    );
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static(CHECKSUM_ALGORITHMS),
    );
    if let Some(max) = config.max_file_size {
        set(&mut response, "tus-max-size", max);
    }
    response
}

// ---- what an upload keeps on disk ---------------------------------------------------------

/// An upload's description, kept next to its data (`.tu-{id}.info`): what any instance (or
/// this one after a restart) needs to take the upload up.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sidecar {
    length: Option<u64>,
    metadata: Option<String>,
    file_name: String,
    mime_type: String,
    stored_name: String,
    folder: PathBuf,
    owner: Option<String>,
    /// Seconds since the Unix epoch.
    expires_at: Option<u64>,
    created_at: u64,
    /// tus concatenation: `partial` for a part of a parallel upload.
    #[serde(default)]
    concat: Option<String>,
}

impl Sidecar {
    fn is_partial(&self) -> bool {
        self.concat.as_deref() == Some("partial")
    }
}

fn data_path(config: &Config, key: &UploadKey) -> PathBuf {
    config
        .resumable_dir()
        .join(format!("{TEMP_PREFIX}{key}{TEMP_SUFFIX}"))
}

fn info_path(config: &Config, key: &UploadKey) -> PathBuf {
    config
        .resumable_dir()
        .join(format!("{TEMP_PREFIX}{key}{INFO_SUFFIX}"))
}

async fn read_sidecar(config: &Config, key: &UploadKey) -> Option<Sidecar> {
    let path = info_path(config, key);
    blocking(move || {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    })
    .await
}

async fn write_sidecar(config: &Config, key: &UploadKey, sidecar: &Sidecar) -> std::io::Result<()> {
    let path = info_path(config, key);
    let dir = config.resumable_dir();
    let json = serde_json::to_vec(sidecar).map_err(std::io::Error::other)?;
    blocking(move || {
        // Written whole and renamed: a reader never sees half of it.
        let mut temp = tempfile::Builder::new()
            .prefix(".tu-info-")
            .tempfile_in(&dir)?;
        std::io::Write::write_all(&mut temp, &json)?;
        temp.persist(&path).map(drop).map_err(|error| error.error)
    })
    .await
}

async fn file_len(path: PathBuf) -> Option<u64> {
    blocking(move || std::fs::metadata(path).ok().map(|meta| meta.len())).await
}

/// Deletes an upload's data and description.
async fn delete_files(config: &Config, key: &UploadKey) {
    let (data, info) = (data_path(config, key), info_path(config, key));
    blocking(move || {
        let _ = std::fs::remove_file(data);
        let _ = std::fs::remove_file(info);
    })
    .await;
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn expiry(resumable: &ResumableConfig) -> Option<u64> {
    resumable
        .expiration
        .map(|expiration| unix_now().saturating_add(expiration.as_secs()))
}

/// Whether a record of `record_owner` is out of reach for `owner` (the registry's rule).
fn foreign(config: &Config, record_owner: Option<&str>, owner: Option<&str>) -> bool {
    record_owner != owner && (record_owner.is_some() || config.registry.binds_owners())
}

/// A fresh, unguessable upload id: 32 characters from `[A-Za-z0-9]` (190 bits from the
/// operating system's random source).
fn new_id() -> UploadKey {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(ID_LEN);
    let mut random = [0u8; 64];
    while id.len() < ID_LEN {
        if getrandom::fill(&mut random).is_err() {
            // No OS randomness (practically never): the registry's token source, keyed from
            // it at start-up.
            for (chunk, token) in random
                .chunks_mut(16)
                .zip(std::iter::repeat_with(ClaimToken::random))
            {
                chunk.copy_from_slice(&token.as_u128().to_le_bytes());
            }
        }
        // Bytes of 248 and up are skipped so that every character is equally likely.
        for &byte in random.iter().filter(|&&byte| byte < 248) {
            if id.len() == ID_LEN {
                break;
            }
            id.push(ALPHABET[usize::from(byte % 62)] as char);
        }
    }
    UploadKey::parse(&id).expect("alphanumerics make a valid key")
}

// ---- request headers ----------------------------------------------------------------------

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A non-negative integer header (`Upload-Length`, `Upload-Offset`): digits only.
fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name} must be a non-negative integer"));
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{name} is too large"))
}

/// The parsed `Upload-Metadata`: pairs of a key and an optional value.
fn parse_metadata(raw: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    if raw.trim().is_empty() {
        return Ok(pairs);
    }
    for item in raw.split(',') {
        let item = item.trim();
        let mut words = item.split(' ');
        let key = words.next().unwrap_or_default();
        let value = words.next();
        if key.is_empty() || words.next().is_some() {
            return Err(format!("Upload-Metadata: malformed pair {item:?}"));
        }
        if pairs.iter().any(|(seen, _)| seen == key) {
            return Err(format!("Upload-Metadata: the key {key:?} is repeated"));
        }
        let value = match value {
            None | Some("") => None,
            Some(value) => {
                let bytes = BASE64
                    .decode(value)
                    .map_err(|_| format!("Upload-Metadata: the value of {key:?} is not base64"))?;
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
        };
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

fn metadata_value<'a>(pairs: &'a [(String, Option<String>)], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|wanted| {
        pairs
            .iter()
            .find(|(key, _)| key == wanted)
            .and_then(|(_, value)| value.as_deref())
            .filter(|value| !value.is_empty())
    })
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
    Md5(md5::Md5, Vec<u8>),
}

impl Checksum {
    fn parse(headers: &HeaderMap) -> Result<Option<Self>, String> {
        use sha1::Digest as _;
        let Some(value) = headers.get("upload-checksum") else {
            return Ok(None);
        };
        let value = value.to_str().unwrap_or_default();
        let (algorithm, digest) = value
            .split_once(' ')
            .ok_or_else(|| "Upload-Checksum must be `<algorithm> <base64 digest>`".to_owned())?;
        let expected = BASE64
            .decode(digest.trim())
            .map_err(|_| "Upload-Checksum: the digest is not base64".to_owned())?;
        Ok(Some(match algorithm {
            "sha1" => Self::Sha1(sha1::Sha1::new(), expected),
            "sha256" => Self::Sha256(sha2::Sha256::new(), expected),
            "md5" => Self::Md5(md5::Md5::new(), expected),
            _ => {
                return Err(format!(
                    "unsupported checksum algorithm {algorithm:?} (supported: \
                     {CHECKSUM_ALGORITHMS})"
                ))
            }
        }))
    }

    fn update(&mut self, data: &[u8]) {
        use sha1::Digest as _;
        match self {
            Self::Sha1(hasher, _) => hasher.update(data),
            Self::Sha256(hasher, _) => hasher.update(data),
            Self::Md5(hasher, _) => hasher.update(data),
        }
    }

    fn matches(self) -> bool {
        use sha1::Digest as _;
        match self {
            Self::Sha1(hasher, expected) => hasher.finalize()[..] == expected[..],
            Self::Sha256(hasher, expected) => hasher.finalize()[..] == expected[..],
            Self::Md5(hasher, expected) => hasher.finalize()[..] == expected[..],
        }
    }
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    header(headers, CONTENT_TYPE.as_str()).is_some_and(|value| {
        value.split(';').next().is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/offset+octet-stream")
        })
    })
}

// ---- creation -----------------------------------------------------------------------------

async fn create<B>(
    config: Arc<Config>,
    resumable: &ResumableConfig,
    parts: http::request::Parts,
    body: B,
) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if !matches!(config.sink, UploadSink::Disk) {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "resumable uploads need the disk sink",
        );
    }
    let concat = match header(&parts.headers, "upload-concat") {
        None if parts.headers.contains_key("upload-concat") => {
            return bad_request("Upload-Concat must be ASCII")
        }
        None => None,
        Some("partial") => Some("partial".to_owned()),
        Some(spec) => match spec.strip_prefix("final;") {
            Some(urls) => {
                let urls = urls.to_owned();
                return create_final(config, resumable, parts, &urls).await;
            }
            None => return bad_request("Upload-Concat must be `partial` or `final;<urls>`"),
        },
    };
    let length = match number(&parts.headers, "upload-length") {
        Ok(length) => length,
        Err(message) => return bad_request(message),
    };
    let deferred = match header(&parts.headers, "upload-defer-length") {
        None => false,
        Some("1") => true,
        Some(_) => return bad_request("Upload-Defer-Length must be 1"),
    };
    match (length, deferred) {
        (None, false) => return bad_request("Upload-Length or Upload-Defer-Length: 1 is required"),
        (Some(_), true) => {
            return bad_request("Upload-Length and Upload-Defer-Length exclude each other")
        }
        _ => {}
    }
    if let (Some(length), Some(max)) = (length, config.max_file_size) {
        if length > max {
            return too_large(
                &config,
                format!(
                    "the upload is larger than the {} limit",
                    crate::answer::human_size(max)
                ),
            );
        }
    }
    let raw_metadata = header(&parts.headers, "upload-metadata").map(str::to_owned);
    if parts.headers.contains_key("upload-metadata") && raw_metadata.is_none() {
        return bad_request("Upload-Metadata must be ASCII");
    }
    if raw_metadata
        .as_ref()
        .is_some_and(|raw| raw.len() > Resumable::MAX_LEN)
    {
        return bad_request(format!(
            "Upload-Metadata is longer than {} bytes",
            Resumable::MAX_LEN
        ));
    }
    let metadata = match parse_metadata(raw_metadata.as_deref().unwrap_or_default()) {
        Ok(metadata) => metadata,
        Err(message) => return bad_request(message),
    };
    let declared = content_length(&parts.headers);
    let with_body =
        declared.unwrap_or(0) > 0 || (parts.headers.contains_key(http::header::TRANSFER_ENCODING));
    if with_body && !is_offset_stream(&parts.headers) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a creation body must be application/offset+octet-stream",
        );
    }
    let Ok(_permit) = Arc::clone(&config.limiter).try_acquire_owned() else {
        return busy(&config);
    };
    sweep_expired_when_due(&config, resumable);

    let key = new_id();
    let owner = config.registry.owner_of(&parts);
    let file_name = metadata_value(&metadata, &["filename", "name"])
        .unwrap_or(key.as_str())
        .to_owned();
    let mime_type =
        metadata_value(&metadata, &["filetype", "type", "contentType"]).map(str::to_owned);
    let expires_at = expiry(resumable);
    let mut info = UploadInfo::new(key.clone());
    info.owner.clone_from(&owner);
    info.size = length;
    let mut state = Resumable::default();
    state.length = length;
    state.metadata.clone_from(&raw_metadata);
    state.concat.clone_from(&concat);
    state.expires_at = expires_at.map(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at));
    state.lease_until = Some(SystemTime::now() + tower_upload_state::UploadRegistry::RESUME_LEASE);
    info.resumable = Some(state);
    let handle = match config.registry.begin(info).await {
        Ok(handle) => handle,
        Err(error) => return claim_error(&config, error),
    };
    let dir = config.resumable_dir();
    if let Err(error) = blocking(move || std::fs::create_dir_all(dir)).await {
        let failure = Failure::io(
            &error,
            FileError::UploadFolderNotFound,
            "create the upload folder",
        );
        crate::pipeline::end_with(handle, &failure).await;
        return failure_answer(&failure);
    }
    let context = Arc::new(RequestContext::new(
        Arc::clone(&config),
        None,
        Arc::new(parts.clone()),
    ));
    let path = data_path(&config, &key);
    let part = match FilePart::start_resumable(
        Arc::clone(&context),
        handle,
        &file_name,
        mime_type.as_deref(),
        path,
    )
    .await
    {
        Ok(part) => part,
        Err(ended) => {
            delete_files(&config, &key).await;
            let failure = ended.failure.expect("a part that did not start failed");
            return failure_answer(&failure);
        }
    };
    let sidecar = Sidecar {
        length,
        metadata: raw_metadata,
        file_name,
        mime_type: part_mime(mime_type.as_deref()),
        stored_name: part.stored_name().to_owned(),
        folder: part.folder().to_owned(),
        owner,
        expires_at,
        created_at: unix_now(),
        concat,
    };
    let location = format!("{}{key}", resumable.path);
    let mut part = part;
    part.set_limit(limit_of(&config, length));
    if let Err(error) = write_sidecar(&config, &key, &sidecar).await {
        let failure = Failure::io(&error, FileError::FileStarting, "create the file");
        part.fail(failure.clone()).await;
        delete_files(&config, &key).await;
        return failure_answer(&failure);
    }
    let mut response = if with_body {
        let outcome = append(&config, &mut part, body, None, declared).await;
        settle(&config, &key, part, outcome, &sidecar, StatusCode::CREATED).await
    } else {
        let complete = length == Some(0);
        let outcome = Outcome::Done;
        if complete {
            settle(&config, &key, part, outcome, &sidecar, StatusCode::CREATED).await
        } else {
            match part.pause().await {
                Ok(_) => answer(StatusCode::CREATED),
                Err(ended) => {
                    delete_files(&config, &key).await;
                    return failure_answer(&ended.failure.expect("failed"));
                }
            }
        }
    };
    if response.status() == StatusCode::CREATED {
        set(&mut response, "location", &location);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(LOCATION, value);
        }
        set_expires(&mut response, expires_at);
    }
    response
}

fn part_mime(declared: Option<&str>) -> String {
    crate::mime::essence(declared.unwrap_or("application/octet-stream")).to_ascii_lowercase()
}

fn limit_of(config: &Config, length: Option<u64>) -> Option<u64> {
    match (length, config.max_file_size) {
        (Some(length), Some(max)) => Some(length.min(max)),
        (length, max) => length.or(max),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header(headers, CONTENT_LENGTH.as_str())?.parse().ok()
}

fn busy(config: &Config) -> Response<Bytes> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the server is receiving its maximum of {} uploads; try again later",
            config.max_concurrent_uploads
        ),
    );
    set(&mut response, "retry-after", 1);
    response
}

fn claim_error(config: &Config, error: ClaimError) -> Response<Bytes> {
    trace!(info, reason = %error, "resumable upload not claimed");
    match error {
        ClaimError::Foreign | ClaimError::NotResumable | ClaimError::Rejected(_) => not_found(),
        ClaimError::InFlight => {
            let mut response = text(
                StatusCode::LOCKED,
                "another request for this upload is in progress on another server; retry \
                 shortly",
            );
            set(&mut response, "retry-after", 1);
            response
        }
        ClaimError::Full { .. } => busy(config),
        _ => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the upload store is unavailable; try again later",
        ),
    }
}

// ---- HEAD -----------------------------------------------------------------------------------

/// An upload as a request finds it: its description, and who holds it.
async fn find(
    config: &Arc<Config>,
    parts: &http::request::Parts,
    key: &UploadKey,
) -> Result<Sidecar, Response<Bytes>> {
    let owner = config.registry.owner_of(parts);
    let Some(sidecar) = read_sidecar(config, key).await else {
        return Err(not_found());
    };
    if foreign(config, sidecar.owner.as_deref(), owner.as_deref()) {
        return Err(not_found());
    }
    if sidecar.expires_at.is_some_and(|at| at <= unix_now()) {
        expire(config, key).await;
        return Err(not_found());
    }
    Ok(sidecar)
}

async fn head(
    config: &Arc<Config>,
    parts: &http::request::Parts,
    key: UploadKey,
) -> Response<Bytes> {
    let owner = config.registry.owner_of(parts);
    let sidecar = match find(config, parts, &key).await {
        Ok(sidecar) => sidecar,
        Err(response) => {
            // A finished upload's description is gone; its record says it is complete.
            if let Ok(Some(info)) = config.registry.snapshot_for(&key, owner.as_deref()).await {
                if info.status == UploadStatus::Finished && info.resumable.is_some() {
                    let mut done = answer(StatusCode::OK);
                    set(&mut done, "upload-offset", info.bytes_uploaded);
                    set(&mut done, "upload-length", info.bytes_uploaded);
                    no_store(&mut done);
                    return done;
                }
            }
            return response;
        }
    };
    // A request still holding the upload here (its client went away unnoticed) lets go, so
    // that the offset told is the one the next PATCH starts from.
    if config.registry.request_yield(&key) {
        config.registry.wait_released(&key, TAKEOVER_WAIT).await;
    }
    let record = config
        .registry
        .snapshot_for(&key, owner.as_deref())
        .await
        .ok()
        .flatten();
    if let Some(record) = &record {
        if record.status.is_terminal() && record.status != UploadStatus::CanceledByClientConnection
        {
            // Canceled (`command=cancel`), expired or failed: gone.
            delete_files(config, &key).await;
            return not_found();
        }
    }
    let paused = record.as_ref().and_then(|record| {
        let paused = record.resumable.as_ref()?.paused && record.status.is_in_flight();
        paused.then_some(record.bytes_uploaded)
    });
    let on_disk = file_len(data_path(config, &key)).await.unwrap_or(0);
    let offset = paused.map_or(on_disk, |offset| offset.min(on_disk));
    let mut response = answer(StatusCode::OK);
    set(&mut response, "upload-offset", offset);
    match sidecar.length {
        Some(length) => set(&mut response, "upload-length", length),
        None => set(&mut response, "upload-defer-length", 1),
    }
    if let Some(metadata) = &sidecar.metadata {
        set(&mut response, "upload-metadata", metadata);
    }
    if let Some(concat) = &sidecar.concat {
        set(&mut response, "upload-concat", concat);
    }
    set_expires(&mut response, sidecar.expires_at);
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response<Bytes>) {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

// ---- PATCH ----------------------------------------------------------------------------------

async fn patch<B>(
    config: Arc<Config>,
    parts: http::request::Parts,
    body: B,
    key: UploadKey,
) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if !is_offset_stream(&parts.headers) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a PATCH body must be application/offset+octet-stream",
        );
    }
    let offset = match number(&parts.headers, "upload-offset") {
        Ok(Some(offset)) => offset,
        Ok(None) => return bad_request("Upload-Offset is required"),
        Err(message) => return bad_request(message),
    };
    let new_length = match number(&parts.headers, "upload-length") {
        Ok(length) => length,
        Err(message) => return bad_request(message),
    };
    let checksum = match Checksum::parse(&parts.headers) {
        Ok(checksum) => checksum,
        Err(message) => return bad_request(message),
    };
    let mut sidecar = match find(&config, &parts, &key).await {
        Ok(sidecar) => sidecar,
        Err(response) => return response,
    };
    let resumable = config.resumable.clone().expect("configured");
    // creation-defer-length: the length arrives once, and never changes.
    if let Some(length) = new_length {
        match sidecar.length {
            Some(known) if known != length => {
                return bad_request("Upload-Length cannot change once known")
            }
            Some(_) => {}
            None => {
                if config.max_file_size.is_some_and(|max| length > max) {
                    return too_large(&config, "the upload is larger than the size limit");
                }
                sidecar.length = Some(length);
            }
        }
    }
    let declared = content_length(&parts.headers);
    if let (Some(length), Some(declared)) = (sidecar.length, declared) {
        if offset.saturating_add(declared) > length {
            return too_large(&config, "the request goes past the upload's length");
        }
    }
    let Ok(_permit) = Arc::clone(&config.limiter).try_acquire_owned() else {
        return busy(&config);
    };
    let owner = config.registry.owner_of(&parts);
    let handle = match acquire(&config, &key, owner, &sidecar).await {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    let context = Arc::new(RequestContext::new(
        Arc::clone(&config),
        None,
        Arc::new(parts.clone()),
    ));
    let resumed = ResumedFile {
        path: data_path(&config, &key),
        offset: handle.bytes_uploaded(),
        file_name: sidecar.file_name.clone(),
        mime_type: sidecar.mime_type.clone(),
        stored_name: sidecar.stored_name.clone(),
        folder: sidecar.folder.clone(),
    };
    let mut part = match FilePart::resume(context, handle, resumed).await {
        Ok(part) => part,
        Err(ended) => {
            delete_files(&config, &key).await;
            return failure_answer(&ended.failure.expect("failed"));
        }
    };
    if part.received() != offset {
        let stored = part.received();
        let _ = part.pause().await;
        let mut response = text(
            StatusCode::CONFLICT,
            format!("Upload-Offset is {offset} but the upload is at {stored}"),
        );
        set(&mut response, "upload-offset", stored);
        return response;
    }
    part.set_limit(limit_of(&config, sidecar.length));
    part.upload().update(|info| {
        info.size = sidecar.length;
        if let Some(state) = &mut info.resumable {
            state.length = sidecar.length;
        }
    });
    sidecar.expires_at = expiry(&resumable);
    if write_sidecar(&config, &key, &sidecar).await.is_err() {
        trace!(warn, key = %key, "the upload's description could not be updated");
    }
    let outcome = append(&config, &mut part, body, checksum, declared).await;
    settle(
        &config,
        &key,
        part,
        outcome,
        &sidecar,
        StatusCode::NO_CONTENT,
    )
    .await
}

/// Takes the upload for this request: from the registry when it is paused there; from its
/// description on disk when the registry lost it (a restart with the memory store, a record
/// that expired or ended with a crash); taking over from a request still holding it here.
async fn acquire(
    config: &Config,
    key: &UploadKey,
    owner: Option<String>,
    sidecar: &Sidecar,
) -> Result<UploadHandle, Response<Bytes>> {
    let registry = &config.registry;
    for attempt in 0..3 {
        match registry.resume(key, owner.clone()).await {
            Ok(handle) => return Ok(handle),
            Err(ClaimError::InFlight) if attempt < 2 => {
                if registry.request_yield(key) {
                    trace!(info, key = %key, "a new request takes the upload over");
                    registry.wait_released(key, TAKEOVER_WAIT).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(ClaimError::NotResumable) | Err(ClaimError::Store(_)) => {
                return revive(config, key, owner, sidecar).await;
            }
            Err(error) => return Err(claim_error(config, error)),
        }
    }
    Err(claim_error(config, ClaimError::InFlight))
}

/// Registers again an upload that the registry no longer knows (or knows only as ended by a
/// disconnect or a crash), from its description and its data on disk.
async fn revive(
    config: &Config,
    key: &UploadKey,
    owner: Option<String>,
    sidecar: &Sidecar,
) -> Result<UploadHandle, Response<Bytes>> {
    if let Ok(Some(record)) = config.registry.snapshot(key).await {
        let revivable = record.status.is_in_flight()
            || record.status == UploadStatus::CanceledByClientConnection;
        if !revivable {
            delete_files(config, key).await;
            return Err(not_found());
        }
    }
    let offset = file_len(data_path(config, key)).await.unwrap_or(0);
    let mut info = UploadInfo::new(key.clone());
    info.owner = owner;
    info.status = UploadStatus::Started;
    info.bytes_uploaded = offset;
    info.size = sidecar.length;
    info.file_name = Some(sidecar.file_name.clone());
    info.mime_type = Some(sidecar.mime_type.clone());
    let mut state = Resumable::default();
    state.length = sidecar.length;
    state.metadata.clone_from(&sidecar.metadata);
    state.expires_at = sidecar
        .expires_at
        .map(|at| SystemTime::UNIX_EPOCH + Duration::from_secs(at));
    state.lease_until = Some(SystemTime::now() + tower_upload_state::UploadRegistry::RESUME_LEASE);
    info.resumable = Some(state);
    match config.registry.begin(info).await {
        Ok(handle) => Ok(handle),
        Err(ClaimError::Rejected(_)) => {
            delete_files(config, key).await;
            Err(not_found())
        }
        Err(error) => Err(claim_error(config, error)),
    }
}

/// How appending a request's body ended.
#[derive(Debug)]
enum Outcome {
    /// The body ended.
    Done,
    /// The body broke off (the client went away, or was too slow: `Some` answer then); what
    /// was received is kept.
    Interrupted(Option<Failure>),
    /// The request's bytes were discarded (checksum mismatch, past the length); the upload
    /// goes on from where it was.
    Discarded(StatusCode, String),
    /// A newer request for the upload took it over; what was received is kept.
    Yielded,
    /// The upload ends with this failure (canceled, vetoed, refused type, I/O error).
    Failed(Failure),
}

/// Feeds the request body to the part.
async fn append<B>(
    config: &Config,
    part: &mut FilePart,
    body: B,
    mut checksum: Option<Checksum>,
    declared: Option<u64>,
) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let start = part.received();
    let pace = Pace {
        idle_timeout: config.idle_timeout,
        min_rate: config.min_transfer_rate,
    };
    let stream = BodyStream::new(body, Gauge::new(), None, pace, config.max_part_header_size);
    let mut stream = std::pin::pin!(stream);
    let mut renewed = tokio::time::Instant::now();
    loop {
        let next = {
            let upload = part.upload();
            tokio::select! {
                biased;
                () = upload.cancelled() => return Outcome::Failed(Failure::canceled()),
                () = upload.yield_requested() => return Outcome::Yielded,
                next = stream.next() => next,
            }
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(BodyError::Read(_))) => return Outcome::Interrupted(None),
            Some(Err(error)) => {
                return Outcome::Interrupted(Some(Failure::too_slow(format!(
                    "the upload was cut off: {error}"
                ))))
            }
        };
        if let Some(checksum) = checksum.as_mut() {
            checksum.update(&chunk);
        }
        if let Err(failure) = part.push(chunk).await {
            if failure.status == UploadStatus::FileSizeExceeded {
                if let Err(failure) = part.rewind(start).await {
                    return Outcome::Failed(failure);
                }
                return Outcome::Discarded(StatusCode::PAYLOAD_TOO_LARGE, failure.message);
            }
            return Outcome::Failed(failure);
        }
        if renewed.elapsed() > LEASE_RENEWAL {
            renewed = tokio::time::Instant::now();
            let _ = part.upload().renew_lease().await;
        }
    }
    if declared.is_some_and(|declared| part.received() - start < declared) {
        // The body ended early: a client that went away (the count is what arrived).
        return Outcome::Interrupted(None);
    }
    if let Some(checksum) = checksum {
        if !checksum.matches() {
            if let Err(failure) = part.rewind(start).await {
                return Outcome::Failed(failure);
            }
            return Outcome::Discarded(
                StatusCode::from_u16(CHECKSUM_MISMATCH).expect("a valid code"),
                "the checksum of the request body does not match Upload-Checksum".into(),
            );
        }
    }
    Outcome::Done
}

/// Ends the request: finishes the upload once its length is reached, pauses it otherwise, or
/// ends it on a failure; answers with `success` and the new offset.
async fn settle(
    config: &Config,
    key: &UploadKey,
    part: FilePart,
    outcome: Outcome,
    sidecar: &Sidecar,
    success: StatusCode,
) -> Response<Bytes> {
    let offset = part.received();
    // A part of a parallel upload waits, complete, for the final upload that joins it.
    let complete = sidecar.length == Some(offset) && !sidecar.is_partial();
    let (status, message) = match outcome {
        Outcome::Failed(failure) => {
            part.fail(failure.clone()).await;
            delete_files(config, key).await;
            return failure_answer(&failure);
        }
        Outcome::Done if complete => {
            // The application hears of the stored file from `upload_finished` (its `file` is
            // the `UploadedFile` forward mode hands over): a tus client needs tus' answer.
            let ended = part.finish(&Default::default()).await;
            delete_files(config, key).await;
            return match ended.failure {
                None => {
                    let mut response = answer(success);
                    set(&mut response, "upload-offset", offset);
                    response
                }
                Some(failure) => failure_answer(&failure),
            };
        }
        Outcome::Done | Outcome::Yielded | Outcome::Interrupted(None) => (success, None),
        Outcome::Interrupted(Some(failure)) => (failure.http, Some(failure.message)),
        Outcome::Discarded(status, message) => (status, Some(message)),
    };
    let offset = match part.pause().await {
        Ok(info) => info.bytes_uploaded,
        Err(ended) => {
            delete_files(config, key).await;
            return failure_answer(&ended.failure.expect("failed"));
        }
    };
    let mut response = match message {
        Some(message) if status == StatusCode::PAYLOAD_TOO_LARGE => too_large(config, message),
        Some(message) => text(status, message),
        None => answer(status),
    };
    set(&mut response, "upload-offset", offset);
    set_expires(&mut response, sidecar.expires_at);
    response
}

// ---- concatenation ----------------------------------------------------------------------

/// `POST` with `Upload-Concat: final;<url> <url> ...`: joins complete partial uploads (of the
/// same owner) into one file that goes through the pipeline as any upload (`upload_starting`,
/// the limits and sniffing, `file_uploading`, `upload_finishing`), then deletes the parts.
/// The final upload is complete at once (`concatenation-unfinished` is not supported).
async fn create_final(
    config: Arc<Config>,
    resumable: &ResumableConfig,
    parts: http::request::Parts,
    urls: &str,
) -> Response<Bytes> {
    if parts.headers.contains_key("upload-length") {
        return bad_request("a final upload takes no Upload-Length: it is the sum of its parts");
    }
    if urls.len() > Resumable::MAX_LEN {
        return bad_request("Upload-Concat is too long");
    }
    let owner = config.registry.owner_of(&parts);
    let mut partials = Vec::new();
    let mut total: u64 = 0;
    for url in urls.split(' ').filter(|url| !url.is_empty()) {
        let id = url
            .rsplit_once(resumable.path.as_str())
            .map_or(url, |(_, id)| id);
        let Ok(key) = UploadKey::parse(id) else {
            return bad_request(format!(
                "Upload-Concat: {url:?} is not an upload of this server"
            ));
        };
        let sidecar = match read_sidecar(&config, &key).await {
            Some(sidecar) if !foreign(&config, sidecar.owner.as_deref(), owner.as_deref()) => {
                sidecar
            }
            _ => return bad_request(format!("Upload-Concat: no partial upload {url:?}")),
        };
        let on_disk = file_len(data_path(&config, &key)).await.unwrap_or(0);
        if !sidecar.is_partial() || sidecar.length != Some(on_disk) {
            return bad_request(format!(
                "Upload-Concat: {url:?} is not a complete partial upload"
            ));
        }
        total = total.saturating_add(on_disk);
        partials.push(key);
    }
    if partials.is_empty() {
        return bad_request("Upload-Concat: final needs at least one partial upload");
    }
    if config.max_file_size.is_some_and(|max| total > max) {
        return too_large(&config, "the joined upload is larger than the size limit");
    }
    let raw_metadata = header(&parts.headers, "upload-metadata").map(str::to_owned);
    if raw_metadata
        .as_ref()
        .is_some_and(|raw| raw.len() > Resumable::MAX_LEN)
    {
        return bad_request("Upload-Metadata is too long");
    }
    let metadata = match parse_metadata(raw_metadata.as_deref().unwrap_or_default()) {
        Ok(metadata) => metadata,
        Err(message) => return bad_request(message),
    };
    let Ok(_permit) = Arc::clone(&config.limiter).try_acquire_owned() else {
        return busy(&config);
    };
    let key = new_id();
    let file_name = metadata_value(&metadata, &["filename", "name"])
        .unwrap_or(key.as_str())
        .to_owned();
    let mime_type =
        metadata_value(&metadata, &["filetype", "type", "contentType"]).map(str::to_owned);
    let mut info = UploadInfo::new(key.clone());
    info.owner.clone_from(&owner);
    info.size = Some(total);
    let mut state = Resumable::default();
    state.length = Some(total);
    state.metadata.clone_from(&raw_metadata);
    state.concat = Some(format!("final;{urls}"));
    info.resumable = Some(state);
    let handle = match config.registry.begin(info).await {
        Ok(handle) => handle,
        Err(error) => return claim_error(&config, error),
    };
    let context = Arc::new(RequestContext::new(
        Arc::clone(&config),
        None,
        Arc::new(parts.clone()),
    ));
    let mut part = match FilePart::start_resumable(
        context,
        handle,
        &file_name,
        mime_type.as_deref(),
        data_path(&config, &key),
    )
    .await
    {
        Ok(part) => part,
        Err(ended) => {
            delete_files(&config, &key).await;
            return failure_answer(&ended.failure.expect("a part that did not start failed"));
        }
    };
    part.set_limit(limit_of(&config, Some(total)));
    for partial in &partials {
        if let Err(failure) = copy_into(&config, &mut part, data_path(&config, partial)).await {
            part.fail(failure.clone()).await;
            delete_files(&config, &key).await;
            return failure_answer(&failure);
        }
    }
    // As in `settle`: the application hears of the file from `upload_finished`.
    let ended = part.finish(&Default::default()).await;
    delete_files(&config, &key).await;
    if let Some(failure) = ended.failure {
        return failure_answer(&failure);
    }
    for partial in &partials {
        if let Ok(handle) = config.registry.resume(partial, owner.clone()).await {
            handle
                .finish(UploadStatus::Finished, FileError::None, None)
                .await;
        }
        delete_files(&config, partial).await;
    }
    let location = format!("{}{key}", resumable.path);
    let mut response = answer(StatusCode::CREATED);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    set(&mut response, "upload-offset", total);
    response
}

/// Feeds the data of the file at `path` to `part`, a batch at a time.
async fn copy_into(config: &Config, part: &mut FilePart, path: PathBuf) -> Result<(), Failure> {
    let batch = config.buffer_size.max(64 * 1024);
    let mut file = blocking(move || std::fs::File::open(path))
        .await
        .map_err(|error| Failure::io(&error, FileError::FileWriting, "read a partial upload"))?;
    loop {
        let (returned, chunk) = blocking(move || {
            let mut buffer = vec![0; batch];
            let read = std::io::Read::read(&mut file, &mut buffer);
            (
                file,
                read.map(|n| {
                    buffer.truncate(n);
                    buffer
                }),
            )
        })
        .await;
        file = returned;
        let chunk = chunk.map_err(|error| {
            Failure::io(&error, FileError::FileWriting, "read a partial upload")
        })?;
        if chunk.is_empty() {
            return Ok(());
        }
        part.push(Bytes::from(chunk)).await?;
    }
}

// ---- DELETE (termination) -----------------------------------------------------------------

async fn terminate(
    config: &Arc<Config>,
    parts: &http::request::Parts,
    key: UploadKey,
) -> Response<Bytes> {
    if let Err(response) = find(config, parts, &key).await {
        return response;
    }
    let owner = config.registry.owner_of(parts);
    match config.registry.resume(&key, owner.clone()).await {
        // Paused: end it here, and tell the `upload_finished` handlers.
        Ok(handle) => {
            let info = handle
                .finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
                .await;
            announce_end(config, &info);
        }
        // Streaming (here, or on an instance sharing the store): that request stops and
        // ends it, as a `command=cancel` would.
        Err(ClaimError::InFlight) => {
            let _ = config.registry.cancel_for(&key, owner.as_deref()).await;
            config.registry.wait_released(&key, TAKEOVER_WAIT).await;
        }
        // Unknown to the registry (a restart with the memory store): the files are all.
        Err(_) => {}
    }
    delete_files(config, &key).await;
    answer(StatusCode::NO_CONTENT)
}

/// Tells the `upload_finished` handlers of an upload that ended between requests (terminated
/// or expired while paused).
fn announce_end(config: &Arc<Config>, info: &UploadInfo) {
    if config.events.is_some() {
        // No request is in progress: the events get an empty request head.
        let head = Arc::new(http::Request::new(()).into_parts().0);
        let context = RequestContext::new(Arc::clone(config), None, head);
        // The handlers run when the context is dropped, here.
        context.ended(info, None);
    }
}

// ---- expiration -----------------------------------------------------------------------------

/// Ends an expired upload: its record (status 8, "expired") and its files.
async fn expire(config: &Arc<Config>, key: &UploadKey) {
    trace!(info, key = %key, "resumable upload expired");
    let owner = match config.registry.snapshot(key).await {
        Ok(Some(record)) => record.owner,
        _ => None,
    };
    if let Ok(handle) = config.registry.resume(key, owner).await {
        let info = handle
            .finish(
                UploadStatus::CanceledByClientConnection,
                FileError::None,
                Some("the upload expired".into()),
            )
            .await;
        announce_end(config, &info);
    }
    delete_files(config, key).await;
}

fn sweep_expired_when_due(config: &Arc<Config>, resumable: &ResumableConfig) {
    use std::sync::atomic::Ordering;
    let now = super::now_millis();
    let due = resumable.next_sweep.load(Ordering::Relaxed);
    let next = now.saturating_add(EXPIRY_SWEEP_INTERVAL.as_millis() as u64);
    if now < due
        || resumable
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    tokio::spawn(sweep_expired(Arc::clone(config)));
}

/// Deletes the uploads whose expiry has passed (data, description and record), and data
/// files whose description is gone and that nobody holds; returns how many uploads.
pub(crate) async fn sweep_expired(config: Arc<Config>) -> std::io::Result<usize> {
    let dir = config.resumable_dir();
    let listed = blocking(move || list_uploads(&dir)).await?;
    let now = unix_now();
    let mut swept = 0;
    for (id, has_info) in listed {
        let Ok(key) = UploadKey::parse(&id) else {
            continue;
        };
        if has_info {
            let Some(sidecar) = read_sidecar(&config, &key).await else {
                continue;
            };
            if sidecar.expires_at.is_some_and(|at| at <= now)
                && unlocked(&data_path(&config, &key)).await
            {
                expire(&config, &key).await;
                swept += 1;
            }
        } else {
            // Data without a description: what a crash between the two deletes left, once
            // old enough and unheld.
            let path = data_path(&config, &key);
            let age = config.orphan_age;
            let orphan = blocking({
                let path = path.clone();
                move || {
                    std::fs::metadata(&path)
                        .and_then(|meta| meta.modified())
                        .ok()
                        .and_then(|modified| modified.elapsed().ok())
                        .is_some_and(|elapsed| elapsed >= age)
                }
            })
            .await;
            if orphan && unlocked(&path).await {
                let _ = blocking(move || std::fs::remove_file(path)).await;
            }
        }
    }
    Ok(swept)
}

/// The upload ids in `dir`, with whether each has a description.
fn list_uploads(dir: &Path) -> std::io::Result<Vec<(String, bool)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut ids: std::collections::BTreeMap<String, bool> = Default::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        if let Some(id) = rest.strip_suffix(INFO_SUFFIX) {
            ids.insert(id.to_owned(), true);
        } else if let Some(id) = rest.strip_suffix(TEMP_SUFFIX) {
            ids.entry(id.to_owned()).or_insert(false);
        }
    }
    Ok(ids.into_iter().collect())
}

/// Whether no request holds the data file (it can be locked), or it does not exist.
async fn unlocked(path: &Path) -> bool {
    let path = path.to_owned();
    blocking(move || match std::fs::File::open(path) {
        Ok(file) => file.try_lock().is_ok(),
        Err(_) => true,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_are_parsed_and_checked() {
        let pairs = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(pairs[0].1.as_deref(), Some("world_domination_plan.pdf"));
        assert_eq!(pairs[1], ("is_confidential".to_owned(), None));
        assert!(parse_metadata("a !!!").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
        assert!(parse_metadata("a YQ== b").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn ids_are_long_random_alphanumerics() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn numbers_are_digits_only() {
        let mut headers = HeaderMap::new();
        headers.insert("upload-length", HeaderValue::from_static("-1"));
        assert!(number(&headers, "upload-length").is_err());
        headers.insert(
            "upload-length",
            HeaderValue::from_static("99999999999999999999999"),
        );
        assert!(number(&headers, "upload-length").is_err());
        headers.insert("upload-length", HeaderValue::from_static("12"));
        assert_eq!(number(&headers, "upload-length"), Ok(Some(12)));
    }
}
