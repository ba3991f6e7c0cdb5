//! `UploadService`, the leaf: mounted on one route of a nested router, behind a
//! route-level authentication layer.

mod support;

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use http::StatusCode;
use support::*;
use tower_upload_layer::UploadLayer;
use tower_upload_state::UploadRegistry;

async fn require_token(request: Request, next: Next) -> Result<Response, StatusCode> {
    match request.headers().get("authorization") {
        Some(value) if value == "Bearer let-me-in" => Ok(next.run(request).await),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

async fn server() -> TestServer {
    let registry = UploadRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let upload = UploadLayer::new(registry.clone())
        .upload_dir(dir.path().join("uploads"))
        .max_file_size(None)
        .into_service();
    let api = Router::new()
        .route_service("/upload", upload)
        .route_layer(middleware::from_fn(require_token));
    let app = Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .nest("/api", api);
    TestServer::serve(app, registry, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_401_before_a_byte_of_the_body_is_read() {
    let server = server().await;
    let body = MultipartBody::new()
        .file(
            "secret.bin",
            "application/octet-stream",
            &pattern(1 << 20, 1),
        )
        .finish();
    // The head announces 1 MiB; not a byte of the body is sent.
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/api/upload?key=stranger",
        &body.headers(),
        Some(body.bytes.len() as u64),
    )
    .await;
    let response = request
        .early_response(Duration::from_secs(5))
        .await
        .expect("answered without the body");
    assert_eq!(response.status, 401);
    let key = tower_upload_state::UploadKey::parse("stranger").unwrap();
    assert_eq!(
        server.registry.snapshot(&key).await.unwrap(),
        None,
        "not registered"
    );
    assert_eq!(server.registry.in_flight(), 0);
    assert!(!server.uploads().exists(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorised_upload_through_the_nested_leaf_is_stored() {
    let server = server().await;
    let content = pattern(300_000, 2);
    let body = MultipartBody::new()
        .file("ok.bin", "application/octet-stream", &content)
        .finish();
    let mut headers = body.headers();
    headers.push(("authorization".into(), "Bearer let-me-in".into()));
    let response = send(
        server.addr,
        "POST",
        "/api/upload?key=member",
        &headers,
        &body.bytes,
    )
    .await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(codes(&response.json()), (2, -1));
    let saved = std::fs::read(server.uploads().join("ok.bin")).unwrap();
    assert_eq!(sha256(&saved), sha256(&content));
    // Other methods on the route: 405, Allow: POST.
    let response = send(
        server.addr,
        "GET",
        "/api/upload",
        &[("authorization".into(), "Bearer let-me-in".into())],
        b"",
    )
    .await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    // The rest of the application is untouched.
    assert_eq!(send(server.addr, "GET", "/", &[], b"").await.body, b"home");
}
