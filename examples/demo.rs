//! Run with: cargo run --release --example demo
//!
//! The whole of tower-upload in one axum server. [`UploadLayer`] wraps the router and takes
//! every `POST /upload?key=K` out of the request stream, streaming the file to disk while it
//! counts the bytes into an [`UploadRegistry`]; [`UploadStatusService`], mounted at
//! `/status`, answers `?key=K&command=status|cancel|fileSize|watch` from the same registry
//! (`watch` pushes progress as Server-Sent Events; `/progress?X-Progress-ID=K` answers in
//! nginx's upload progress dialect). The page
//! at `/` is the demo's own (plain HTML, CSS and JavaScript, no libraries): it uploads each
//! picked file with its own request, draws its progress from both the browser's upload events
//! and the status service (an `EventSource`, polling where it is missing), cancels through the status service, and shows every outcome with
//! the server's status, error code and message. Try a file over the size limit, or cancel a
//! large one.
//!
//! When the Ignite UI packages are installed (`scripts/install-widget`, into
//! `tests/browser/node_modules`), `/igupload` shows the real, unmodified igUpload jQuery
//! widget talking to the same two URLs; its options come from the query string, e.g.
//! `/igupload?mode=multiple&maxSimultaneousFilesUploads=2`. The browser tests
//! (`tests/browser/run.sh`) drive both pages in headless Chromium.
//!
//! Two more clients use the same registry and limits (`demo/clients.rs`): a plain HTML form
//! without JavaScript at `/form` (posting to `/form/upload`, an `UploadService` that answers
//! `303 See Other` to the server-rendered `/uploaded`), and the Uppy Dashboard at `/uppy`
//! (npm `uppy`, installed like the widget).
//!
//! `--help` lists the flags (address, upload folder, size limit, paths, allowed types).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
#[path = "demo/clients.rs"]
mod clients;

use tower_upload::{
    EventError, FileError, StartOptions, UploadFinished, UploadLayer, UploadRegistry,
    UploadStarting, UploadStatus, UploadStatusService,
};

const USAGE: &str = "\
tower-upload demo: an axum server with UploadLayer, UploadStatusService and an upload page

Usage: cargo run --release --example demo -- [OPTIONS]

