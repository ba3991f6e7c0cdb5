//! Shared helpers for the integration tests: a real server on 127.0.0.1:0, a raw HTTP/1.1
//! client with full control over when body bytes are sent (or not), and multipart bodies.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_upload_layer::UploadLayer;
use tower_upload_state::UploadRegistry;
use tower_upload_status::UploadStatusService;

/// A running server: the app is an axum router with `/status` (the status service), `/`
/// and an echo route, wrapped in the upload layer.
pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: UploadRegistry,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server whose layer is `configure(default layer)`; the default layer stores
    /// into `self.uploads()` with a small write batch, so progress shows early.
    pub async fn start(configure: impl FnOnce(UploadLayer) -> UploadLayer) -> Self {
        Self::start_with_registry(UploadRegistry::new(), configure).await
    }

    pub async fn start_with_registry(
        registry: UploadRegistry,
        configure: impl FnOnce(UploadLayer) -> UploadLayer,
    ) -> Self {
        Self::start_custom(registry, configure, |status| status).await
    }

    /// Like [`Self::start`], configuring the status service too.
    pub async fn start_custom(
        registry: UploadRegistry,
        configure: impl FnOnce(UploadLayer) -> UploadLayer,
        configure_status: impl FnOnce(UploadStatusService) -> UploadStatusService,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let layer = configure(
            UploadLayer::new(registry.clone())
                .upload_dir(dir.path().join("uploads"))
                .buffer_size(16 * 1024),
        );
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "home" }))
            .route_service(
                "/status",
                configure_status(UploadStatusService::new(registry.clone())),
            )
            .fallback(echo)
            .layer(layer);
        Self::serve(app, registry, dir).await
    }

    pub async fn serve(app: Router, registry: UploadRegistry, dir: tempfile::TempDir) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("server");
        });
        Self {
            addr,
            registry,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn uploads(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    pub fn temp(&self) -> PathBuf {
        self.uploads().join(tower_upload_layer::DEFAULT_TEMP_SUBDIR)
    }

    /// The files in the upload folder (not the temp folder), sorted.
    pub fn saved_files(&self) -> Vec<String> {
        list_files(&self.uploads())
    }

    /// Waits (bounded) until the temp folder is empty: deletions run on the blocking pool.
    pub async fn assert_no_temp_files(&self) {
        let temp = self.temp();
        eventually("the temp folder is empty", || {
            let temp = temp.clone();
            async move { list_files(&temp).is_empty() }
        })
        .await;
    }

    /// Opens an upload of `body` under `key` with its Content-Length; the test writes the body.
    pub async fn open_upload(&self, key: &str, body: &MultipartBody) -> StreamingRequest {
        StreamingRequest::open(
            self.addr,
            "POST",
            &format!("/upload?key={key}"),
            &body.headers(),
            Some(body.bytes.len() as u64),
        )
        .await
    }

    /// Waits (bounded) until the status service shows bytes of `key` received.
    pub async fn wait_streaming(&self, key: &str) {
        eventually("the upload is streaming", || async {
            self.status(key).await["bytesUploaded"]
                .as_u64()
                .unwrap_or(0)
                > 0
        })
        .await;
    }

    pub async fn post_upload(&self, query: &str, body: &MultipartBody) -> HttpResponse {
        send(
            self.addr,
            "POST",
            &format!("/upload?{query}"),
            &body.headers(),
            &body.bytes,
        )
        .await
    }

    pub async fn status_as(&self, key: &str, headers: &[(String, String)]) -> serde_json::Value {
        self.command_as(key, "status", headers).await
    }

    pub async fn command_as(
        &self,
        key: &str,
        command: &str,
        headers: &[(String, String)],
    ) -> serde_json::Value {
        let response = send(
            self.addr,
            "GET",
            &format!("/status?key={key}&command={command}"),
            headers,
            b"",
        )
        .await;
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }

    pub async fn status(&self, key: &str) -> serde_json::Value {
        self.command(key, "status").await
    }

    pub async fn command(&self, key: &str, command: &str) -> serde_json::Value {
        let response = send(
            self.addr,
            "GET",
            &format!("/status?key={key}&command={command}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Echoes the request: method, path, content-type and the SHA-256 of the body, plus the body.
async fn echo(request: axum::extract::Request) -> axum::response::Response {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    axum::response::Response::builder()
        .header("x-echo-method", parts.method.as_str())
        .header("x-echo-path", parts.uri.to_string())
        .header(
            "x-echo-content-type",
            parts
                .headers
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| http::HeaderValue::from_static("")),
        )
        .header("x-echo-sha256", hex(&Sha256::digest(&bytes)))
        .body(axum::body::Body::from(bytes))
        .unwrap()
}

pub fn list_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `(status, error)` of a status answer, for one-line assertions.
pub fn codes(answer: &serde_json::Value) -> (i64, i64) {
    let code = |name: &str| {
        answer[name]
            .as_i64()
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
    };
    (code("status"), code("error"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Deterministic pseudo-random bytes (xorshift), so content checks catch reordering.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Polls `check` every 10 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub const BOUNDARY: &str = "----towerUploadTestBoundary7MA4YWxk";

/// A multipart/form-data body built by hand, so tests control every byte.
#[derive(Clone, Debug, Default)]
pub struct MultipartBody {
    pub bytes: Vec<u8>,
}

impl MultipartBody {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(self, filename: &str, content_type: &str, content: &[u8]) -> Self {
        self.file_field("upload_0__frm_if", filename, content_type, content)
    }

    pub fn file_field(
        mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        content: &[u8],
    ) -> Self {
        self.bytes.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        self.bytes.extend_from_slice(content);
        self.bytes.extend_from_slice(b"\r\n");
        self
    }

    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.bytes.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn finish(mut self) -> Self {
        self.bytes
            .extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self
    }

    pub fn content_type() -> String {
        format!("multipart/form-data; boundary={BOUNDARY}")
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        vec![("content-type".to_owned(), Self::content_type())]
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one request with a Content-Length body on a fresh connection and reads the answer.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> HttpResponse {
    let mut request =
        StreamingRequest::open(addr, method, target, headers, Some(body.len() as u64)).await;
    request.write(body).await;
    request.response().await
}

/// A request whose head is sent and whose body the test writes piece by piece.
pub struct StreamingRequest {
    stream: TcpStream,
    chunked: bool,
}

impl StreamingRequest {
    /// Sends the request head; `length: None` means `Transfer-Encoding: chunked`.
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        length: Option<u64>,
    ) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match length {
            Some(length) => head.push_str(&format!("Content-Length: {length}\r\n")),
            None => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write head");
        Self {
            stream,
            chunked: length.is_none(),
        }
    }

    /// Writes body bytes; a failure (the server already answered and closed) is ignored.
    pub async fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let result = if self.chunked {
            let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
            framed.extend_from_slice(bytes);
            framed.extend_from_slice(b"\r\n");
            self.stream.write_all(&framed).await
        } else {
            self.stream.write_all(bytes).await
        };
        let _ = result;
        let _ = self.stream.flush().await;
    }

    /// Ends a chunked body.
    pub async fn end(&mut self) {
        if self.chunked {
            let _ = self.stream.write_all(b"0\r\n\r\n").await;
        }
    }

    /// Reads the whole answer (the server closes the connection after it).
    pub async fn response(mut self) -> HttpResponse {
        self.end().await;
        read_response(&mut self.stream).await
    }

    /// Reads the answer without sending the rest of the body.
    pub async fn response_now(mut self) -> HttpResponse {
        read_response(&mut self.stream).await
    }

    /// Drops the connection mid-request, as a browser's `xhr.abort()` does.
    pub fn disconnect(self) {
        drop(self.stream);
    }
}

async fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
            if let Some(response) = parse_response(&raw) {
                return Some(response);
            }
        }
        parse_response(&raw)
    })
    .await;
    match read {
        Ok(Some(response)) => response,
        Ok(None) => panic!(
            "no complete HTTP answer: {:?}",
            String::from_utf8_lossy(&raw)
        ),
        Err(_) => panic!(
            "timed out reading the answer: {:?}",
            String::from_utf8_lossy(&raw)
        ),
    }
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let length: Option<usize> = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        let length = length.unwrap_or(0);
        if rest.len() < length {
            return None;
        }
        rest[..length].to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).ok()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if raw.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A 30-character key like the widget's.
pub fn widget_key(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    pattern(30, seed)
        .into_iter()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers of the fault, hostile-input, property and soak suites (tests/faults.rs,
// tests/hostile.rs, tests/properties.rs, tests/soak.rs).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use tower_upload_layer::{BoxError, Upload};
use tower_upload_state::{
    ClaimError, MemoryStore, ProgressStore, StoreError, StoreFuture, UploadInfo, UploadKey,
};

/// xorshift64*: a seeded, reproducible generator (no `rand` crate).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    /// True `percent` times out of 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// A size-capped tmpfs on a fresh temp directory, unmounted when dropped (lazily if busy).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`1m`, `512k`); `None`, with the reason printed, when this
    /// process may not mount (not root, no tmpfs, a sandbox).
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Self { dir }),
            Ok(output) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({}); run as root to test a full disk",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("SKIPPED: cannot run mount ({error})");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,<mode>` (`ro` or `rw`); false if it failed (e.g. busy).
    pub fn remount(&self, mode: &str) -> bool {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .output()
            .is_ok_and(|output| output.status.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut command = std::process::Command::new("umount");
            if lazy {
                command.arg("-l");
            }
            command
                .arg(self.dir.path())
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("warning: could not unmount {}", self.dir.path().display());
        }
    }
}

/// This process's resident set size, in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// A [`MemoryStore`] the test keeps a handle on: [`UploadRegistry::store`] only gives a
/// `&dyn ProgressStore`, which cannot reach [`MemoryStore::len`].
#[derive(Clone, Debug)]
pub struct SharedStore(pub Arc<MemoryStore>);

impl ProgressStore for SharedStore {
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
        self.0.claim(info)
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
        self.0.save(info)
    }

    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        self.0.remove(key)
    }

    fn load<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
        self.0.load(key)
    }

    fn put_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.0.put_file_size(key, size)
    }

    fn take_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        self.0.take_file_size(key)
    }

    fn retention(&self) -> Duration {
        self.0.retention()
    }
}

