//! Forward mode: the application answers upload requests from `UploadedFiles`, in an axum
//! app (the `axum` feature's extractor).

mod support;

use axum::routing::{get, post};
use axum::{Json, Router};
use support::*;
use tower_upload_layer::{Stored, UploadLayer, UploadSink, UploadedFiles};
use tower_upload_state::UploadRegistry;

/// The application's own answer: what it learned of each file.
async fn uploaded(files: UploadedFiles) -> (http::StatusCode, Json<serde_json::Value>) {
    let listed: Vec<serde_json::Value> = files
        .files
        .iter()
        .map(|file| {
            let stored = match &file.stored {
                Stored::Path(path) => path.file_name().unwrap().to_string_lossy().into_owned(),
                Stored::Memory(bytes) => format!("{} bytes in memory", bytes.len()),
                other => format!("{other:?}"),
            };
            serde_json::json!({
                "key": file.key.as_str(),
                "field": file.field_name,
                "name": file.file_name,
                "stored": stored,
                "size": file.size,
                "type": file.declared_type,
                "status": file.status.code(),
                "error": file.error.code(),
            })
        })
        .collect();
    let status = match &files.failure {
        Some(failure) => failure.http,
        None => http::StatusCode::CREATED,
    };
    let body = serde_json::json!({
        "title": files.field("title"),
        "files": listed,
        "failure": files.failure.as_ref().map(|failure| failure.message.clone()),
    });
    (status, Json(body))
}

async fn server(configure: impl FnOnce(UploadLayer) -> UploadLayer) -> TestServer {
    let registry = UploadRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let layer = configure(
        UploadLayer::new(registry.clone())
            .upload_dir(dir.path().join("uploads"))
            .max_file_size(Some(1000)),
    );
    let app = Router::new()
        .route("/upload", post(uploaded))
        .route("/", get(|| async { "home" }))
        .layer(layer.forward());
    TestServer::serve(app, registry, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_answers_from_uploaded_files() {
    let server = server(|layer| layer).await;
    let body = MultipartBody::new()
        .field("title", "holiday")
        .file_field("photo", "beach.jpg", "image/jpeg", b"jpeg bytes")
        .file_field("notes", "notes.txt", "text/plain; charset=utf-8", b"sunny")
        .finish();
    let response = server.post_upload("", &body).await;
    assert_eq!(response.status, 201, "{:?}", response.json());
    let answer = response.json();
    assert_eq!(answer["title"], "holiday");
    let files = answer["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["field"], "photo");
    assert_eq!(files[0]["name"], "beach.jpg");
    assert_eq!(files[0]["stored"], "beach.jpg");
    assert_eq!(files[0]["size"], 10);
    assert_eq!(files[1]["type"], "text/plain");
    assert_eq!(files[1]["status"], 2);
    // The keys are the registry's: the status service answers for them.
    let key = files[0]["key"].as_str().unwrap();
    assert_eq!(
        server
            .registry
            .snapshot(&key.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .status
            .code(),
        2
    );
    assert_eq!(server.saved_files(), ["beach.jpg", "notes.txt"]);
    // Other requests are untouched.
    assert_eq!(send(server.addr, "GET", "/", &[], b"").await.body, b"home");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_files_reach_the_handler_marked() {
    let server = server(|layer| layer).await;
    let body = MultipartBody::new()
        .file_field("a", "small.txt", "text/plain", b"ok")
        .file_field("b", "big.txt", "text/plain", &[b'x'; 5000])
        .finish();
    let mut request =
        StreamingRequest::open(server.addr, "POST", "/upload", &body.headers(), None).await;
    request.write(&body.bytes).await;
    request.end().await;
    let response = request.response().await;
    assert_eq!(response.status, 413);
    let answer = response.json();
    assert_eq!(
        answer["failure"],
        "file is larger than the 1000 bytes limit"
    );
    let files = answer["files"].as_array().unwrap();
    assert_eq!(
        (files[0]["status"].as_i64(), files[0]["stored"].as_str()),
        (Some(2), Some("small.txt"))
    );
    assert_eq!(
        (files[1]["status"].as_i64(), files[1]["error"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(files[1]["stored"], "Nowhere");
    assert_eq!(server.saved_files(), ["small.txt"]);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_refusals_keeps_the_layers_error_answers() {
    let registry = UploadRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let layer = UploadLayer::new(registry.clone())
        .upload_dir(dir.path().join("uploads"))
        .max_file_size(Some(10))
        .forward()
        .answer_refusals(true);
    let app = Router::new().route("/upload", post(uploaded)).layer(layer);
    let server = TestServer::serve(app, registry, dir).await;
    let big = MultipartBody::new()
        .file("big.txt", "text/plain", &[b'x'; 50])
        .finish();
    let response = server.post_upload("key=big", &big).await;
    assert_eq!(response.status, 413);
    assert_eq!(codes(&response.json()), (5, 2), "the layer's own answer");
    let small = MultipartBody::new()
        .file("s.txt", "text/plain", b"s")
        .finish();
    let response = server.post_upload("key=small", &small).await;
    assert_eq!(response.status, 201, "the handler's answer");
    assert_eq!(response.json()["files"][0]["key"], "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_uploads_hand_their_bytes_to_the_handler() {
    let server = server(|layer| layer.sink(UploadSink::memory(1 << 20))).await;
    let body = MultipartBody::new()
        .file("m.bin", "application/octet-stream", b"0123456789")
        .finish();
    let response = server.post_upload("key=mem", &body).await;
    assert_eq!(response.status, 201);
    assert_eq!(response.json()["files"][0]["stored"], "10 bytes in memory");
}

/// Without the layer in forward mode the extractor refuses, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extractor_says_when_the_layer_is_missing() {
    let registry = UploadRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let app = Router::new().route("/upload", post(uploaded));
    let server = TestServer::serve(app, registry, dir).await;
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"a")
        .finish();
    let response = server.post_upload("key=a", &body).await;
    assert_eq!(response.status, 500);
    let text = String::from_utf8_lossy(&response.body);
    assert!(
        text.contains("UploadLayer::new(registry).forward()"),
        "{text}"
    );
}
