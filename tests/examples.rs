//! The hyper and tonic examples' servers, started in process on `127.0.0.1:0` and exercised
//! over loopback: uploads, status queries, the apps' own routes and gRPC through the layer.

mod support;

// The examples are compiled in here as modules: the tests call their `serve` functions, and
// `main` and the argument parsing stay unused.
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/hyper.rs"]
mod hyper_example;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/tonic.rs"]
mod tonic_example;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_upload::{UploadLayer, UploadRegistry};

/// Bounds every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// An example's server on `127.0.0.1:0`, storing into a temp dir.
struct ExampleServer {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ExampleServer {
    async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, UploadLayer, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let layer = UploadLayer::new(UploadRegistry::new()).upload_dir(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (shutdown, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, layer, rx));
        Self {
            addr,
            dir,
            shutdown,
            task,
        }
    }

    async fn upload(&self, key: &str, filename: &str, content: &[u8]) -> HttpResponse {
        let body = MultipartBody::new()
            .file(filename, "application/octet-stream", content)
            .finish();
        within(
            "the upload answer",
            send(
                self.addr,
                "POST",
                &format!("/upload?key={key}"),
                &body.headers(),
                &body.bytes,
            ),
        )
        .await
    }

    async fn status(&self, key: &str) -> serde_json::Value {
        let response = within(
            "the status answer",
            send(
                self.addr,
                "GET",
                &format!("/status?key={key}&command=status"),
                &[],
                b"",
            ),
        )
        .await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        response.json()
    }

    /// Stops the server and waits (bounded) until it has returned.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        within("the server to stop", self.task)
            .await
            .expect("server task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_example_stores_uploads_and_lets_the_rest_through() {
    let server = ExampleServer::start(|listener, layer, shutdown| async move {
        hyper_example::serve(listener, layer, async {
            let _ = shutdown.await;
        })
        .await
        .expect("hyper example server");
    })
    .await;

    let content = pattern(300_000, 7);
    let response = server.upload("hyper1", "photo.jpg", &content).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"status":2,"error":-1,"bytesUploaded":300_000,"size":300_000})
    );
    let saved = std::fs::read(server.dir.path().join("photo.jpg")).expect("saved file");
    assert_eq!(sha256(&saved), sha256(&content));

    let status = server.status("hyper1").await;
    assert_eq!(status["status"], 2, "{status}");
    assert_eq!(status["error"], -1, "{status}");
    assert_eq!(status["bytesUploaded"], 300_000, "{status}");

    // Not an upload: the app's hello page.
    let response = within("the hello page", send(server.addr, "GET", "/", &[], b"")).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        String::from_utf8_lossy(&response.body).starts_with("Hello from hyper"),
        "{response:?}"
    );

    // A POST elsewhere keeps its body, multipart or not: the app echoes it.
    let body = MultipartBody::new()
        .file("not-an-upload.txt", "text/plain", b"echo me")
        .finish();
    let response = within(
        "the echo",
        send(server.addr, "POST", "/echo", &body.headers(), &body.bytes),
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, body.bytes);
    assert!(!server.dir.path().join("not-an-upload.txt").exists());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_example_serves_grpc_and_uploads_on_one_port() {
    let server = ExampleServer::start(|listener, layer, shutdown| async move {
        tonic_example::serve(listener, layer, async {
            let _ = shutdown.await;
        })
        .await
        .expect("tonic example server");
    })
    .await;

    // A real gRPC client over HTTP/2, through the upload layer.
    let channel = within(
        "the gRPC connection",
        tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
            .expect("uri")
            .connect(),
    )
    .await
    .expect("connect");
    let mut client = HealthClient::new(channel);
    let answer = within(
        "the health check",
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("Check")
    .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);

    // gRPC errors (a status in the trailers) come through the layer as well.
    let error = within(
        "the unknown service check",
        client.check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        }),
    )
    .await
    .expect_err("unknown service");
    assert_eq!(error.code(), tonic::Code::NotFound);

    // An HTTP/1.1 upload to the same port.
    let content = pattern(200_000, 8);
    let response = server.upload("tonic1", "report.pdf", &content).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({"status":2,"error":-1,"bytesUploaded":200_000,"size":200_000})
    );
    let saved = std::fs::read(server.dir.path().join("report.pdf")).expect("saved file");
    assert_eq!(sha256(&saved), sha256(&content));

    let status = server.status("tonic1").await;
    assert_eq!(status["status"], 2, "{status}");
    assert_eq!(status["error"], -1, "{status}");
    assert_eq!(status["bytesUploaded"], 200_000, "{status}");

    // gRPC still works on the connection opened before the upload.
    let answer = within(
        "the second health check",
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("Check")
    .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);

    drop(client);
    server.stop().await;
}
