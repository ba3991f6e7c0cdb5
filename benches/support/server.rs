//! The servers under test, each run in a child process of its own (`upload --serve KIND`), so
//! that CPU time and peak RSS are measured per server from `/proc`.
//!
//! Every kind is an axum `Router` served by `axum::serve` on `127.0.0.1:0`, answering
//! `POST /upload`:
//!
//! - `layer`: the router wrapped in `UploadLayer` (`max_file_size(None)`), as the README
//!   shows; it also serves `GET /status` (`UploadStatusService`, with one live upload
//!   registered as [`LIVE_KEY`]) and `GET /json` (a plain axum `Json` handler) for the
//!   status benchmark.
//! - `raw`: the body written to a file as it is, no multipart parsing, with the layer's own
//!   write scheme ([`BatchWriter`]): the ceiling for the same disk work.
//! - `drain`: the body read and dropped: the network ceiling.
//! - `axum`: what users write today, axum `Multipart` + `tokio::fs::File::write_all` per
//!   chunk.

use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::mem;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tower_upload_layer::{DigestAlgorithm, UploadLayer};
use tower_upload_state::{
    FileError, StatusAnswer, UploadInfo, UploadKey, UploadRegistry, UploadStatus,
};
use tower_upload_status::UploadStatusService;

use super::{nginx, procfs};

/// The server kinds, the layer first. `nginx` is not this binary (see [`super::nginx`]);
/// `layer-sha256` is `layer` with `digest(DigestAlgorithm::Sha256)`.
pub(crate) const KINDS: [&str; 6] = ["layer", "raw", "drain", "axum", "nginx", "layer-sha256"];

/// The key of the upload the `layer` server keeps live for status queries (30 characters,
/// like the widget's).
pub(crate) const LIVE_KEY: &str = "bEnChLiVeUpLoAdKeY0123456789ab";

/// The write batch of the `raw` baseline: the layer's default `buffer_size`.
const BATCH: usize = tower_upload_layer::DEFAULT_BUFFER_SIZE;

#[derive(Clone)]
struct Shared {
    dir: PathBuf,
    files: Arc<AtomicU64>,
}

impl Shared {
    fn next_path(&self, kind: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{kind}-{n}.bin"))
    }
}

/// Runs a server of `kind` until standard input closes (the parent went away) or it is killed.
pub(crate) fn serve(kind: &str, dir: PathBuf) -> io::Result<()> {
    // The parent holds our stdin; when it exits, so do we.
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shared = Shared {
            dir,
            files: Arc::default(),
        };
        let mut live = None;
        let app = match kind {
            "layer" | "layer-sha256" => {
                let registry = UploadRegistry::new();
                live = Some(live_upload(&registry).await);
                let mut layer = UploadLayer::new(registry.clone())
                    .upload_dir(&shared.dir)
                    .max_file_size(None);
                if kind == "layer-sha256" {
                    layer = layer.digest(DigestAlgorithm::Sha256);
                }
                // For experiments: `BENCH_LAYER_BUFFER_SIZE=64K scripts/bench ...`.
                if let Ok(size) = std::env::var("BENCH_LAYER_BUFFER_SIZE") {
                    let size = super::args::parse_size(&size).map_err(io::Error::other)?;
                    layer = layer.buffer_size(size as usize);
                }
                Router::new()
                    .route("/json", get(plain_json))
                    .route_service("/status", UploadStatusService::new(registry))
                    .layer(layer)
            }
            "raw" => Router::new()
                .route("/upload", post(raw_to_file))
                .with_state(shared),
            "drain" => Router::new().route("/upload", post(drain)),
            "axum" => Router::new()
                .route("/upload", post(axum_multipart))
                .layer(DefaultBodyLimit::disable())
                .with_state(shared),
            other => {
                return Err(io::Error::other(format!(
                    "unknown server kind {other:?}; kinds: {}",
                    KINDS.join(", ")
                )))
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        println!("PORT {port}");
        io::stdout().flush()?;
        axum::serve(listener, app).await?;
        drop(live);
        Ok(())
    })
}

