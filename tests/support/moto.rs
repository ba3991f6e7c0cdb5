//! A real S3-compatible server for the tests: moto (PyPI `moto[server]`, which `scripts/test`
//! installs), in a `python3` child on a free loopback port.
//!
//! The child watches its standard input and stops when it closes, so the server goes away
//! with the test process however that ends (a panic, a kill), and a server shared by every
//! test of a binary through a `static` needs no cleanup.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use object_store::aws::{AmazonS3, AmazonS3Builder};

/// Starts moto's threaded server on `127.0.0.1:0`, prints its port, and serves until its
/// standard input closes.
const SERVE: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

impl Moto {
    /// Starts a server; `min_part_size` lowers the smallest multipart part moto accepts
    /// (`S3_UPLOAD_PART_MIN_SIZE`; S3's own, 5 MiB, when `None`).
    ///
    /// # Panics
    ///
    /// When `python3` or moto is missing (`pip install 'moto[server]'`).
    pub fn start(min_part_size: Option<usize>) -> Self {
        let mut command = Command::new("python3");
        command
            .args(["-c", SERVE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(size) = min_part_size {
            command.env("S3_UPLOAD_PART_MIN_SIZE", size.to_string());
        }
        let mut child = command
            .spawn()
            .expect("python3 with moto[server] (pip install 'moto[server]')");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("moto's port");
        let port: u16 = line.trim().parse().unwrap_or_else(|_| {
            panic!("moto did not start (is moto[server] installed?): {line:?}")
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
        }
    }

    /// A client of `bucket` on this server, with moto's dummy credentials.
    pub fn store(&self, bucket: &str) -> Arc<AmazonS3> {
        install_crypto_provider();
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_bucket_name(bucket)
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .expect("an S3 client"),
        )
    }

    /// Creates `bucket` (a plain `PUT /bucket`: moto takes unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = client()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create the bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {response:?}"
        );
    }

    /// The keys of the multipart uploads in progress in `bucket` (S3's
    /// `ListMultipartUploads`).
    pub async fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let response = client()
            .get(format!("{}/{bucket}?uploads", self.endpoint))
            .send()
            .await
            .expect("list multipart uploads");
        assert!(response.status().is_success(), "list uploads: {response:?}");
        let xml = response.text().await.expect("the listing");
        xml.split("<Upload>")
            .skip(1)
            .filter_map(|upload| element(upload, "Key"))
            .collect()
    }
}

/// The text of the first `<name>` element of `xml`.
fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_owned())
}

fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// rustls' crypto provider for the HTTP clients (ring, as object_store's signing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
