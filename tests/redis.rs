//! Two server instances sharing a real Redis server: progress, cancel, conflicts and
//! rejections across instances, and Redis going away and coming back.
//!
//! Needs `redis-server` on the PATH (`scripts/test` installs it).

#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::time::Duration;

use redis_server::RedisServer;
use serde_json::json;
use support::*;
use tower_upload_state::{
    ClaimError, FileError, ProgressStore, RedisStore, UploadInfo, UploadKey, UploadRegistry,
    UploadStatus,
};

async fn instance(redis: &RedisServer) -> TestServer {
    let store = RedisStore::builder(redis.url())
        .progress_interval(Duration::from_millis(20))
        .cancel_poll_interval(Duration::from_millis(20))
        .op_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("connect to redis");
    TestServer::start_with_registry(UploadRegistry::with_store(store), |layer| {
        layer.max_file_size(Some(8 << 20))
    })
    .await
}

/// A store on `redis` with short intervals, for tests that drive the registry directly.
async fn store(redis: &RedisServer) -> RedisStore {
    RedisStore::builder(redis.url())
        .progress_interval(Duration::from_millis(50))
        .cancel_poll_interval(Duration::from_millis(20))
        .op_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("connect to redis")
}

fn upload_key(text: &str) -> UploadKey {
    UploadKey::parse(text).unwrap()
}