/// Registers the upload that status queries ask about, mid-way through a 1 GiB file.
pub(crate) async fn live_upload(registry: &UploadRegistry) -> tower_upload_state::UploadHandle {
    let key = UploadKey::parse(LIVE_KEY).expect("a valid key");
    let live = registry
        .begin(UploadInfo::new(key))
        .await
        .expect("a fresh registry");
    live.update(|info| {
        info.file_name = Some("holiday photos 2024.zip".to_owned());
        info.mime_type = Some("application/zip".to_owned());
        info.size = Some(1 << 30);
    });
    let _ = live.set_status(UploadStatus::Started).await;
    live.add_bytes(123_456_789);
    live
}

/// The plain axum JSON endpoint the status service is compared with: the same object,
/// serialised by `Json` from a derived `Serialize`.
pub(crate) async fn plain_json() -> Json<StatusAnswer<'static>> {
    Json(StatusAnswer {
        status: UploadStatus::Started,
        error: FileError::None,
        bytes_uploaded: 123_456_789,
        size: 1 << 30,
        server_message: Some(""),
        digest: None,
    })
}

fn internal(error: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// Baseline (a): the body as it comes, to a file, with the layer's write scheme.
async fn raw_to_file(
    State(shared): State<Shared>,
    request: Request,
) -> Result<String, (StatusCode, String)> {
    let path = shared.next_path("raw");
    let file = tokio::task::spawn_blocking(move || std::fs::File::create(path))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let mut writer = BatchWriter::new(file, BATCH);
    let mut body = request.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(internal)?.into_data() else {
            continue;
        };
        total += data.len() as u64;
        writer.push(data).await.map_err(internal)?;
    }
    writer.finish().await.map_err(internal)?;
    Ok(format!("{total}"))
}

/// Baseline (b): the body read and dropped.
async fn drain(body: Body) -> Result<String, (StatusCode, String)> {
    let mut body = body;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(internal)?.into_data() {
            total += data.len() as u64;
        }
    }
    Ok(format!("{total}"))
}

/// Baseline (c): what users write today with axum's `Multipart`.
async fn axum_multipart(
    State(shared): State<Shared>,
    mut multipart: Multipart,
) -> Result<String, (StatusCode, String)> {
    let mut total = 0u64;
    while let Some(mut field) = multipart.next_field().await.map_err(internal)? {
        let mut file = tokio::fs::File::create(shared.next_path("axum"))
            .await
            .map_err(internal)?;
        while let Some(chunk) = field.chunk().await.map_err(internal)? {
            total += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
    }
    Ok(format!("{total}"))
}

/// A finished batch write: the file back, the emptied batch for reuse, and the result.
type WriteDone = (std::fs::File, Vec<Bytes>, io::Result<()>);

/// The write scheme of the layer's temp file, for the `raw` baseline: chunks (no copy) are
/// gathered until `batch` bytes, then written with vectored writes on tokio's blocking pool
/// while the next batch is received; at most one write is in flight.
struct BatchWriter {
    file: Option<std::fs::File>,
    writing: Option<JoinHandle<WriteDone>>,
    pending: Vec<Bytes>,
    pending_len: usize,
    batch: usize,
    inline: bool,
}

impl BatchWriter {
    fn new(file: std::fs::File, batch: usize) -> Self {
        Self {
            file: Some(file),
            writing: None,
            pending: Vec::with_capacity(16),
            pending_len: 0,
            batch,
            inline: std::env::var_os("BENCH_RAW_INLINE").is_some(),
        }
    }

    async fn push(&mut self, data: Bytes) -> io::Result<()> {
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= self.batch {
            self.start_write().await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> io::Result<()> {
        if self.pending_len > 0 {
            self.start_write().await?;
        }
        self.wait_write().await
    }

    async fn wait_write(&mut self) -> io::Result<()> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        let (file, batch, result) = writing.await.map_err(io::Error::other)?;
        self.file = Some(file);
        if self.pending.is_empty() {
            self.pending = batch;
        }
        result
    }

    async fn start_write(&mut self) -> io::Result<()> {
        self.wait_write().await?;
        if self.inline {
            // For experiments (`BENCH_RAW_INLINE=1`): the write on the async thread, no
            // hand-off to the blocking pool.
            let file = self.file.as_mut().expect("no write is in flight");
            let result = write_all_vectored(file, &self.pending);
            self.pending.clear();
            self.pending_len = 0;
            return result;
        }
        let mut file = self.file.take().expect("no write is in flight");
        let mut batch = mem::take(&mut self.pending);
        self.pending_len = 0;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let result = write_all_vectored(&mut file, &batch);
            batch.clear();
            (file, batch, result)
        }));
        Ok(())
    }
}

