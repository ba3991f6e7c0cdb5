//! The end of an upload's life, over real sockets: when the `upload_finished` handlers run,
//! what a failed batch leaves for the keys it never reached, sinks that need no folder, the
//! orphan sweep beside live uploads, the minimum transfer rate, and what a failing store may
//! tell a client.

mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::sync::Notify;
use tower_upload_layer::{
    EventError, FileSink, FileWriter, FinishOptions, SinkFile, SinkFuture, UploadFinished,
    UploadFinishing, UploadSink,
};
use tower_upload_state::{
    ClaimError, MemoryStore, ProgressStore, StoreError, StoreFuture, UploadInfo, UploadKey,
    UploadRegistry,
};

/// An `upload_finished` handler that waits for the test must not hold the answer back (this
/// failed before: the layer awaited every handler before it answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_does_not_wait_for_upload_finished_handlers() {
    let release = Arc::new(Notify::new());
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let server = TestServer::start(|layer| {
        let (release, heard) = (Arc::clone(&release), Arc::clone(&heard));
        layer.on_upload_finished(move |event: UploadFinished| {
            let (release, heard) = (Arc::clone(&release), Arc::clone(&heard));
            async move {
                release.notified().await;
                heard.lock().unwrap().push(event.info.key.to_string());
            }
        })
    })
    .await;
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"hello")
        .finish();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        server.post_upload("key=quick", &body),
    )
    .await
    .expect("answered while the handler still waits");
    assert_eq!(response.status, 200);
    assert!(heard.lock().unwrap().is_empty());
    release.notify_one();
    eventually("the handler ran", || async {
        heard.lock().unwrap().as_slice() == ["quick"]
    })
    .await;
}

/// A batch whose first file is refused: the keys it never reached are not recorded with the
/// first key's failure, and are not replayed as verdicts (this failed before: they became
/// status 5 / error 2, and a retry of them got 413 at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_a_failed_batch_never_reached_are_released() {
    let server = TestServer::start(|layer| layer.max_file_size(Some(1000))).await;
    let body = MultipartBody::new()
        .file("big.bin", "application/octet-stream", &pattern(5000, 1))
        .file("b.txt", "text/plain", b"b")
        .file("c.txt", "text/plain", b"c")
        .finish();
    // No Content-Length: the limit is found while streaming.
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=bk1;bk2;bk3",
        &body.headers(),
        None,
    )
    .await;
    request.write(&body.bytes).await;
    request.end().await;
    let response = request.response().await;
    assert_eq!(response.status, 413);
    let answer = response.json();
    assert_eq!(codes(&answer), (5, 2));
    assert_eq!(answer["files"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(codes(&server.status("bk1").await), (5, 2));
    for key in ["bk2", "bk3"] {
        assert_eq!(codes(&server.status(key).await), (3, 5), "{key} is unknown");
    }
    // The keys not reached can be posted again.
    let retry = MultipartBody::new()
        .file("b.txt", "text/plain", b"b")
        .file("c.txt", "text/plain", b"c")
        .finish();
    let response = server.post_upload("key=bk2;bk3", &retry).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(server.saved_files(), ["b.txt", "c.txt"]);
    server.assert_no_temp_files().await;
}

/// The memory sink writes nowhere: an upload folder that cannot exist does not matter (this
/// failed before: every upload first created the upload folder, 500 / error 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_custom_sinks_need_no_upload_folder() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    for sink in [
        UploadSink::memory(1 << 20),
        UploadSink::custom(Recorder::default()),
    ] {
        let sizes = Arc::clone(&sizes);
        let server = TestServer::start(|layer| {
            layer
                .upload_dir(blocker.join("uploads"))
                .sink(sink)
                .on_upload_finishing(move |event: UploadFinishing| {
                    let sizes = Arc::clone(&sizes);
                    async move {
                        sizes.lock().unwrap().push(event.size as usize);
                        Ok(FinishOptions::new())
                    }
                })
        })
        .await;
        let body = MultipartBody::new()
            .file("m.txt", "text/plain", b"in memory")
            .finish();
        let response = server.post_upload("key=mem", &body).await;
        assert_eq!(response.status, 200, "{:?}", response.json());
    }
    assert_eq!(*sizes.lock().unwrap(), [9, 9]);
}

/// A custom sink that records what it is told.
#[derive(Debug, Default, Clone)]
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct RecordingWriter {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl FileSink for Recorder {
    fn open<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, io::Result<Box<dyn FileWriter>>> {
        let writer: Box<dyn FileWriter> = Box::new(RecordingWriter {
            name: file.name.clone(),
            log: Arc::clone(&self.log),
        });
        Box::pin(async move { Ok(writer) })
    }

    fn discard<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, ()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("discard {}", file.name));
        Box::pin(async {})
    }
}

