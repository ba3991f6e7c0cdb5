//! The IETF resumable-upload draft (interop versions 6 and 8) over real loopback sockets, on
//! the same path as tus.

mod support;

use support::*;
use tower_upload_layer::UploadLayer;

fn draft(layer: UploadLayer) -> UploadLayer {
    layer.resumable_path("/files/")
}

fn h(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

fn v(version: u32) -> (String, String) {
    h("Upload-Draft-Interop-Version", version)
}

#[tokio::test]
async fn careful_creation_append_and_completion_for_interop_6_and_8() {
    let server = TestServer::start(draft).await;
    for version in [6, 8] {
        let data = pattern(60_000, u64::from(version));
        let name = format!("draft-{version}.bin");
        // Careful creation: an empty `?0` request learns the URL.
        let created = send(
            server.addr,
            "POST",
            "/files/",
            &[
                v(version),
                h("Upload-Complete", "?0"),
                h("Upload-Length", data.len()),
                h(
                    "Content-Disposition",
                    format!("inline; filename=\"{name}\""),
                ),
            ],
            b"",
        )
        .await;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(
            created.header("upload-limit"),
            Some("max-size=4194304, max-age=86400")
        );
        assert_eq!(created.header("tus-resumable"), None);
        let url = created.header("location").unwrap().to_owned();

        let append = |offset: usize, end: usize, complete: &'static str| {
            let (addr, url, body) = (server.addr, url.clone(), data[offset..end].to_vec());
            async move {
                let headers = [
                    v(version),
                    h("Upload-Offset", offset),
                    h("Upload-Complete", complete),
                    h("Content-Type", "application/partial-upload"),
                ];
                send(addr, "PATCH", &url, &headers, &body).await
            }
        };
        let first = append(0, 25_000, "?0").await;
        assert_eq!(first.status, 204, "{first:?}");
        assert_eq!(first.header("upload-offset"), Some("25000"));
        assert_eq!(first.header("upload-complete"), Some("?0"));

        let head = send(server.addr, "HEAD", &url, &[v(version)], b"").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("upload-offset"), Some("25000"));
        assert_eq!(head.header("upload-complete"), Some("?0"));
        assert_eq!(head.header("upload-length"), Some("60000"));
        assert_eq!(head.header("cache-control"), Some("no-store"));
        assert!(head.header("upload-limit").is_some());

        // A wrong offset: 409 with the right one.
        let stale = append(100, 200, "?0").await;
        assert_eq!(stale.status, 409);
        assert_eq!(stale.header("upload-offset"), Some("25000"));
        // Interop 6+ appends must be application/partial-upload.
        let wrong = send(
            server.addr,
            "PATCH",
            &url,
            &[
                v(version),
                h("Upload-Offset", 25_000),
                h("Upload-Complete", "?0"),
                h("Content-Type", "application/octet-stream"),
            ],
            b"x",
        )
        .await;
        assert_eq!(wrong.status, 415);

        let last = append(25_000, data.len(), "?1").await;
        assert_eq!(last.status, 204, "{last:?}");
        assert_eq!(last.header("upload-complete"), Some("?1"));
        assert_eq!(std::fs::read(server.uploads().join(&name)).unwrap(), data);
        let head = send(server.addr, "HEAD", &url, &[v(version)], b"").await;
        assert_eq!(head.header("upload-complete"), Some("?1"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_complete_creation_is_an_ordinary_upload_and_length_comes_from_content_length() {
    let server = TestServer::start(draft).await;
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[
            v(8),
            h("Upload-Complete", "?1"),
            h("Content-Type", "text/plain"),
            h("Content-Disposition", "inline; filename=\"whole.txt\""),
        ],
        b"all at once",
    )
    .await;
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(response.header("upload-complete"), Some("?1"));
    assert_eq!(
        std::fs::read(server.uploads().join("whole.txt")).unwrap(),
        b"all at once"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_length_until_the_last_append() {
    let server = TestServer::start(draft).await;
    let created = send(
        server.addr,
        "POST",
        "/files/",
        &[
            v(6),
            h("Upload-Complete", "?0"),
            h("Content-Disposition", "inline; filename=s.bin"),
        ],
        b"stream-",
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let url = created.header("location").unwrap().to_owned();
    let head = send(server.addr, "HEAD", &url, &[v(6)], b"").await;
    assert_eq!(head.header("upload-offset"), Some("7"));
    assert_eq!(head.header("upload-length"), None);
    let last = send(
        server.addr,
        "PATCH",
        &url,
        &[
            v(6),
            h("Upload-Offset", 7),
            h("Upload-Complete", "?1"),
            h("Content-Type", "application/partial-upload"),
        ],
        b"ing",
    )
    .await;
    assert_eq!(last.status, 204, "{last:?}");
    assert_eq!(
        std::fs::read(server.uploads().join("s.bin")).unwrap(),
        b"stream-ing"
    );
    server.stop().await;
}

#[tokio::test]
async fn limits_answer_413_with_upload_limit_and_delete_cancels() {
    let server = TestServer::start(|layer| draft(layer).max_file_size(Some(1000))).await;
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[v(6), h("Upload-Complete", "?0"), h("Upload-Length", 5000)],
        b"",
    )
    .await;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.header("upload-limit"),
        Some("max-size=1000, max-age=86400")
    );
    let created = send(
        server.addr,
        "POST",
        "/files/",
        &[v(6), h("Upload-Complete", "?0"), h("Upload-Length", 10)],
        b"",
    )
    .await;
    let url = created.header("location").unwrap().to_owned();
    let response = send(server.addr, "DELETE", &url, &[v(6)], b"").await;
    assert_eq!(response.status, 204);
    assert_eq!(
        send(server.addr, "HEAD", &url, &[v(6)], b"").await.status,
        404
    );
    // Missing Upload-Complete on creation, an unknown interop version: 400.
    let response = send(server.addr, "POST", "/files/", &[v(6)], b"").await;
    assert_eq!(response.status, 400);
    let response = send(
        server.addr,
        "POST",
        "/files/",
        &[v(99), h("Upload-Complete", "?0")],
        b"",
    )
    .await;
    assert_eq!(response.status, 400);
    server.stop().await;
}