fn write_all_vectored(file: &mut std::fs::File, batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|chunk| IoSlice::new(chunk)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut remaining, n),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A server child process, killed (by its PID) when dropped.
pub(crate) struct Server {
    pub(crate) kind: &'static str,
    pub(crate) addr: SocketAddr,
    child: Child,
    _stdout: Option<BufReader<ChildStdout>>,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a fresh server of `kind` writing into a fresh temp folder.
    pub(crate) fn start(kind: &'static str) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tower-upload-bench-")
            .tempdir()?;
        if kind == "nginx" {
            let (child, addr) = nginx::start(dir.path())?;
            return Ok(Self {
                kind,
                addr,
                child,
                _stdout: None,
                dir,
            });
        }
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", kind, "--dir"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "the {kind} server did not start: {line:?}"
            )));
        };
        Ok(Self {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _stdout: Some(stdout),
            dir,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The processes that do the server's work: the child, or nginx's master and workers.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        if self.kind == "nginx" {
            pids.extend(nginx::workers(self.pid()));
        }
        pids
    }

    /// The server's CPU time so far, in seconds (summed over its processes).
    pub(crate) fn cpu(&self) -> f64 {
        self.pids()
            .into_iter()
            .map(|pid| {
                let (user, system) = procfs::cpu_seconds(pid);
                user + system
            })
            .sum()
    }

    /// The server's user-mode CPU time so far, in seconds.
    pub(crate) fn user_cpu(&self) -> f64 {
        self.pids()
            .into_iter()
            .map(|pid| procfs::cpu_seconds(pid).0)
            .sum()
    }

    pub(crate) fn minor_faults(&self) -> u64 {
        self.pids().into_iter().map(procfs::minor_faults).sum()
    }

    pub(crate) fn rss(&self) -> u64 {
        self.pids()
            .into_iter()
            .map(|pid| procfs::vm_bytes(pid, "VmRSS"))
            .sum()
    }

    pub(crate) fn peak_rss(&self) -> u64 {
        self.pids()
            .into_iter()
            .map(|pid| procfs::vm_bytes(pid, "VmHWM"))
            .sum()
    }

    pub(crate) fn reset_peak_rss(&self) -> bool {
        self.pids().into_iter().all(procfs::reset_peak_rss)
    }

    /// Bytes in the files the server has stored (what a correct run must add up to).
    pub(crate) fn stored_bytes(&self) -> u64 {
        dir_bytes(self.dir.path())
    }

    /// Deletes what the server stored, so that dirty pages of earlier runs do not turn into
    /// write-back traffic during later ones.
    pub(crate) fn clear_files(&self) {
        if self.kind == "nginx" {
            // Its configuration and logs live here too; `clean` deletes bodies anyway.
            clear_dir(&self.dir.path().join("body"));
            return;
        }
        clear_dir(self.dir.path());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.kind == "nginx" {
            nginx::stop(&mut self.child);
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |meta| meta.len()),
            Err(_) => 0,
        })
        .sum()
}

fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => clear_dir(&entry.path()),
            _ => {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
