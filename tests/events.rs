//! Server events, form fields, sinks and the owner binding, end to end over loopback.

mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use support::*;
use tower_upload_layer::{
    EventError, FileChunk, FileSink, FileWriter, FinishOptions, SinkFile, SinkFuture, StartOptions,
    UploadFinished, UploadFinishing, UploadSink, UploadStarting,
};
use tower_upload_state::{FileError, UploadRegistry, UploadStatus};

type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn finished_log(
    layer: tower_upload_layer::UploadLayer,
    log: &Log<UploadFinished>,
) -> tower_upload_layer::UploadLayer {
    let log = log.clone();
    layer.on_upload_finished(move |event: UploadFinished| {
        let log = log.clone();
        async move { log.lock().unwrap().push(event) }
    })
}

/// The first `n` `upload_finished` events, sorted by key: the handlers run after the answer,
/// in a task of their own, so they may still be running when the answer arrives.
async fn announced(log: &Log<UploadFinished>, n: usize) -> Vec<UploadFinished> {
    eventually(&format!("{n} uploads are announced"), || async {
        log.lock().unwrap().len() >= n
    })
    .await;
    let mut events = log.lock().unwrap().clone();
    assert_eq!(events.len(), n, "exactly once per upload");
    events.sort_by(|a, b| a.info.key.as_str().cmp(b.info.key.as_str()));
    events
}