async fn status_code(server: &TestServer, key: &str) -> u16 {
    send(
        server.addr,
        "GET",
        &format!("/status?key={key}&command=status"),
        &[],
        b"",
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_results_are_visible_from_the_other_instance() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let content = pattern(2 << 20, 1);
    let body = MultipartBody::new()
        .file("shared.bin", "application/octet-stream", &content)
        .finish();
    let mut request = a.open_upload("across", &body).await;
    request.write(&body.bytes[..1 << 20]).await;
    eventually("instance B sees A's progress", || async {
        let seen = b.status("across").await;
        seen["status"] == 1 && seen["bytesUploaded"].as_u64().unwrap() > 0
    })
    .await;
    assert_eq!(b.status("across").await["size"], body.bytes.len());
    // The key is in flight on A: B refuses a second upload for it.
    let conflict = b.post_upload("key=across", &body).await;
    assert_eq!(conflict.status, 409, "{conflict:?}");
    request.write(&body.bytes[1 << 20..]).await;
    assert_eq!(request.response().await.status, 200);
    let on_b = b.status("across").await;
    assert_eq!(
        on_b,
        json!({"status":2,"error":-1,"bytesUploaded":content.len(),"size":content.len(),"serverMessage":""})
    );
    assert_eq!(
        sha256(&std::fs::read(a.uploads().join("shared.bin")).unwrap()),
        sha256(&content)
    );
    assert!(
        b.saved_files().is_empty(),
        "the file is where it was uploaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_instance_stops_the_upload_on_the_other() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let body = MultipartBody::new()
        .file("stop.bin", "application/octet-stream", &pattern(4 << 20, 2))
        .finish();
    let mut request = a.open_upload("stopme", &body).await;
    request.write(&body.bytes[..500_000]).await;
    eventually("B sees the upload", || async {
        b.status("stopme").await["status"] == 1
    })
    .await;
    let asked = std::time::Instant::now();
    let answer = b.command("stopme", "cancel").await;
    assert_eq!(answer["status"], 1, "the state when asked");
    // The client stalls; the cancel must still land on A, within the poll interval.
    let response = request.response_now().await;
    let took = asked.elapsed();
    assert_eq!(response.status, 409, "{response:?}");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    eventually("B sees status 4", || async {
        b.status("stopme").await["status"] == 4
    })
    .await;
    a.assert_no_temp_files().await;
    assert!(a.saved_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_and_a_file_size_answer_are_shared() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let head = MultipartBody::new().headers();
    let refused =
        StreamingRequest::open(a.addr, "POST", "/upload?key=toobig", &head, Some(100 << 20))
            .await
            .response_now()
            .await;
    assert_eq!(refused.status, 413);
    // Chromium's re-sent POST may reach the other instance: same verdict, at once.
    let again =
        StreamingRequest::open(b.addr, "POST", "/upload?key=toobig", &head, Some(100 << 20))
            .await
            .response_now()
            .await;
    assert_eq!(again.status, 413);
    assert_eq!(again.json(), refused.json());
    let body = MultipartBody::new()
        .file("f", "text/plain", b"12345")
        .finish();
    assert_eq!(
        a.post_upload("key=sized&command=fileSize", &body)
            .await
            .status,
        200
    );
    assert_eq!(
        b.command("sized", "fileSize").await,
        json!({"fileSize": body.bytes.len()})
    );
    assert_eq!(
        a.command("sized", "fileSize").await["fileSize"],
        json!(null),
        "read once, anywhere"
    );
    assert_eq!(b.status("nobody").await["status"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_survive_redis_going_away_and_status_recovers() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let content = pattern(1 << 20, 3);
    let body = MultipartBody::new()
        .file("kept.bin", "application/octet-stream", &content)
        .finish();
    let mut request = a.open_upload("outage", &body).await;
    request.write(&body.bytes[..300_000]).await;
    eventually("B sees the upload", || async {
        b.status("outage").await["status"] == 1
    })
    .await;
    redis.kill();
    // The upload goes on and is kept.
    request.write(&body.bytes[300_000..]).await;
    let response = request.response().await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        sha256(&std::fs::read(a.uploads().join("kept.bin")).unwrap()),
        sha256(&content)
    );
    // Status answers degrade with a clear error, on both instances.
    let degraded = send(b.addr, "GET", "/status?key=outage&command=status", &[], b"").await;
    assert_eq!(degraded.status, 503, "{degraded:?}");
    assert_eq!(degraded.json()["error"], "store_unavailable");
    // A new upload while Redis is down is still received and kept.
    let during = MultipartBody::new()
        .file("during.txt", "text/plain", b"while redis was down")
        .finish();
    assert_eq!(a.post_upload("key=during", &during).await.status, 200);
    assert!(a.uploads().join("during.txt").is_file());
    // Redis comes back (empty: no persistence); the connections recover by themselves.
    redis.spawn().await;
    eventually("B answers from Redis again", || async {
        status_code(&b, "fresh").await == 200
    })
    .await;
    let after = MultipartBody::new()
        .file("after.txt", "text/plain", b"after")
        .finish();
    eventually("A registers in Redis again", || async {
        a.post_upload("key=fresh", &after).await.status == 200
    })
    .await;
    eventually("B sees A's new upload", || async {
        b.status("fresh").await["status"] == 2
    })
    .await;
    a.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_client_caused_verdicts_are_replayed_from_redis() {
    let redis = RedisServer::start().await;
    let registry = UploadRegistry::with_store(store(&redis).await);
    for (name, status, error, replayed) in [
        (
            "big",
            UploadStatus::FileSizeExceeded,
            FileError::FileSizeExceeded,
            true,
        ),
        (
            "veto",
            UploadStatus::CanceledByEvent,
            FileError::ServerSideCancel,
            true,
        ),
        (
            "cmd",
            UploadStatus::CanceledByClientCommand,
            FileError::None,
            true,
        ),
        (
            "mime",
            UploadStatus::ErrorUploading,
            FileError::MimeTypeValidation,
            true,
        ),
        (
            "name",
            UploadStatus::ErrorUploading,
            FileError::EstablishingFileName,
            true,
        ),
        (
            "parse",
            UploadStatus::ErrorUploading,
            FileError::HeaderParsing,
            true,
        ),
        (
            "disk",
            UploadStatus::ErrorUploading,
            FileError::FileWriting,
            false,
        ),
        (
            "folder",
            UploadStatus::ErrorUploading,
            FileError::UploadFolderNotFound,
            false,
        ),
        (
            "rename",
            UploadStatus::ErrorUploading,
            FileError::FileSaving,
            false,
        ),
        (
            "create",
            UploadStatus::ErrorUploading,
            FileError::FileStarting,
            false,
        ),
        (
            "delete",
            UploadStatus::ErrorUploading,
            FileError::FileDeleting,
            false,
        ),
    ] {
        let upload = registry
            .begin(UploadInfo::new(upload_key(name)))
            .await
            .unwrap();
        upload.finish(status, error, None).await;
        match registry.begin(UploadInfo::new(upload_key(name))).await {
            Err(ClaimError::Rejected(previous)) if replayed => {
                assert_eq!((previous.status, previous.error), (status, error));
            }
            Ok(retry) if !replayed => {
                let stored = registry.store().load(&upload_key(name)).await.unwrap();
                assert_eq!(stored.unwrap().status, UploadStatus::NotStarted, "{name}");
                retry.abandon().await;
            }
            other => panic!("{name}: replayed = {replayed}, got {other:?}"),
        }
    }
}

/// Empties Redis' script cache, so that the next run of each script takes an extra round
/// trip (`NOSCRIPT`, then the script is sent again), as after a Redis restart.
async fn flush_scripts(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(b"SCRIPT FLUSH\r\n").await.unwrap();
    let mut answer = [0u8; 5];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_handle_frees_its_key_for_an_immediate_retry() {
    let redis = RedisServer::start().await;
    let registry = UploadRegistry::with_store(store(&redis).await);
    for round in 0..5 {
        flush_scripts(redis.port).await;
        let upload = registry
            .begin(UploadInfo::new(upload_key("dropped")))
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        upload.add_bytes(1000);
        // The client hangs up (the request future is dropped; its final save is slow this
        // time) and the browser re-posts at once: the retry must not meet the stale live
        // record (409).
        drop(upload);
        let retry = registry
            .begin(UploadInfo::new(upload_key("dropped")))
            .await
            .unwrap_or_else(|error| panic!("round {round}: the retry got {error:?}"));
        let stored = registry.store().load(&upload_key("dropped")).await.unwrap();
        assert_eq!(stored.unwrap().status, UploadStatus::NotStarted);
        if round < 4 {
            drop(retry);
        } else {
            retry
                .finish(UploadStatus::Finished, FileError::None, None)
                .await;
        }
    }
    // The last round's record is the retry's.
    let stored = registry.store().load(&upload_key("dropped")).await.unwrap();
    assert_eq!(stored.unwrap().status, UploadStatus::Finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_of_an_earlier_claim_does_not_overwrite_a_new_one() {
    let redis = RedisServer::start().await;
    let store = store(&redis).await;
    let registry = UploadRegistry::with_store(store.clone());
    let old = registry
        .begin(UploadInfo::new(upload_key("again")))
        .await
        .unwrap();
    old.set_status(UploadStatus::Started).await.unwrap();
    old.add_bytes(100);
    old.checkpoint().await;
    old.add_bytes(1);
    // Within the progress interval: a trailing flush is scheduled for ~50 ms from now.
    old.checkpoint().await;
    old.finish(
        UploadStatus::CanceledByClientConnection,
        FileError::None,
        None,
    )
    .await;
    // Chromium re-posts the key within the flush window.
    let new = registry
        .begin(UploadInfo::new(upload_key("again")))
        .await
        .unwrap();
    new.set_status(UploadStatus::Started).await.unwrap();
    new.add_bytes(7);
    new.save().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = store.load(&upload_key("again")).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.bytes_uploaded),
        (UploadStatus::Started, 7),
        "the new claim's record"
    );

    // The store itself refuses another claim's writes, whoever sends them.
    let mut stale = stored.clone();
    stale.status = UploadStatus::Finished;
    stale.bytes_uploaded = 1;
    store
        .save_with(&stale, tower_upload_state::ClaimToken::random())
        .await
        .unwrap();
    store
        .remove_with(
            &upload_key("again"),
            tower_upload_state::ClaimToken::random(),
        )
        .await
        .unwrap();
    let stored = store.load(&upload_key("again")).await.unwrap().unwrap();
    assert_eq!(stored.status, UploadStatus::Started);
    new.abandon().await;
    assert_eq!(store.load(&upload_key("again")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_enforced_across_instances() {
    fn user(parts: &http::request::Parts) -> Option<String> {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    }
    let redis = RedisServer::start().await;
    let a = UploadRegistry::with_store(store(&redis).await).with_owner(user);
    let b = UploadRegistry::with_store(store(&redis).await).with_owner(user);
    let owned = |name: &str, owner: Option<&str>| {
        let mut info = UploadInfo::new(upload_key(name));
        info.owner = owner.map(str::to_owned);
        info
    };
    let upload = a.begin(owned("mine", Some("alice"))).await.unwrap();
    for stranger in [Some("mallory"), None] {
        assert!(
            matches!(
                b.begin(owned("mine", stranger)).await,
                Err(ClaimError::Foreign)
            ),
            "{stranger:?}"
        );
        assert_eq!(
            b.snapshot_for(&upload_key("mine"), stranger).await.unwrap(),
            None
        );
        assert_eq!(
            b.cancel_for(&upload_key("mine"), stranger).await.unwrap(),
            None
        );
    }
    assert!(matches!(
        b.begin(owned("mine", Some("alice"))).await,
        Err(ClaimError::InFlight)
    ));
    upload
        .finish(
            UploadStatus::CanceledByEvent,
            FileError::ServerSideCancel,
            None,
        )
        .await;
    assert!(matches!(
        b.begin(owned("mine", Some("mallory"))).await,
        Err(ClaimError::Foreign)
    ));
    assert!(matches!(
        b.begin(owned("mine", Some("alice"))).await,
        Err(ClaimError::Rejected(_))
    ));
    // With a binding, an anonymous record is the anonymous owner's only.
    let anonymous = a.begin(owned("anon", None)).await.unwrap();
    assert!(matches!(
        b.begin(owned("anon", Some("alice"))).await,
        Err(ClaimError::Foreign)
    ));
    anonymous.abandon().await;

    a.record_file_size_for(&upload_key("size"), 12, Some("alice"))
        .await
        .unwrap();
    assert_eq!(
        b.take_file_size_for(&upload_key("size"), Some("mallory"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.take_file_size_for(&upload_key("size"), None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.take_file_size_for(&upload_key("size"), Some("alice"))
            .await
            .unwrap(),
        Some(12)
    );
    assert_eq!(
        a.take_file_size_for(&upload_key("size"), Some("alice"))
            .await
            .unwrap(),
        None
    );
}
