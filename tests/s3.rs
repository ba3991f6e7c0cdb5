//! `ObjectStoreSink` against a real S3-compatible server (moto, started by
//! `support/moto.rs`): uploads land byte-exact in the bucket, and no way of failing leaves a
//! multipart upload behind (listed with S3's `ListMultipartUploads`).
//!
//! Needs `python3` with `moto[server]` (`scripts/test` installs it). Most tests run against a
//! moto whose smallest part is 64 KiB, to stay fast; the first runs with S3's real 5 MiB.

#![cfg(feature = "object-store")]

#[path = "support/moto.rs"]
mod moto;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use moto::Moto;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, MultipartId, ObjectStore, ObjectStoreExt as _, PutMultipartOptions, PutPayload,
    PutResult,
};
use support::*;
use tower::ServiceExt as _;
use tower_upload_layer::{
    EventError, FileSink, FinishOptions, ObjectStoreSink, OverwritePolicy, ResumableObject,
    SinkFile, Stored, UploadFinishing, UploadLayer, UploadSink, UploadedFiles, MIN_PART_SIZE,
};
use tower_upload_state::{UploadKey, UploadRegistry};
use tower_upload_status::UploadStatusService;

/// The body of an answer, as text.
trait Text {
    fn text(&self) -> String;
}

impl Text for HttpResponse {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The part size of the fast server's tests (moto's minimum there).
const PART: usize = 64 * 1024;

/// A moto whose parts may be as small as [`PART`]; shared by the tests of this binary.
fn fast() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(Some(PART)))
}

/// A moto with S3's own 5 MiB minimum part size.
fn real() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(None))
}

/// A fresh bucket on `moto` and a client of it.
async fn bucket(moto: &Moto, name: &str) -> Arc<AmazonS3> {
    moto.create_bucket(name).await;
    moto.store(name)
}

async fn read(store: &AmazonS3, key: &str) -> Bytes {
    store
        .get(&Path::from(key))
        .await
        .unwrap_or_else(|error| panic!("object {key}: {error}"))
        .bytes()
        .await
        .expect("the object's bytes")
}

/// Every object key in the bucket (journals included), sorted.
async fn keys(store: &AmazonS3) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map(|meta| percent_decode(meta.expect("listing").location.as_ref()))
        .collect()
        .await;
    keys.sort();
    keys
}

/// moto lists non-ASCII keys percent-encoded (`r%C3%A9sum%C3%A9`): decoded here.
fn percent_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok());
        match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
            Some(byte) if bytes[i] == b'%' => {
                decoded.push(byte);
                i += 3;
            }
            _ => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).expect("UTF-8 keys")
}