impl FileWriter for RecordingWriter {
    fn write(&mut self, _chunk: Bytes) -> SinkFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>> {
        self.log
            .lock()
            .unwrap()
            .push(format!("finish {}", self.name));
        Box::pin(async { Ok(()) })
    }

    fn abort(self: Box<Self>) -> SinkFuture<'static, ()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("abort {}", self.name));
        Box::pin(async {})
    }
}

/// A custom sink finished a file, then `upload_finishing` vetoed it: the sink is told to
/// discard it (before, nothing told it and the vetoed file stayed wherever the sink put it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_sink_is_told_when_a_finished_file_is_vetoed() {
    let sink = Recorder::default();
    let log = Arc::clone(&sink.log);
    let server = TestServer::start(|layer| {
        layer.sink(UploadSink::custom(sink)).on_upload_finishing(
            |event: UploadFinishing| async move {
                if event.file_name.ends_with(".exe") {
                    return Err(EventError::veto("no executables"));
                }
                Ok(FinishOptions::new())
            },
        )
    })
    .await;
    let body = MultipartBody::new()
        .file("setup.exe", "application/octet-stream", b"MZ")
        .finish();
    let response = server.post_upload("key=vetoed", &body).await;
    assert_eq!(response.status, 403);
    assert_eq!(codes(&response.json()), (7, 10));
    let body = MultipartBody::new()
        .file("fine.txt", "text/plain", b"ok")
        .finish();
    assert_eq!(server.post_upload("key=kept", &body).await.status, 200);
    assert_eq!(
        *log.lock().unwrap(),
        ["finish setup.exe", "discard setup.exe", "finish fine.txt"]
    );
}

/// An optional `<input type=file>` left empty (`filename=""`, no bytes) is no file: it uses
/// no key and fails nothing (this failed before: 400, "the file name cannot be used").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_input_is_skipped() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .field("title", "holiday")
        .file_field("optional", "", "application/octet-stream", b"")
        .file_field("photo", "photo.jpg", "image/jpeg", b"jpeg bytes")
        .finish();
    let response = server.post_upload("key=skip1", &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(server.saved_files(), ["photo.jpg"]);
    assert_eq!(server.status("skip1").await["bytesUploaded"], 10);
    // `filename=""` with bytes is still a file without a usable name.
    let body = MultipartBody::new()
        .file_field("photo", "", "image/jpeg", b"jpeg bytes")
        .finish();
    let response = server.post_upload("key=skip2", &body).await;
    assert_eq!(response.status, 400);
    assert_eq!(codes(&response.json()), (6, 0));
    server.assert_no_temp_files().await;
}

/// A slow upload and a slow `upload_finishing` handler while sweeps run: their temp files are
/// never taken (this failed before: the sweep went by age alone and deleted them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_never_touches_a_live_upload() {
    let server = TestServer::start(|layer| {
        layer
            .orphan_age(Duration::from_millis(50))
            .on_upload_finishing(|event: UploadFinishing| async move {
                if event.file_name == "slow-finish.bin" {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                Ok(FinishOptions::new())
            })
    })
    .await;
    let content = pattern(40_000, 7);
    let slow_body = MultipartBody::new()
        .file("slow.bin", "application/octet-stream", &content)
        .finish();
    let finishing_body = MultipartBody::new()
        .file("slow-finish.bin", "application/octet-stream", &content)
        .finish();
    let mut slow = server.open_upload("slowpart", &slow_body).await;
    let finishing = {
        let addr = server.addr;
        let body = finishing_body.clone();
        tokio::spawn(async move {
            send(
                addr,
                "POST",
                "/upload?key=slowfin",
                &body.headers(),
                &body.bytes,
            )
            .await
        })
    };
    // Trickle the slow part over ~1 s while other uploads keep triggering sweeps.
    let small = MultipartBody::new()
        .file("x.txt", "text/plain", b"x")
        .finish();
    let pieces = slow_body.bytes.chunks(slow_body.bytes.len() / 10 + 1);
    for (i, piece) in pieces.enumerate() {
        slow.write(piece).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = server.post_upload(&format!("key=sweeper{i}"), &small).await;
        assert_eq!(response.status, 200);
    }
    let response = slow.response().await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let response = finishing.await.unwrap();
    assert_eq!(response.status, 200, "{:?}", response.json());
    for name in ["slow.bin", "slow-finish.bin"] {
        let saved = std::fs::read(server.uploads().join(name)).unwrap();
        assert_eq!(sha256(&saved), sha256(&content), "{name}");
    }
    server.assert_no_temp_files().await;
}

