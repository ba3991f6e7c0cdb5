//! With the `tracing` feature, uploads run in an `upload` span and report their outcome.

#![cfg(feature = "tracing")]

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tower::{service_fn, ServiceExt};
use tower_layer::Layer;
use tower_upload::{UploadLayer, UploadRegistry};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn multipart(file_name: &str, content: &str) -> Request<Full<Bytes>> {
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"{file_name}\"\r\n\r\n{content}\r\n--b--\r\n"
    );
    Request::post("/upload?key=traced&cid=c1")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn uploads_run_in_a_span_and_report_outcomes() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let layer = UploadLayer::new(UploadRegistry::new())
        .upload_dir(dir.path())
        .max_file_size(Some(4));
    let ok = layer
        .layer(app)
        .oneshot(multipart("a.txt", "abc"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let layer = UploadLayer::new(UploadRegistry::new())
        .upload_dir(dir.path())
        .max_file_size(Some(4));
    let too_big = layer
        .layer(app)
        .oneshot(multipart("b.txt", "abcdef"))
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("upload{keys=\"traced\" cid=\"c1\""), "{log}");
    assert!(log.contains("file_name=\"a.txt\""), "{log}");
    assert!(log.contains("upload finished"), "{log}");
    assert!(
        log.contains("upload failed") && log.contains("file is larger than the 4 bytes limit"),
        "{log}"
    );
}
