//! tus across two server instances sharing one Redis server and one upload folder: an upload
//! started on A, its connection cut, resumed on B; both status services report it.
//!
//! Needs `redis-server` on the PATH (`scripts/test` installs it).

#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use redis_server::RedisServer;
use support::*;
use tower_upload_state::{RedisStore, UploadRegistry};

async fn instance(redis: &RedisServer, uploads: PathBuf) -> TestServer {
    let store = RedisStore::builder(redis.url())
        .progress_interval(Duration::from_millis(20))
        .cancel_poll_interval(Duration::from_millis(20))
        .op_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to redis");
    TestServer::start_with_registry(UploadRegistry::with_store(store), move |layer| {
        layer.upload_dir(uploads).resumable_path("/files/")
    })
    .await
}

fn h(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

fn patch_headers(offset: u64) -> Vec<(String, String)> {
    vec![
        h("Tus-Resumable", "1.0.0"),
        h("Upload-Offset", offset),
        h("Content-Type", "application/offset+octet-stream"),
    ]
}

#[tokio::test]
async fn an_upload_started_on_a_is_resumed_on_b() {
    let redis = RedisServer::start().await;
    let shared = tempfile::tempdir().unwrap();
    let uploads = shared.path().join("uploads");
    let a = instance(&redis, uploads.clone()).await;
    let b = instance(&redis, uploads.clone()).await;
    let data = pattern(80_000, 11);

    let created = send(
        a.addr,
        "POST",
        "/files/",
        &[
            h("Tus-Resumable", "1.0.0"),
            h("Upload-Length", data.len()),
            h("Upload-Metadata", "filename YWIuYmlu"),
        ],
        b"",
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let url = created.header("location").unwrap().to_owned();
    let id = url.trim_start_matches("/files/").to_owned();

    // A PATCH on A whose connection is cut mid-body.
    let mut request = StreamingRequest::open(
        a.addr,
        "PATCH",
        &url,
        &patch_headers(0),
        Some(data.len() as u64),
    )
    .await;
    request.write(&data[..30_000]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    request.disconnect();

    // B sees the kept offset (after A has paused the upload), and both status services agree.
    let head = |addr| {
        let url = url.clone();
        async move { send(addr, "HEAD", &url, &[h("Tus-Resumable", "1.0.0")], b"").await }
    };
    eventually("B reports the offset A kept", || async {
        head(b.addr).await.header("upload-offset") == Some("30000")
    })
    .await;
    for server in [&a, &b] {
        let status = server.status(&id).await;
        assert_eq!(codes(&status), (1, -1));
        assert_eq!(status["bytesUploaded"], 30_000);
    }

    // While B streams the rest slowly, A cannot take it (the request lives on B): 423.
    let mut rest = StreamingRequest::open(
        b.addr,
        "PATCH",
        &url,
        &patch_headers(30_000),
        Some((data.len() - 30_000) as u64),
    )
    .await;
    rest.write(&data[30_000..40_000]).await;
    eventually("B streams", || async {
        b.status(&id).await["bytesUploaded"] == 40_000
    })
    .await;
    let refused = send(a.addr, "PATCH", &url, &patch_headers(40_000), b"x").await;
    assert_eq!(refused.status, 423, "{refused:?}");
    assert!(refused.header("retry-after").is_some());
    rest.write(&data[40_000..]).await;
    let done = rest.response().await;
    assert_eq!(done.status, 204, "{done:?}");
    assert_eq!(std::fs::read(uploads.join("ab.bin")).unwrap(), data);
    for server in [&a, &b] {
        assert_eq!(codes(&server.status(&id).await), (2, -1));
    }
    a.stop().await;
    b.stop().await;
}
