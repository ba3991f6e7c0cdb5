//! The multipart grammar through the real layer over a loopback socket: empty parts, part
//! header lines (tokens, bare CR/LF, folding, transfer encodings), `Content-Disposition`
//! parameters (`filename*`, RFC 2231 continuations, whitespace, valueless parameters), and
//! the file-name rules whose effect shows in the stored name.

mod support;

use std::sync::{Arc, Mutex};

use support::*;
use tower_upload_layer::{FormField, UploadFinished};

/// The form fields each finished upload saw, in order.
type Fields = Arc<Mutex<Vec<FormField>>>;

async fn server() -> (TestServer, Fields) {
    let fields: Fields = Arc::default();
    let record = Arc::clone(&fields);
    let server = TestServer::start(move |layer| {
        layer.on_upload_finished(move |event: UploadFinished| {
            let record = Arc::clone(&record);
            async move { record.lock().unwrap().extend(event.fields.iter().cloned()) }
        })
    })
    .await;
    (server, fields)
}

/// `--BOUNDARY\r\n` then `rest`, closed by the final delimiter.
fn body(rest: &str) -> MultipartBody {
    MultipartBody::new()
        .raw(format!("--{BOUNDARY}\r\n{rest}").as_bytes())
        .finish()
}

/// One file part whose header block is `headers` and whose body is `data`.
fn one_part(headers: &str, data: &str) -> MultipartBody {
    body(&format!("{headers}\r\n\r\n{data}\r\n"))
}

