//! Pushed progress at scale: 10 000 concurrent `command=watch` streams (Server-Sent Events)
//! on one instance, spread over 100 uploads streaming in the same process.
//!
//! Run with: `cargo bench --bench sse` (`-- --watchers N --uploads N --rounds N` to change
//! the shape). In process: each stream is the status service's own response body, read by a
//! task that stands in for the connection (no sockets: 10 000 of them would measure the
//! kernel, and need 20 000 descriptors). It prints one Markdown row set for BENCHMARKS.md:
//!
//! - memory per watcher: the growth of the process's RSS while the streams are open, over
//!   their number (the watch, its task, its channel, its bells, plus the reader task);
//! - CPU per update fanned out: the process's CPU time (every thread, from
//!   `/proc/self/task/*/schedstat`) while status changes are pushed, over the events
//!   delivered, and over the upload updates made;
//! - latency p50/p99 from a change on the upload to the event read from the stream: for a
//!   change of status or message (pushed at once), and for bytes alone (coalesced to the
//!   watch interval, 250 ms by default: that is the price of coalescing, by design).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};
use tower_upload::state::UploadHandle;
use tower_upload::{UploadInfo, UploadKey, UploadRegistry, UploadStatusService};

struct Options {
    watchers: usize,
    uploads: usize,
    rounds: usize,
    interval: Duration,
}

