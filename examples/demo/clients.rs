//! Two more ways in to the same registry, upload folder and limits (issue #12, "any client"):
//!
//! - `/form`: a plain HTML form (no JavaScript) that posts to `/form/upload`, a second upload
//!   endpoint mounted as a leaf [`UploadService`](tower_upload::layer::UploadService) with
//!   `redirect_to("/uploaded")`; `/uploaded` renders the outcome on the server from the
//!   registry.
//! - `/uppy`: the Uppy file uploader (npm `uppy`, its prebuilt browser bundle served from
//!   `/vendor/uppy/dist/`), Dashboard + XHR upload posting keyless to the upload path.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower_upload::{FileError, UploadFinished, UploadLayer, UploadRegistry, UploadStatus};

use super::{asset, escape_html, html, human_size, Args};

const FORM_HTML: &str = include_str!("form.html");
const UPLOADED_HTML: &str = include_str!("uploaded.html");
const UPPY_HTML: &str = include_str!("uppy.html");
const UPPY_JS: &str = include_str!("uppy.js");

/// The paths these routes take (the upload and status paths must avoid them).
pub(crate) const PATHS: &[&str] = &["/form", "/form/upload", "/uploaded", "/uppy", "/uppy.js"];
/// A file whose presence means Uppy is installed.
const UPPY_PROBE: &str = "uppy/dist/uppy.min.js";
/// The most keys `/uploaded` looks up.
const MAX_KEYS: usize = 100;

#[derive(Clone)]
struct Pages {
    form: String,
    uppy: String,
    uploaded: String,
    registry: UploadRegistry,
}

/// `/form`, `/form/upload`, `/uploaded`, `/uppy` and `/uppy.js`, ready to merge into the app.
pub(crate) fn router(args: &Args, registry: UploadRegistry) -> Router {
    let fill = |template: &str| {
        template
            .replace("{{upload_path}}", &escape_html(&args.upload_path))
            .replace(
                "{{max_file_size}}",
                &escape_html(&human_size(args.max_file_size)),
            )
            .replace(
                "{{allowed_mime_types}}",
                &escape_html(&args.allowed_mime_types),
            )
    };
    let uppy = if args.widget_dir.join(UPPY_PROBE).is_file() {
        fill(UPPY_HTML)
    } else {
        fill(UPPY_HTML).replace("<body>", "<body data-missing>")
    };
    let pages = Pages {
        form: fill(FORM_HTML),
        uppy,
        uploaded: fill(UPLOADED_HTML),
        registry: registry.clone(),
    };

    // The form's endpoint: the demo's limits and folder, and a 303 to /uploaded instead of
    // JSON, so the browser shows a page and a reload does not post the files again.
    let form_upload = UploadLayer::new(registry)
        .upload_dir(args.upload_dir.clone())
        .max_file_size(args.max_file_size)
        .allowed_mime_types(&args.allowed_mime_types)
        .on_upload_finished(|event: UploadFinished| async move {
            let note = event.fields.iter().find(|field| field.name == "note");
            println!(
                "form upload {} {:?}: {}, note {:?}",
                event.info.key,
                event.info.file_name.as_deref().unwrap_or("-"),
                event.info.status,
                note.map(|field| field.value.as_str()).unwrap_or(""),
            );
        })
        .redirect_to("/uploaded")
        .into_service();

    Router::new()
        .route(
            "/form",
            get(|State(p): State<Pages>| async move { html(p.form) }),
        )
        .route_service("/form/upload", form_upload)
        .route("/uploaded", get(uploaded))
        .route(
            "/uppy",
            get(|State(p): State<Pages>| async move { html(p.uppy) }),
        )
        .route(
            "/uppy.js",
            get(|| async { asset("text/javascript", UPPY_JS) }),
        )
        .with_state(pages)
}

/// `GET /uploaded?keys=K1;K2` or `?status=S&error=E&keys=...`: the outcome of a form post,
/// one row per key from the registry, rendered here (the page needs no JavaScript).
async fn uploaded(
    State(pages): State<Pages>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let status = query.get("status").and_then(|v| v.parse::<u8>().ok());
    let error = query.get("error").and_then(|v| v.parse::<i8>().ok());
    let failure = match status {
        Some(status) => {
            let status = UploadStatus::from_code(status);
            let error = error.and_then(FileError::from_code);
            format!(
                r#"<p class="failure" id="failure" data-status="{}" data-error="{}">The upload failed: {}{}.</p>"#,
                status.map_or(String::new(), |s| s.code().to_string()),
                error.map_or(String::new(), |e| e.code().to_string()),
                status.map_or("unknown status".to_owned(), describe_status),
                error.map_or(String::new(), |e| format!(
                    ", {} ({})",
                    e.description(),
                    e.code()
                )),
            )
        }
        None => String::new(),
    };
    let mut rows = String::new();
    let keys = query.get("keys").map(String::as_str).unwrap_or("");
    for key in keys.split(';').filter(|k| !k.is_empty()).take(MAX_KEYS) {
        let info = match tower_upload::UploadKey::parse(key) {
            Ok(key) => pages.registry.snapshot(&key).await.ok().flatten(),
            Err(_) => None,
        };
        rows.push_str(&match info {
            Some(info) => format!(
                r#"<tr data-key="{key}" data-status="{status}" data-error="{error}" data-bytes="{bytes}"><td class="name">{name}</td><td class="size">{size}</td><td class="status">{state}</td><td class="message">{message}</td></tr>"#,
                key = escape_html(key),
                status = info.status.code(),
                error = info.error.code(),
                name = escape_html(info.file_name.as_deref().unwrap_or("-")),
                bytes = info.bytes_uploaded,
                size = escape_html(&match (info.status, info.size) {
                    (UploadStatus::Finished, Some(size)) => format!("{} ({size} bytes)", human_size(Some(size))),
                    _ => format!("{} bytes received", info.bytes_uploaded),
                }),
                state = escape_html(&describe_status(info.status)),
                message = escape_html(info.server_message.as_deref().unwrap_or("")),
            ),
            None => format!(
                r#"<tr data-key="{key}" data-status=""><td class="name">-</td><td></td><td class="status">unknown key</td><td class="message">no record (expired, or never uploaded)</td></tr>"#,
                key = escape_html(key),
            ),
        });
    }
    if rows.is_empty() {
        rows.push_str(r#"<tr><td colspan="4">No files in this upload.</td></tr>"#);
    }
    html(
        pages
            .uploaded
            .replace("{{failure}}", &failure)
            .replace("{{rows}}", &rows),
    )
}

/// `Finished (2)`.
fn describe_status(status: UploadStatus) -> String {
    format!("{} ({})", status.name(), status.code())
}
