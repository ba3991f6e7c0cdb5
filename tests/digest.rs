//! Streaming digests: computed while the bytes pass (RFC 9530 form), returned everywhere a
//! file is reported, and a client's `Content-Digest` checked.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha512};
use support::*;
use tower_upload_layer::DigestAlgorithm;

fn sha256_field(content: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(content)))
}

/// One file part with extra part headers.
fn part_with(headers: &str, name: &str, content: &[u8]) -> MultipartBody {
    let mut bytes = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n{headers}\r\n"
    )
    .into_bytes();
    bytes.extend_from_slice(content);
    bytes.extend_from_slice(b"\r\n");
    MultipartBody::new().raw(&bytes).finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_is_in_the_answer_the_header_and_the_status() {
    let server =
        TestServer::start(|layer| layer.digest(DigestAlgorithm::Sha256).max_file_size(None)).await;
    let content = pattern(700_000, 4);
    let expected = sha256_field(&content);
    let body = MultipartBody::new()
        .file("d.bin", "application/octet-stream", &content)
        .finish();
    let response = server.post_upload("key=dig", &body).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["digest"], expected.as_str());
    assert_eq!(response.header("repr-digest"), Some(expected.as_str()));
    assert!(response.json().get("serverMessage").is_none());
    assert_eq!(server.status("dig").await["digest"], expected.as_str());
    // Batches carry one per file.
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"a")
        .file("b.txt", "text/plain", b"b")
        .finish();
    let response = server.post_upload("key=d1;d2", &body).await;
    let files = response.json()["files"].clone();
    assert_eq!(files[0]["digest"], sha256_field(b"a").as_str());
    assert_eq!(files[1]["digest"], sha256_field(b"b").as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_nothing_is_hashed_or_reported() {
    let server = TestServer::start(|layer| layer).await;
    let body = MultipartBody::new()
        .file("p.txt", "text/plain", b"plain")
        .finish();
    let response = server.post_upload("key=plain", &body).await;
    assert_eq!(response.status, 200);
    assert!(response.json().get("digest").is_none());
    assert_eq!(response.header("repr-digest"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_digest_sent_with_the_part_is_checked() {
    let server = TestServer::start(|layer| layer).await;
    let content = b"the real bytes";
    // Matching: stored.
    let good = part_with(
        &format!("Content-Digest: {}\r\n", sha256_field(content)),
        "good.txt",
        content,
    );
    assert_eq!(server.post_upload("key=good", &good).await.status, 200);
    // sha-512 is checked too.
    let sha512 = format!("sha-512=:{}:", STANDARD.encode(Sha512::digest(content)));
    let good512 = part_with(
        &format!("Repr-Digest: {sha512}\r\n"),
        "good512.txt",
        content,
    );
    assert_eq!(
        server.post_upload("key=good512", &good512).await.status,
        200
    );
    // Not matching: 400, status 6 / error 7, nothing kept.
    let bad = part_with(
        &format!("Content-Digest: {}\r\n", sha256_field(b"other")),
        "bad.txt",
        content,
    );
    let response = server.post_upload("key=bad", &bad).await;
    assert_eq!(response.status, 400);
    assert_eq!(codes(&response.json()), (6, 7));
    assert!(response.json()["serverMessage"]
        .as_str()
        .unwrap()
        .contains("did not arrive intact"));
    assert_eq!(server.saved_files(), ["good.txt", "good512.txt"]);
    server.assert_no_temp_files().await;
    // A retry of the key starts over (a transfer fault, not a verdict).
    let retry = part_with(
        &format!("Content-Digest: {}\r\n", sha256_field(content)),
        "bad.txt",
        content,
    );
    assert_eq!(server.post_upload("key=bad", &retry).await.status, 200);
    // A malformed header is a malformed request.
    let malformed = part_with("Content-Digest: sha-256=nope\r\n", "m.txt", content);
    let response = server.post_upload("key=malformed", &malformed).await;
    assert_eq!(response.status, 400);
    assert_eq!(codes(&response.json()), (6, 4));
}
