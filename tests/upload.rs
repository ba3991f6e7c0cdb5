//! End-to-end tests of the upload layer and the status service over real loopback sockets.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tower_upload_layer::OverwritePolicy;
use tower_upload_state::{FileError, UploadKey, UploadStatus};

fn key(text: &str) -> UploadKey {
    UploadKey::parse(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_upload_is_stored_byte_for_byte_and_reported_finished() {
    let server = TestServer::start(|layer| layer).await;
    let content = pattern(1_500_000, 1);
    let body = MultipartBody::new()
        .file("report.bin", "application/octet-stream", &content)
        .finish();
    let k = widget_key(1);
    let response = server
        .post_upload(&format!("key={k}&cid=&multiple=true"), &body)
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(
        response.json(),
        json!({"status":2,"error":-1,"bytesUploaded":1_500_000,"size":1_500_000}),
        "a success carries no serverMessage"
    );
    assert_eq!(server.saved_files(), ["report.bin"]);
    let saved = std::fs::read(server.uploads().join("report.bin")).unwrap();
    assert_eq!(sha256(&saved), sha256(&content));
    assert_eq!(
        server.status(&k).await,
        json!({"status":2,"error":-1,"bytesUploaded":1_500_000,"size":1_500_000,"serverMessage":""})
    );
    let info = server.registry.snapshot(&key(&k)).await.unwrap().unwrap();
    assert_eq!(info.file_name.as_deref(), Some("report.bin"));
    assert_eq!(info.mime_type.as_deref(), Some("application/octet-stream"));
    assert!(info.finished_at.is_some());
    server.assert_no_temp_files().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_maps_file_parts_to_keys_in_order() {
    let server = TestServer::start(|layer| layer).await;
    let contents: Vec<Vec<u8>> = (0..3).map(|i| pattern(100_000 + i * 7, i as u64)).collect();
    let body = MultipartBody::new()
        .file_field(
            "up_0__frm_if",
            "a.bin",
            "application/octet-stream",
            &contents[0],
        )
        .file_field(
            "up_1__frm_if",
            "b.bin",
            "application/octet-stream",
            &contents[1],
        )
        .file_field(
            "up_2__frm_if",
            "c.bin",
            "application/octet-stream",
            &contents[2],
        )
        .field("note", "after the files")
        .finish();
    let response = server.post_upload("key=k1;k2;k3&cid=c", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    let answer = response.json();
    assert!(
        answer.get("error").is_none(),
        "a completed batch has no top-level error: {answer}"
    );
    for (i, (name, k)) in [("a.bin", "k1"), ("b.bin", "k2"), ("c.bin", "k3")]
        .iter()
        .enumerate()
    {
        assert_eq!(answer["files"][i]["key"], *k);
        assert_eq!(answer["files"][i]["status"], 2);
        assert_eq!(answer["files"][i]["bytesUploaded"], contents[i].len());
        let saved = std::fs::read(server.uploads().join(name)).unwrap();
        assert_eq!(sha256(&saved), sha256(&contents[i]), "{name}");
        let status = server.status(k).await;
        assert_eq!(status["status"], 2);
        let info = server.registry.snapshot(&key(k)).await.unwrap().unwrap();
        assert_eq!(info.cid.as_deref(), Some("c"));
    }
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_visible_from_the_status_service_while_streaming() {
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let content = pattern(400_000, 3);
    let body = MultipartBody::new()
        .file("p.bin", "application/octet-stream", &content)
        .finish();
    let (first, rest) = body.bytes.split_at(250_000);
    let mut request = server.open_upload("prog", &body).await;
    request.write(first).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let seen = server.status("prog").await;
        if seen["status"] == 1 && seen["bytesUploaded"].as_u64().unwrap() > 0 {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no progress shown: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let bytes = seen["bytesUploaded"].as_u64().unwrap();
    assert!(bytes < content.len() as u64, "{seen}");
    assert_eq!(
        seen["size"],
        body.bytes.len(),
        "the declared size is the Content-Length"
    );
    assert_eq!(
        list_files(&server.temp()).len(),
        1,
        "streams into one temp file"
    );
    request.write(rest).await;
    let response = request.response().await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        server.status("prog").await["size"],
        content.len(),
        "exact size once finished"
    );
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_file_is_stopped_at_the_limit_while_streaming() {
    let server = TestServer::start(|layer| layer.max_file_size(Some(100_000))).await;
    let content = pattern(300_000, 4);
    let body = MultipartBody::new()
        .file("big.bin", "application/octet-stream", &content)
        .finish();
    // Chunked, so Content-Length cannot give it away: the limit must catch it mid-stream.
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=big",
        &body.headers(),
        None,
    )
    .await;
    for piece in body.bytes.chunks(32 * 1024) {
        request.write(piece).await;
    }
    let response = request.response().await;
    assert_eq!(response.status, 413, "{response:?}");
    let answer = response.json();
    assert_eq!(answer["status"], 5);
    assert_eq!(answer["error"], 2);
    assert_eq!(
        answer["serverMessage"],
        "file is larger than the 97.7 KiB limit"
    );
    let status = server.status("big").await;
    assert_eq!(codes(&status), (5, 2));
    assert_eq!(status["serverMessage"], answer["serverMessage"]);
    assert!(server.saved_files().is_empty());
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_refuses_an_oversize_upload_before_reading_it() {
    let server = TestServer::start(|layer| layer.max_file_size(Some(1024 * 1024))).await;
    let head = MultipartBody::new().headers();
    // Announce 50 MiB and send nothing: the answer must come anyway.
    let request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=early",
        &head,
        Some(50 << 20),
    )
    .await;
    let response = request.response_now().await;
    assert_eq!(response.status, 413, "{response:?}");
    let answer = response.json();
    assert_eq!(codes(&answer), (5, 2));
    assert_eq!(
        answer["serverMessage"],
        "file is larger than the 1 MiB limit"
    );
    assert_eq!(server.status("early").await["status"], 5);
    // Chromium re-sends the POST after the hang-up: the same verdict comes at once, without
    // the body being read.
    let retry = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=early",
        &head,
        Some(50 << 20),
    )
    .await;
    let again = retry.response_now().await;
    assert_eq!(again.status, 413);
    assert_eq!(again.json(), answer);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_size_limit_applies_to_the_whole_body() {
    let server =
        TestServer::start(|layer| layer.max_file_size(None).max_request_size(Some(50_000))).await;
    let body = MultipartBody::new()
        .file("a.bin", "application/octet-stream", &pattern(60_000, 5))
        .finish();
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=req",
        &body.headers(),
        None,
    )
    .await;
    for piece in body.bytes.chunks(8 * 1024) {
        request.write(piece).await;
    }
    let response = request.response().await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(
        response.json()["serverMessage"],
        "request is larger than the 48.8 KiB limit"
    );
    assert_eq!(server.status("req").await["status"], 5);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_mime_types_are_refused_with_error_1() {
    let server =
        TestServer::start(|layer| layer.allowed_mime_types("image/*|application/pdf")).await;
    let body = MultipartBody::new()
        .file("x.html", "text/html", b"<script>")
        .finish();
    let response = server.post_upload("key=mime", &body).await;
    assert_eq!(response.status, 415, "{response:?}");
    let answer = response.json();
    assert_eq!(codes(&answer), (6, 1));
    assert_eq!(
        answer["serverMessage"],
        "files of type text/html are not allowed (allowed: image/*, application/pdf)"
    );
    let ok = MultipartBody::new()
        .file("y.png", "image/png", b"\x89PNG")
        .finish();
    assert_eq!(server.post_upload("key=mime2", &ok).await.status, 200);
    assert_eq!(server.saved_files(), ["y.png"]);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_files_fields_and_oversize_fields_are_refused() {
    let server = TestServer::start(|layer| {
        layer
            .max_files_per_request(2)
            .max_fields(1)
            .max_field_size(10)
    })
    .await;
    let body = MultipartBody::new().file("a", "text/plain", b"a").finish();
    let response = server.post_upload("key=a;b;c", &body).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "too_many_files");

    let body = MultipartBody::new()
        .field("one", "1")
        .field("two", "2")
        .file("a", "text/plain", b"a")
        .finish();
    let response = server.post_upload("key=fields", &body).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(
        response.json()["serverMessage"],
        "the upload request is malformed: the request has more than 1 form fields"
    );
    assert_eq!(server.status("fields").await["status"], 6);

    let body = MultipartBody::new()
        .field("long", "01234567890")
        .file("a", "text/plain", b"a")
        .finish();
    let response = server.post_upload("key=longfield", &body).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert!(response.json()["serverMessage"]
        .as_str()
        .unwrap()
        .contains("\"long\" is larger than the 10 bytes limit"));

    // More file parts than keys: once every key has its file the request has succeeded;
    // the rest of the body is not read.
    let body = MultipartBody::new()
        .file("a", "text/plain", b"a")
        .file("b", "text/plain", b"b")
        .finish();
    let response = server.post_upload("key=onlyone", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(codes(&response.json()), (2, -1));
    assert_eq!(server.saved_files(), ["a"], "only the file that had a key");
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_part_headers_are_refused_with_431() {
    let server = TestServer::start(|layer| layer.max_part_header_size(1024)).await;
    let head = MultipartBody::new().headers();
    let mut request =
        StreamingRequest::open(server.addr, "POST", "/upload?key=hdr", &head, None).await;
    request
        .write(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\nX-Endless: ").as_bytes())
        .await;
    // A header that never ends, sent in small pieces: the server must stop reading it.
    for _ in 0..64 {
        request.write(&[b'v'; 512]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let response = request.response_now().await;
    assert_eq!(response.status, 431, "{response:?}");
    let answer = response.json();
    assert_eq!(codes(&answer), (6, 4));
    assert_eq!(
        answer["serverMessage"],
        "the upload request is malformed: part headers are larger than 1024 bytes"
    );
    // Many headers in one part are a parse error too (multer takes at most 32).
    let mut body = MultipartBody::new().raw(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n")
            .as_bytes(),
    );
    for i in 0..40 {
        body = body.raw(format!("X-Filler-{i}: v\r\n").as_bytes());
    }
    let body = body.raw(b"\r\ndata\r\n").finish();
    let response = server.post_upload("key=hdr2", &body).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.json()["error"], 4);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_multipart_is_a_parse_error() {
    let server = TestServer::start(|layer| layer).await;
    for (name, body) in [
        (
            "no closing boundary",
            MultipartBody::new().file("a", "text/plain", b"abc"),
        ),
        (
            "garbage",
            MultipartBody::new().raw(b"this is not multipart at all"),
        ),
        (
            "no part headers end",
            MultipartBody::new().raw(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"").as_bytes(),
            ),
        ),
    ] {
        let k = format!("bad{}", name.len());
        let response = server.post_upload(&format!("key={k}"), &body).await;
        assert_eq!(response.status, 400, "{name}: {response:?}");
        let answer = response.json();
        assert_eq!(codes(&answer), (6, 4), "{name}");
        assert!(answer["serverMessage"]
            .as_str()
            .unwrap()
            .starts_with("the upload request is malformed"));
    }
    let response = server
        .post_upload("key=nofile", &MultipartBody::new().field("a", "b").finish())
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json()["serverMessage"],
        "the upload request is malformed: the request has 0 file part(s) for 1 key(s)"
    );
    assert!(server.saved_files().is_empty());
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_400_or_415_with_a_reason() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new().file("a", "text/plain", b"a").finish();
    let cases = [
        ("key=", 400, "invalid_key"),
        ("key=../x", 400, "invalid_key"),
        ("key=a;;b", 400, "invalid_key"),
        ("key=a&key=b", 400, "bad_query"),
        ("key=a&command=status", 400, "unsupported_command"),
        ("key=a&command=explode", 400, "unknown_command"),
    ];
    for (query, status, code) in cases {
        let response = server.post_upload(query, &body).await;
        assert_eq!(response.status, status, "{query}: {response:?}");
        assert_eq!(response.json()["error"], code, "{query}");
        assert!(!response.json()["message"].as_str().unwrap().is_empty());
    }
    let response = send(
        server.addr,
        "POST",
        "/upload?key=json",
        &[("content-type".into(), "application/json".into())],
        b"{}",
    )
    .await;
    assert_eq!(response.status, 415);
    assert_eq!(response.json()["error"], "not_multipart");
    // None of these registered anything.
    assert_eq!(server.status("json").await["status"], 3);
    assert_eq!(server.status("a").await["status"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_streaming_upload_and_a_stalled_one() {
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let body = MultipartBody::new()
        .file("c.bin", "application/octet-stream", &pattern(1 << 20, 6))
        .finish();
    for (k, stall) in [("streaming", false), ("stalled", true)] {
        let mut request = server.open_upload(k, &body).await;
        request.write(&body.bytes[..200_000]).await;
        server.wait_streaming(k).await;
        let response = if stall {
            assert_eq!(
                server.command(k, "cancel").await["status"],
                1,
                "the state when asked"
            );
            request.response_now().await
        } else {
            // Keep sending slowly; the cancel must still land within a chunk.
            let rest = body.bytes[200_000..400_000].to_vec();
            let feeder = tokio::spawn(async move {
                for piece in rest.chunks(4096) {
                    request.write(piece).await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                request
            });
            assert_eq!(
                server.command(k, "cancel").await["status"],
                1,
                "the state when asked"
            );
            feeder.await.unwrap().response_now().await
        };
        assert_eq!(response.status, 409, "{k}: {response:?}");
        assert_eq!(response.json()["status"], 4);
        let status = server.status(k).await;
        assert_eq!(codes(&status), (4, -1));
    }
    assert!(server.saved_files().is_empty());
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_mid_body_is_status_8_and_leaves_no_file() {
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let body = MultipartBody::new()
        .file("d.bin", "application/octet-stream", &pattern(1 << 20, 7))
        .finish();
    let mut request = server.open_upload("gone", &body).await;
    request.write(&body.bytes[..300_000]).await;
    server.wait_streaming("gone").await;
    request.disconnect();
    eventually("the disconnect is recorded", || async {
        server.status("gone").await["status"] == 8
    })
    .await;
    assert!(server.saved_files().is_empty());
    server.assert_no_temp_files().await;
    // The browser may re-send after a disconnect: the key starts over and can succeed.
    let response = server.post_upload("key=gone", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(server.saved_files(), ["d.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_post_for_a_key_in_flight_is_409() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .file("a.bin", "application/octet-stream", &pattern(100_000, 8))
        .finish();
    let mut first = server.open_upload("dup", &body).await;
    first.write(&body.bytes[..1000]).await;
    eventually("the key is registered", || async {
        server.status("dup").await["status"] != 3
    })
    .await;
    let second = server.post_upload("key=dup", &body).await;
    assert_eq!(second.status, 409, "{second:?}");
    assert_eq!(second.json()["error"], "upload_in_progress");
    first.write(&body.bytes[1000..]).await;
    assert_eq!(first.response().await.status, 200);
    assert_eq!(server.saved_files(), ["a.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_answers_503() {
    let server = TestServer::start(|layer| layer.max_concurrent_uploads(1)).await;
    let body = MultipartBody::new()
        .file("a.bin", "application/octet-stream", b"abc")
        .finish();
    let mut first = server.open_upload("slot1", &body).await;
    first.write(&body.bytes[..10]).await;
    eventually("the first upload holds the slot", || async {
        server.status("slot1").await["status"] != 3
    })
    .await;
    let second = server.post_upload("key=slot2", &body).await;
    assert_eq!(second.status, 503, "{second:?}");
    assert_eq!(second.json()["error"], "too_many_uploads");
    assert_eq!(
        server.status("slot2").await["status"],
        3,
        "a refused upload is not registered"
    );
    first.write(&body.bytes[10..]).await;
    assert_eq!(first.response().await.status, 200);
    assert_eq!(
        server.post_upload("key=slot3", &body).await.status,
        200,
        "the slot is free again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_cut_off_by_the_idle_timeout() {
    let server =
        TestServer::start(|layer| layer.idle_timeout(Some(Duration::from_millis(300)))).await;
    let body = MultipartBody::new()
        .file("i.bin", "application/octet-stream", &pattern(50_000, 9))
        .finish();
    let mut request = server.open_upload("idle", &body).await;
    request.write(&body.bytes[..20_000]).await;
    let started = std::time::Instant::now();
    let response = request.response_now().await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 408, "{response:?}");
    let answer = response.json();
    assert_eq!(codes(&answer), (6, 7));
    assert_eq!(
        answer["serverMessage"],
        "no data was received for 0 s; the upload was cut off"
    );
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_file_names_become_one_safe_component() {
    let server = TestServer::start(|layer| layer).await;
    let cases = [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\résumé.pdf", "résumé.pdf"),
        ("/abs/path.txt", "path.txt"),
        ("nul.txt", "_nul.txt"),
        ("evil\u{202E}txt.exe", "eviltxt.exe"),
        ("a<b>c.txt", "a_b_c.txt"),
    ];
    for (i, (raw, expected)) in cases.iter().enumerate() {
        let body = MultipartBody::new()
            .file(raw, "text/plain", raw.as_bytes())
            .finish();
        let response = server.post_upload(&format!("key=name{i}"), &body).await;
        assert_eq!(response.status, 200, "{raw:?}: {response:?}");
        assert!(
            server.uploads().join(expected).is_file(),
            "{raw:?} -> {expected:?}: {:?}",
            server.saved_files()
        );
        let info = server
            .registry
            .snapshot(&key(&format!("name{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            info.file_name.as_deref(),
            Some(*raw),
            "the registry keeps the name as sent"
        );
    }
    assert!(!server.dir.path().join("etc").exists());
    let long = "x".repeat(10_000);
    let body = MultipartBody::new()
        .file(&long, "text/plain", b"long")
        .finish();
    assert_eq!(server.post_upload("key=longname", &body).await.status, 200);
    for raw in ["..", "", "/", "\u{200B}"] {
        let body = MultipartBody::new().file(raw, "text/plain", b"x").finish();
        let response = server.post_upload("key=unnamed", &body).await;
        assert_eq!(response.status, 400, "{raw:?}: {response:?}");
        let answer = response.json();
        assert_eq!(codes(&answer), (6, 0), "{raw:?}");
        // Rejected keys answer the same verdict again: use a fresh key per case.
        let again = server.post_upload("key=unnamed", &body).await;
        assert_eq!(again.json(), answer);
        let _ = server.registry.store().remove(&key("unnamed")).await;
    }
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_policies_apply_to_the_final_name() {
    for (policy, expected_status, expected_files) in [
        (
            OverwritePolicy::UniqueSuffix,
            200,
            vec!["same (1).txt", "same.txt"],
        ),
        (OverwritePolicy::Overwrite, 200, vec!["same.txt"]),
        (OverwritePolicy::Reject, 409, vec!["same.txt"]),
    ] {
        let server = TestServer::start(|layer| layer.overwrite(policy)).await;
        let first = MultipartBody::new()
            .file("same.txt", "text/plain", b"first")
            .finish();
        let second = MultipartBody::new()
            .file("same.txt", "text/plain", b"second")
            .finish();
        assert_eq!(server.post_upload("key=one", &first).await.status, 200);
        let response = server.post_upload("key=two", &second).await;
        assert_eq!(response.status, expected_status, "{policy:?}: {response:?}");
        assert_eq!(server.saved_files(), expected_files, "{policy:?}");
        let kept = std::fs::read_to_string(server.uploads().join("same.txt")).unwrap();
        match policy {
            OverwritePolicy::Overwrite => assert_eq!(kept, "second"),
            _ => assert_eq!(kept, "first"),
        }
        if policy == OverwritePolicy::Reject {
            let answer = response.json();
            assert_eq!(codes(&answer), (6, 6));
            assert_eq!(
                answer["serverMessage"],
                "a file named \"same.txt\" already exists"
            );
        }
        server.assert_no_temp_files().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_folder_that_cannot_exist_is_error_3() {
    let server = TestServer::start(|layer| layer).await;
    // A file where the upload folder should be.
    std::fs::write(server.uploads(), b"not a folder").unwrap();
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"a")
        .finish();
    let response = server.post_upload("key=nofolder", &body).await;
    assert_eq!(response.status, 500, "{response:?}");
    let answer = response.json();
    assert_eq!(codes(&answer), (6, 3));
    assert_eq!(
        answer["serverMessage"],
        "the server could not create the upload folder (I/O error)"
    );
    let status = server.status("nofolder").await;
    assert_eq!(status["error"], FileError::UploadFolderNotFound.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_folder_removed_mid_upload_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let temp = dir.path().join("temp");
    let server = TestServer::start(|layer| layer.temp_dir(&temp).max_file_size(None)).await;
    let content = pattern(300_000, 10);
    let body = MultipartBody::new()
        .file("late.bin", "application/octet-stream", &content)
        .finish();
    std::fs::create_dir_all(server.uploads()).unwrap();
    let mut request = server.open_upload("vanish", &body).await;
    request.write(&body.bytes[..100_000]).await;
    server.wait_streaming("vanish").await;
    std::fs::remove_dir_all(server.uploads()).unwrap();
    request.write(&body.bytes[100_000..]).await;
    let response = request.response().await;
    assert_eq!(response.status, 200, "{response:?}");
    let saved = std::fs::read(server.uploads().join("late.bin")).unwrap();
    assert_eq!(sha256(&saved), sha256(&content));
    assert!(list_files(&temp).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_folder_that_becomes_impossible_mid_upload_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let temp = dir.path().join("temp");
    let server = TestServer::start(|layer| layer.temp_dir(&temp).max_file_size(None)).await;
    let body = MultipartBody::new()
        .file(
            "late.bin",
            "application/octet-stream",
            &pattern(300_000, 10),
        )
        .finish();
    let mut request = server.open_upload("blocked", &body).await;
    request.write(&body.bytes[..100_000]).await;
    server.wait_streaming("blocked").await;
    // A file where the upload folder should be: it cannot be made.
    std::fs::write(server.uploads(), b"not a folder").unwrap();
    request.write(&body.bytes[100_000..]).await;
    let response = request.response().await;
    assert_eq!(response.status, 500, "{response:?}");
    let answer = response.json();
    assert_eq!(codes(&answer), (6, 3));
    eventually("the temp file is gone", || async {
        list_files(&temp).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iframe_file_size_post_records_the_length_only() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .file("f.bin", "application/octet-stream", &pattern(5000, 11))
        .finish();
    let response = server.post_upload("key=sz&command=fileSize", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({"fileSize": body.bytes.len()}));
    assert_eq!(
        server.command("sz", "fileSize").await,
        json!({"fileSize": body.bytes.len()})
    );
    assert_eq!(
        server.command("sz", "fileSize").await["fileSize"],
        json!(null),
        "read once"
    );
    assert!(server.saved_files().is_empty());
    assert_eq!(
        server.status("sz").await["status"],
        3,
        "no upload was registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_pass_through_byte_identical() {
    let server = TestServer::start(|layer| layer).await;
    assert_eq!(send(server.addr, "GET", "/", &[], b"").await.body, b"home");
    let payload = pattern(70_000, 12);
    let grpc_frame: Vec<u8> =
        [&[0u8][..], &(payload.len() as u32).to_be_bytes(), &payload].concat();
    let cases: [(&str, &str, &str, &[u8]); 5] = [
        ("POST", "/echo", "text/plain", b"hello"),
        (
            "POST",
            "/grpc.health.v1.Health/Check",
            "application/grpc",
            &grpc_frame,
        ),
        (
            "PUT",
            "/upload?key=x",
            "multipart/form-data; boundary=b",
            &payload,
        ),
        ("GET", "/upload?key=x", "", b""),
        (
            "POST",
            "/upload/nested?key=x",
            "multipart/form-data; boundary=b",
            &payload,
        ),
    ];
    for (method, target, content_type, body) in cases {
        let headers = if content_type.is_empty() {
            vec![]
        } else {
            vec![("content-type".to_owned(), content_type.to_owned())]
        };
        let response = send(server.addr, method, target, &headers, body).await;
        assert_eq!(response.status, 200, "{method} {target}: {response:?}");
        assert_eq!(response.header("x-echo-method"), Some(method));
        assert_eq!(response.header("x-echo-path"), Some(target));
        assert_eq!(response.header("x-echo-content-type"), Some(content_type));
        assert_eq!(
            response.header("x-echo-sha256"),
            Some(sha256(body).as_str())
        );
        assert_eq!(response.body, body, "{method} {target}");
    }
    assert_eq!(
        server.status("x").await["status"],
        3,
        "nothing was registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_leftover_is_swept_on_start_up() {
    let server = TestServer::start(|layer| layer).await;
    std::fs::create_dir_all(server.temp()).unwrap();
    let orphan = server.temp().join(".tu-crashed.part");
    std::fs::write(&orphan, b"left by a crash").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = server.temp().join(".tu-inflight.part");
    std::fs::write(&fresh, b"another instance is writing this").unwrap();
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"a")
        .finish();
    assert_eq!(server.post_upload("key=first", &body).await.status, 200);
    eventually("the orphan is swept", || async { !orphan.exists() }).await;
    assert!(fresh.exists(), "files younger than the retention are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_answer_no_such_file() {
    let server = TestServer::start(|layer| layer).await;
    assert_eq!(
        server.status("neverseen").await,
        json!({"status":3,"error":5,"bytesUploaded":0,"size":0,"serverMessage":""})
    );
    assert_eq!(UploadStatus::NoSuchFile.code(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counts_received_bytes_before_a_write_batch_fills() {
    // The default write batch is 256 KiB; a slow client sending less must not look stalled.
    let server =
        TestServer::start(|layer| layer.buffer_size(tower_upload_layer::DEFAULT_BUFFER_SIZE)).await;
    let body = MultipartBody::new()
        .file(
            "slow.bin",
            "application/octet-stream",
            &pattern(1_000_000, 13),
        )
        .finish();
    let mut request = server.open_upload("slow", &body).await;
    request.write(&body.bytes[..100_000]).await;
    eventually(
        "received bytes show before the first batch is written",
        || async {
            let bytes = server.status("slow").await["bytesUploaded"]
                .as_u64()
                .unwrap();
            bytes > 90_000 && bytes < 100_000
        },
    )
    .await;
    request.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sniffing_refuses_content_that_lies_about_its_type() {
    let server = TestServer::start(|layer| {
        layer
            .allowed_mime_types(
                "image/*|application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            )
            .sniff_mime_types(true)
    })
    .await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    exe.extend(pattern(100_000, 14));
    let cases: [(&str, &str, Vec<u8>, u16); 5] = [
        ("cat.png", "image/png", exe, 415),
        (
            "xss.png",
            "image/png",
            b"  <html><script>alert(1)</script>".to_vec(),
            415,
        ),
        (
            "real.png",
            "image/png",
            [&b"\x89PNG\r\n\x1a\n"[..], &pattern(2000, 15)].concat(),
            200,
        ),
        ("tiny.png", "image/png", b"\x89P".to_vec(), 200),
        (
            "report.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            [&b"PK\x03\x04"[..], &pattern(700, 16)].concat(),
            200,
        ),
    ];
    for (i, (name, declared, content, expected)) in cases.iter().enumerate() {
        let body = MultipartBody::new().file(name, declared, content).finish();
        let response = server.post_upload(&format!("key=sniff{i}"), &body).await;
        assert_eq!(response.status, *expected, "{name}: {response:?}");
        if *expected == 415 {
            let answer = response.json();
            assert_eq!(codes(&answer), (6, 1), "{name}");
            assert!(
                answer["serverMessage"]
                    .as_str()
                    .unwrap()
                    .starts_with("the file's content is "),
                "{answer}"
            );
        }
    }
    assert_eq!(
        server.saved_files(),
        ["real.png", "report.docx", "tiny.png"]
    );
    server.assert_no_temp_files().await;
}