Options:
  --addr <ADDR>                 address to listen on [default: 127.0.0.1:3000]
  --upload-dir <DIR>            where finished files are stored
                                [default: tower-upload-demo in the system temp folder]
  --max-file-size <SIZE>        largest file accepted: bytes, or a number with a suffix
                                (KB, MB, GB: powers of 1000; KiB, MiB, GiB: powers of 1024),
                                or `none` for no limit [default: 4MiB]
  --upload-path <PATH>          URL path of uploads, igUpload's uploadUrl [default: /upload]
  --status-path <PATH>          URL path of the status service, igUpload's progressUrl
                                [default: /status]
  --allowed-mime-types <TYPES>  MIME types a file may declare, igUpload's allowedMIMEType
                                form: `*` or `image/*|application/pdf` [default: *]
  --redis <URL>                 keep upload records in Redis (redis://127.0.0.1:6379/), so
                                several instances share them; needs `--features redis`
  --s3-bucket <NAME>            store files in this S3 bucket instead of --upload-dir (it must
                                exist; region and credentials from the AWS_* environment
                                variables); needs `--features object-store`
  --s3-endpoint <URL>           an S3-compatible server instead of AWS (moto, MinIO...)
  --s3-prefix <PREFIX>          the folder of the objects in the bucket [default: uploads/]
  --widget-dir <DIR>            the node_modules folder holding ignite-ui, jquery and
                                jquery-ui, served for /igupload, and uppy, for /uppy
                                [default: tests/browser/node_modules in this repository]
  --cors-origin <ORIGIN>        let pages of ORIGIN (e.g. https://app.example) upload with
                                credentials, from their own origin: the CORS set-up of the
                                README for the widget and for tus clients
  -h, --help                    print this help

Pages: / (the demo's own), /igupload (the igUpload widget), /form (a plain HTML form, no
JavaScript, posting to /form/upload), /uppy (the Uppy Dashboard), /metrics.
Resumable uploads (tus 1.0.0, e.g. tus-js-client or Uppy's @uppy/tus) are served at /files/
with the same size limit, allowed types and events as the upload path.
";

/// The demo's own upload page and its assets, compiled in.
const INDEX_HTML: &str = include_str!("demo/index.html");
const APP_JS: &str = include_str!("demo/app.js");
const STYLE_CSS: &str = include_str!("demo/style.css");
/// The page with the real igUpload widget, and the page shown when it is not installed.
const IGUPLOAD_HTML: &str = include_str!("demo/igupload.html");
const IGUPLOAD_JS: &str = include_str!("demo/igupload.js");
const NO_WIDGET_HTML: &str = include_str!("demo/no-widget.html");

/// The npm packages `/vendor/...` serves from the widget folder; nothing else in it is served.
const VENDOR_PACKAGES: &[&str] = &["ignite-ui", "jquery", "jquery-ui", "uppy"];
/// A file whose presence means the widget is installed.
const WIDGET_PROBE: &str = "ignite-ui/js/modules/infragistics.ui.upload.js";

/// Paths the demo's own routes use; the upload and status paths must avoid them.
const RESERVED_PATHS: &[&str] = &[
    "/",
    "/app.js",
    "/style.css",
    "/igupload",
    "/igupload.js",
    "/favicon.ico",
    NGINX_PROGRESS_PATH,
];

/// Where clients of nginx's upload progress module ask: `GET /progress?X-Progress-ID=K`.
const NGINX_PROGRESS_PATH: &str = "/progress";

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    upload_dir: PathBuf,
    max_file_size: Option<u64>,
    upload_path: String,
    status_path: String,
    allowed_mime_types: String,
    widget_dir: PathBuf,
    redis: Option<String>,
    /// A page origin allowed to upload from another origin (CORS with credentials).
    cors_origin: Option<String>,
    /// `--s3-bucket`, `--s3-endpoint`, `--s3-prefix`.
    s3: Option<(String, Option<String>, String)>,
}

impl Args {
    /// The parsed flags, or `None` when help was asked for.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Self>, String> {
        let mut parsed = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            upload_dir: std::env::temp_dir().join("tower-upload-demo"),
            max_file_size: Some(4 * 1024 * 1024),
            upload_path: "/upload".to_owned(),
            status_path: "/status".to_owned(),
            allowed_mime_types: "*".to_owned(),
            widget_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules"),
            redis: None,
            cors_origin: None,
            s3: None,
        };
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            // `--flag value` and `--flag=value` both work.
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--addr" => {
                    let text = value()?;
                    parsed.addr = text.parse().map_err(|_| {
                        format!("--addr: {text:?} is not an address like 127.0.0.1:3000")
                    })?;
                }
                "--upload-dir" => parsed.upload_dir = PathBuf::from(value()?),
                "--max-file-size" => parsed.max_file_size = parse_size(&value()?)?,
                "--upload-path" => parsed.upload_path = url_path("--upload-path", value()?)?,
                "--status-path" => parsed.status_path = url_path("--status-path", value()?)?,
                "--allowed-mime-types" => parsed.allowed_mime_types = value()?,
                "--widget-dir" => parsed.widget_dir = PathBuf::from(value()?),
                "--redis" => parsed.redis = Some(value()?),
                "--cors-origin" => parsed.cors_origin = Some(value()?),
                "--s3-bucket" | "--s3-endpoint" | "--s3-prefix" => {
                    let s3 = parsed
                        .s3
                        .get_or_insert((String::new(), None, "uploads/".into()));
                    match flag.as_str() {
                        "--s3-bucket" => s3.0 = value()?,
                        "--s3-endpoint" => s3.1 = Some(value()?),
                        _ => s3.2 = value()?,
                    }
                }
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        if parsed.upload_path == parsed.status_path {
            return Err("--upload-path and --status-path must differ".to_owned());
        }
        Ok(Some(parsed))
    }
}

