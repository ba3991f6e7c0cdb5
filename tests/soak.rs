//! Soak: mixed load against one server in this process, then a check that nothing leaked.
//!
//! Not part of `cargo test` (it is ignored); run it with `scripts/soak [MINUTES]` (default
//! 10) or `scripts/soak --quick` (1 minute). `SOAK_SECONDS` and `SOAK_SEED` drive it.
//!
//! Workers loop until the time is up, each picking an operation with a seeded xorshift:
//! uploads of random sizes (some batches, some over the limit, Content-Length or chunked),
//! cancels, disconnects, status polls and pass-through requests. Every operation checks its
//! own outcome (HTTP answer, terminal status in the registry, the stored file's SHA-256); at
//! the end the soak checks that no upload is in flight, no temp file is left, the kept files
//! still match, and that RSS and open file descriptors came back near their baseline. It
//! prints a summary and fails (non-zero exit) on any problem.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tower_upload_state::{MemoryStore, UploadKey, UploadRegistry};

const WORKERS: usize = 16;
const MAX_FILE: u64 = 2 << 20;
/// Every n-th stored file is kept to the end and checked again; the others are deleted once
/// checked, so a long soak does not fill the disk.
const KEEP_EVERY: u64 = 50;

#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, u64>,
    failures: Vec<String>,
    bytes_uploaded: u64,
    kept: Vec<(String, String)>,
    slowest_pass_through: Duration,
}

struct Shared {
    server: TestServer,
    tally: Mutex<Tally>,
    recent_keys: Mutex<VecDeque<String>>,
}

impl Shared {
    fn count(&self, op: &'static str) {
        *self.tally.lock().unwrap().ops.entry(op).or_default() += 1;
    }

    fn fail(&self, message: String) {
        let mut tally = self.tally.lock().unwrap();
        if tally.failures.len() < 50 {
            eprintln!("soak failure: {message}");
        }
        tally.failures.push(message);
    }

    fn remember(&self, key: &str) {
        let mut recent = self.recent_keys.lock().unwrap();
        recent.push_back(key.to_owned());
        if recent.len() > 1000 {
            recent.pop_front();
        }
    }

    async fn status(&self, key: &str) -> serde_json::Value {
        self.server.status(key).await
    }

