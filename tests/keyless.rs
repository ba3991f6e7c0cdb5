//! Uploads without a `key`: curl, a plain HTML form. The layer makes a key per file part,
//! registers it before the part's first byte, and returns it in the answer and in
//! `Upload-Key` headers.

mod support;

use support::*;
use tower_upload_state::{UploadKey, GENERATED_KEY_LEN};

fn keys_of(response: &HttpResponse) -> Vec<String> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name == "upload-key")
        .map(|(_, value)| value.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_a_key_stores_each_file_under_a_key_of_its_own() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .field("title", "two files")
        .file_field("a", "a.txt", "text/plain", b"first")
        .file_field("b", "b.txt", "text/plain", b"second!")
        .finish();
    let response = server.post_upload("", &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    let answer = response.json();
    let files = answer["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(answer.get("error").is_none(), "{answer}");
    let keys = keys_of(&response);
    assert_eq!(keys.len(), 2);
    for ((file, key), size) in files.iter().zip(&keys).zip([5, 7]) {
        assert_eq!(file["key"], key.as_str());
        assert_eq!(codes(file), (2, -1));
        assert_eq!(file["bytesUploaded"], size);
        // Same alphabet and length as the widget's keys, and valid keys.
        assert_eq!(key.len(), GENERATED_KEY_LEN);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        UploadKey::parse(key).unwrap();
        // Registered: the status service answers for it.
        assert_eq!(codes(&server.status(key).await), (2, -1));
    }
    assert_ne!(keys[0], keys[1]);
    assert_eq!(server.saved_files(), ["a.txt", "b.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_file_is_registered_before_its_bytes_arrive() {
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let content = pattern(200_000, 9);
    let body = MultipartBody::new()
        .file("big.bin", "application/octet-stream", &content)
        .finish();
    let mut request =
        StreamingRequest::open(server.addr, "POST", "/upload", &body.headers(), None).await;
    request.write(&body.bytes[..50_000]).await;
    eventually("one upload is live", || async {
        server.registry.in_flight() == 1
    })
    .await;
    request.write(&body.bytes[50_000..]).await;
    request.end().await;
    let response = request.response().await;
    assert_eq!(response.status, 200);
    let saved = std::fs::read(server.uploads().join("big.bin")).unwrap();
    assert_eq!(sha256(&saved), sha256(&content));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_limits_and_failures_answer_per_file() {
    let server =
        TestServer::start(|layer| layer.max_file_size(Some(10)).max_files_per_request(2)).await;
    // The second file is too large: the first is kept, the second refused, both listed.
    let body = MultipartBody::new()
        .file_field("a", "ok.txt", "text/plain", b"small")
        .file_field("b", "big.txt", "text/plain", &[b'x'; 50])
        .finish();
    let mut request =
        StreamingRequest::open(server.addr, "POST", "/upload", &body.headers(), None).await;
    request.write(&body.bytes).await;
    request.end().await;
    let response = request.response().await;
    assert_eq!(response.status, 413);
    let answer = response.json();
    assert_eq!(codes(&answer), (5, 2));
    let files = answer["files"].as_array().unwrap();
    assert_eq!(codes(&files[0]), (2, -1));
    assert_eq!(codes(&files[1]), (5, 2));
    let keys = keys_of(&response);
    assert_eq!(keys.len(), 2);
    assert_eq!(codes(&server.status(&keys[1]).await), (5, 2));
    assert_eq!(server.saved_files(), ["ok.txt"]);

    // A third file is over max_files_per_request: 413, the two first kept.
    let body = MultipartBody::new()
        .file_field("a", "1.txt", "text/plain", b"1")
        .file_field("b", "2.txt", "text/plain", b"2")
        .file_field("c", "3.txt", "text/plain", b"3")
        .finish();
    let response = server.post_upload("", &body).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["files"].as_array().unwrap().len(), 2);
    assert!(response.json()["serverMessage"]
        .as_str()
        .unwrap()
        .contains("more than 2 files"));
    assert_eq!(server.saved_files(), ["1.txt", "2.txt", "ok.txt"]);
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_request_with_no_file_stores_nothing() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .field("title", "no file chosen")
        .file_field("optional", "", "application/octet-stream", b"")
        .finish();
    let response = server.post_upload("", &body).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), serde_json::json!({"files": []}));
    assert!(keys_of(&response).is_empty());
    assert!(server.saved_files().is_empty());
}

/// A plain HTML form: with `redirect_to`, the answer is 303 to the application's page with
/// the outcome in the query, for success and failure alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_is_answered_with_see_other() {
    let server = TestServer::start(|layer| {
        layer
            .redirect_to("/uploaded?from=form")
            .max_file_size(Some(10))
    })
    .await;
    let body = MultipartBody::new()
        .file_field("doc", "note.txt", "text/plain", b"hi")
        .finish();
    let response = server.post_upload("", &body).await;
    assert_eq!(response.status, 303);
    assert!(response.body.is_empty());
    let location = response.header("location").unwrap().to_owned();
    let key = location
        .strip_prefix("/uploaded?from=form&keys=")
        .unwrap_or_else(|| panic!("{location}"));
    assert_eq!(codes(&server.status(key).await), (2, -1));
    assert_eq!(server.saved_files(), ["note.txt"]);

    let body = MultipartBody::new()
        .file_field("doc", "big.txt", "text/plain", &[b'x'; 100])
        .finish();
    let response = server.post_upload("", &body).await;
    assert_eq!(response.status, 303);
    let location = response.header("location").unwrap();
    assert!(
        location.starts_with("/uploaded?from=form&status=5&error=2&keys="),
        "{location}"
    );
    // Refusals before any file keep their JSON answers.
    let response = send(
        server.addr,
        "POST",
        "/upload",
        &[("content-type".into(), "text/plain".into())],
        b"x",
    )
    .await;
    assert_eq!(response.status, 415);
    assert_eq!(response.json()["error"], "not_multipart");
}

/// nginx upload-progress clients name the upload with `X-Progress-ID` (query parameter or
/// header) instead of `key`: the layer registers that key, and the status service answers
/// for it in nginx's dialect (this failed before: the upload got a generated key instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_progress_id_names_the_upload_like_nginx() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .file("n.txt", "text/plain", b"nginx style")
        .finish();
    let response = server.post_upload("X-Progress-ID=nginx1", &body).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(codes(&response.json()), (2, -1));
    let progress = send(server.addr, "GET", "/status?X-Progress-ID=nginx1", &[], b"").await;
    assert_eq!(progress.json(), serde_json::json!({"state": "done"}));

    let mut headers = body.headers();
    headers.push(("X-Progress-ID".into(), "nginx2".into()));
    let response = send(server.addr, "POST", "/upload", &headers, &body.bytes).await;
    assert_eq!(response.status, 200);
    assert_eq!(codes(&server.status("nginx2").await), (2, -1));
    // An invalid id is refused like an invalid key.
    let response = server.post_upload("X-Progress-ID=bad%2Fid", &body).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "invalid_key");
}