/// `1048576`, `512KiB`, `10MiB`, `1.5GB`, `none`.
fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower == "none" {
        return Ok(None);
    }
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("--max-file-size: unknown unit in {text:?}")),
    };
    let invalid = || format!("--max-file-size: {text:?} is not a size like 1048576, 10MiB or none");
    let bytes = if number.contains('.') {
        let value: f64 = number.parse().map_err(|_| invalid())?;
        (value * multiplier as f64).round() as u64
    } else {
        let value: u64 = number.parse().map_err(|_| invalid())?;
        value.checked_mul(multiplier).ok_or_else(invalid)?
    };
    Ok(Some(bytes))
}

/// A plain absolute URL path: the widget appends `?key=...` to it by string concatenation.
fn url_path(flag: &str, path: String) -> Result<String, String> {
    if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#']) {
        return Err(format!(
            "{flag}: {path:?} must be a plain absolute path such as /upload, without a query"
        ));
    }
    if RESERVED_PATHS.contains(&path.as_str())
        || clients::PATHS.contains(&path.as_str())
        || path.starts_with("/vendor/")
    {
        return Err(format!("{flag}: {path:?} is one of the demo's own pages"));
    }
    Ok(path)
}

/// `4 MiB`, `1.5 MiB`, `512 KiB`, `100 bytes`, `no limit`.
fn human_size(bytes: Option<u64>) -> String {
    let Some(bytes) = bytes else {
        return "no limit".to_owned();
    };
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes % size == 0 {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// Escapes text for an HTML attribute value or element content.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The status and error names the pages show, taken from the crate so they cannot drift:
/// `{"status":{"0":["NotStarted","the upload has not started"],...},"error":{...}}`.
fn codes_json() -> String {
    let status: serde_json::Map<String, serde_json::Value> = UploadStatus::ALL
        .iter()
        .map(|s| {
            (
                s.code().to_string(),
                serde_json::json!([s.name(), s.description()]),
            )
        })
        .collect();
    let error: serde_json::Map<String, serde_json::Value> = FileError::ALL
        .iter()
        .map(|e| {
            (
                e.code().to_string(),
                serde_json::json!([e.name(), e.description()]),
            )
        })
        .collect();
    serde_json::json!({ "status": status, "error": error }).to_string()
}

/// The pages, rendered once at start-up.
#[derive(Debug)]
struct Demo {
    index: String,
    igupload: String,
    no_widget: String,
    widget_dir: PathBuf,
}

impl Demo {
    fn new(args: &Args) -> Self {
        let fill = |template: &str| {
            template
                .replace("{{upload_path}}", &escape_html(&args.upload_path))
                .replace("{{status_path}}", &escape_html(&args.status_path))
                .replace(
                    "{{max_file_size}}",
                    &escape_html(&human_size(args.max_file_size)),
                )
                .replace(
                    "{{allowed_mime_types}}",
                    &escape_html(&args.allowed_mime_types),
                )
                .replace("{{codes}}", &escape_html(&codes_json()))
                .replace(
                    "{{widget_dir}}",
                    &escape_html(&args.widget_dir.display().to_string()),
                )
        };
        Self {
            index: fill(INDEX_HTML),
            igupload: fill(IGUPLOAD_HTML),
            no_widget: fill(NO_WIDGET_HTML),
            widget_dir: args.widget_dir.clone(),
        }
    }

    fn widget_installed(&self) -> bool {
        self.widget_dir.join(WIDGET_PROBE).is_file()
    }
}

#[tokio::main]
async fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("demo: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let demo = Arc::new(Demo::new(&args));
    let registry = match &args.redis {
        None => UploadRegistry::new(),
        Some(url) => redis_registry(url).await,
    };

    // Server events: a veto in `upload_starting` (refused before a byte is written; the
    // widget shows the message) and a log line for every upload that ends.
    let upload_layer = UploadLayer::new(registry.clone())
        .on_upload_starting(|event: UploadStarting| async move {
            if event.stored_name.to_ascii_lowercase().starts_with("veto") {
                return Err(EventError::veto("the demo refuses files named veto*"));
            }
            Ok(StartOptions::new())
        })
        .on_upload_finished(|event: UploadFinished| async move {
            let info = &event.info;
            println!(
                "upload {} {:?}: {} ({}), {} bytes{}",
                info.key,
                info.file_name.as_deref().unwrap_or("-"),
                info.status,
                info.error,
                info.bytes_uploaded,
                event
                    .path
                    .as_deref()
                    .map(|path| format!(", stored as {}", path.display()))
                    .unwrap_or_default(),
            );
        })
        .upload_path(args.upload_path.clone())
        .upload_dir(args.upload_dir.clone())
        .max_file_size(args.max_file_size)
        .allowed_mime_types(&args.allowed_mime_types)
        // Resumable uploads (tus 1.0) at /files/, under the same limits and events.
        .resumable_path("/files/");
    let upload_layer = match &args.s3 {
        Some(s3) => upload_layer.sink(s3_sink(s3)),
        None => upload_layer,
    };

    let app = Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE_CSS) }))
        .route("/igupload", get(igupload))
        .route(
            "/igupload.js",
            get(|| async { asset("text/javascript", IGUPLOAD_JS) }),
        )
        .route("/vendor/{*path}", get(vendor))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics))
        .merge(live_progress_routes(&args.status_path, &registry))
        .with_state(AppState {
            demo: Arc::clone(&demo),
            registry: registry.clone(),
        })
        .merge(clients::router(&args, registry))
        .layer(upload_layer);
    let app = match &args.cors_origin {
        Some(origin) => app.layer(cross_origin(origin)),
        None => app,
    };

    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("demo: cannot listen on {}: {error}", args.addr);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.addr);
    println!("tower-upload demo on http://{addr}/");
    if args.s3.is_none() {
        println!("uploads are stored in {}", args.upload_dir.display());
    }
    println!("resumable (tus 1.0) uploads at http://{addr}/files/");
    println!(
        "largest file: {}; allowed types: {}; uploads POST to {}, status at {}",
        human_size(args.max_file_size),
        args.allowed_mime_types,
        args.upload_path,
        args.status_path
    );
    if demo.widget_installed() {
        println!("the igUpload widget is at http://{addr}/igupload");
    } else {
        println!("the igUpload widget is not installed (run scripts/install-widget for /igupload)");
    }

    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        eprintln!("demo: server error: {error}");
        std::process::exit(1);
    }
}

