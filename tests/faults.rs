//! Fault injection over loopback: clients that vanish at any byte, a full or read-only disk,
//! folders that disappear, failing sinks and renames, cancels racing completion, racing POSTs,
//! a graceful shutdown mid-upload, crash leftovers, silent clients and a slowloris.
//!
//! Every case checks the HTTP answer, the registry's status and error, that no temp file is
//! left, and that the server still answers. Randomised cases use a seeded [`XorShift`], so a
//! failure names a seed that reproduces it.

mod support;

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::json;
use support::*;
use tokio::io::AsyncWriteExt;
use tower_upload_layer::{
    FileSink, FileWriter, OverwritePolicy, SinkFile, SinkFuture, UploadLayer, UploadSink,
    DEFAULT_TEMP_SUBDIR,
};
use tower_upload_state::{UploadInfo, UploadKey, UploadRegistry};

fn key(text: &str) -> UploadKey {
    UploadKey::parse(text).unwrap()
}

/// Waits (at most 10 s) until `key` has a terminal record and returns it.
async fn terminal(registry: &UploadRegistry, text: &str) -> UploadInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = registry.snapshot(&key(text)).await.unwrap();
        match info {
            Some(info) if info.status.is_terminal() => return info,
            other => assert!(
                Instant::now() < deadline,
                "{text} never reached a terminal status: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn codes(info: &UploadInfo) -> (u8, i8) {
    (info.status.code(), info.error.code())
}

fn answer_codes(answer: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    (answer["status"].clone(), answer["error"].clone())
}

async fn server_still_answers(server: &TestServer) {
    let home = send(server.addr, "GET", "/", &[], b"").await;
    assert_eq!(home.body, b"home");
}

/// Asserts `dir` has no file left (deletions run on the blocking pool: waits up to 10 s).
async fn assert_empty(dir: &Path) {
    let dir = dir.to_owned();
    eventually(&format!("{} is empty", dir.display()), || {
        let dir = dir.clone();
        async move { list_files(&dir).is_empty() }
    })
    .await;
}

/// A multipart body with the byte offsets a disconnect can be aimed at.
struct Plan {
    bytes: Vec<u8>,
    keys: Vec<String>,
    files: Vec<PlannedFile>,
}

struct PlannedFile {
    name: String,
    sha: String,
    /// Where the part's `--boundary` line starts.
    part_start: usize,
    /// Where its data starts (just past the blank line).
    header_end: usize,
    /// Where its data ends (the CRLF of the next delimiter).
    data_end: usize,
}

impl PlannedFile {
    /// Once this many bytes are in, the part's closing delimiter (`\r\n--boundary`) is whole.
    fn delimited_at(&self) -> usize {
        self.data_end + 4 + BOUNDARY.len()
    }
}

/// The length of a `--boundary\r\n` line.
const DELIMITER_LINE: usize = BOUNDARY.len() + 4;

fn plan(rng: &mut XorShift, tag: &str, files: usize) -> Plan {
    let mut body = MultipartBody::new();
    if rng.chance(30) {
        body = body.field("note", "a form field before the files");
    }
    let mut planned = Vec::new();
    for j in 0..files {
        let part_start = body.bytes.len();
        let len = if rng.chance(10) {
            0
        } else {
            rng.range(1, 120_000)
        };
        let content = pattern(len, rng.next_u64());
        let name = format!("{tag}-{j}.bin");
        body = body.file_field(
            &format!("up_{j}__frm_if"),
            &name,
            "application/octet-stream",
            &content,
        );
        let data_end = body.bytes.len() - 2;
        planned.push(PlannedFile {
            name,
            sha: sha256(&content),
            part_start,
            header_end: data_end - content.len(),
            data_end,
        });
    }
    let keys = (0..files).map(|j| format!("{tag}k{j}")).collect();
    Plan {
        bytes: body.finish().bytes,
        keys,
        files: planned,
    }
}

#[derive(Clone, Copy, Debug)]
enum CutAt {
    RequestHead,
    BeforeFirstPart,
    PartHeaders,
    MidFile,
    BetweenParts,
    BeforeClosingBoundary,
}

impl Plan {
    /// A random cut point of kind `at`; the body is never complete.
    fn cut(&self, rng: &mut XorShift, at: CutAt) -> usize {
        let part = &self.files[rng.range(0, self.files.len())];
        let last = self.files.last().unwrap();
        match at {
            CutAt::RequestHead => 0,
            CutAt::BeforeFirstPart => rng.range(0, self.files[0].part_start + DELIMITER_LINE),
            CutAt::PartHeaders => rng.range(part.part_start + DELIMITER_LINE, part.header_end),
            CutAt::MidFile if part.data_end > part.header_end => {
                rng.range(part.header_end, part.data_end)
            }
            CutAt::MidFile => part.header_end,
            CutAt::BetweenParts if self.files.len() > 1 => {
                let j = rng.range(0, self.files.len() - 1);
                let next = &self.files[j + 1];
                rng.range(self.files[j].data_end, next.part_start + DELIMITER_LINE)
            }
            CutAt::BetweenParts => part.header_end,
            CutAt::BeforeClosingBoundary => rng.range(last.data_end, self.bytes.len()),
        }
    }
}

/// Sends the head and `cut` bytes of the body in random pieces, then hangs up.
async fn send_and_vanish(server: &TestServer, plan: &Plan, cut: usize, at: CutAt, seed: u64) {
    let mut rng = XorShift::new(seed);
    let target = format!("/upload?key={}", plan.keys.join(";"));
    if let CutAt::RequestHead = at {
        // Hang up inside the request head: the layer never sees the request.
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Len",
            MultipartBody::content_type()
        );
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _ = stream.write_all(head.as_bytes()).await;
        return;
    }
    let length = (!rng.chance(30)).then_some(plan.bytes.len() as u64);
    let headers = MultipartBody::new().headers();
    let mut request = StreamingRequest::open(server.addr, "POST", &target, &headers, length).await;
    let mut sent = 0;
    while sent < cut {
        let piece = rng.range(1, 40_000).min(cut - sent);
        request.write(&plan.bytes[sent..sent + piece]).await;
        sent += piece;
        if rng.chance(20) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    request.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_at_random_points_end_in_status_8_and_leave_no_file() {
    const SEED: u64 = 0x00D1_5C0F;
    const ROUNDS: usize = 12;
    const PARALLEL: usize = 6;
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let mut rng = XorShift::new(SEED);
    let kinds = [
        CutAt::RequestHead,
        CutAt::BeforeFirstPart,
        CutAt::PartHeaders,
        CutAt::MidFile,
        CutAt::BetweenParts,
        CutAt::BeforeClosingBoundary,
    ];
    let mut seen = [0usize; 6];
    let mut kept = 0;
    for round in 0..ROUNDS {
        let mut cases = Vec::new();
        for i in 0..PARALLEL {
            let files = if rng.chance(35) { 2 } else { 1 };
            let plan = plan(&mut rng, &format!("r{round}c{i}"), files);
            let kind_index = rng.range(0, kinds.len());
            seen[kind_index] += 1;
            let at = kinds[kind_index];
            let cut = plan.cut(&mut rng, at);
            cases.push((plan, at, cut, rng.next_u64()));
        }
        join_all(
            cases
                .iter()
                .map(|(plan, at, cut, seed)| send_and_vanish(&server, plan, *cut, *at, *seed)),
        )
        .await;
        for (plan, at, cut, _) in &cases {
            let context = format!("seed {SEED:#x}, round {round}, {at:?} at byte {cut}");
            if let CutAt::RequestHead = at {
                tokio::time::sleep(Duration::from_millis(50)).await;
                for k in &plan.keys {
                    assert_eq!(server.status(k).await["status"], 3, "{context}");
                }
                continue;
            }
            for (k, file) in plan.keys.iter().zip(&plan.files) {
                let info = terminal(&server.registry, k).await;
                let path = server.uploads().join(&file.name);
                match codes(&info) {
                    (2, -1) => {
                        // Every byte of this part and its delimiter arrived: keeping it is right.
                        assert!(*cut >= file.delimited_at(), "{context}: {k} finished early");
                        let saved = std::fs::read(&path).expect("a finished file is kept");
                        assert_eq!(sha256(&saved), file.sha, "{context}: {k}");
                        kept += 1;
                    }
                    (8, -1) => assert!(!path.exists(), "{context}: {k} left {path:?}"),
                    other => panic!("{context}: {k} ended with {other:?}"),
                }
            }
        }
        server.assert_no_temp_files().await;
    }
    eventually("no upload is in flight", || async {
        server.registry.in_flight() == 0
    })
    .await;
    println!("cut kinds exercised {seen:?}; files completed before the hang-up: {kept}");
    let body = MultipartBody::new()
        .file("after.txt", "text/plain", b"still here")
        .finish();
    assert_eq!(server.post_upload("key=after", &body).await.status, 200);
    server_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_500_status_6_error_7_and_leaves_nothing() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let uploads = disk.path().join("uploads");
    let temp = uploads.join(DEFAULT_TEMP_SUBDIR);
    let server = TestServer::start(|layer| layer.upload_dir(&uploads).max_file_size(None)).await;
    let content = pattern(2 << 20, 21);
    for (k, chunked) in [("full", false), ("fullchunked", true)] {
        let body = MultipartBody::new()
            .file("big.bin", "application/octet-stream", &content)
            .finish();
        let length = (!chunked).then_some(body.bytes.len() as u64);
        let target = format!("/upload?key={k}");
        let mut request =
            StreamingRequest::open(server.addr, "POST", &target, &body.headers(), length).await;
        for piece in body.bytes.chunks(64 * 1024) {
            request.write(piece).await;
        }
        let response = request.response().await;
        assert_eq!(response.status, 500, "{k}: {response:?}");
        let answer = response.json();
        assert_eq!(answer_codes(&answer), (json!(6), json!(7)), "{k}");
        assert_eq!(
            answer["serverMessage"],
            "the server could not write the file (no space left)"
        );
        let status = server.status(k).await;
        assert_eq!(answer_codes(&status), (json!(6), json!(7)), "{k}");
        assert!(list_files(&uploads).is_empty(), "no partial final file");
        assert_empty(&temp).await;
    }
    // The space is free again: a file that fits is stored.
    let small = pattern(300_000, 22);
    let body = MultipartBody::new()
        .file("fits.bin", "application/octet-stream", &small)
        .finish();
    let response = server.post_upload("key=fits", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        sha256(&std::fs::read(uploads.join("fits.bin")).unwrap()),
        sha256(&small)
    );
    assert_empty(&temp).await;
    server.stop().await;
}

/// A [`FileSink`] whose writes fail once `fail_at` bytes would be exceeded.
#[derive(Clone, Debug)]
struct FailingSink {
    fail_open: bool,
    fail_at: Option<u64>,
    fail_finish: bool,
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct FailingWriter {
    sink: FailingSink,
    written: u64,
}

impl FileSink for FailingSink {
    fn open<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, io::Result<Box<dyn FileWriter>>> {
        self.log.lock().unwrap().push(format!("open {}", file.name));
        let result: io::Result<Box<dyn FileWriter>> = if self.fail_open {
            Err(io::Error::other("the object store is down"))
        } else {
            Ok(Box::new(FailingWriter {
                sink: self.clone(),
                written: 0,
            }))
        };
        Box::pin(async move { result })
    }
}

impl FileWriter for FailingWriter {
    fn write(&mut self, chunk: Bytes) -> SinkFuture<'_, io::Result<()>> {
        let total = self.written + chunk.len() as u64;
        let result = match self.sink.fail_at {
            Some(at) if total > at => Err(io::Error::other("the object store is full")),
            _ => {
                self.written = total;
                Ok(())
            }
        };
        Box::pin(async move { result })
    }

    fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>> {
        self.sink
            .log
            .lock()
            .unwrap()
            .push(format!("finish {}", self.written));
        let fail = self.sink.fail_finish;
        Box::pin(async move {
            if fail {
                Err(io::Error::other("commit failed"))
            } else {
                Ok(())
            }
        })
    }

    fn abort(self: Box<Self>) -> SinkFuture<'static, ()> {
        self.sink
            .log
            .lock()
            .unwrap()
            .push(format!("abort {}", self.written));
        Box::pin(std::future::ready(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_custom_sink_is_status_6_and_is_aborted() {
    let content = pattern(300_000, 23);
    let body = MultipartBody::new()
        .file("s.bin", "application/octet-stream", &content)
        .finish();
    let sink = |fail_open, fail_at, fail_finish| FailingSink {
        fail_open,
        fail_at,
        fail_finish,
        log: Arc::default(),
    };
    // (the sink, the expected error code, what the sink hears after `open`)
    let cases: [(FailingSink, i8, Option<&str>); 5] = [
        (sink(false, Some(0), false), 7, Some("abort")),
        (sink(false, Some(100_000), false), 7, Some("abort")),
        (sink(false, Some(299_999), false), 7, Some("abort")),
        (sink(true, None, false), 8, None),
        (sink(false, None, true), 7, Some("finish")),
    ];
    for (i, (sink, error, end)) in cases.into_iter().enumerate() {
        let log = Arc::clone(&sink.log);
        let fail_at = sink.fail_at;
        let server =
            TestServer::start(|layer| layer.sink(UploadSink::custom(sink)).max_file_size(None))
                .await;
        let k = format!("sink{i}");
        let response = server.post_upload(&format!("key={k}"), &body).await;
        assert_eq!(response.status, 500, "case {i}: {response:?}");
        let answer = response.json();
        assert_eq!(answer_codes(&answer), (json!(6), json!(error)), "case {i}");
        let status = server.status(&k).await;
        assert_eq!(answer_codes(&status), (json!(6), json!(error)), "case {i}");
        let expected_len = if end.is_some() { 2 } else { 1 };
        eventually("the sink heard the end", || async {
            log.lock().unwrap().len() >= expected_len
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), expected_len, "case {i}: one end only: {log:?}");
        assert_eq!(log[0], "open s.bin", "case {i}");
        if let Some(end) = end {
            let (heard, written) = log[1].split_once(' ').unwrap();
            assert_eq!(heard, end, "case {i}: {log:?}");
            let written: u64 = written.parse().unwrap();
            assert!(written <= fail_at.unwrap_or(u64::MAX), "case {i}: {log:?}");
        }
        assert!(server.saved_files().is_empty());
        server.assert_no_temp_files().await;
        server_still_answers(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temp_folder_removed_mid_upload_is_500_and_the_next_upload_works() {
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let body = MultipartBody::new()
        .file("t.bin", "application/octet-stream", &pattern(400_000, 24))
        .finish();
    let mut request = server.open_upload("tempgone", &body).await;
    request.write(&body.bytes[..150_000]).await;
    server.wait_streaming("tempgone").await;
    // The whole upload folder goes, with the temp folder and the open temp file in it.
    std::fs::remove_dir_all(server.uploads()).unwrap();
    request.write(&body.bytes[150_000..]).await;
    let response = request.response().await;
    assert_eq!(response.status, 500, "{response:?}");
    let answer = response.json();
    assert_eq!(answer_codes(&answer), (json!(6), json!(3)));
    let info = terminal(&server.registry, "tempgone").await;
    assert_eq!(codes(&info), (6, 3));
    assert!(server.saved_files().is_empty());
    // The folders are made again for the next upload.
    assert_eq!(server.post_upload("key=tempback", &body).await.status, 200);
    assert_eq!(server.saved_files(), ["t.bin"]);
    server.assert_no_temp_files().await;

    // A file where the temp folder should be: the folder cannot be made.
    let blocked = TestServer::start(|layer| layer).await;
    std::fs::create_dir_all(blocked.uploads()).unwrap();
    std::fs::write(blocked.temp(), b"in the way").unwrap();
    let response = blocked.post_upload("key=blocked", &body).await;
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(answer_codes(&response.json()), (json!(6), json!(3)));
    assert!(blocked
        .saved_files()
        .iter()
        .all(|name| name == DEFAULT_TEMP_SUBDIR));
    server_still_answers(&blocked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_turning_read_only_between_files_fails_the_next_file_only() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let uploads = disk.path().join("uploads");
    let temp = uploads.join(DEFAULT_TEMP_SUBDIR);
    let server = TestServer::start(|layer| layer.upload_dir(&uploads)).await;
    let mut rng = XorShift::new(25);
    let plan = plan(&mut rng, "ro", 2);
    let second = &plan.files[1];
    let target = format!("/upload?key={}", plan.keys.join(";"));
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        &target,
        &MultipartBody::new().headers(),
        Some(plan.bytes.len() as u64),
    )
    .await;
    // The first file whole, the second part's headers not yet ended.
    request.write(&plan.bytes[..second.header_end - 1]).await;
    let first = terminal(&server.registry, &plan.keys[0]).await;
    assert_eq!(codes(&first), (2, -1));
    // No file is open for writing now, so the remount cannot be refused as busy (a tmpfs
    // with a file open for writing cannot turn read-only; root ignores permission bits).
    assert!(disk.remount("ro"), "remount read-only");
    request.write(&plan.bytes[second.header_end - 1..]).await;
    let response = request.response().await;
    assert_eq!(response.status, 500, "{response:?}");
    let answer = response.json();
    assert_eq!(answer_codes(&answer), (json!(6), json!(8)));
    assert_eq!(
        answer["serverMessage"],
        "the server could not create the file (read-only storage)"
    );
    assert_eq!(answer["files"][0]["status"], 2);
    assert_eq!(answer["files"][1]["status"], 6);
    let info = terminal(&server.registry, &plan.keys[1]).await;
    assert_eq!(codes(&info), (6, 8));

    // A new upload while read-only: the same clean refusal.
    let body = MultipartBody::new()
        .file("late.txt", "text/plain", b"late")
        .finish();
    let response = server.post_upload("key=rolate", &body).await;
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(answer_codes(&response.json()), (json!(6), json!(8)));

    assert!(disk.remount("rw"), "remount read-write");
    assert_eq!(list_files(&uploads), [plan.files[0].name.clone()]);
    assert_eq!(
        sha256(&std::fs::read(uploads.join(&plan.files[0].name)).unwrap()),
        plan.files[0].sha
    );
    assert_empty(&temp).await;
    assert_eq!(server.post_upload("key=rwagain", &body).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_failures_are_500_status_6_error_6_and_leave_nothing() {
    let body = MultipartBody::new()
        .file("target", "application/octet-stream", &pattern(50_000, 26))
        .finish();

    // A temp folder on another file system: the final rename crosses devices (EXDEV).
    if let Some(other_disk) = Tmpfs::mount("1m") {
        let server = TestServer::start(|layer| layer.temp_dir(other_disk.path())).await;
        let response = server.post_upload("key=xdev", &body).await;
        assert_eq!(response.status, 500, "{response:?}");
        let answer = response.json();
        assert_eq!(answer_codes(&answer), (json!(6), json!(6)));
        assert_eq!(
            answer["serverMessage"],
            "the server could not save the file (I/O error)"
        );
        assert_eq!(codes(&terminal(&server.registry, "xdev").await), (6, 6));
        assert!(server.saved_files().is_empty());
        assert_empty(other_disk.path()).await;
        server.stop().await;
    }

    // The final name is a folder and the policy is to overwrite: rename(2) refuses.
    let server = TestServer::start(|layer| layer.overwrite(OverwritePolicy::Overwrite)).await;
    std::fs::create_dir_all(server.uploads().join("target").join("inside")).unwrap();
    let response = server.post_upload("key=ontodir", &body).await;
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(answer_codes(&response.json()), (json!(6), json!(6)));
    assert!(server.uploads().join("target").join("inside").is_dir());
    server.assert_no_temp_files().await;

    // With unique names, the folder is stepped around.
    let server = TestServer::start(|layer| layer).await;
    std::fs::create_dir_all(server.uploads().join("target")).unwrap();
    let response = server.post_upload("key=arounddir", &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(server.uploads().join("target (1)").is_file());
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_last_bytes_either_keeps_the_file_or_deletes_it() {
    const SEED: u64 = 0x00CA_9CE1;
    const ROUNDS: usize = 8;
    const PARALLEL: usize = 5;
    let server = TestServer::start(|layer| layer).await;
    let mut rng = XorShift::new(SEED);
    let (mut finished, mut canceled) = (0, 0);
    for round in 0..ROUNDS {
        let mut cases = Vec::new();
        for i in 0..PARALLEL {
            let k = format!("race{round}x{i}");
            let name = format!("{k}.bin");
            let content = pattern(rng.range(1_000, 64_000), rng.next_u64());
            let body = MultipartBody::new()
                .file(&name, "application/octet-stream", &content)
                .finish();
            // The closing delimiter is 43 bytes: small tails hold back only (part of) it.
            let tail = rng.range(1, 90);
            let delays = (rng.range(0, 3) as u64, rng.range(0, 3) as u64);
            cases.push((k, name, content, body, tail, delays));
        }
        let outcomes = join_all(cases.iter().map(|(k, _, _, body, tail, delays)| {
            let server = &server;
            async move {
                let mut request = server.open_upload(k, body).await;
                let split = body.bytes.len() - tail;
                request.write(&body.bytes[..split]).await;
                eventually("the file part started", || async {
                    matches!(server.status(k).await["status"].as_u64(), Some(1 | 2 | 9))
                })
                .await;
                let cancel = async {
                    tokio::time::sleep(Duration::from_millis(delays.0)).await;
                    server.command(k, "cancel").await
                };
                let finish = async {
                    tokio::time::sleep(Duration::from_millis(delays.1)).await;
                    request.write(&body.bytes[split..]).await;
                    request.response().await
                };
                let (_, response) = tokio::join!(cancel, finish);
                response
            }
        }))
        .await;
        for ((k, name, content, _, tail, _), response) in cases.iter().zip(outcomes) {
            let info = terminal(&server.registry, k).await;
            let path = server.uploads().join(name);
            let context = format!("seed {SEED:#x} round {round} {k} tail {tail}");
            match (response.status, codes(&info), path.exists()) {
                (200, (2, -1), true) => {
                    assert_eq!(response.json()["status"], 2, "{context}");
                    assert_eq!(sha256(&std::fs::read(&path).unwrap()), sha256(content));
                    finished += 1;
                }
                (409, (4, -1), false) => {
                    assert_eq!(response.json()["status"], 4, "{context}");
                    canceled += 1;
                }
                other => panic!("{context}: inconsistent outcome {other:?}: {response:?}"),
            }
        }
        server.assert_no_temp_files().await;
    }
    println!("cancel races: {finished} finished first, {canceled} canceled");
    server_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_uploads_stalled_anywhere() {
    let server = TestServer::start(|layer| layer.max_file_size(None)).await;
    let mut rng = XorShift::new(27);
    let plan = plan(&mut rng, "stall", 2);
    let second = &plan.files[1];
    let first = &plan.files[0];
    // (key list, bytes sent before stalling, key to cancel, expected final status per key)
    let preamble = format!("--{BOUNDARY}\r\nContent-Dispos");
    let cases: Vec<(String, Vec<u8>, String, Vec<u8>)> = vec![
        ("cpre".into(), Vec::new(), "cpre".into(), vec![4]),
        (
            "chead".into(),
            preamble.into_bytes(),
            "chead".into(),
            vec![4],
        ),
        (
            "cmid".into(),
            plan.bytes[..first.header_end + 10].to_vec(),
            "cmid".into(),
            vec![4],
        ),
        (
            "cb1;cb2".into(),
            plan.bytes[..second.header_end - 1].to_vec(),
            "cb2".into(),
            vec![2, 4],
        ),
    ];
    let total = plan.bytes.len() as u64;
    let results = join_all(cases.iter().map(|(keys, sent, cancel, _)| {
        let server = &server;
        async move {
            let mut request = StreamingRequest::open(
                server.addr,
                "POST",
                &format!("/upload?key={keys}"),
                &MultipartBody::new().headers(),
                Some(total),
            )
            .await;
            request.write(sent).await;
            let first_key = keys.split(';').next().unwrap();
            eventually("registered", || async {
                server.status(first_key).await["status"] != 3
            })
            .await;
            if keys.contains(';') {
                eventually("the first file is stored", || async {
                    server.status(first_key).await["status"] == 2
                })
                .await;
            }
            let asked = server.command(cancel, "cancel").await;
            assert!(
                matches!(asked["status"].as_u64(), Some(0 | 1)),
                "{keys}: {asked}"
            );
            let started = Instant::now();
            let response = request.response_now().await;
            (response, started.elapsed())
        }
    }))
    .await;
    for ((keys, _, _, expected), (response, took)) in cases.iter().zip(results) {
        assert_eq!(response.status, 409, "{keys}: {response:?}");
        assert!(
            took < Duration::from_secs(2),
            "{keys}: the cancel took {took:?}"
        );
        for (k, status) in keys.split(';').zip(expected) {
            let info = terminal(&server.registry, k).await;
            assert_eq!(codes(&info).0, *status, "{keys}: {k}");
        }
    }
    assert_eq!(server.saved_files(), std::slice::from_ref(&first.name));
    server.assert_no_temp_files().await;
    server_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_posts_racing_for_one_key_get_exactly_one_409() {
    const RACES: usize = 16;
    let server = TestServer::start(|layer| layer).await;
    let content = pattern(40_000, 28);
    let races = join_all((0..RACES).map(|i| {
        let server = &server;
        let content = &content;
        async move {
            let k = format!("dup{i}");
            let body = MultipartBody::new()
                .file(&format!("{k}.bin"), "application/octet-stream", content)
                .finish();
            let barrier = tokio::sync::Barrier::new(2);
            let open = || async {
                barrier.wait().await;
                let mut request = server.open_upload(&k, &body).await;
                request.write(&body.bytes[..1_000]).await;
                request
            };
            let (mut a, mut b) = tokio::join!(open(), open());
            let within = Duration::from_secs(10);
            let (refused, winner) = tokio::select! {
                Some(answer) = a.early_response(within) => (answer, b),
                Some(answer) = b.early_response(within) => (answer, a),
            };
            let mut winner = winner;
            let second_refusal = winner.early_response(Duration::from_millis(150)).await;
            winner.write(&body.bytes[1_000..]).await;
            (k, refused, second_refusal, winner.response().await)
        }
    }))
    .await;
    for (k, refused, second_refusal, response) in races {
        assert_eq!(refused.status, 409, "{k}: {refused:?}");
        assert_eq!(refused.json()["error"], "upload_in_progress", "{k}");
        assert!(
            second_refusal.is_none(),
            "{k}: two refusals {second_refusal:?}"
        );
        assert_eq!(response.status, 200, "{k}: {response:?}");
        assert_eq!(codes(&terminal(&server.registry, &k).await), (2, -1));
        let saved = std::fs::read(server.uploads().join(format!("{k}.bin"))).unwrap();
        assert_eq!(sha256(&saved), sha256(&content));
    }
    assert_eq!(server.saved_files().len(), RACES, "one file per key");
    server.assert_no_temp_files().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_lets_uploads_end_with_a_terminal_status() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let temp = uploads.join(DEFAULT_TEMP_SUBDIR);
    let server = TestServer::start(|layer| {
        layer
            .upload_dir(&uploads)
            .max_file_size(None)
            .idle_timeout(Some(Duration::from_millis(600)))
    })
    .await;
    let (addr, registry) = (server.addr, server.registry.clone());
    let mut streaming = Vec::new();
    for i in 0..4u64 {
        let content = pattern(300_000, 30 + i);
        let body = MultipartBody::new()
            .file(&format!("s{i}.bin"), "application/octet-stream", &content)
            .finish();
        let mut request = StreamingRequest::open(
            addr,
            "POST",
            &format!("/upload?key=live{i}"),
            &body.headers(),
            Some(body.bytes.len() as u64),
        )
        .await;
        request.write(&body.bytes[..50_000]).await;
        let feeder = tokio::spawn(async move {
            for piece in body.bytes[50_000..].chunks(16 * 1024) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                request.write(piece).await;
            }
            request.response().await
        });
        streaming.push((
            format!("live{i}"),
            format!("s{i}.bin"),
            sha256(&content),
            feeder,
        ));
    }
    let mut stalled = Vec::new();
    for i in 0..3 {
        let body = MultipartBody::new()
            .file(
                "never.bin",
                "application/octet-stream",
                &pattern(100_000, 40),
            )
            .finish();
        let mut request = StreamingRequest::open(
            addr,
            "POST",
            &format!("/upload?key=stalled{i}"),
            &body.headers(),
            Some(body.bytes.len() as u64),
        )
        .await;
        request.write(&body.bytes[..20_000]).await;
        stalled.push((format!("stalled{i}"), tokio::spawn(request.response_now())));
    }
    // A connection whose request head was not read yet is simply closed by the shutdown:
    // wait until every upload is the layer's.
    let keys = streaming
        .iter()
        .map(|(k, ..)| k)
        .chain(stalled.iter().map(|(k, _)| k));
    for k in keys {
        eventually("registered", || async {
            registry.snapshot(&key(k)).await.unwrap().is_some()
        })
        .await;
    }
    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the graceful shutdown waited for the uploads, then ended: {took:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
    for (k, name, sha, feeder) in streaming {
        let response = feeder.await.unwrap();
        assert_eq!(response.status, 200, "{k}: {response:?}");
        assert_eq!(codes(&terminal(&registry, &k).await), (2, -1), "{k}");
        assert_eq!(sha256(&std::fs::read(uploads.join(name)).unwrap()), sha);
    }
    for (k, waiter) in stalled {
        let response = waiter.await.unwrap();
        assert_eq!(response.status, 408, "{k}: {response:?}");
        assert_eq!(codes(&terminal(&registry, &k).await), (6, 7), "{k}");
    }
    assert_eq!(list_files(&uploads).len(), 4, "no orphan, no partial file");
    assert_empty(&temp).await;
    assert_eq!(registry.in_flight(), 0);
}

/// Plants a temp file as a crash would leave it, `age` old.
fn plant(path: &Path, age: Duration) {
    std::fs::write(path, pattern(10_000, 41)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_sweeps_what_a_crash_left_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let temp = uploads.join(DEFAULT_TEMP_SUBDIR);
    std::fs::create_dir_all(&temp).unwrap();
    let hour = Duration::from_secs(3600);
    for name in [".tu-crash1.part", ".tu-crash2.part", ".tu-AbC123.part"] {
        plant(&temp.join(name), hour);
    }
    plant(&temp.join(".tu-young.part"), Duration::ZERO);
    plant(&temp.join("someone-else.part"), hour);
    plant(&temp.join(".tu-crash.partial"), hour);
    std::fs::create_dir(temp.join(".tu-dir.part")).unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, b"not ours").unwrap();
    std::os::unix::fs::symlink(&outside, temp.join(".tu-link.part")).unwrap();
    plant(&uploads.join(".tu-in-upload-dir.part"), hour);

    let mut layer: Option<UploadLayer> = None;
    let server = TestServer::start(|configured| {
        let configured = configured.upload_dir(&uploads);
        layer = Some(configured.clone());
        configured
    })
    .await;
    let swept = layer.unwrap().sweep_orphans().await.unwrap();
    assert_eq!(swept, 3);
    let mut left = list_files(&temp);
    left.sort();
    assert_eq!(
        left,
        [".tu-crash.partial", ".tu-young.part", "someone-else.part"],
        "only old `.tu-*.part` files are the layer's"
    );
    assert!(temp.join(".tu-dir.part").is_dir());
    assert!(temp.join(".tu-link.part").exists() && outside.exists());
    assert!(uploads.join(".tu-in-upload-dir.part").exists());
    let body = MultipartBody::new()
        .file("fresh.txt", "text/plain", b"after the restart")
        .finish();
    assert_eq!(server.post_upload("key=restart", &body).await.status, 200);
    assert!(uploads.join("fresh.txt").is_file());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_too_young_at_the_first_sweep_are_swept_later() {
    // A crash, then a prompt restart (a supervisor): the crash's temp files are seconds old
    // when the first upload triggers the first sweep.
    let server = TestServer::start(|layer| layer.orphan_age(Duration::from_millis(300))).await;
    std::fs::create_dir_all(server.temp()).unwrap();
    let orphan = server.temp().join(".tu-crashed.part");
    plant(&orphan, Duration::ZERO);
    let body = MultipartBody::new()
        .file("a.txt", "text/plain", b"a")
        .finish();
    assert_eq!(server.post_upload("key=first", &body).await.status, 200);
    // Uploads keep coming for 3 s; the orphan is older than the orphan age after 0.3 s.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = 0;
    while orphan.exists() && Instant::now() < deadline {
        i += 1;
        let response = server.post_upload(&format!("key=later{i}"), &body).await;
        assert_eq!(response.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!orphan.exists(), "the crash's temp file is never deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_fires_wherever_the_client_stalls() {
    let server =
        TestServer::start(|layer| layer.idle_timeout(Some(Duration::from_millis(300)))).await;
    let mut rng = XorShift::new(42);
    let plan = plan(&mut rng, "idle", 2);
    let (first, second) = (&plan.files[0], &plan.files[1]);
    let cases: Vec<(&str, bool, &[u8], Vec<u8>)> = vec![
        ("idlepre", false, &[], vec![6]),
        (
            "idlehead",
            false,
            &plan.bytes[..first.part_start + DELIMITER_LINE + 5],
            vec![6],
        ),
        (
            "idlemid",
            false,
            &plan.bytes[..first.header_end + 5],
            vec![6],
        ),
        (
            "idlechunked",
            true,
            &plan.bytes[..first.header_end + 5],
            vec![6],
        ),
        (
            "idleb1;idleb2",
            false,
            &plan.bytes[..second.header_end + 1],
            vec![2, 6],
        ),
    ];
    let total = plan.bytes.len() as u64;
    let results = join_all(cases.iter().map(|(keys, chunked, sent, _)| {
        let server = &server;
        async move {
            let length = (!chunked).then_some(total);
            let mut request = StreamingRequest::open(
                server.addr,
                "POST",
                &format!("/upload?key={keys}"),
                &MultipartBody::new().headers(),
                length,
            )
            .await;
            request.write(sent).await;
            let started = Instant::now();
            (request.response_now().await, started.elapsed())
        }
    }))
    .await;
    for ((keys, _, _, expected), (response, took)) in cases.iter().zip(results) {
        assert_eq!(response.status, 408, "{keys}: {response:?}");
        assert!(took >= Duration::from_millis(250), "{keys}: {took:?}");
        assert!(took < Duration::from_secs(5), "{keys}: {took:?}");
        let answer = response.json();
        assert_eq!(answer_codes(&answer), (json!(6), json!(7)), "{keys}");
        for (k, status) in keys.split(';').zip(expected) {
            assert_eq!(
                terminal(&server.registry, k).await.status.code(),
                *status,
                "{k}"
            );
        }
    }
    assert_eq!(server.saved_files(), std::slice::from_ref(&first.name));
    server.assert_no_temp_files().await;
    server_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_stalled_uploads_starves_nothing_and_gets_503_beyond_the_limit() {
    const LIMIT: usize = 8;
    const STALLED: usize = 24;
    let server = TestServer::start(|layer| layer.max_concurrent_uploads(LIMIT)).await;
    let body = MultipartBody::new()
        .file(
            "slow.bin",
            "application/octet-stream",
            &pattern(100_000, 43),
        )
        .finish();
    let attempts = join_all((0..STALLED).map(|i| {
        let server = &server;
        let body = &body;
        async move {
            let mut request = StreamingRequest::open(
                server.addr,
                "POST",
                &format!("/upload?key=loris{i}"),
                &body.headers(),
                Some(body.bytes.len() as u64),
            )
            .await;
            request.write(&body.bytes[..100]).await;
            let early = request.early_response(Duration::from_millis(500)).await;
            (request, early)
        }
    }))
    .await;
    let mut holding = Vec::new();
    let mut refused = 0;
    for (request, early) in attempts {
        match early {
            Some(response) => {
                assert_eq!(response.status, 503, "{response:?}");
                assert_eq!(response.json()["error"], "too_many_uploads");
                refused += 1;
            }
            None => holding.push(request),
        }
    }
    assert_eq!(holding.len(), LIMIT, "exactly the limit streams");
    assert_eq!(refused, STALLED - LIMIT);
    assert_eq!(server.registry.in_flight(), LIMIT);
    // Everything else is answered at once.
    for _ in 0..5 {
        let started = Instant::now();
        server_still_answers(&server).await;
        let status = server.status("loris0").await["status"].as_u64().unwrap();
        assert!(status <= 3, "{status}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "starved: {took:?}");
    }
    let extra = server.post_upload("key=lorisextra", &body).await;
    assert_eq!(extra.status, 503, "{extra:?}");
    for request in holding {
        request.disconnect();
    }
    eventually("the slots are free", || async {
        server.registry.in_flight() == 0
    })
    .await;
    assert_eq!(
        server.post_upload("key=lorisafter", &body).await.status,
        200
    );
    server.assert_no_temp_files().await;
}