fn options() -> Options {
    let mut options = Options {
        watchers: 10_000,
        uploads: 100,
        rounds: 20,
        interval: Duration::from_millis(250),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--watchers" => options.watchers = value(),
            "--uploads" => options.uploads = value(),
            "--rounds" => options.rounds = value(),
            "--interval-ms" => options.interval = Duration::from_millis(value() as u64),
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU time of every thread of this process, in nanoseconds.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// What a reader saw: (round of a message event, when), (bytes value, when).
struct Seen {
    messages: Vec<(u64, Instant)>,
    bytes: Vec<(u64, Instant)>,
}

/// Reads one stream until it ends, noting when each message round and byte count arrived.
async fn read(body: tower_upload::status::ResponseBody) -> Seen {
    let mut seen = Seen {
        messages: Vec::new(),
        bytes: Vec::new(),
    };
    let mut body = body;
    let mut last_round = u64::MAX;
    let mut last_bytes = u64::MAX;
    while let Some(Ok(frame)) = body.frame().await {
        let at = Instant::now();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let text = std::str::from_utf8(&data).unwrap_or("");
        for event in text.split("\n\n").filter(|e| e.contains("data: ")) {
            if let Some(round) = field(event, "\"serverMessage\":\"m") {
                if round != last_round {
                    last_round = round;
                    seen.messages.push((round, at));
                }
            }
            if let Some(bytes) = field(event, "\"bytesUploaded\":") {
                if bytes != last_bytes {
                    last_bytes = bytes;
                    seen.bytes.push((bytes, at));
                }
            }
        }
    }
    seen
}

fn field(event: &str, prefix: &str) -> Option<u64> {
    let start = event.find(prefix)? + prefix.len();
    let digits: String = event[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    let registry = UploadRegistry::new();
    let mut status = UploadStatusService::new(registry.clone())
        .max_watchers(options.watchers)
        .watch_interval(options.interval);
    let mut uploads: Vec<UploadHandle> = Vec::new();
    for n in 0..options.uploads {
        let key = UploadKey::parse(&format!("bench{n:05}")).expect("key");
        let upload = registry.begin(UploadInfo::new(key)).await.expect("claim");
        upload.update(|info| info.size = Some(1 << 40));
        uploads.push(upload);
    }
    // Settle the allocator before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_bytes();
    let opened = Instant::now();
    let mut readers = Vec::with_capacity(options.watchers);
    for n in 0..options.watchers {
        let key = format!("bench{:05}", n % options.uploads);
        let request = Request::get(format!("/status?key={key}&command=watch"))
            .body(())
            .expect("request");
        let service = ServiceExt::<Request<()>>::ready(&mut status)
            .await
            .expect("ready");
        let response = service.call(request).await.expect("infallible");
        assert_eq!(response.status(), 200);
        readers.push(tokio::spawn(read(response.into_body())));
    }
    let open_time = opened.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = rss_bytes();
    assert_eq!(status.watchers(), options.watchers);
    let per_watcher = rss_open.saturating_sub(rss_before) as f64 / options.watchers as f64;

    // Idle: nothing changes; what the open streams cost by themselves (each looks at its
    // upload's counters once per interval).
    let idle_cpu_start = cpu_ns();
    let idle_wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu = cpu_ns() - idle_cpu_start;
    let idle_share = idle_cpu as f64 / idle_wall.elapsed().as_nanos() as f64;

    // Status/message changes, pushed at once: every upload changes once per round.
    let marks: Arc<Vec<AtomicU64>> =
        Arc::new((0..options.rounds).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let cpu_start = cpu_ns();
    let wall_start = Instant::now();
    for round in 0..options.rounds {
        marks[round].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        for upload in &uploads {
            upload.update(|info| info.server_message = Some(format!("m{round}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let push_cpu = cpu_ns() - cpu_start;
    let push_wall = wall_start.elapsed();

    // Bytes alone: coalesced to the interval.
    let byte_rounds = options.rounds.min(10);
    let mut byte_marks = Vec::new();
    let cpu_bytes_start = cpu_ns();
    for round in 0..byte_rounds {
        let at = Instant::now();
        for upload in &uploads {
            upload.add_bytes(1_000);
        }
        byte_marks.push((1_000 * (round as u64 + 1), at));
        tokio::time::sleep(options.interval + Duration::from_millis(50)).await;
    }
    let bytes_cpu = cpu_ns() - cpu_bytes_start;

    // No stream was dropped for lagging: every reader kept up.
    let still_open = status.watchers();
    // End every upload: the final events end the streams.
    for upload in uploads {
        upload.abandon().await;
    }
    let mut message_latency = Vec::new();
    let mut bytes_latency = Vec::new();
    let mut delivered = 0usize;
    let mut byte_events = 0usize;
    for reader in readers {
        let seen = reader.await.expect("reader");
        for (round, at) in seen.messages {
            let mark = epoch + Duration::from_nanos(marks[round as usize].load(Ordering::Relaxed));
            message_latency.push(at.duration_since(mark).as_secs_f64() * 1e3);
            delivered += 1;
        }
        for (bytes, at) in seen.bytes {
            if let Some((_, mark)) = byte_marks.iter().find(|(value, _)| *value == bytes) {
                bytes_latency.push(at.duration_since(*mark).as_secs_f64() * 1e3);
                byte_events += 1;
            }
        }
    }
    message_latency.sort_by(f64::total_cmp);
    bytes_latency.sort_by(f64::total_cmp);
    let expected = options.watchers * options.rounds;
    println!(
        "{} watchers over {} uploads (watch interval {} ms), in process, 2 worker threads",
        options.watchers,
        options.uploads,
        options.interval.as_millis()
    );
    println!();
    println!("| what | value |");
    println!("|---|---|");
    println!(
        "| open {} streams | {:.0} ms ({:.1} us each) |",
        options.watchers,
        open_time.as_secs_f64() * 1e3,
        open_time.as_secs_f64() * 1e6 / options.watchers as f64
    );
    println!(
        "| memory per watcher (RSS growth / streams) | {:.1} KiB |",
        per_watcher / 1024.0
    );
    println!(
        "| status changes pushed | {delivered} of {expected} events delivered ({} rounds x {} uploads x {} watchers each) |",
        options.rounds,
        options.uploads,
        options.watchers / options.uploads
    );
    println!("| streams still open after the changes (none dropped for lagging) | {still_open} |");
    println!(
        "| CPU per event delivered (status change fanned out) | {:.2} us |",
        push_cpu as f64 / 1e3 / delivered.max(1) as f64
    );
    println!(
        "| CPU per upload update (fanned out to {} watchers) | {:.0} us |",
        options.watchers / options.uploads,
        push_cpu as f64 / 1e3 / (options.rounds * options.uploads) as f64
    );
    println!(
        "| CPU while pushing status changes | {:.0} % of one core |",
        push_cpu as f64 / push_wall.as_nanos() as f64 * 100.0
    );
    println!(
        "| CPU with every stream open and idle | {:.1} % of one core ({:.2} us per stream per second) |",
        idle_share * 100.0,
        idle_share * 1e6 / options.watchers as f64
    );
    println!(
        "| CPU per event delivered, idle cost taken out | {:.2} us |",
        (push_cpu as f64 - idle_share * push_wall.as_nanos() as f64).max(0.0)
            / 1e3
            / delivered.max(1) as f64
    );
    println!(
        "| latency, status change -> event read, p50 / p99 | {:.2} / {:.2} ms |",
        percentile(&message_latency, 0.5),
        percentile(&message_latency, 0.99)
    );
    println!(
        "| latency, bytes -> event read (coalesced), p50 / p99 | {:.0} / {:.0} ms ({} events) |",
        percentile(&bytes_latency, 0.5),
        percentile(&bytes_latency, 0.99),
        byte_events
    );
    println!(
        "| CPU per progress event (bytes, polled at the interval) | {:.2} us |",
        bytes_cpu as f64 / 1e3 / byte_events.max(1) as f64
    );
}