/// Resolves on Ctrl-C (or SIGTERM on Unix); the server then stops accepting connections and
/// waits for the requests in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    println!("shutting down: waiting for the requests in flight");
}

fn html(body: String) -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

async fn index(State(demo): State<Arc<Demo>>) -> Response {
    let mut response = html(demo.index.clone());
    // The page is ours: nothing inline, nothing from elsewhere.
    response.headers_mut().insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; object-src 'none'; base-uri 'none'"),
    );
    response
}

async fn igupload(State(demo): State<Arc<Demo>>) -> Response {
    if demo.widget_installed() {
        html(demo.igupload.clone())
    } else {
        html(demo.no_widget.clone())
    }
}

/// `GET /vendor/<package>/<file>`: a file of one of [`VENDOR_PACKAGES`] from the widget
/// folder. Only plain path components under those packages, only regular files with a known
/// extension, and nothing that resolves (through links) outside the widget folder.
async fn vendor(State(demo): State<Arc<Demo>>, UrlPath(path): UrlPath<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found\n").into_response();
    let Some((file, content_type)) = vendor_file(&demo.widget_dir, &path) else {
        return not_found();
    };
    let root = demo.widget_dir.clone();
    let read = tokio::task::spawn_blocking(move || {
        let root = root.canonicalize()?;
        let file = file.canonicalize()?;
        if !file.starts_with(&root) || !file.is_file() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        std::fs::read(file)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => (
            [
                (CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
                (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            bytes,
        )
            .into_response(),
        _ => not_found(),
    }
}

/// Maps `ignite-ui/js/x.js` to a file under `root`, or `None` if the path is not one to serve.
fn vendor_file(root: &Path, path: &str) -> Option<(PathBuf, &'static str)> {
    let mut parts = path.split('/');
    let package = parts.next()?;
    if !VENDOR_PACKAGES.contains(&package) {
        return None;
    }
    let mut file = root.join(package);
    let mut last = None;
    for part in parts {
        let plain = !part.is_empty()
            && !part.starts_with('.')
            && !part.contains(['\\', '\0', ':'])
            && part.chars().all(|c| !c.is_control());
        if !plain {
            return None;
        }
        file.push(part);
        last = Some(part);
    }
    let extension = last?.rsplit_once('.')?.1.to_ascii_lowercase();
    let content_type = match extension.as_str() {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "eot" => "application/vnd.ms-fontobject",
        _ => return None,
    };
    Some((file, content_type))
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    demo: Arc<Demo>,
    registry: UploadRegistry,
}

impl axum::extract::FromRef<AppState> for Arc<Demo> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.demo)
    }
}

/// The registry's counters in Prometheus' text format.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.registry.metrics().to_prometheus(),
    )
        .into_response()
}

