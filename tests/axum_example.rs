//! examples/axum_app.rs over loopback: forward mode answered by the app's handler from
//! `UploadedFiles`, and the leaf service behind a route-level authentication layer.
#![cfg(feature = "axum")]

mod support;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum_app.rs"]
mod axum_app;

use support::*;
use tower_upload::UploadRegistry;

async fn start() -> (
    std::net::SocketAddr,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let upload_dir = dir.path().to_owned();
    tokio::spawn(async move {
        axum_app::serve(listener, UploadRegistry::new(), upload_dir, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, dir, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_answers_photo_uploads_from_uploaded_files() {
    let (addr, dir, _stop) = start().await;
    let body = MultipartBody::new()
        .field("caption", "sunset")
        .file_field("photo", "sunset.png", "image/png", b"\x89PNG fake")
        .finish();
    let response = send(addr, "POST", "/photos", &body.headers(), &body.bytes).await;
    assert_eq!(response.status, 201, "{:?}", response.json());
    let answer = response.json();
    assert_eq!(answer["caption"], "sunset");
    assert_eq!(answer["photos"][0]["stored_as"], "sunset.png");
    assert_eq!(answer["photos"][0]["bytes"], 9);
    let key = answer["photos"][0]["key"].as_str().unwrap();
    let status = send(
        addr,
        "GET",
        &format!("/status?key={key}&command=status"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status.json()["status"], 2);
    assert!(dir.path().join("photos/sunset.png").is_file());
    // A refusal, in the app's words.
    let body = MultipartBody::new()
        .file_field("photo", "tool.exe", "application/x-msdownload", b"MZ")
        .finish();
    let response = send(addr, "POST", "/photos", &body.headers(), &body.bytes).await;
    assert_eq!(response.status, 415);
    assert_eq!(response.json()["ok"], false);
    assert!(response.json()["reason"]
        .as_str()
        .unwrap()
        .contains("not allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_upload_needs_the_token_before_any_byte() {
    let (addr, dir, _stop) = start().await;
    let body = MultipartBody::new()
        .file("doc.txt", "text/plain", b"doc")
        .finish();
    let mut request =
        StreamingRequest::open(addr, "POST", "/api/upload", &body.headers(), Some(1 << 20)).await;
    let response = request
        .early_response(std::time::Duration::from_secs(5))
        .await
        .expect("answered before the body");
    assert_eq!(response.status, 401);
    let mut headers = body.headers();
    headers.push(("authorization".into(), "Bearer demo-token".into()));
    let response = send(addr, "POST", "/api/upload", &headers, &body.bytes).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.json()["files"][0]["status"], 2);
    assert!(dir.path().join("api/doc.txt").is_file());
}