impl StreamingRequest {
    /// An answer that comes before the body is done (a refusal), if one starts to arrive
    /// within `within`; the request stays usable when none does.
    pub async fn early_response(&mut self, within: Duration) -> Option<HttpResponse> {
        let mut buf = [0u8; 8192];
        let first = match tokio::time::timeout(within, self.stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        let mut raw = buf[..first].to_vec();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(response) = parse_response(&raw) {
                return Some(response);
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
                _ => return parse_response(&raw),
            }
        }
    }
}

/// The request body of the in-process app: any body, boxed.
pub type AnyBody = BoxBody<Bytes, BoxError>;

/// A body that yields `pieces` one by one, always ready (what the layer must not buffer).
pub fn pieces_body(pieces: Vec<Bytes>) -> AnyBody {
    let frames = pieces
        .into_iter()
        .map(|piece| Ok::<_, BoxError>(http_body::Frame::data(piece)));
    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Splits `bytes` at the given cut points (any order, out-of-range ones ignored).
pub fn split_at_points(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&cut| cut > 0 && cut < bytes.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(Bytes::copy_from_slice(&bytes[start..cut]));
        start = cut;
    }
    pieces
}

/// The upload layer over the status service, with no server: every request that is not an
/// upload is a status query.
pub type InProcessApp = Upload<UploadStatusService>;

pub fn in_process_app(layer: UploadLayer) -> InProcessApp {
    use tower::Layer as _;
    let status = UploadStatusService::new(layer.registry().clone());
    layer.layer(status)
}

/// Sends `request` through `app` in process; the answer's HTTP status and body.
pub async fn call_in_process(app: &InProcessApp, request: http::Request<AnyBody>) -> (u16, Bytes) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    (status, body)
}

/// A multipart upload request for the in-process app, sent as `pieces`.
pub fn upload_request(query: &str, pieces: Vec<Bytes>) -> http::Request<AnyBody> {
    http::Request::post(format!("/upload?{query}"))
        .header("content-type", MultipartBody::content_type())
        .body(pieces_body(pieces))
        .expect("request")
}

/// A GET for the in-process app.
pub fn get_request(target: &str) -> http::Request<AnyBody> {
    http::Request::get(target)
        .body(pieces_body(Vec::new()))
        .expect("request")
}