/// The status service: igUpload's commands and pushed progress (`command=watch`, Server-Sent
/// Events, which the page uses) at the status path, and nginx's upload progress dialect at
/// [`NGINX_PROGRESS_PATH`]; one service, one registry.
fn live_progress_routes<S: Clone + Send + Sync + 'static>(
    status_path: &str,
    registry: &UploadRegistry,
) -> Router<S> {
    let status = UploadStatusService::new(registry.clone());
    Router::new()
        .route_service(status_path, status.clone())
        .route_service(NGINX_PROGRESS_PATH, status)
}

#[cfg(feature = "redis")]
async fn redis_registry(url: &str) -> UploadRegistry {
    match tower_upload::state::RedisStore::connect(url).await {
        Ok(store) => {
            println!("upload records are kept in Redis at {url}");
            UploadRegistry::with_store(store)
        }
        Err(error) => {
            eprintln!("demo: cannot use Redis at {url}: {error}");
            std::process::exit(1);
        }
    }
}

#[cfg(not(feature = "redis"))]
async fn redis_registry(_url: &str) -> UploadRegistry {
    eprintln!("demo: --redis needs the redis feature: cargo run --release --features redis --example demo -- --redis URL");
    std::process::exit(2);
}

/// CORS for pages of `origin` (the README's set-up): the widget's credentialed POSTs and
/// status queries, and tus / IETF draft clients with their headers. Outside the upload layer,
/// so that it answers preflights and decorates the layer's answers too.
fn cross_origin(origin: &str) -> tower_http::cors::CorsLayer {
    use tower_upload::layer::cors;
    let Ok(origin) = axum::http::HeaderValue::from_str(origin) else {
        eprintln!("demo: --cors-origin {origin:?} is not a header value");
        std::process::exit(2);
    };
    tower_http::cors::CorsLayer::new()
        .allow_origin(origin)
        .allow_credentials(true)
        .allow_methods(cors::METHODS)
        .allow_headers(cors::ALLOW_HEADERS)
        .expose_headers(cors::EXPOSE_HEADERS)
        .max_age(std::time::Duration::from_secs(86_400))
}

/// `--s3-bucket NAME [--s3-endpoint URL] [--s3-prefix P]`: files go into the bucket, streamed
/// as multipart uploads (region and credentials from the usual AWS_* environment variables).
#[cfg(feature = "object-store")]
fn s3_sink(
    (bucket, endpoint, prefix): &(String, Option<String>, String),
) -> tower_upload::UploadSink {
    use object_store::aws::AmazonS3Builder;
    // The S3 client's TLS (ring, as its request signing).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    match builder.build() {
        Ok(store) => {
            let sink = tower_upload::ObjectStoreSink::new(Arc::new(store)).prefix(prefix);
            println!(
                "uploads are stored in the bucket {bucket}, as {}",
                sink.location("NAME")
            );
            tower_upload::UploadSink::custom(sink)
        }
        Err(error) => {
            eprintln!("demo: cannot use the bucket {bucket}: {error}");
            std::process::exit(1);
        }
    }
}

#[cfg(not(feature = "object-store"))]
fn s3_sink(_: &(String, Option<String>, String)) -> tower_upload::UploadSink {
    eprintln!("demo: --s3-bucket needs the object-store feature: cargo run --release --features object-store --example demo -- --s3-bucket NAME");
    std::process::exit(2);
}