    /// Waits (bounded) for a terminal status; the status and error codes.
    async fn terminal(&self, key: &str) -> Result<(u64, i64), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.status(key).await;
            let code = status["status"].as_u64().unwrap_or(99);
            if matches!(code, 2 | 4..=8) {
                return Ok((code, status["error"].as_i64().unwrap_or(99)));
            }
            if Instant::now() > deadline {
                return Err(format!("{key}: no terminal status: {status}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

/// One upload request of `sizes.len()` files; checks the answer, the registry and the files.
async fn upload(
    shared: &Shared,
    rng: &mut XorShift,
    tag: &str,
    sizes: &[u64],
) -> Result<(), String> {
    let server = &shared.server;
    let mut body = MultipartBody::new();
    let mut files = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let content = pattern(size as usize, rng.next_u64());
        let name = format!("{tag}-{i}.bin");
        body = body.file_field(
            &format!("f_{i}__frm_if"),
            &name,
            "application/octet-stream",
            &content,
        );
        files.push((format!("{tag}k{i}"), name, sha256(&content), size));
    }
    if rng.chance(20) {
        body = body.field("note", "a field after the files");
    }
    let body = body.finish();
    let keys: Vec<&str> = files.iter().map(|(k, ..)| k.as_str()).collect();
    let too_big = sizes.iter().any(|&size| size > MAX_FILE);
    let chunked = rng.chance(40);
    let length = (!chunked).then_some(body.bytes.len() as u64);
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        &format!("/upload?key={}&cid=soak", keys.join(";")),
        &body.headers(),
        length,
    )
    .await;
    let mut sent = 0;
    while sent < body.bytes.len() {
        let piece = rng.range(1_000, 256 * 1024).min(body.bytes.len() - sent);
        request.write(&body.bytes[sent..sent + piece]).await;
        sent += piece;
    }
    let response = request.response().await;
    for key in &keys {
        shared.remember(key);
    }
    if too_big {
        check(response.status == 413, || {
            format!("{tag}: oversize answered {response:?}")
        })?;
        let over = files
            .iter()
            .position(|(.., size)| *size > MAX_FILE)
            .unwrap();
        let (status, error) = shared.terminal(&files[over].0).await?;
        check((status, error) == (5, 2), || {
            format!("{tag}: oversize ended {status}/{error}")
        })?;
        for (key, name, ..) in files.iter().skip(over) {
            let path = server.uploads().join(name);
            check(!path.exists(), || format!("{tag}: {key} kept {path:?}"))?;
        }
        // Files before the oversize one in a batch are kept: delete them.
        for (_, name, ..) in files.iter().take(over) {
            let _ = std::fs::remove_file(server.uploads().join(name));
        }
        return Ok(());
    }
    check(response.status == 200, || {
        format!("{tag}: answered {response:?}")
    })?;
    for (key, name, sha, size) in &files {
        let (status, error) = shared.terminal(key).await?;
        check((status, error) == (2, -1), || {
            format!("{tag}: {key} ended {status}/{error}")
        })?;
        let path = server.uploads().join(name);
        let saved = std::fs::read(&path).map_err(|e| format!("{tag}: {key}: {path:?}: {e}"))?;
        check(&sha256(&saved) == sha, || {
            format!("{tag}: {key}: content differs")
        })?;
        shared.tally.lock().unwrap().bytes_uploaded += size;
        if rng.next_u64().is_multiple_of(KEEP_EVERY) {
            shared
                .tally
                .lock()
                .unwrap()
                .kept
                .push((name.clone(), sha.clone()));
        } else {
            std::fs::remove_file(&path).map_err(|e| format!("{path:?}: {e}"))?;
        }
    }
    Ok(())
}

async fn cancel(shared: &Shared, rng: &mut XorShift, tag: &str) -> Result<(), String> {
    let server = &shared.server;
    let key = format!("{tag}k");
    let name = format!("{tag}.bin");
    let body = MultipartBody::new()
        .file(
            &name,
            "application/octet-stream",
            &pattern(1 << 20, rng.next_u64()),
        )
        .finish();
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        &format!("/upload?key={key}"),
        &body.headers(),
        Some(body.bytes.len() as u64),
    )
    .await;
    request
        .write(&body.bytes[..rng.range(1_000, 200_000)])
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.status(&key).await["status"] != 1 {
        check(Instant::now() < deadline, || {
            format!("{key}: never started")
        })?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.command(&key, "cancel").await;
    let response = request.response_now().await;
    shared.remember(&key);
    check(response.status == 409, || {
        format!("{key}: cancel answered {response:?}")
    })?;
    let (status, error) = shared.terminal(&key).await?;
    check((status, error) == (4, -1), || {
        format!("{key}: cancel ended {status}/{error}")
    })?;
    let path = server.uploads().join(&name);
    check(!path.exists(), || format!("{key}: canceled but kept"))
}

async fn disconnect(shared: &Shared, rng: &mut XorShift, tag: &str) -> Result<(), String> {
    let server = &shared.server;
    let key = format!("{tag}k");
    let name = format!("{tag}.bin");
    let content = pattern(rng.range(1_000, 1 << 20), rng.next_u64());
    let body = MultipartBody::new()
        .file(&name, "application/octet-stream", &content)
        .finish();
    // Anywhere before the file's last byte: the part can never be complete.
    let cut = rng.range(0, body.bytes.len() - 2 - 4 - BOUNDARY.len() - 2);
    let mut request = StreamingRequest::open(
        server.addr,
        "POST",
        &format!("/upload?key={key}"),
        &body.headers(),
        (!rng.chance(30)).then_some(body.bytes.len() as u64),
    )
    .await;
    request.write(&body.bytes[..cut]).await;
    request.disconnect();
    shared.remember(&key);
    let (status, error) = shared.terminal(&key).await?;
    check((status, error) == (8, -1), || {
        format!("{key}: disconnect ended {status}/{error}")
    })?;
    check(!server.uploads().join(&name).exists(), || {
        format!("{key}: kept")
    })
}

async fn poll(shared: &Shared, rng: &mut XorShift) -> Result<(), String> {
    let key = {
        let recent = shared.recent_keys.lock().unwrap();
        if recent.is_empty() || rng.chance(30) {
            widget_key(rng.next_u64())
        } else {
            recent[rng.range(0, recent.len())].clone()
        }
    };
    let command = if rng.chance(90) { "status" } else { "fileSize" };
    let answer = shared.server.command(&key, command).await;
    check(answer.is_object(), || format!("{key}: {answer}"))
}

async fn pass_through(shared: &Shared, rng: &mut XorShift) -> Result<(), String> {
    let started = Instant::now();
    let addr = shared.server.addr;
    if rng.chance(50) {
        let home = send(addr, "GET", "/", &[], b"").await;
        check(home.body == b"home", || format!("GET /: {home:?}"))?;
    } else {
        let payload = pattern(rng.range(0, 200_000), rng.next_u64());
        let headers = [(
            "content-type".to_owned(),
            "application/octet-stream".to_owned(),
        )];
        let echo = send(addr, "POST", "/echo", &headers, &payload).await;
        check(
            echo.header("x-echo-sha256") == Some(sha256(&payload).as_str()),
            || format!("echo: {echo:?}"),
        )?;
    }
    let took = started.elapsed();
    let mut tally = shared.tally.lock().unwrap();
    tally.slowest_pass_through = tally.slowest_pass_through.max(took);
    Ok(())
}

async fn worker(shared: Arc<Shared>, id: usize, seed: u64, until: Instant) {
    let mut rng = XorShift::new(seed ^ (id as u64).wrapping_mul(0x1234_5678_9ABC));
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let tag = format!("w{id}n{n}");
        let roll = rng.range(0, 100);
        let op: &'static str = match roll {
            0..=34 => "upload",
            35..=39 => "batch",
            40..=47 => "oversize",
            48..=55 => "cancel",
            56..=65 => "disconnect",
            66..=85 => "status poll",
            _ => "pass-through",
        };
        let mut op_rng = XorShift::new(rng.next_u64());
        let task_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let shared = &*task_shared;
            let rng = &mut op_rng;
            let small = |rng: &mut XorShift| match rng.range(0, 10) {
                0..=5 => rng.range(0, 16 * 1024) as u64,
                6..=8 => rng.range(16 * 1024, 512 * 1024) as u64,
                _ => rng.range(512 * 1024, MAX_FILE as usize + 1) as u64,
            };
            match op {
                "upload" => {
                    let size = small(rng);
                    upload(shared, rng, &tag, &[size]).await
                }
                "batch" => {
                    let sizes: Vec<u64> = (0..rng.range(2, 5)).map(|_| small(rng)).collect();
                    upload(shared, rng, &tag, &sizes).await
                }
                "oversize" => {
                    let over = rng.range(MAX_FILE as usize + 1, 3 << 20) as u64;
                    let sizes = if rng.chance(25) {
                        vec![small(rng), over]
                    } else {
                        vec![over]
                    };
                    upload(shared, rng, &tag, &sizes).await
                }
                "cancel" => cancel(shared, rng, &tag).await,
                "disconnect" => disconnect(shared, rng, &tag).await,
                "status poll" => poll(shared, rng).await,
                _ => pass_through(shared, rng).await,
            }
        });
        shared.count(op);
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => shared.fail(format!("{op}: {message}")),
            Ok(Err(join)) => shared.fail(format!("{op} w{id}n{n} panicked: {join}")),
            Err(_) => shared.fail(format!("{op} w{id}n{n} took over 60 s")),
        }
    }
}