/// A client that trickles its body below the minimum rate is cut off with 408, status 6 /
/// error 7, and leaves nothing; a retry of the key may start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_below_the_minimum_rate_is_cut_off() {
    let server = TestServer::start(|layer| {
        layer
            .min_transfer_rate(Some((200, Duration::from_millis(500))))
            .idle_timeout(Some(Duration::from_secs(10)))
    })
    .await;
    let body = MultipartBody::new()
        .file("drip.bin", "application/octet-stream", &pattern(5000, 3))
        .finish();
    let mut request = server.open_upload("drip", &body).await;
    let mut answer = None;
    for byte in body.bytes.chunks(5).take(100) {
        request.write(byte).await;
        if let Some(response) = request.early_response(Duration::from_millis(100)).await {
            answer = Some(response);
            break;
        }
    }
    let response = answer.expect("cut off within 10 s");
    assert_eq!(response.status, 408);
    assert_eq!(codes(&response.json()), (6, 7));
    assert!(response.json()["serverMessage"]
        .as_str()
        .unwrap()
        .contains("slower than"));
    assert_eq!(codes(&server.status("drip").await), (6, 7));
    server.assert_no_temp_files().await;
    assert!(server.saved_files().is_empty());
}

/// `durable(true)` and `file_mode` shape the stored file.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_uploads_are_stored_with_the_configured_mode() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start(|layer| layer.durable(true).file_mode(0o640)).await;
    let body = MultipartBody::new()
        .file("kept.txt", "text/plain", b"durable")
        .finish();
    assert_eq!(server.post_upload("key=durable", &body).await.status, 200);
    let path = server.uploads().join("kept.txt");
    assert_eq!(std::fs::read(&path).unwrap(), b"durable");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// A store that fails every `fileSize` write with an error naming its host.
#[derive(Debug)]
struct LeakyStore(MemoryStore);

const STORE_SECRET: &str = "redis://10.1.2.3:6379 (auth failed for user admin)";

impl ProgressStore for LeakyStore {
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
        if info.key.as_str() == "claimfails" {
            return Box::pin(async { Err(ClaimError::Full { capacity: 0 }) });
        }
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
        _key: &'a UploadKey,
        _size: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err(StoreError::new(STORE_SECRET)) })
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

/// The store's own error text (hosts, users) never reaches a client (this failed before: the
/// `fileSize` answer quoted it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_are_not_quoted_to_clients() {
    let registry = UploadRegistry::with_store(LeakyStore(MemoryStore::new()));
    let server = TestServer::start_with_registry(registry, |layer| layer).await;
    let response = send(
        server.addr,
        "POST",
        "/upload?key=sized&command=fileSize",
        &[("content-length".into(), "12".into())],
        b"012345678901",
    )
    .await;
    assert_eq!(response.status, 503);
    let text = String::from_utf8_lossy(&response.body).into_owned();
    assert!(!text.contains("10.1.2.3"), "{text}");
    assert_eq!(response.json()["error"], "store_unavailable");
}

/// Where a request's future can be dropped (a client gone, a `TimeoutLayer` firing).
#[derive(Clone, Copy, Debug)]
enum DropAt {
    WaitingForPartHeaders,
    MidFile,
    InUploadStarting,
    InUploadFinishing,
}