#[tokio::test]
async fn an_empty_file_part_before_a_text_field_stays_empty() {
    let (server, fields) = server().await;
    // After the file part's last header line comes the delimiter's own CRLF, not an empty
    // line (RFC 2046: body-part := MIME-part-headers [CRLF *OCTET]): the file is empty and
    // the text field is the next part, not the file's content.
    let direct = body(&format!(
        "Content-Disposition: form-data; name=\"f\"; filename=\"empty.txt\"\r\nContent-Type: text/plain\r\n\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
    ));
    let response = server.post_upload("key=e1", &direct).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(response.json()["bytesUploaded"], 0);
    let stored = std::fs::read(server.uploads().join("empty.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&stored), "");
    // The `upload_finished` handlers run after the answer.
    eventually("the upload is announced", || async {
        !fields.lock().unwrap().is_empty()
    })
    .await;
    let seen: Vec<(String, String)> = fields
        .lock()
        .unwrap()
        .drain(..)
        .map(|field| (field.name, field.value))
        .collect();
    assert_eq!(seen, [("note".to_owned(), "hello".to_owned())]);

    // The same with an empty line first, and sent a byte per chunk.
    let blank = body(&format!(
        "Content-Disposition: form-data; name=\"f\"; filename=\"blank.txt\"\r\n\r\n\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nbye\r\n"
    ));
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        "/upload?key=e2",
        &blank.headers(),
        None,
    )
    .await;
    for byte in blank.bytes.chunks(1) {
        request.write(byte).await;
    }
    let response = request.response().await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        std::fs::read(server.uploads().join("blank.txt")).unwrap(),
        b""
    );
    eventually("the upload is announced", || async {
        !fields.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(fields.lock().unwrap()[0].value, "bye");
    server.assert_no_temp_files().await;
}

#[tokio::test]
async fn malformed_part_headers_are_refused_as_header_parsing_errors() {
    let (server, _) = server().await;
    let file = "Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"";
    let cases = [
        ("bare LF", format!("{file}\nContent-Type: text/html")),
        ("bare CR", format!("{file}\rContent-Type: text/html")),
        (
            "bare LF in the file name",
            "Content-Disposition: form-data; name=\"f\"; filename=\"a\n.txt\"".to_owned(),
        ),
        ("space in a header name", format!("{file}\r\nX Evil: 1")),
        (
            "space before the colon",
            format!("{file}\r\nContent-Type : text/plain"),
        ),
        ("non-token header name", format!("{file}\r\nX@Evil: 1")),
        (
            "attachment disposition",
            "Content-Disposition: attachment; name=\"f\"; filename=\"a.txt\"".to_owned(),
        ),
        ("a fold as the first line", format!(" X: y\r\n{file}")),
        (
            "base64 transfer encoding",
            format!("{file}\r\nContent-Transfer-Encoding: base64"),
        ),
        (
            "quoted-printable transfer encoding",
            format!("{file}\r\nContent-Transfer-Encoding: Quoted-Printable"),
        ),
    ];
    for (i, (name, headers)) in cases.iter().enumerate() {
        let response = server
            .post_upload(&format!("key=m{i}"), &one_part(headers, "YQ=="))
            .await;
        let answer = response.json();
        assert_eq!(response.status, 400, "{name}: {answer}");
        assert_eq!(codes(&answer), (6, 4), "{name}: {answer}");
    }
    let encoded = one_part(
        &format!("{file}\r\nContent-Transfer-Encoding: base64"),
        "YQ==",
    );
    let answer = server.post_upload("key=m-b64", &encoded).await.json();
    let message = answer["serverMessage"].as_str().unwrap();
    assert!(
        message.ends_with("Content-Transfer-Encoding base64 is not supported"),
        "{message}"
    );
    // A part with no headers at all, before a good one.
    let headless = body(&format!(
        "\r\nfloating\r\n--{BOUNDARY}\r\n{file}\r\n\r\nx\r\n"
    ));
    let response = server.post_upload("key=m-none", &headless).await;
    assert_eq!(response.status, 400, "{:?}", response.json());
    assert_eq!(server.saved_files(), Vec::<String>::new());
    server.assert_no_temp_files().await;
}

#[tokio::test]
async fn identity_transfer_encodings_and_folded_headers_are_accepted() {
    let (server, _) = server().await;
    let folded = one_part(
        "Content-Disposition: form-data; name=\"f\";\r\n filename=\"folded.txt\"\r\nContent-Transfer-Encoding: BINARY",
        "data",
    );
    let response = server.post_upload("key=f1", &folded).await;
    assert_eq!(response.status, 200, "{:?}", response.json());
    assert_eq!(
        std::fs::read(server.uploads().join("folded.txt")).unwrap(),
        b"data"
    );
}

#[tokio::test]
async fn disposition_parameters_name_the_stored_file() {
    let (server, _) = server().await;
    let cases = [
        ("form-data; name=\"f\"; filename = \"a;b.txt\"", "a;b.txt"),
        ("form-data; name=\"f\"; foo; filename=\"valueless.txt\"", "valueless.txt"),
        (
            "form-data; name=\"f\"; filename=\"euro.txt\"; filename*=UTF-8''%e2%82%ac.txt",
            "\u{20ac}.txt",
        ),
        (
            "form-data; name=\"f\"; filename*=UTF-8''first-%c3%a9.txt; filename=\"plain.txt\"",
            "first-\u{e9}.txt",
        ),
        (
            "form-data; name=\"f\"; filename*=ISO-8859-1'en'%A3%20rates.txt",
            "\u{a3} rates.txt",
        ),
        (
            "form-data; name=\"f\"; filename*0*=UTF-8''cont%c3; filename*1*=%a9; filename*2=\"d.txt\"",
            "cont\u{e9}d.txt",
        ),
        (
            "form-data; name=\"f\"; filename=\"C:\\dir\\win.txt\"",
            "win.txt",
        ),
        (
            "form-data; name=\"f\"; filename=\"first.txt\"; filename=\"second.txt\"",
            "first.txt",
        ),
    ];
    for (i, (disposition, stored)) in cases.iter().enumerate() {
        let part = one_part(&format!("Content-Disposition: {disposition}"), "x");
        let response = server.post_upload(&format!("key=d{i}"), &part).await;
        assert_eq!(response.status, 200, "{disposition}: {:?}", response.json());
        assert!(
            server.uploads().join(stored).is_file(),
            "{disposition}: {:?}",
            server.saved_files()
        );
    }
    // An undecodable `filename*` with nothing to fall back on is refused.
    let part = one_part(
        "Content-Disposition: form-data; name=\"f\"; filename*=UTF-8''%ff.txt",
        "x",
    );
    let response = server.post_upload("key=d-bad", &part).await;
    assert_eq!(response.status, 400, "{:?}", response.json());
}

#[tokio::test]
async fn invisible_characters_and_superscript_devices_are_neutralised() {
    let (server, _) = server().await;
    let cases = [
        ("COM\u{B9}.txt", "_COM\u{B9}.txt"),
        ("lpt\u{B3}", "_lpt\u{B3}"),
        ("line\u{2028}sep.txt", "linesep.txt"),
        ("tag\u{E0065}\u{E0078}\u{E0065}.pdf", "tag.pdf"),
        ("sel\u{FE0F}ector.txt", "selector.txt"),
        ("\u{3164}filler\u{FFA0}.txt", "filler.txt"),
    ];
    for (i, (raw, stored)) in cases.iter().enumerate() {
        let body = MultipartBody::new().file(raw, "text/plain", b"x").finish();
        let response = server.post_upload(&format!("key=n{i}"), &body).await;
        assert_eq!(response.status, 200, "{raw:?}: {:?}", response.json());
        assert!(
            server.uploads().join(stored).is_file(),
            "{raw:?}: {:?}",
            server.saved_files()
        );
    }
    let invisible = MultipartBody::new()
        .file("\u{3164}\u{2028}", "text/plain", b"x")
        .finish();
    let response = server.post_upload("key=n-none", &invisible).await;
    assert_eq!(response.status, 400, "{:?}", response.json());
}

/// A file whose data runs into `--BOUNDARYX` (no delimiter: the boundary is followed by
/// neither `--` nor CRLF) is incomplete: 400, status 6 / error 4, nothing kept. Before, the
/// file was stored and the answer was 400 with a status-2 body and an empty message.
#[tokio::test]
async fn a_file_that_runs_into_a_malformed_delimiter_is_refused_whole() {
    let (server, _) = server().await;
    let malformed = body(&format!(
        "Content-Disposition: form-data; name=\"f\"; filename=\"cut.txt\"\r\n\r\nsome data\r\n--{BOUNDARY}X\r\n"
    ));
    let response = server.post_upload("key=cut", &malformed).await;
    assert_eq!(response.status, 400, "{:?}", response.json());
    let answer = response.json();
    assert_eq!(codes(&answer), (6, 4));
    assert!(answer["serverMessage"]
        .as_str()
        .unwrap()
        .contains("not followed by CRLF"));
    assert_eq!(codes(&server.status("cut").await), (6, 4));
    assert!(server.saved_files().is_empty());
    server.assert_no_temp_files().await;
}