fn with_cookie(body: &MultipartBody, cookie: &str) -> Vec<(String, String)> {
    let mut headers = body.headers();
    headers.push(("cookie".into(), cookie.into()));
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_starting_sees_the_request_and_can_rename_and_refile() {
    let seen: Log<UploadStarting> = log();
    let server = TestServer::start(|layer| {
        let seen = seen.clone();
        layer.on_upload_starting(move |event: UploadStarting| {
            seen.lock().unwrap().push(event.clone());
            async move {
                Ok(StartOptions::new()
                    .file_name(format!("renamed-{}", event.stored_name))
                    .folder("users/42")
                    .server_message("stored for user 42"))
            }
        })
    })
    .await;
    let body = MultipartBody::new()
        .field("album", "holidays")
        .file("../photo.jpg", "image/jpeg", b"jpegbytes")
        .field("after", "the file")
        .finish();
    let response = send(
        server.addr,
        "POST",
        "/upload?key=start1&cid=gallery",
        &with_cookie(&body, "session=abc"),
        &body.bytes,
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.json().get("serverMessage").is_none(),
        "never in a successful POST answer"
    );
    let status = server.status("start1").await;
    assert_eq!(status["status"], 2);
    assert_eq!(
        status["serverMessage"], "stored for user 42",
        "the status answer carries it"
    );
    let stored = server.uploads().join("users/42/renamed-photo.jpg");
    assert_eq!(std::fs::read(&stored).unwrap(), b"jpegbytes");
    server.assert_no_temp_files().await;
    let seen = seen.lock().unwrap();
    let event = &seen[0];
    assert_eq!(event.key.as_str(), "start1");
    assert_eq!(event.cid.as_deref(), Some("gallery"));
    assert_eq!(event.file_name, "../photo.jpg");
    assert_eq!(event.stored_name, "photo.jpg");
    assert_eq!(event.mime_type, "image/jpeg");
    assert_eq!(event.declared_size, Some(body.bytes.len() as u64));
    assert_eq!(event.headers()["cookie"], "session=abc");
    assert_eq!(event.request.uri.path(), "/upload");
    let fields: Vec<(&str, &str)> = event
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(
        fields,
        [("album", "holidays")],
        "only the fields before the file part"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_veto_in_upload_starting_refuses_at_once_with_its_message() {
    let finished: Log<UploadFinished> = log();
    let server = TestServer::start(|layer| {
        finished_log(layer, &finished)
            .max_file_size(None)
            .on_upload_starting(|event: UploadStarting| async move {
                if event.file_name.ends_with(".exe") {
                    return Err(EventError::veto("executables are not accepted"));
                }
                if event.file_name.starts_with("auth") {
                    return Err(EventError::veto("sign in first")
                        .with_status(http::StatusCode::UNAUTHORIZED));
                }
                Ok(StartOptions::new())
            })
    })
    .await;
    // The body is 20 MB, but only its first part is sent: the answer must not wait for more.
    let head = MultipartBody::new()
        .raw(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"setup.exe\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=veto1",
        &head.headers(),
        Some(20_000_000),
    )
    .await;
    request.write(&head.bytes).await;
    request.write(&[0u8; 1000]).await;
    let response = request.response_now().await;
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"status":7,"error":10,"bytesUploaded":0,"size":20_000_000,"serverMessage":"executables are not accepted"})
    );
    let status = server.status("veto1").await;
    assert_eq!(codes(&status), (7, 10));
    assert_eq!(status["serverMessage"], "executables are not accepted");
    let body = MultipartBody::new()
        .file("auth.txt", "text/plain", b"x")
        .finish();
    assert_eq!(server.post_upload("key=veto2", &body).await.status, 401);
    assert!(server.saved_files().is_empty());
    server.assert_no_temp_files().await;
    let finished = announced(&finished, 2).await;
    let statuses: Vec<(String, UploadStatus, FileError)> = finished
        .iter()
        .map(|e| (e.info.key.to_string(), e.info.status, e.info.error))
        .collect();
    assert_eq!(
        statuses,
        [
            (
                "veto1".to_owned(),
                UploadStatus::CanceledByEvent,
                FileError::ServerSideCancel
            ),
            (
                "veto2".to_owned(),
                UploadStatus::CanceledByEvent,
                FileError::ServerSideCancel
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_registered_per_cid_only_hear_their_control() {
    let calls: Log<String> = log();
    let server = TestServer::start(|layer| {
        let (global, for_a, for_b) = (calls.clone(), calls.clone(), calls.clone());
        layer
            .on_upload_starting(move |event: UploadStarting| {
                global.lock().unwrap().push(format!("global:{}", event.key));
                async { Ok(StartOptions::new()) }
            })
            .on_upload_starting_for("a", move |event: UploadStarting| {
                for_a.lock().unwrap().push(format!("a:{}", event.key));
                async { Ok(StartOptions::new()) }
            })
            .on_upload_starting_for("b", move |event: UploadStarting| {
                for_b.lock().unwrap().push(format!("b:{}", event.key));
                async { Err(EventError::veto("control b is closed")) }
            })
    })
    .await;
    let body = MultipartBody::new()
        .file("x.txt", "text/plain", b"x")
        .finish();
    assert_eq!(server.post_upload("key=ka&cid=a", &body).await.status, 200);
    let refused = server.post_upload("key=kb&cid=b", &body).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["serverMessage"], "control b is closed");
    let other = MultipartBody::new()
        .file("y.txt", "text/plain", b"y")
        .finish();
    assert_eq!(server.post_upload("key=kn", &other).await.status, 200);
    assert_eq!(
        *calls.lock().unwrap(),
        ["global:ka", "a:ka", "global:kb", "b:kb", "global:kn"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_uploading_sees_every_chunk_in_order_and_can_veto() {
    let chunks: Log<(u64, usize)> = log();
    let server = TestServer::start(|layer| {
        let chunks = chunks.clone();
        layer
            .max_file_size(None)
            .on_file_uploading(move |chunk: FileChunk| {
                chunks
                    .lock()
                    .unwrap()
                    .push((chunk.offset, chunk.data.len()));
                let evil = chunk.data.windows(4).any(|w| w == b"EVIL");
                async move {
                    if evil {
                        Err(EventError::veto("the content scanner refused the file"))
                    } else {
                        Ok(())
                    }
                }
            })
    })
    .await;
    let content = pattern(500_000, 1)
        .into_iter()
        .map(|b| b & 0x3f)
        .collect::<Vec<u8>>();
    let body = MultipartBody::new()
        .file("ok.bin", "application/octet-stream", &content)
        .finish();
    assert_eq!(server.post_upload("key=chunks", &body).await.status, 200);
    {
        let chunks = chunks.lock().unwrap();
        let mut expected_offset = 0;
        for (offset, len) in chunks.iter() {
            assert_eq!(*offset, expected_offset);
            expected_offset += *len as u64;
        }
        assert_eq!(expected_offset, content.len() as u64);
    }
    let mut bad = content.clone();
    bad[300_000..300_004].copy_from_slice(b"EVIL");
    let body = MultipartBody::new()
        .file("bad.bin", "application/octet-stream", &bad)
        .finish();
    let response = server.post_upload("key=scanned", &body).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"], 10);
    assert_eq!(server.saved_files(), ["ok.bin"]);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_finishing_sees_the_whole_temp_file_and_can_veto_or_take_it() {
    let archive = tempfile::tempdir().unwrap();
    let archive_path = archive.path().to_owned();
    let finished: Log<UploadFinished> = log();
    let server = TestServer::start(|layer| {
        finished_log(layer, &finished).on_upload_finishing(move |event: UploadFinishing| {
            let archive = archive_path.clone();
            async move {
                let temp = event.temp_path.clone().expect("disk sink");
                let content = tokio::fs::read(&temp).await?;
                assert_eq!(content.len() as u64, event.size);
                if content.starts_with(b"MZ") {
                    return Err(EventError::veto("Windows executables are refused"));
                }
                if event.fields.iter().any(|f| f.name == "archive") {
                    tokio::fs::rename(&temp, archive.join(&event.stored_name)).await?;
                    return Ok(FinishOptions::new().file_taken().server_message("archived"));
                }
                Ok(FinishOptions::new().server_message(format!("sha {}", sha256(&content))))
            }
        })
    })
    .await;
    let content = pattern(300_000, 2);
    let body = MultipartBody::new()
        .file("keep.bin", "application/octet-stream", &content)
        .finish();
    assert_eq!(server.post_upload("key=fin1", &body).await.status, 200);
    assert_eq!(
        server.status("fin1").await["serverMessage"],
        format!("sha {}", sha256(&content))
    );

    let body = MultipartBody::new()
        .file("evil.bin", "application/octet-stream", b"MZ\x90\x00")
        .finish();
    let response = server.post_upload("key=fin2", &body).await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.json()["serverMessage"],
        "Windows executables are refused"
    );

    let body = MultipartBody::new()
        .field("archive", "yes")
        .file("moved.bin", "application/octet-stream", b"moved")
        .finish();
    assert_eq!(server.post_upload("key=fin3", &body).await.status, 200);
    assert_eq!(server.status("fin3").await["status"], 2);
    assert_eq!(
        std::fs::read(archive.path().join("moved.bin")).unwrap(),
        b"moved"
    );

    assert_eq!(server.saved_files(), ["keep.bin"]);
    server.assert_no_temp_files().await;
    let finished = announced(&finished, 3).await;
    let paths: Vec<Option<String>> = finished
        .iter()
        .map(|e| {
            e.path
                .as_ref()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    assert_eq!(paths, [Some("keep.bin".to_owned()), None, None]);
    assert_eq!(finished[1].info.status, UploadStatus::CanceledByEvent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_finished_hears_every_outcome_with_every_field() {
    let finished: Log<UploadFinished> = log();
    let server =
        TestServer::start(|layer| finished_log(layer, &finished).max_file_size(Some(1000))).await;
    let body = MultipartBody::new()
        .field("before", "1")
        .file_field("u_0__frm_if", "a.txt", "text/plain", b"a")
        .file_field("u_1__frm_if", "b.txt", "text/plain", b"b")
        .field("after", "2")
        .finish();
    assert_eq!(server.post_upload("key=b1;b2", &body).await.status, 200);
    let too_big = MultipartBody::new()
        .file("big.txt", "text/plain", &[b'x'; 2000])
        .finish();
    assert_eq!(server.post_upload("key=big", &too_big).await.status, 413);
    // A disconnect mid-body.
    let body = MultipartBody::new()
        .file("gone.txt", "text/plain", &[b'y'; 900])
        .finish();
    let mut request = server.open_upload("gone", &body).await;
    request.write(&body.bytes[..300]).await;
    eventually("streaming", || async {
        server.status("gone").await["status"] == 1
    })
    .await;
    request.disconnect();
    let finished = announced(&finished, 4).await;
    let outcomes: Vec<(String, UploadStatus)> = finished
        .iter()
        .map(|e| (e.info.key.to_string(), e.info.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("b1".to_owned(), UploadStatus::Finished),
            ("b2".to_owned(), UploadStatus::Finished),
            ("big".to_owned(), UploadStatus::FileSizeExceeded),
            ("gone".to_owned(), UploadStatus::CanceledByClientConnection),
        ]
    );
    let names: Vec<&str> = finished[0].fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["before", "after"],
        "finished handlers see the fields after the files too"
    );
    assert_eq!(
        finished[1].path.as_deref(),
        Some(server.uploads().join("b.txt").as_path())
    );
    assert_eq!(
        finished[2].info.server_message.as_deref(),
        Some("file is larger than the 1000 bytes limit")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_failing_handler_fails_the_upload_not_the_server() {
    let server = TestServer::start(|layer| {
        layer
            .on_upload_starting(|event: UploadStarting| async move {
                if event.file_name == "panic-start.txt" {
                    panic!("handler bug");
                }
                Ok(StartOptions::new())
            })
            .on_upload_finishing(|event: UploadFinishing| async move {
                if event.file_name == "panic-finish.txt" {
                    panic!("handler bug");
                }
                if event.file_name == "error.txt" {
                    Err(io::Error::other("database unavailable"))?;
                }
                Ok(FinishOptions::new())
            })
            .on_upload_finished(|_event: UploadFinished| async { panic!("audit bug") })
    })
    .await;
    for (name, error) in [
        ("panic-start.txt", 8),
        ("panic-finish.txt", 6),
        ("error.txt", 6),
    ] {
        let body = MultipartBody::new().file(name, "text/plain", b"x").finish();
        let key = name.replace('.', "_");
        let response = server.post_upload(&format!("key={key}"), &body).await;
        assert_eq!(response.status, 500, "{name}: {response:?}");
        let answer = response.json();
        assert_eq!(
            (answer["status"].clone(), answer["error"].clone()),
            (json!(6), json!(error)),
            "{name}"
        );
        assert_eq!(
            answer["serverMessage"],
            "the server failed to process the upload"
        );
    }
    let body = MultipartBody::new()
        .file("fine.txt", "text/plain", b"fine")
        .finish();
    assert_eq!(
        server.post_upload("key=fine", &body).await.status,
        200,
        "the server is still up"
    );
    assert_eq!(server.saved_files(), ["fine.txt"]);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_sink_hands_the_bytes_to_upload_finishing() {
    let received: Log<(String, Bytes)> = log();
    let server = TestServer::start(|layer| {
        let received = received.clone();
        layer.sink(UploadSink::memory(100_000)).on_upload_finishing(
            move |event: UploadFinishing| {
                received.lock().unwrap().push((
                    event.stored_name.clone(),
                    event.data.clone().expect("memory sink"),
                ));
                assert!(event.temp_path.is_none());
                async { Ok(FinishOptions::new()) }
            },
        )
    })
    .await;
    let content = pattern(80_000, 3);
    let body = MultipartBody::new()
        .file("mem.bin", "application/octet-stream", &content)
        .finish();
    let response = server.post_upload("key=mem", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["bytesUploaded"], 80_000);
    assert_eq!(received.lock().unwrap()[0].0, "mem.bin");
    assert_eq!(sha256(&received.lock().unwrap()[0].1), sha256(&content));
    let too_big = MultipartBody::new()
        .file("huge.bin", "application/octet-stream", &pattern(150_000, 4))
        .finish();
    let response = server.post_upload("key=memhuge", &too_big).await;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.json()["serverMessage"],
        "file is larger than the 97.7 KiB limit"
    );
    assert!(server.saved_files().is_empty(), "nothing touches the disk");
    assert!(list_files(&server.temp()).is_empty());
}

/// A custom sink that keeps files in a map and records aborts.
#[derive(Debug, Default, Clone)]
struct MapSink {
    files: Log<(String, Vec<u8>)>,
    aborted: Log<String>,
}

#[derive(Debug)]
struct MapWriter {
    sink: MapSink,
    name: String,
    data: Vec<u8>,
}

impl FileSink for MapSink {
    fn open<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, io::Result<Box<dyn FileWriter>>> {
        let writer: Box<dyn FileWriter> = Box::new(MapWriter {
            sink: self.clone(),
            name: file.name.clone(),
            data: Vec::new(),
        });
        Box::pin(async move { Ok(writer) })
    }
}

impl FileWriter for MapWriter {
    fn write(&mut self, chunk: Bytes) -> SinkFuture<'_, io::Result<()>> {
        self.data.extend_from_slice(&chunk);
        Box::pin(async { Ok(()) })
    }

    fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>> {
        self.sink
            .files
            .lock()
            .unwrap()
            .push((self.name.clone(), self.data.clone()));
        Box::pin(async { Ok(()) })
    }

    fn abort(self: Box<Self>) -> SinkFuture<'static, ()> {
        self.sink.aborted.lock().unwrap().push(self.name.clone());
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_sink_receives_the_file_and_is_aborted_on_failure() {
    let sink = MapSink::default();
    let server = TestServer::start(|layer| {
        layer
            .sink(UploadSink::custom(sink.clone()))
            .max_file_size(Some(200_000))
    })
    .await;
    let content = pattern(150_000, 5);
    let body = MultipartBody::new()
        .file("custom.bin", "application/octet-stream", &content)
        .finish();
    let response = server.post_upload("key=custom", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(server.status("custom").await["bytesUploaded"], 150_000);
    {
        let files = sink.files.lock().unwrap();
        assert_eq!(files[0].0, "custom.bin");
        assert_eq!(sha256(&files[0].1), sha256(&content));
    }
    let body = MultipartBody::new()
        .file(
            "toolarge.bin",
            "application/octet-stream",
            &pattern(250_000, 6),
        )
        .finish();
    assert_eq!(
        server.post_upload("key=customhuge", &body).await.status,
        413
    );
    eventually("the writer is aborted", || async {
        sink.aborted.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(sink.aborted.lock().unwrap()[0], "toolarge.bin");
    assert_eq!(sink.files.lock().unwrap().len(), 1);
    assert!(server.saved_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_binding_hides_uploads_from_strangers() {
    fn user(parts: &http::request::Parts) -> Option<String> {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    }
    let server = TestServer::start_with_registry(UploadRegistry::new().with_owner(user), |layer| {
        layer.max_file_size(None)
    })
    .await;
    let alice = vec![("x-user".to_owned(), "alice".to_owned())];
    let mallory = vec![("x-user".to_owned(), "mallory".to_owned())];
    let body = MultipartBody::new()
        .file(
            "private.bin",
            "application/octet-stream",
            &pattern(400_000, 7),
        )
        .finish();
    let mut headers = body.headers();
    headers.extend(alice.clone());
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=owned",
        &headers,
        Some(body.bytes.len() as u64),
    )
    .await;
    request.write(&body.bytes[..100_000]).await;
    eventually("streaming", || async {
        server.status_as("owned", &alice).await["status"] == 1
    })
    .await;
    let no_such_file = json!({"status":3,"error":5,"bytesUploaded":0,"size":0,"serverMessage":""});
    assert_eq!(server.status_as("owned", &mallory).await, no_such_file);
    assert_eq!(server.status_as("owned", &[]).await, no_such_file);
    assert_eq!(
        server.command_as("owned", "cancel", &mallory).await,
        no_such_file
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        server.status_as("owned", &alice).await["status"],
        1,
        "a stranger's cancel changes nothing"
    );
    server.command_as("owned", "cancel", &alice).await;
    let response = request.response_now().await;
    assert_eq!(response.status, 409);
    assert_eq!(server.status_as("owned", &alice).await["status"], 4);
    server.assert_no_temp_files().await;
}

/// What an authentication layer in front of the upload layer put in the request's
/// extensions reaches every event, shared (one `Arc<Parts>` per request, not a copy per
/// event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_see_the_request_and_its_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct User(&'static str);
    let seen: Log<(Option<User>, Option<User>, bool)> = log();
    let registry = UploadRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let record = seen.clone();
    let starting_request: Arc<Mutex<Option<Arc<http::request::Parts>>>> = Arc::default();
    let keep = starting_request.clone();
    let layer = tower_upload_layer::UploadLayer::new(registry.clone())
        .upload_dir(dir.path().join("uploads"))
        .on_upload_starting(move |event: UploadStarting| {
            *keep.lock().unwrap() = Some(Arc::clone(&event.request));
            async { Ok(StartOptions::new()) }
        })
        .on_upload_finished(move |event: UploadFinished| {
            let record = record.clone();
            let earlier = starting_request.lock().unwrap().clone().unwrap();
            async move {
                record.lock().unwrap().push((
                    earlier.extensions.get::<User>().cloned(),
                    event.request.extensions.get::<User>().cloned(),
                    Arc::ptr_eq(&earlier, &event.request),
                ));
            }
        });
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .layer(layer)
        .layer(axum::middleware::from_fn(
            |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
                request.extensions_mut().insert(User("alice"));
                next.run(request).await
            },
        ));
    let server = TestServer::serve(app, registry, dir).await;
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"a")
        .finish();
    assert_eq!(server.post_upload("key=ext", &body).await.status, 200);
    eventually("announced", || async { !seen.lock().unwrap().is_empty() }).await;
    assert_eq!(
        seen.lock().unwrap()[0],
        (Some(User("alice")), Some(User("alice")), true)
    );
}