/// Dropping the response future at any await point still announces the upload exactly once,
/// as status 8, and leaves no temp file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_is_announced_exactly_once_wherever_it_stops() {
    use http_body_util::BodyExt;
    for at in [
        DropAt::WaitingForPartHeaders,
        DropAt::MidFile,
        DropAt::InUploadStarting,
        DropAt::InUploadFinishing,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let heard: Arc<Mutex<Vec<UploadFinished>>> = Arc::default();
        let entered = Arc::new(Notify::new());
        let registry = UploadRegistry::new();
        let layer = tower_upload_layer::UploadLayer::new(registry.clone())
            .upload_dir(dir.path())
            .on_upload_starting({
                let entered = Arc::clone(&entered);
                move |_event| {
                    let entered = Arc::clone(&entered);
                    async move {
                        if matches!(at, DropAt::InUploadStarting) {
                            entered.notify_one();
                            std::future::pending::<()>().await;
                        }
                        Ok(tower_upload_layer::StartOptions::new())
                    }
                }
            })
            .on_upload_finishing({
                let entered = Arc::clone(&entered);
                move |_event| {
                    let entered = Arc::clone(&entered);
                    async move {
                        if matches!(at, DropAt::InUploadFinishing) {
                            entered.notify_one();
                            std::future::pending::<()>().await;
                        }
                        Ok(FinishOptions::new())
                    }
                }
            })
            .on_upload_finished({
                let heard = Arc::clone(&heard);
                move |event: UploadFinished| {
                    let heard = Arc::clone(&heard);
                    async move { heard.lock().unwrap().push(event) }
                }
            });
        let app = in_process_app(layer);
        let body = MultipartBody::new()
            .file("d.bin", "application/octet-stream", &pattern(3000, 5))
            .finish();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
        let frames = frames_of(receiver);
        let request = http::Request::post("/upload?key=dropped")
            .header("content-type", MultipartBody::content_type())
            .body(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
            .unwrap();
        let (send_up_to, wait_for_handler) = match at {
            DropAt::WaitingForPartHeaders => (20, false),
            DropAt::MidFile => (1000, false),
            DropAt::InUploadStarting => (1000, true),
            DropAt::InUploadFinishing => (body.bytes.len(), true),
        };
        let mut call = Box::pin(call_in_process(&app, request));
        let reach_the_point = async {
            sender
                .send(Bytes::copy_from_slice(&body.bytes[..send_up_to]))
                .await
                .unwrap();
            if wait_for_handler {
                entered.notified().await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            answer = &mut call => panic!("{at:?}: answered {answer:?}"),
            () = reach_the_point => {}
        }
        // The point is reached: the future goes away mid-await.
        drop(call);
        eventually(&format!("{at:?}: announced"), || async {
            !heard.lock().unwrap().is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.len(), 1, "{at:?}: exactly once");
        assert_eq!(
            heard[0].info.status,
            tower_upload_state::UploadStatus::CanceledByClientConnection,
            "{at:?}"
        );
        let info = registry
            .snapshot(&UploadKey::parse("dropped").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.status.code(), 8, "{at:?}");
        eventually(&format!("{at:?}: no file left"), || async {
            list_files(&dir.path().join(tower_upload_layer::DEFAULT_TEMP_SUBDIR)).is_empty()
                && list_files(dir.path()).is_empty()
        })
        .await;
        drop(sender);
    }
}

/// An mpsc receiver as a stream of body frames.
fn frames_of(
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, tower_upload_layer::BoxError>>
       + Send
       + 'static {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok(http_body::Frame::data(chunk)), receiver))
    })
}

/// A server-side failure (500) lets a retry of the key start over once the cause is gone,
/// while a refusal of what the client sent is replayed (this failed before: every status 6
/// was replayed, so the retry got the old 500 for the whole retention).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_client_caused_refusals_are_replayed_to_a_retry() {
    let server = TestServer::start(|layer| layer.allowed_mime_types("text/*")).await;
    std::fs::write(server.uploads(), b"a file where the folder should be").unwrap();
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"retry me")
        .finish();
    let response = server.post_upload("key=retry", &body).await;
    assert_eq!(response.status, 500);
    assert_eq!(codes(&response.json()), (6, 3));
    std::fs::remove_file(server.uploads()).unwrap();
    let response = server.post_upload("key=retry", &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(server.saved_files(), ["a.txt"]);

    let refused = MultipartBody::new()
        .file("x.exe", "application/x-msdownload", b"MZ")
        .finish();
    let first = server.post_upload("key=refused", &refused).await;
    assert_eq!(first.status, 415);
    // The same key again, even with an acceptable file: the verdict stands.
    let again = server.post_upload("key=refused", &body).await;
    assert_eq!(again.status, 415);
    assert_eq!(codes(&again.json()), (6, 1));
}

/// With owner binding, a stranger cannot take over another owner's key, nor learn its
/// verdict by posting it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_post_of_an_owned_key_is_refused_without_details() {
    fn user(parts: &http::request::Parts) -> Option<String> {
        Some(parts.headers.get("x-user")?.to_str().ok()?.to_owned())
    }
    let registry = UploadRegistry::new().with_owner(user);
    let server =
        TestServer::start_with_registry(registry, |layer| layer.max_file_size(Some(10))).await;
    let big = MultipartBody::new()
        .file("big.txt", "text/plain", &[b'x'; 100])
        .finish();
    let as_user = |name: &str, body: &MultipartBody| {
        let mut headers = body.headers();
        headers.push(("x-user".into(), name.into()));
        headers
    };
    let response = send(
        server.addr,
        "POST",
        "/upload?key=owned",
        &as_user("alice", &big),
        &big.bytes,
    )
    .await;
    assert_eq!(response.status, 413);
    let response = send(
        server.addr,
        "POST",
        "/upload?key=owned",
        &as_user("mallory", &big),
        &big.bytes,
    )
    .await;
    assert_eq!(response.status, 409);
    let answer = response.json();
    assert_eq!(answer["error"], "upload_key_unavailable");
    assert!(answer.get("serverMessage").is_none(), "{answer}");
    assert!(!answer.to_string().contains("10 bytes"), "{answer}");
}