fn seconds_from_env() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run it with scripts/soak [MINUTES] (not part of cargo test)"]
async fn soak() {
    let seconds = seconds_from_env();
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let registry = UploadRegistry::with_store(
        MemoryStore::new()
            .with_capacity(5_000)
            .with_retention(Duration::from_secs(60)),
    );
    let server = TestServer::start_with_registry(registry, |layer| {
        layer
            .max_file_size(Some(MAX_FILE))
            .idle_timeout(Some(Duration::from_secs(10)))
    })
    .await;
    let uploads = server.uploads();
    let temp = server.temp();
    let shared = Arc::new(Shared {
        server,
        tally: Mutex::default(),
        recent_keys: Mutex::default(),
    });
    // Warm the server up (first-use allocations, the orphan sweep) before the baseline.
    let warm = MultipartBody::new()
        .file("warm.txt", "text/plain", b"warm")
        .finish();
    let _ = shared.server.post_upload("key=warm", &warm).await;
    let _ = std::fs::remove_file(uploads.join("warm.txt"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss_base, fds_base) = (rss_kib(), open_fds());
    println!(
        "soak: {seconds} s, seed {seed}, {WORKERS} workers; baseline RSS {rss_base} KiB, {fds_base} fds"
    );

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let sampler = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut next_report = 30;
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let elapsed = started.elapsed().as_secs();
                samples.push((elapsed, rss_kib(), open_fds()));
                if elapsed >= next_report {
                    next_report += 30;
                    let tally = shared.tally.lock().unwrap();
                    let ops: u64 = tally.ops.values().sum();
                    println!(
                        "  {elapsed:>5} s: {ops} operations, {} failures, RSS {} KiB, {} fds, {} in flight",
                        tally.failures.len(),
                        rss_kib(),
                        open_fds(),
                        shared.server.registry.in_flight()
                    );
                }
            }
            samples
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| tokio::spawn(worker(Arc::clone(&shared), id, seed, until)))
        .collect();
    for worker in workers {
        worker.await.expect("a worker");
    }
    let samples = sampler.await.unwrap();
    let took = started.elapsed();

    // Settle: deletions run on the blocking pool; idle connections close.
    let settle = Instant::now() + Duration::from_secs(10);
    while (shared.server.registry.in_flight() > 0 || !list_files(&temp).is_empty())
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_end, fds_end) = (rss_kib(), open_fds());
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(rss_end);
    // RSS once warm: the first sample after a quarter of the run.
    let warm_at = (seconds / 4).max(1);
    let rss_warm = samples
        .iter()
        .find(|s| s.0 >= warm_at)
        .map_or(rss_end, |s| s.1);
    let fds_peak = samples.iter().map(|s| s.2).max().unwrap_or(fds_end);

    let mut problems = Vec::new();
    let tally = std::mem::take(&mut *shared.tally.lock().unwrap());
    if !tally.failures.is_empty() {
        problems.push(format!("{} operations failed", tally.failures.len()));
    }
    let in_flight = shared.server.registry.in_flight();
    if in_flight > 0 {
        problems.push(format!("{in_flight} uploads still in flight"));
    }
    let temp_left = list_files(&temp);
    if !temp_left.is_empty() {
        problems.push(format!("temp files left: {temp_left:?}"));
    }
    let mut kept_ok = 0;
    for (name, sha) in &tally.kept {
        match std::fs::read(uploads.join(name)) {
            Ok(saved) if sha256(&saved) == *sha => kept_ok += 1,
            Ok(_) => problems.push(format!("{name} changed")),
            Err(error) => problems.push(format!("{name}: {error}")),
        }
    }
    let on_disk = list_files(&uploads).len();
    if on_disk != tally.kept.len() {
        problems.push(format!(
            "{on_disk} files in the upload folder, {} expected",
            tally.kept.len()
        ));
    }
    if fds_end > fds_base + 4 {
        problems.push(format!("open fds {fds_base} -> {fds_end}"));
    }
    // Allocators keep freed memory, so "near" is generous; growth after warm-up means a leak.
    if rss_end > rss_warm + 32 * 1024 {
        problems.push(format!(
            "RSS grew {rss_warm} -> {rss_end} KiB after warm-up"
        ));
    }
    if rss_end > rss_base + 256 * 1024 {
        problems.push(format!("RSS {rss_base} -> {rss_end} KiB"));
    }
    // The registry still answers for a recent key.
    let last = shared.recent_keys.lock().unwrap().back().cloned();
    if let Some(key) = last {
        let known = shared
            .server
            .registry
            .snapshot(&UploadKey::parse(&key).unwrap())
            .await
            .unwrap();
        if known.is_none() {
            problems.push(format!("the most recent key {key} is unknown"));
        }
    }

    let total: u64 = tally.ops.values().sum();
    println!(
        "\n==== soak summary ({:.0} s, seed {seed}) ====",
        took.as_secs_f64()
    );
    for (op, count) in &tally.ops {
        println!("  {op:<13} {count:>8}");
    }
    println!(
        "  {:<13} {total:>8} ({:.0}/s)",
        "total",
        total as f64 / took.as_secs_f64()
    );
    println!(
        "  stored and verified {:.1} MiB; {kept_ok}/{} kept files verified again at the end",
        tally.bytes_uploaded as f64 / f64::from(1 << 20),
        tally.kept.len()
    );
    println!(
        "  slowest pass-through request: {:?}",
        tally.slowest_pass_through
    );
    println!(
        "  RSS KiB: baseline {rss_base}, warm {rss_warm}, peak {peak}, end {rss_end} ({:+} vs baseline, {:+} vs warm)",
        rss_end as i64 - rss_base as i64,
        rss_end as i64 - rss_warm as i64
    );
    println!("  open fds: baseline {fds_base}, peak {fds_peak}, end {fds_end}");
    println!(
        "  in flight at the end: {in_flight}; temp files left: {}",
        temp_left.len()
    );
    println!("  failures: {}", tally.failures.len());
    for failure in tally.failures.iter().take(10) {
        println!("    - {failure}");
    }
    if problems.is_empty() {
        println!("==== soak: PASS ====");
    } else {
        println!("==== soak: FAIL ====");
        for problem in &problems {
            println!("  * {problem}");
        }
        panic!("soak failed: {}", problems.join("; "));
    }
}
