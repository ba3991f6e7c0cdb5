//! tus 1.0.0 over real loopback sockets: core, creation, defer-length, termination,
//! checksum, expiration, limits, owner binding, disconnects and restarts.

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::*;
use tower_upload_layer::{EventError, UploadLayer, UploadStarting};
use tower_upload_state::{UploadRegistry, UploadStatus};

fn tus(layer: UploadLayer) -> UploadLayer {
    layer.resumable_path("/files/")
}

fn h(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn version() -> (String, String) {
    h("Tus-Resumable", "1.0.0")
}

/// Creates an upload of `length` bytes named `name`; returns its URL path.
async fn create(server: &TestServer, length: u64, name: &str) -> String {
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[
            version(),
            h("Upload-Length", length),
            h(
                "Upload-Metadata",
                format!("filename {},filetype {}", b64(name), b64("text/plain")),
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(response.header("tus-resumable"), Some("1.0.0"));
    assert!(response.header("upload-expires").is_some());
    let location = response.header("location").expect("Location").to_owned();
    assert!(location.starts_with("/files/"), "{location}");
    assert_eq!(location.len(), "/files/".len() + 32);
    location
}

async fn patch(server: &TestServer, url: &str, offset: u64, data: &[u8]) -> HttpResponse {
    send(
        server.addr,
        "PATCH",
        url,
        &[
            version(),
            h("Upload-Offset", offset),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        data,
    )
    .await
}

async fn head(server: &TestServer, url: &str) -> HttpResponse {
    send(server.addr, "HEAD", url, &[version()], b"").await
}

fn id(url: &str) -> &str {
    url.trim_start_matches("/files/")
}

fn resumable_files(server: &TestServer) -> Vec<String> {
    list_files(&server.temp().join(tower_upload_layer::RESUMABLE_SUBDIR))
}

#[tokio::test]
async fn options_announce_the_version_extensions_and_limit() {
    let server = TestServer::start(tus).await;
    let response = send(server.addr, "OPTIONS", "/files/", &[], b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(response.header("tus-version"), Some("1.0.0"));
    let extensions = response.header("tus-extension").unwrap();
    for extension in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(
            extensions.split(',').any(|e| e == extension),
            "{extensions}"
        );
    }
    assert_eq!(response.header("tus-max-size"), Some("4194304"));
    assert_eq!(
        response.header("tus-checksum-algorithm"),
        Some("sha1,sha256,md5")
    );
    server.stop().await;
}

#[tokio::test]
async fn an_upload_in_two_patches_is_stored_under_its_filename() {
    let server = TestServer::start(tus).await;
    let data = pattern(100_000, 7);
    let url = create(&server, data.len() as u64, "notes.txt").await;

    let first = patch(&server, &url, 0, &data[..40_000]).await;
    assert_eq!(first.status, 204, "{first:?}");
    assert_eq!(first.header("upload-offset"), Some("40000"));
    assert!(first.header("upload-expires").is_some());

    // Paused: HEAD and the status service both tell the offset.
    let seen = head(&server, &url).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("upload-offset"), Some("40000"));
    assert_eq!(seen.header("upload-length"), Some("100000"));
    assert_eq!(seen.header("cache-control"), Some("no-store"));
    assert!(seen
        .header("upload-metadata")
        .unwrap()
        .starts_with("filename "));
    let status = server.status(id(&url)).await;
    assert_eq!(codes(&status), (1, -1));
    assert_eq!(status["bytesUploaded"], 40_000);
    assert_eq!(status["size"], 100_000);

    // A stale offset is refused with the right one, and nothing changes.
    let stale = patch(&server, &url, 10, b"xyz").await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.header("upload-offset"), Some("40000"));

    let last = patch(&server, &url, 40_000, &data[40_000..]).await;
    assert_eq!(last.status, 204, "{last:?}");
    assert_eq!(last.header("upload-offset"), Some("100000"));
    assert_eq!(
        std::fs::read(server.uploads().join("notes.txt")).unwrap(),
        data
    );
    let status = server.status(id(&url)).await;
    assert_eq!(codes(&status), (2, -1));
    assert_eq!(status["bytesUploaded"], 100_000);
    // A finished upload still answers HEAD as complete.
    let done = head(&server, &url).await;
    assert_eq!(done.header("upload-offset"), Some("100000"));
    assert!(resumable_files(&server).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn creation_with_upload_and_defer_length() {
    let server = TestServer::start(tus).await;
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[
            version(),
            h("Upload-Defer-Length", 1),
            h("Upload-Metadata", format!("filename {}", b64("later.bin"))),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        b"hello ",
    )
    .await;
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(response.header("upload-offset"), Some("6"));
    let url = response.header("location").unwrap().to_owned();
    let seen = head(&server, &url).await;
    assert_eq!(seen.header("upload-defer-length"), Some("1"));
    assert_eq!(seen.header("upload-offset"), Some("6"));
    let last = send(
        server.addr,
        "PATCH",
        &url,
        &[
            version(),
            h("Upload-Offset", 6),
            h("Upload-Length", 11),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        b"world",
    )
    .await;
    assert_eq!(last.status, 204, "{last:?}");
    assert_eq!(
        std::fs::read(server.uploads().join("later.bin")).unwrap(),
        b"hello world"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_loses_nothing() {
    let server = TestServer::start(tus).await;
    let addr = server.addr;
    let post = |headers: Vec<(String, String)>| async move {
        send(addr, "POST", "/files/", &headers, b"").await
    };
    // No or wrong version: 412 with the version served.
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[h("Upload-Length", 1)],
        b"",
    )
    .await;
    assert_eq!(response.status, 412);
    assert_eq!(response.header("tus-version"), Some("1.0.0"));
    let response = post(vec![h("Tus-Resumable", "0.2.2"), h("Upload-Length", 1)]).await;
    assert_eq!(response.status, 412);
    for (headers, status) in [
        (vec![version()], 400),
        (vec![version(), h("Upload-Length", -5)], 400),
        (
            vec![version(), h("Upload-Length", "99999999999999999999999")],
            400,
        ),
        (vec![version(), h("Upload-Defer-Length", 2)], 400),
        (
            vec![
                version(),
                h("Upload-Length", 5),
                h("Upload-Metadata", "filename ***"),
            ],
            400,
        ),
        (
            vec![
                version(),
                h("Upload-Length", 5),
                h("Upload-Metadata", "a YQ==,a YQ=="),
            ],
            400,
        ),
        (vec![version(), h("Upload-Length", 5_000_000)], 413),
    ] {
        let response = post(headers.clone()).await;
        assert_eq!(response.status, status, "{headers:?}: {response:?}");
        assert_eq!(response.header("tus-resumable"), Some("1.0.0"));
        if status == 413 {
            assert_eq!(response.header("tus-max-size"), Some("4194304"));
        }
    }
    let url = create(&server, 10, "a.txt").await;
    // Wrong content type: 415; past the length: 413; unknown upload: 404.
    let response = send(
        server.addr,
        "PATCH",
        &url,
        &[
            version(),
            h("Upload-Offset", 0),
            h("Content-Type", "text/plain"),
        ],
        b"abc",
    )
    .await;
    assert_eq!(response.status, 415);
    let response = patch(&server, &url, 0, b"01234567890123").await;
    assert_eq!(response.status, 413, "{response:?}");
    let response = patch(&server, "/files/nosuchuploadnosuchuploadnosuch", 0, b"x").await;
    assert_eq!(response.status, 404);
    let response = head(&server, &url).await;
    assert_eq!(response.header("upload-offset"), Some("0"));
    // Through a proxy that allows only POST.
    let response = send(
        server.addr,
        "POST",
        &url,
        &[
            version(),
            h("X-HTTP-Method-Override", "PATCH"),
            h("Upload-Offset", 0),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        b"0123456789",
    )
    .await;
    assert_eq!(response.status, 204, "{response:?}");
    assert_eq!(
        std::fs::read(server.uploads().join("a.txt")).unwrap(),
        b"0123456789"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_checksum_mismatch_is_460_and_discards_the_chunk() {
    let server = TestServer::start(tus).await;
    let url = create(&server, 8, "sum.txt").await;
    let (addr, url2) = (server.addr, url.clone());
    let patch_sum = |offset: u64, data: &'static [u8], sum: String| {
        let url = url2.clone();
        async move {
            let headers = [
                version(),
                h("Upload-Offset", offset),
                h("Content-Type", "application/offset+octet-stream"),
                h("Upload-Checksum", sum),
            ];
            send(addr, "PATCH", &url, &headers, data).await
        }
    };
    use sha2::Digest as _;
    let good = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"abcd"));
    let response = patch_sum(0, b"abcd", format!("sha256 {good}")).await;
    assert_eq!(response.status, 204, "{response:?}");
    let response = patch_sum(4, b"efgh", format!("sha256 {good}")).await;
    assert_eq!(response.status, 460, "{response:?}");
    assert_eq!(response.header("upload-offset"), Some("4"));
    assert_eq!(head(&server, &url).await.header("upload-offset"), Some("4"));
    let response = patch_sum(4, b"efgh", "crc32 AAAA".into()).await;
    assert_eq!(response.status, 400);
    let response = patch_sum(4, b"efgh", "md5 !!".into()).await;
    assert_eq!(response.status, 400);
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5_of(b"efgh"));
    let response = patch_sum(4, b"efgh", format!("md5 {md5}")).await;
    assert_eq!(response.status, 204, "{response:?}");
    assert_eq!(
        std::fs::read(server.uploads().join("sum.txt")).unwrap(),
        b"abcdefgh"
    );
    server.stop().await;
}

fn md5_of(data: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(data).to_vec()
}

#[tokio::test]
async fn termination_deletes_data_and_ends_the_key() {
    let server = TestServer::start(tus).await;
    let url = create(&server, 100, "gone.txt").await;
    assert_eq!(patch(&server, &url, 0, b"0123456789").await.status, 204);
    let response = send(server.addr, "DELETE", &url, &[version()], b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(head(&server, &url).await.status, 404);
    assert_eq!(patch(&server, &url, 10, b"x").await.status, 404);
    assert_eq!(codes(&server.status(id(&url)).await), (4, -1));
    assert!(resumable_files(&server).is_empty());
    assert!(server.saved_files().iter().all(|f| f != "gone.txt"));
    server.stop().await;
}

#[tokio::test]
async fn command_cancel_ends_a_paused_upload() {
    let server = TestServer::start(tus).await;
    let url = create(&server, 100, "c.txt").await;
    assert_eq!(patch(&server, &url, 0, b"0123").await.status, 204);
    server.command(id(&url), "cancel").await;
    assert_eq!(codes(&server.status(id(&url)).await), (4, -1));
    assert_eq!(head(&server, &url).await.status, 404);
    assert!(resumable_files(&server).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_dropped_patch_keeps_what_arrived() {
    let server = TestServer::start(tus).await;
    let data = pattern(50_000, 3);
    let url = create(&server, data.len() as u64, "cut.bin").await;
    let mut request = StreamingRequest::open(
        server.addr,
        "PATCH",
        &url,
        &[
            version(),
            h("Upload-Offset", 0),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        Some(data.len() as u64),
    )
    .await;
    request.write(&data[..20_000]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    request.disconnect();
    let offset = {
        let mut offset = String::new();
        for _ in 0..100 {
            let response = head(&server, &url).await;
            offset = response.header("upload-offset").unwrap().to_owned();
            if offset == "20000" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        offset
    };
    assert_eq!(offset, "20000");
    let status = server.status(id(&url)).await;
    assert_eq!(codes(&status), (1, -1));
    assert_eq!(status["bytesUploaded"], 20_000);
    let rest = patch(&server, &url, 20_000, &data[20_000..]).await;
    assert_eq!(rest.status, 204, "{rest:?}");
    assert_eq!(
        std::fs::read(server.uploads().join("cut.bin")).unwrap(),
        data
    );
    server.stop().await;
}

#[tokio::test]
async fn a_new_patch_takes_over_a_stalled_one() {
    let server = TestServer::start(tus).await;
    let url = create(&server, 10, "t.txt").await;
    let mut stalled = StreamingRequest::open(
        server.addr,
        "PATCH",
        &url,
        &[
            version(),
            h("Upload-Offset", 0),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        Some(10),
    )
    .await;
    stalled.write(b"0123").await;
    eventually("the stalled PATCH is streaming", || async {
        server.status(id(&url)).await["bytesUploaded"] == 4
    })
    .await;
    // Its client is gone but the connection is not closed: a new request takes over.
    let seen = head(&server, &url).await;
    assert_eq!(seen.header("upload-offset"), Some("4"));
    let rest = patch(&server, &url, 4, b"456789").await;
    assert_eq!(rest.status, 204, "{rest:?}");
    assert_eq!(
        std::fs::read(server.uploads().join("t.txt")).unwrap(),
        b"0123456789"
    );
    drop(stalled);
    server.stop().await;
}

#[tokio::test]
async fn strangers_get_404() {
    let registry = UploadRegistry::new().with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let server = TestServer::start_with_registry(registry, tus).await;
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[version(), h("Upload-Length", 3), h("x-user", "alice")],
        b"",
    )
    .await;
    assert_eq!(response.status, 201);
    let url = response.header("location").unwrap().to_owned();
    for method in ["HEAD", "DELETE"] {
        let response = send(
            server.addr,
            method,
            &url,
            &[version(), h("x-user", "mallory")],
            b"",
        )
        .await;
        assert_eq!(response.status, 404, "{method}");
    }
    let response = send(
        server.addr,
        "PATCH",
        &url,
        &[
            version(),
            h("x-user", "mallory"),
            h("Upload-Offset", 0),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        b"abc",
    )
    .await;
    assert_eq!(response.status, 404);
    let response = send(
        server.addr,
        "HEAD",
        &url,
        &[version(), h("x-user", "alice")],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("upload-offset"), Some("0"));
    server.stop().await;
}

#[tokio::test]
async fn a_vetoed_creation_is_refused_with_the_handlers_message() {
    let server = TestServer::start(|layer| {
        tus(layer).on_upload_starting(|event: UploadStarting| async move {
            if event.file_name.ends_with(".exe") {
                return Err(EventError::veto("executables are not accepted"));
            }
            Ok(Default::default())
        })
    })
    .await;
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[
            version(),
            h("Upload-Length", 3),
            h("Upload-Metadata", format!("filename {}", b64("x.exe"))),
        ],
        b"",
    )
    .await;
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "executables are not accepted"
    );
    assert!(resumable_files(&server).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_type_not_allowed_is_refused_at_creation() {
    let server = TestServer::start(|layer| tus(layer).allowed_mime_types("image/*")).await;
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[
            version(),
            h("Upload-Length", 3),
            h(
                "Upload-Metadata",
                format!("filename {},filetype {}", b64("a.txt"), b64("text/plain")),
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(response.status, 415, "{response:?}");
    assert!(resumable_files(&server).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn expired_uploads_answer_404_and_are_swept() {
    let server =
        TestServer::start(|layer| tus(layer).resumable_expiration(Some(Duration::from_secs(1))))
            .await;
    let url = create(&server, 10, "old.txt").await;
    assert_eq!(patch(&server, &url, 0, b"01").await.status, 204);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(head(&server, &url).await.status, 404);
    assert!(resumable_files(&server).is_empty());
    let status = server.status(id(&url)).await;
    assert_eq!(codes(&status), (8, -1));
    server.stop().await;
}

#[tokio::test]
async fn an_upload_survives_a_server_restart() {
    let shared = tempfile::tempdir().unwrap();
    let uploads = shared.path().join("uploads");
    let data = pattern(30_000, 9);
    let url = {
        let server = TestServer::start({
            let uploads = uploads.clone();
            move |layer| tus(layer).upload_dir(uploads)
        })
        .await;
        let url = create(&server, data.len() as u64, "r.bin").await;
        assert_eq!(patch(&server, &url, 0, &data[..12_000]).await.status, 204);
        server.stop().await;
        url
    };
    // A new process: a fresh (memory) registry, the same folder.
    let server = TestServer::start({
        let uploads = uploads.clone();
        move |layer| tus(layer).upload_dir(uploads)
    })
    .await;
    assert_eq!(
        head(&server, &url).await.header("upload-offset"),
        Some("12000")
    );
    let rest = patch(&server, &url, 12_000, &data[12_000..]).await;
    assert_eq!(rest.status, 204, "{rest:?}");
    assert_eq!(std::fs::read(uploads.join("r.bin")).unwrap(), data);
    server.stop().await;
}

#[tokio::test]
async fn get_on_the_upload_path_reaches_the_app() {
    let server = TestServer::start(tus).await;
    let response = send(server.addr, "GET", "/files/anything", &[], b"").await;
    assert_ne!(response.header("tus-resumable"), Some("1.0.0"));
    server.stop().await;
}

#[tokio::test]
async fn partial_uploads_are_joined_by_a_final_one() {
    let server = TestServer::start(tus).await;
    let data = pattern(70_000, 5);
    let mut urls = Vec::new();
    for piece in [&data[..30_000], &data[30_000..]] {
        let response = send(
            server.addr,
            "POST",
            "/files/",
            &[
                version(),
                h("Upload-Length", piece.len()),
                h("Upload-Concat", "partial"),
            ],
            b"",
        )
        .await;
        assert_eq!(response.status, 201, "{response:?}");
        let url = response.header("location").unwrap().to_owned();
        assert_eq!(patch(&server, &url, 0, piece).await.status, 204);
        assert_eq!(
            head(&server, &url).await.header("upload-concat"),
            Some("partial")
        );
        urls.push(url);
    }
    // Parts stay until joined; an unknown or incomplete part is refused.
    assert!(server.saved_files().iter().all(|f| f != "joined.bin"));
    let final_of = |list: String| {
        let addr = server.addr;
        async move {
            let headers = [
                version(),
                h("Upload-Concat", format!("final;{list}")),
                h("Upload-Metadata", format!("filename {}", b64("joined.bin"))),
            ];
            send(addr, "POST", "/files/", &headers, b"").await
        }
    };
    let response = final_of(format!("{} /files/nosuchuploadnosuchuploadnosuch", urls[0])).await;
    assert_eq!(response.status, 400, "{response:?}");
    let absolute = format!("http://{}{}", server.addr, urls[1]);
    let response = final_of(format!("{} {absolute}", urls[0])).await;
    assert_eq!(response.status, 201, "{response:?}");
    let location = response.header("location").unwrap().to_owned();
    assert_eq!(
        std::fs::read(server.uploads().join("joined.bin")).unwrap(),
        data
    );
    assert_eq!(
        head(&server, &location).await.header("upload-offset"),
        Some("70000")
    );
    assert_eq!(codes(&server.status(id(&location)).await), (2, -1));
    // The parts are used up: ended (status 2) and their data gone.
    assert_eq!(codes(&server.status(id(&urls[0])).await), (2, -1));
    assert!(resumable_files(&server).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn events_see_every_chunk_and_the_end_of_a_tus_upload() {
    use std::sync::{Arc, Mutex};
    use tower_upload_layer::{FileChunk, UploadFinished};
    let chunks: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
    let finished: Arc<Mutex<Vec<UploadFinished>>> = Arc::default();
    let server = TestServer::start({
        let (chunks, finished) = (chunks.clone(), finished.clone());
        move |layer| {
            tus(layer)
                .on_file_uploading(move |chunk: FileChunk| {
                    chunks
                        .lock()
                        .unwrap()
                        .push((chunk.offset, chunk.data.len()));
                    async { Ok(()) }
                })
                .on_upload_finished(move |event: UploadFinished| {
                    finished.lock().unwrap().push(event);
                    async {}
                })
        }
    })
    .await;
    let url = create(&server, 10, "ev.txt").await;
    assert_eq!(patch(&server, &url, 0, b"01234").await.status, 204);
    assert!(finished.lock().unwrap().is_empty(), "a pause is not an end");
    assert_eq!(patch(&server, &url, 5, b"56789").await.status, 204);
    eventually("upload_finished ran", || async {
        !finished.lock().unwrap().is_empty()
    })
    .await;
    let event = finished.lock().unwrap().remove(0);
    assert_eq!(event.info.key.as_str(), id(&url));
    assert_eq!(event.path, Some(server.uploads().join("ev.txt")));
    // The same per-file result forward mode hands over: how the application hears of a
    // completed resumable upload.
    assert_eq!(event.file.key.as_str(), id(&url));
    assert_eq!(event.file.file_name.as_deref(), Some("ev.txt"));
    assert_eq!(event.file.size, 10);
    assert!(event.file.is_stored());
    assert_eq!(
        event.file.stored,
        tower_upload_layer::Stored::Path(server.uploads().join("ev.txt"))
    );
    let seen = chunks.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(_, len)| len).sum::<usize>(), 10);
    assert!(
        seen.iter().any(|&(offset, _)| offset == 5),
        "offsets are absolute: {seen:?}"
    );
    server.stop().await;
}

/// The CORS set-up browser tus clients need (README "Resumable uploads", the lists in
/// `tower_upload_layer::cors`): preflights are answered by tower-http's `CorsLayer` outside
/// the upload layer, and tus' answer headers are exposed.
#[tokio::test]
async fn cors_for_browser_tus_clients() {
    use http::{header, HeaderValue};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    use tower_upload_layer::cors;
    let registry = UploadRegistry::new();
    let dir = tempfile::tempdir().unwrap();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::exact(HeaderValue::from_static(
            "http://app.example",
        )))
        .allow_credentials(true)
        .allow_methods(cors::METHODS)
        .allow_headers(cors::ALLOW_HEADERS)
        .expose_headers(cors::EXPOSE_HEADERS)
        .max_age(Duration::from_secs(86_400));
    let app = axum::Router::new()
        .layer(
            UploadLayer::new(registry.clone())
                .upload_dir(dir.path().join("uploads"))
                .resumable_path("/files/"),
        )
        .layer(cors);
    let server = TestServer::serve(app, registry, dir).await;
    let origin = h("Origin", "http://app.example");
    let preflight = send(
        server.addr,
        "OPTIONS",
        "/files/",
        &[
            origin.clone(),
            h("Access-Control-Request-Method", "POST"),
            h(
                "Access-Control-Request-Headers",
                "tus-resumable,upload-length,upload-metadata",
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("upload-length"));
    let created = send(
        server.addr,
        "POST",
        "/files/",
        &[origin, version(), h("Upload-Length", 3)],
        b"",
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let exposed = created
        .header(header::ACCESS_CONTROL_EXPOSE_HEADERS.as_str())
        .unwrap();
    for name in ["location", "upload-offset", "tus-resumable"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    server.stop().await;
}

#[tokio::test]
async fn termination_of_a_paused_upload_tells_upload_finished() {
    use std::sync::{Arc, Mutex};
    use tower_upload_layer::UploadFinished;
    let finished: Arc<Mutex<Vec<UploadFinished>>> = Arc::default();
    let server = TestServer::start({
        let finished = finished.clone();
        move |layer| {
            tus(layer).on_upload_finished(move |event: UploadFinished| {
                finished.lock().unwrap().push(event);
                async {}
            })
        }
    })
    .await;
    let url = create(&server, 10, "t.txt").await;
    assert_eq!(patch(&server, &url, 0, b"0123").await.status, 204);
    let response = send(server.addr, "DELETE", &url, &[version()], b"").await;
    assert_eq!(response.status, 204);
    eventually("upload_finished ran", || async {
        !finished.lock().unwrap().is_empty()
    })
    .await;
    let event = finished.lock().unwrap().remove(0);
    assert_eq!(event.info.status.code(), 4);
    assert_eq!(event.info.bytes_uploaded, 4);
    assert_eq!(event.path, None);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_patch_is_cut_off_with_408_and_keeps_its_data() {
    let server =
        TestServer::start(|layer| tus(layer).idle_timeout(Some(Duration::from_millis(300)))).await;
    let url = create(&server, 100, "slow.txt").await;
    let mut request = StreamingRequest::open(
        server.addr,
        "PATCH",
        &url,
        &[
            version(),
            h("Upload-Offset", 0),
            h("Content-Type", "application/offset+octet-stream"),
        ],
        Some(100),
    )
    .await;
    request.write(b"0123456789").await;
    let response = request.response_now().await;
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.header("upload-offset"), Some("10"));
    assert_eq!(
        head(&server, &url).await.header("upload-offset"),
        Some("10")
    );
    assert_eq!(codes(&server.status(id(&url)).await), (1, -1));
    server.stop().await;
}

/// A resumable upload counts as one upload in the registry's metrics: its creation starts
/// it, each request that takes it up is "resumed", each one that leaves it is "paused", and
/// its bytes are counted once (this failed before: every PATCH counted as a new upload and
/// every pause as an abandoned one).
#[tokio::test]
async fn metrics_count_a_resumable_upload_once() {
    let server = TestServer::start(tus).await;
    let before = server.registry.metrics();
    let data = pattern(30_000, 4);
    let url = create(&server, data.len() as u64, "m.bin").await;
    assert_eq!(patch(&server, &url, 0, &data[..10_000]).await.status, 204);
    assert_eq!(
        patch(&server, &url, 10_000, &data[10_000..20_000])
            .await
            .status,
        204
    );
    assert_eq!(
        patch(&server, &url, 20_000, &data[20_000..]).await.status,
        204
    );
    let after = server.registry.metrics();
    assert_eq!(after.uploads_started - before.uploads_started, 1);
    assert_eq!(after.uploads_abandoned, before.uploads_abandoned);
    assert_eq!(after.requests_resumed - before.requests_resumed, 3);
    assert!(after.requests_paused - before.requests_paused >= 2);
    assert_eq!(
        after.ended(UploadStatus::Finished) - before.ended(UploadStatus::Finished),
        1
    );
    assert_eq!(after.bytes_received - before.bytes_received, 30_000);
    assert!(after
        .to_prometheus()
        .contains("tower_upload_resumable_requests_resumed_total 3"));
    server.stop().await;
}