/// Waits (bounded) until no multipart upload is in progress in the bucket, and checks that
/// the bucket holds exactly `objects`.
async fn assert_clean(moto: &Moto, name: &str, store: &AmazonS3, objects: &[&str]) {
    eventually("no multipart upload is left", || async {
        moto.multipart_uploads(name).await.is_empty()
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while keys(store).await != objects && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(keys(store).await, objects);
}

/// Waits (bounded) until the bucket has a multipart upload in progress.
async fn wait_multipart(moto: &Moto, name: &str) {
    eventually("a multipart upload is in progress", || async {
        !moto.multipart_uploads(name).await.is_empty()
    })
    .await;
}

fn sink(store: Arc<AmazonS3>) -> ObjectStoreSink {
    ObjectStoreSink::new(store).prefix("up/").part_size(PART)
}

async fn server(
    sink: ObjectStoreSink,
    configure: impl FnOnce(UploadLayer) -> UploadLayer,
) -> TestServer {
    TestServer::start(|layer| {
        configure(
            layer
                .max_file_size(Some(64 << 20))
                .sink(UploadSink::custom(sink)),
        )
    })
    .await
}

#[tokio::test]
async fn a_file_lands_byte_exact_with_the_real_5_mib_part_minimum() {
    let moto = real();
    let store = bucket(moto, "real-minimum").await;
    let sink = ObjectStoreSink::new(store.clone()).prefix("uploads");
    assert_eq!(sink.max_buffered_bytes(), 3 * MIN_PART_SIZE);
    let server = server(sink, |layer| layer).await;
    // Three parts: 5 MiB, 5 MiB and the rest.
    let data = pattern(2 * MIN_PART_SIZE + 123_457, 1);
    let body = MultipartBody::new()
        .file("résumé v1.bin", "application/x-demo", &data)
        .finish();
    let answer = server.post_upload("key=real1", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(codes(&answer.json()), (2, -1));

    let object = store
        .get(&Path::from("uploads/résumé v1.bin"))
        .await
        .unwrap();
    assert_eq!(
        object
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("application/x-demo")
    );
    assert_eq!(
        object
            .attributes
            .get(&Attribute::Metadata("file-name".into()))
            .map(|v| v.as_ref()),
        Some("r%C3%A9sum%C3%A9 v1.bin")
    );
    let bytes = object.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), sha256(&data));
    assert_clean(moto, "real-minimum", &store, &["uploads/résumé v1.bin"]).await;
    server.stop().await;
}

/// A forward-mode app that answers with the `Stored` of every file.
async fn forward_server(sink: ObjectStoreSink) -> TestServer {
    let registry = UploadRegistry::new();
    let layer = UploadLayer::new(registry.clone())
        .max_file_size(Some(64 << 20))
        .sink(UploadSink::custom(sink))
        .forward();
    let app = Router::new()
        .route_service("/status", UploadStatusService::new(registry.clone()))
        .fallback(
            |axum::Extension(files): axum::Extension<UploadedFiles>| async move {
                let stored: Vec<String> = files
                    .files
                    .iter()
                    .map(|file| match &file.stored {
                        Stored::Sink(location) => format!("{}={location}", file.key),
                        other => format!("{}={other:?}", file.key),
                    })
                    .collect();
                stored.join("\n")
            },
        )
        .layer(layer);
    TestServer::serve(app, registry, tempfile::tempdir().unwrap()).await
}

#[tokio::test]
async fn a_batch_lands_byte_exact_and_uploaded_files_carry_the_object_keys() {
    let moto = fast();
    let store = bucket(moto, "batch").await;
    let server = forward_server(sink(store.clone())).await;
    let small = pattern(1000, 2);
    let big = pattern(5 * PART + 17, 3);
    let body = MultipartBody::new()
        .file("small.txt", "text/plain", &small)
        .file("big.bin", "application/octet-stream", &big)
        .finish();
    let answer = server.post_upload("key=b1;b2", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), "b1=up/small.txt\nb2=up/big.bin");
    assert_eq!(read(&store, "up/small.txt").await, small);
    assert_eq!(read(&store, "up/big.bin").await, big);
    // The one-PUT file carries its digest.
    let object = store.get(&Path::from("up/small.txt")).await.unwrap();
    let digest = object
        .attributes
        .get(&Attribute::Metadata("sha-256".into()))
        .map(|v| v.as_ref().to_owned());
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(&small));
    assert_eq!(digest, Some(expected));
    assert_clean(moto, "batch", &store, &["up/big.bin", "up/small.txt"]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_keyless_upload_lands_byte_exact() {
    let moto = fast();
    let store = bucket(moto, "keyless").await;
    let server = server(sink(store.clone()), |layer| layer).await;
    let data = pattern(3 * PART + 5, 4);
    let body = MultipartBody::new()
        .file("keyless.bin", "application/octet-stream", &data)
        .finish();
    let answer = server.post_upload("", &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let key = answer.json()["files"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(codes(&server.status(&key).await), (2, -1));
    assert_eq!(read(&store, "up/keyless.bin").await, data);
    assert_clean(moto, "keyless", &store, &["up/keyless.bin"]).await;
    server.stop().await;
}

#[tokio::test]
async fn taken_keys_get_a_number_or_are_refused() {
    let moto = fast();
    let store = bucket(moto, "policies").await;
    let unique = server(sink(store.clone()), |layer| layer).await;
    let reject = server(
        sink(store.clone()).overwrite(OverwritePolicy::Reject),
        |layer| layer,
    )
    .await;
    let small = MultipartBody::new()
        .file("a.txt", "text/plain", b"one")
        .finish();
    let big_data = pattern(2 * PART + 1, 5);
    let big = MultipartBody::new()
        .file("a.txt", "text/plain", &big_data)
        .finish();
    assert_eq!(unique.post_upload("key=p1", &small).await.status, 200);
    assert_eq!(unique.post_upload("key=p2", &small).await.status, 200);
    assert_eq!(unique.post_upload("key=p3", &big).await.status, 200);
    assert_eq!(read(&store, "up/a (2).txt").await, big_data);
    // Refused before a byte is stored, as the disk sink refuses a taken name: 409, 6 / 6
    // (this was 500 / error 8 before the pipeline mapped the sink's AlreadyExists).
    let refused = reject.post_upload("key=p4", &big).await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(codes(&refused.json()), (6, 6), "{}", refused.text());
    assert_eq!(read(&store, "up/a.txt").await, &b"one"[..]);
    assert_clean(
        moto,
        "policies",
        &store,
        &["up/a (1).txt", "up/a (2).txt", "up/a.txt"],
    )
    .await;
    unique.stop().await;
    reject.stop().await;
}

/// Starts an upload of a file of 8 parts, sends 4 of them, and waits until its multipart
/// upload exists.
async fn half_sent(server: &TestServer, moto: &Moto, name: &str, key: &str) -> StreamingRequest {
    let data = pattern(8 * PART, 6);
    let body = MultipartBody::new()
        .file("half.bin", "application/octet-stream", &data)
        .finish();
    let mut request = server.open_upload(key, &body).await;
    request.write(&body.bytes[..4 * PART]).await;
    wait_multipart(moto, name).await;
    request
}

#[tokio::test]
async fn a_cancel_aborts_the_multipart_upload() {
    let moto = fast();
    let store = bucket(moto, "cancel").await;
    let server = server(sink(store.clone()), |layer| layer).await;
    let request = half_sent(&server, moto, "cancel", "c1").await;
    server.command("c1", "cancel").await;
    let answer = request.response_now().await;
    assert_eq!(codes(&answer.json()).0, 4, "{}", answer.text());
    assert_clean(moto, "cancel", &store, &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_disconnect_aborts_the_multipart_upload() {
    let moto = fast();
    let store = bucket(moto, "disconnect").await;
    let server = server(sink(store.clone()), |layer| layer).await;
    half_sent(&server, moto, "disconnect", "d1")
        .await
        .disconnect();
    assert_clean(moto, "disconnect", &store, &[]).await;
    eventually("the upload is recorded as a disconnect", || async {
        codes(&server.status("d1").await).0 == 8
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn the_size_limit_aborts_the_multipart_upload() {
    let moto = fast();
    let store = bucket(moto, "limit").await;
    let server = server(sink(store.clone()), |layer| {
        layer.max_file_size(Some(3 * PART as u64))
    })
    .await;
    let body = MultipartBody::new()
        .file("big.bin", "application/octet-stream", &pattern(6 * PART, 7))
        .finish();
    // Chunked: the limit is found while streaming, not from Content-Length.
    let mut request =
        StreamingRequest::open(server.addr, "POST", "/upload?key=l1", &body.headers(), None).await;
    request.write(&body.bytes).await;
    let answer = request.response().await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_clean(moto, "limit", &store, &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn vetoes_abort_the_upload_or_delete_the_object() {
    let moto = fast();
    let store = bucket(moto, "veto").await;
    let server = server(sink(store.clone()), |layer| {
        layer
            .on_file_uploading(|chunk: tower_upload_layer::FileChunk| async move {
                if chunk.offset > 3 * PART as u64 && chunk.key.as_str() == "v1" {
                    return Err(EventError::veto("no more of this"));
                }
                Ok(())
            })
            .on_upload_finishing(|event: UploadFinishing| async move {
                if event.key.as_str() == "v2" {
                    return Err(EventError::veto("not this one"));
                }
                Ok(FinishOptions::new())
            })
    })
    .await;
    let body = MultipartBody::new()
        .file(
            "vetoed.bin",
            "application/octet-stream",
            &pattern(6 * PART, 8),
        )
        .finish();
    let streaming = server.post_upload("key=v1", &body).await;
    assert_eq!(codes(&streaming.json()).0, 7, "{}", streaming.text());
    let finished = server.post_upload("key=v2", &body).await;
    assert_eq!(codes(&finished.json()).0, 7, "{}", finished.text());
    assert_clean(moto, "veto", &store, &[]).await;
    server.stop().await;
}

/// The real store, except that the third part of every upload fails.
#[derive(Debug)]
struct ThirdPartFails(Arc<AmazonS3>);

impl std::fmt::Display for ThirdPartFails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThirdPartFails({})", self.0)
    }
}

#[async_trait::async_trait]
impl MultipartStore for ThirdPartFails {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.0.create_multipart(path).await
    }

    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<MultipartId> {
        self.0.create_multipart_opts(path, opts).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        if part_idx == 2 {
            return Err(object_store::Error::Generic {
                store: "test",
                source: "the third part fails".into(),
            });
        }
        self.0.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.0.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.0.abort_multipart(path, id).await
    }
}

#[tokio::test]
async fn a_store_error_aborts_the_multipart_upload() {
    let moto = fast();
    let store = bucket(moto, "store-error").await;
    let faulty = Arc::new(ThirdPartFails(store.clone()));
    let sink = ObjectStoreSink::from_parts(store.clone(), faulty).part_size(PART);
    let server = server(sink, |layer| layer).await;
    let body = MultipartBody::new()
        .file(
            "broken.bin",
            "application/octet-stream",
            &pattern(6 * PART, 9),
        )
        .finish();
    let answer = server.post_upload("key=e1", &body).await;
    assert_eq!(answer.status, 500, "{}", answer.text());
    assert_eq!(codes(&answer.json()), (6, 7));
    assert_clean(moto, "store-error", &store, &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_dropped_request_future_aborts_the_multipart_upload() {
    let moto = fast();
    let store = bucket(moto, "dropped").await;
    let layer = UploadLayer::new(UploadRegistry::new())
        .max_file_size(None)
        .sink(UploadSink::custom(sink(store.clone())));
    let app = in_process_app(layer);
    let body = MultipartBody::new()
        .file(
            "dropped.bin",
            "application/octet-stream",
            &pattern(8 * PART, 10),
        )
        .finish();
    // Half the body, then nothing, ever.
    let half = Bytes::copy_from_slice(&body.bytes[..4 * PART]);
    let frames = futures_util::stream::iter([Ok::<_, tower_upload_layer::BoxError>(
        http_body::Frame::data(half),
    )])
    .chain(futures_util::stream::pending());
    let request = http::Request::post("/upload?key=f1")
        .header("content-type", MultipartBody::content_type())
        .body(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
        .unwrap();
    let call = tokio::spawn(app.clone().oneshot(request));
    wait_multipart(moto, "dropped").await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_clean(moto, "dropped", &store, &[]).await;
}

#[tokio::test]
async fn the_sweep_aborts_what_a_crash_left() {
    let moto = fast();
    let store = bucket(moto, "sweep").await;
    let sink = sink(store.clone()).stale_after(None);
    let file = SinkFile::new(
        UploadKey::parse("s1").unwrap(),
        "crashed.bin",
        "application/x-demo",
    );
    let mut writer = sink.open(&file).await.unwrap();
    writer
        .write(Bytes::from(pattern(3 * PART, 11)))
        .await
        .unwrap();
    // A crash: the writer is neither finished, nor aborted, nor dropped.
    std::mem::forget(writer);
    wait_multipart(moto, "sweep").await;
    assert_eq!(
        sink.sweep_stale(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(moto.multipart_uploads("sweep").await, ["up/crashed.bin"]);
    assert_eq!(sink.sweep_stale(Duration::ZERO).await.unwrap(), 1);
    assert_clean(moto, "sweep", &store, &[]).await;
}

/// Sends `data` to `writer` in 256 KiB chunks.
async fn send_chunks(writer: &mut tower_upload_layer::ResumableWriter, data: &[u8]) {
    for chunk in data.chunks(256 << 10) {
        writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
}

#[tokio::test]
async fn a_resumable_upload_begun_on_one_instance_completes_on_another() {
    // S3's real 5 MiB minimum: the bytes past the last full part wait in the bucket.
    let moto = real();
    let a_store = bucket(moto, "resumable").await;
    let b_store = moto.store("resumable");
    let instance_a = ObjectStoreSink::new(a_store.clone()).prefix("r");
    let instance_b = ObjectStoreSink::new(b_store).prefix("r");
    let data = pattern(14 << 20, 13);
    let file = SinkFile::new(UploadKey::parse("r1").unwrap(), "movie.bin", "video/mp4");

    // Request 1, on A: 7 MiB (one part, 2 MiB left over).
    let state = instance_a.begin(&file).await.unwrap();
    let mut writer = instance_a.resume(state).await.unwrap();
    send_chunks(&mut writer, &data[..7 << 20]).await;
    let state = writer.suspend().await.unwrap();
    assert_eq!((state.offset, state.parts.len()), (7 << 20, 1));
    assert!(state.tail.is_some());
    // Only what the registry's store would keep crosses over.
    let kept = serde_json::to_string(&state).unwrap();

    // Request 2, on B: 6 MiB more; request 3, on B again: the last MiB.
    let state: ResumableObject = serde_json::from_str(&kept).unwrap();
    let mut writer = instance_b.resume(state).await.unwrap();
    send_chunks(&mut writer, &data[7 << 20..13 << 20]).await;
    let state = writer.suspend().await.unwrap();
    assert_eq!((state.offset, state.parts.len()), (13 << 20, 2));
    let mut writer = instance_b.resume(state).await.unwrap();
    send_chunks(&mut writer, &data[13 << 20..]).await;
    assert_eq!(writer.offset(), 14 << 20);
    assert_eq!(writer.finish().await.unwrap(), "r/movie.bin");

    assert_eq!(sha256(&read(&a_store, "r/movie.bin").await), sha256(&data));
    assert_clean(moto, "resumable", &a_store, &["r/movie.bin"]).await;

    // One abandoned after a pause leaves nothing either.
    let other = SinkFile::new(UploadKey::parse("r2").unwrap(), "gone.bin", "video/mp4");
    let mut writer = instance_a
        .resume(instance_a.begin(&other).await.unwrap())
        .await
        .unwrap();
    send_chunks(&mut writer, &data[..6 << 20]).await;
    let state = writer.suspend().await.unwrap();
    wait_multipart(moto, "resumable").await;
    instance_b.resume(state).await.unwrap().abort().await;
    assert_clean(moto, "resumable", &a_store, &["r/movie.bin"]).await;
}

/// Not a benchmark: how much the process grows while uploads of large files are in flight,
/// with the default 5 MiB parts, two in flight. Prints the numbers (`--nocapture`).
/// Ignored by default: other tests running beside it would add to the process's memory;
/// `scripts/test` runs it on its own (`-- --ignored`).
#[tokio::test]
#[ignore = "measures the whole process: run alone with -- --ignored"]
async fn memory_per_upload_in_flight_is_bounded() {
    const UPLOADS: usize = 4;
    const SIZE: usize = 48 << 20;
    let moto = real();
    let store = bucket(moto, "memory").await;
    let sink = ObjectStoreSink::new(store.clone()).prefix("m");
    let bound = sink.max_buffered_bytes();
    let server = Arc::new(server(sink, |layer| layer.max_file_size(None)).await);
    let chunk = pattern(256 << 10, 12);
    let before = rss_kib();
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib() as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = std::time::Instant::now();
    let mut uploads = Vec::new();
    for n in 0..UPLOADS {
        let server = Arc::clone(&server);
        let chunk = chunk.clone();
        uploads.push(tokio::spawn(async move {
            let head = format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"m{n}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            );
            let tail = format!("\r\n--{BOUNDARY}--\r\n");
            let length = (head.len() + SIZE + tail.len()) as u64;
            let headers = vec![("Content-Type".to_owned(), MultipartBody::content_type())];
            let mut request = StreamingRequest::open(
                server.addr,
                "POST",
                &format!("/upload?key=mem{n}"),
                &headers,
                Some(length),
            )
            .await;
            request.write(head.as_bytes()).await;
            for _ in 0..SIZE / chunk.len() {
                request.write(&chunk).await;
            }
            request.write(tail.as_bytes()).await;
            request.response().await.status
        }));
    }
    for upload in uploads {
        assert_eq!(upload.await.unwrap(), 200);
    }
    let elapsed = started.elapsed();
    watcher.abort();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(before as usize) as u64;
    let per_upload_mib = grown as f64 / 1024.0 / UPLOADS as f64;
    println!(
        "{UPLOADS} uploads of {} MiB into moto: {:.1} MB/s in all; RSS +{:.1} MiB per upload \
         in flight (bound: {} MiB of parts)",
        SIZE >> 20,
        (UPLOADS * SIZE) as f64 / elapsed.as_secs_f64() / 1e6,
        per_upload_mib,
        bound >> 20,
    );
    // The parts, plus the HTTP client's and the allocator's slack.
    assert!(
        per_upload_mib < (bound >> 20) as f64 * 2.0 + 8.0,
        "RSS grew {per_upload_mib:.1} MiB per upload"
    );
    for n in 0..UPLOADS {
        assert_eq!(read(&store, &format!("m/m{n}.bin")).await.len(), SIZE);
    }
    assert_clean(
        moto,
        "memory",
        &store,
        &["m/m0.bin", "m/m1.bin", "m/m2.bin", "m/m3.bin"],
    )
    .await;
}

/// The events carry the object's location (the object key), and the sink stores the client's
/// own file name in the object's metadata, not the sanitised one.
#[tokio::test]
async fn events_carry_the_object_key_and_metadata_the_original_name() {
    use std::sync::Mutex;
    use tower_upload_layer::{FinishOptions, UploadFinished, UploadFinishing};
    let moto = fast();
    let store = bucket(moto, "events").await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (at_finishing, at_finished) = (Arc::clone(&seen), Arc::clone(&seen));
    let server = server(sink(store.clone()), move |layer| {
        layer
            .on_upload_finishing(move |event: UploadFinishing| {
                let seen = Arc::clone(&at_finishing);
                async move {
                    seen.lock()
                        .unwrap()
                        .push(format!("finishing {:?}", event.location));
                    Ok(FinishOptions::new())
                }
            })
            .on_upload_finished(move |event: UploadFinished| {
                let seen = Arc::clone(&at_finished);
                async move {
                    seen.lock()
                        .unwrap()
                        .push(format!("finished {:?}", event.file.stored));
                }
            })
    })
    .await;
    let body = MultipartBody::new()
        .file("../odd:name.txt", "text/plain", b"metadata")
        .finish();
    assert_eq!(server.post_upload("key=ev", &body).await.status, 200);
    eventually("announced", || async { seen.lock().unwrap().len() == 2 }).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "finishing Some(\"up/odd_name.txt\")".to_owned(),
            "finished Sink(\"up/odd_name.txt\")".to_owned(),
        ]
    );
    let object = store.get(&Path::from("up/odd_name.txt")).await.unwrap();
    let name = object
        .attributes
        .get(&object_store::Attribute::Metadata("file-name".into()))
        .map(|value| value.to_string());
    // The client's own name (as read back through the S3 API), not the sanitised one.
    assert_eq!(name.as_deref(), Some("../odd:name.txt"));
}
