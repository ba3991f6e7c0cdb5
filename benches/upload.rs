//! The `upload` benchmark: `UploadLayer` against the baselines a user could write instead,
//! measured in the same run. Run it with `scripts/bench` (see `BENCHMARKS.md`); `cargo bench
//! --bench upload -- --help` lists the options.

mod support;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::args::{self, Mode, Options};
use support::client::{self, Source};
use support::inproc;
use support::load;
use support::nginx;
use support::report::{ratios, Report, Summary};
use support::server::{self, Server, KINDS, LIVE_KEY};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

fn main() -> ExitCode {
    let result = match args::parse() {
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
        Ok(Mode::Serve { kind, dir }) => server::serve(&kind, dir),
        Ok(Mode::UploadTo { addr, size }) => upload_to(&addr, size),
        Ok(Mode::Passthrough { requests }) => {
            // One line per case: the medians over this process's blocks.
            for (index, case) in inproc::passthrough(requests).iter().enumerate() {
                let diffs: Vec<f64> = case
                    .layered
                    .iter()
                    .zip(&case.bare)
                    .map(|(l, b)| l - b)
                    .collect();
                println!(
                    "{index} {} {} {}",
                    Summary::of(&case.bare).median,
                    Summary::of(&case.layered).median,
                    Summary::of(&diffs).median
                );
            }
            Ok(())
        }
        Ok(Mode::Bench(mut options)) => {
            if options.has_kind("nginx") {
                if let Err(why) = nginx::available() {
                    eprintln!("warning: no nginx column: {why}");
                    options.kinds.retain(|kind| kind != "nginx");
                }
            }
            bench(&options)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One upload to a server started by hand (`--serve`), e.g. while `perf record` watches it.
fn upload_to(addr: &str, size: u64) -> io::Result<()> {
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    let source = Source::create(None, size)?;
    let key = format!("manual{}", std::process::id());
    let outcome = client::upload(addr, &key, "manual.bin", source.path(), size)?;
    println!(
        "{} in {:.3} s: {:.0} MB/s; answer {}",
        outcome.status,
        outcome.elapsed.as_secs_f64(),
        size as f64 / outcome.elapsed.as_secs_f64() / 1e6,
        outcome.answer
    );
    Ok(())
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / MIB)
}

fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map_or("unknown CPU", |rest| {
            rest.trim_start_matches([' ', '\t', ':'])
        });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".to_owned(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{cores} cores ({model}), {memory} RAM, Linux {}",
        kernel.trim()
    )
}

fn bench(options: &Options) -> io::Result<()> {
    let started = Instant::now();
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| "?".to_owned());
    let header = format!(
        "# tower-upload benchmark results\n\n\
         - machine: {}\n- commit: {}, toolchain: {}, date: {}\n\
         - options: {}reps {}, sizes {}, concurrency {:?} x {}, kinds {}\n\
         - every figure is `median (min-max)` over the repetitions; ratios are the median \
         (min-max) of per-repetition ratios (each repetition runs every kind back to back, \
         in a rotating order)\n",
        machine(),
        env("BENCH_COMMIT"),
        env("BENCH_TOOLCHAIN"),
        env("BENCH_DATE"),
        if options.quick { "--quick, " } else { "" },
        options.reps,
        options
            .sizes
            .iter()
            .map(|&size| size_name(size))
            .collect::<Vec<_>>()
            .join(", "),
        options.concurrency,
        size_name(options.concurrent_size),
        options.kinds.join(", "),
    );
    println!("{header}");
    let mut report = Report::default();
    report.value(
        "options",
        json!({
            "quick": options.quick,
            "reps": options.reps,
            "sizes": options.sizes,
            "concurrency": options.concurrency,
            "concurrent_size": options.concurrent_size,
            "machine": machine(),
            "commit": env("BENCH_COMMIT"),
        }),
    );

    if options.runs("single") || options.runs("concurrency") {
        let single_sizes = options.sizes.iter().filter(|_| options.runs("single"));
        let concurrent = Some(options.concurrent_size).filter(|_| options.runs("concurrency"));
        let largest = single_sizes
            .copied()
            .chain(concurrent)
            .chain([1 << 20])
            .max()
            .unwrap_or(1 << 20);
        let made = Instant::now();
        let source = Source::create(options.source_dir.as_deref(), largest)?;
        println!(
            "source file: {} at {} ({:.1} s to make)\n",
            size_name(source.len()),
            source.path().display(),
            made.elapsed().as_secs_f64()
        );
        if options.runs("single") {
            single(&mut report, options, &source)?;
        }
        if options.runs("concurrency") {
            concurrency(&mut report, options, &source)?;
        }
    }
    if options.runs("passthrough") {
        passthrough(&mut report, options)?;
    }
    if options.runs("status") {
        status(&mut report, options)?;
    }
    if options.runs("churn") {
        churn(&mut report, options);
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.text(&format!(
        "Benchmark time (without the build): {elapsed:.0} s."
    ));
    report.value("elapsed_seconds", json!(elapsed));
    report.write(&options.out, &header)?;
    println!(
        "wrote {} and {}",
        options.out.with_extension("md").display(),
        options.out.with_extension("json").display()
    );
    Ok(())
}

/// A small upload, so that first-use costs (threads, buffers) are paid before measuring.
fn warm_up(server: &Server, source: &Source) -> io::Result<()> {
    for n in 0..2 {
        let key = format!("warmup{n}");
        let outcome = client::upload(
            server.addr,
            &key,
            &format!("warm{n}.bin"),
            source.path(),
            1 << 20,
        )?;
        if outcome.status != 200 {
            return Err(io::Error::other(format!(
                "{} warm-up: {} {}",
                server.kind, outcome.status, outcome.answer
            )));
        }
    }
    server.clear_files();
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

/// What one scenario run measured on the server.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// File bytes per second, in MB/s.
    mbps: f64,
    /// Server CPU seconds per GiB of file.
    cpu_per_gib: f64,
    /// The user-mode part of it (what the server's own code costs; the rest is mostly the
    /// kernel copying into the page cache and out of the socket).
    user_per_gib: f64,
    /// Minor page faults per MiB of file (fresh memory touched: on this VM, expensive).
    faults_per_mib: f64,
    /// VmRSS before the run, after the warm-up.
    idle_rss: f64,
    /// VmHWM during the run minus `idle_rss`.
    peak_growth: f64,
    /// VmRSS a second after the run.
    rss_after: f64,
}

/// Runs `uploads` simultaneous uploads of `size` bytes to a fresh server of `kind`.
fn measure(
    kind: &'static str,
    source: &Source,
    uploads: usize,
    size: u64,
    tag: &str,
) -> io::Result<Run> {
    let server = Server::start(kind)?;
    warm_up(&server, source)?;
    let idle_rss = server.rss() as f64;
    if !server.reset_peak_rss() {
        eprintln!("warning: cannot reset VmHWM; peaks include start-up");
    }
    let cpu = server.cpu();
    let user_cpu = server.user_cpu();
    let faults = server.minor_faults();
    let barrier = Barrier::new(uploads + 1);
    let (elapsed, outcomes) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..uploads)
            .map(|i| {
                let barrier = &barrier;
                let server = &server;
                scope.spawn(move || {
                    barrier.wait();
                    client::upload(
                        server.addr,
                        &format!("{tag}u{i}"),
                        &format!("{tag}-{i}.bin"),
                        source.path(),
                        size,
                    )
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let outcomes: Vec<io::Result<client::Outcome>> = clients
            .into_iter()
            .map(|client| {
                client
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("client panicked")))
            })
            .collect();
        (started.elapsed(), outcomes)
    });
    let cpu = server.cpu() - cpu;
    let user_cpu = server.user_cpu() - user_cpu;
    let faults = server.minor_faults() - faults;
    let peak = server.peak_rss() as f64;
    for outcome in outcomes {
        let outcome = outcome?;
        if outcome.status != 200 {
            return Err(io::Error::other(format!(
                "{kind}: {} {}",
                outcome.status, outcome.answer
            )));
        }
    }
    let stored = server.stored_bytes();
    // nginx deletes each body once answered (`client_body_in_file_only clean`); it answers
    // 200 only once it has all of it.
    let expected = if kind == "drain" || kind == "nginx" {
        0
    } else {
        size * uploads as u64
    };
    if stored < expected {
        return Err(io::Error::other(format!(
            "{kind} stored {stored} bytes, expected {expected}"
        )));
    }
    server.clear_files();
    if uploads > 1 {
        // What stays resident once the burst is over.
        std::thread::sleep(Duration::from_secs(1));
    }
    let total = size as f64 * uploads as f64;
    Ok(Run {
        mbps: total / elapsed.as_secs_f64() / 1e6,
        cpu_per_gib: cpu / (total / GIB),
        user_per_gib: user_cpu / (total / GIB),
        faults_per_mib: faults as f64 / (total / MIB),
        idle_rss,
        peak_growth: (peak - idle_rss).max(0.0),
        rss_after: server.rss() as f64,
    })
}

/// Repetitions of every kind, in a rotating order; results per kind, in [`KINDS`] order.
fn repeat(
    options: &Options,
    source: &Source,
    uploads: usize,
    size: u64,
) -> io::Result<Vec<Vec<Run>>> {
    // One run thrown away first: the first large run after a pause pays for fresh memory
    // (this VM hands freed pages back to its host), whichever kind it is.
    let selected: Vec<usize> = (0..KINDS.len())
        .filter(|&index| options.has_kind(KINDS[index]))
        .collect();
    let discard = if options.has_kind("raw") { RAW } else { LAYER };
    measure(KINDS[discard], source, uploads, size, "discard")?;
    let mut runs = vec![Vec::with_capacity(options.reps); KINDS.len()];
    for rep in 0..options.reps {
        for offset in 0..selected.len() {
            let index = selected[(offset + rep) % selected.len()];
            let run = measure(
                KINDS[index],
                source,
                uploads,
                size,
                &format!("r{rep}k{index}"),
            )?;
            println!(
                "  rep {rep} {:<12} {uploads:>2} x {}: {:>6.0} MB/s, {:.2} CPU s/GiB ({:.2} user), {:.1} faults/MiB, peak +{} MiB, after {} MiB",
                KINDS[index],
                size_name(size),
                run.mbps,
                run.cpu_per_gib,
                run.user_per_gib,
                run.faults_per_mib,
                mib(run.peak_growth),
                mib(run.rss_after),
            );
            runs[index].push(run);
        }
    }
    Ok(runs)
}

fn values(runs: &[Run], field: impl Fn(&Run) -> f64) -> Vec<f64> {
    runs.iter().map(field).collect()
}

fn runs_json(runs: &[Vec<Run>]) -> Value {
    KINDS
        .iter()
        .zip(runs)
        .filter(|(_, runs)| !runs.is_empty())
        .map(|(kind, runs)| {
            let summary = |field: fn(&Run) -> f64| Summary::of(&values(runs, field)).to_json();
            (
                (*kind).to_owned(),
                json!({
                    "mb_per_s": summary(|r| r.mbps),
                    "cpu_s_per_gib": summary(|r| r.cpu_per_gib),
                    "user_cpu_s_per_gib": summary(|r| r.user_per_gib),
                    "minor_faults_per_mib": summary(|r| r.faults_per_mib),
                    "idle_rss_bytes": summary(|r| r.idle_rss),
                    "peak_rss_growth_bytes": summary(|r| r.peak_growth),
                    "rss_after_bytes": summary(|r| r.rss_after),
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

const LAYER: usize = 0;
const RAW: usize = 1;
const DRAIN: usize = 2;
const AXUM: usize = 3;
const NGINX: usize = 4;
const SHA256: usize = 5;

const KIND_NAMES: [&str; 6] = [
    "**UploadLayer** (axum router + layer)",
    "raw body to file (same batched writes)",
    "body drained (network ceiling)",
    "axum `Multipart` + `tokio::fs::File`",
    "nginx 1.22 + uploadprogress (body to file, 2 workers)",
    "UploadLayer + `digest(Sha256)`",
];

fn single(report: &mut Report, options: &Options, source: &Source) -> io::Result<()> {
    report.text("## 1. Single upload (one file, one connection)\n");
    let mut all = serde_json::Map::new();
    let mut peaks = Vec::new();
    for &size in &options.sizes {
        println!("single upload, {}:", size_name(size));
        let runs = repeat(options, source, 1, size)?;
        let mut rows = Vec::new();
        for (index, runs) in runs.iter().enumerate() {
            if runs.is_empty() {
                continue;
            }
            let mbps = values(runs, |r| r.mbps);
            let cpu = values(runs, |r| r.cpu_per_gib);
            rows.push(vec![
                KIND_NAMES[index].to_owned(),
                Summary::of(&mbps).show(0),
                Summary::of(&cpu).show(2),
                Summary::of(&values(runs, |r| r.user_per_gib)).show(2),
                Summary::of(&values(runs, |r| r.faults_per_mib)).show(1),
                Summary::of(&values(runs, |r| r.peak_growth / MIB)).show(1),
            ]);
        }
        report.text(&format!("### {} file\n", size_name(size)));
        report.table(
            &[
                "server",
                "MB/s",
                "server CPU s/GiB",
                "of which user",
                "page faults per MiB",
                "peak RSS growth MiB",
            ],
            &rows,
        );
        ratio_table(report, &runs);
        let speed = |kind: usize| values(&runs[kind], |r| r.mbps);
        let cpu = |kind: usize| values(&runs[kind], |r| r.cpu_per_gib);
        let to_raw = ratios(&speed(LAYER), &speed(RAW));
        let to_axum = ratios(&speed(LAYER), &speed(AXUM));
        let cpu_to_raw = ratios(&cpu(LAYER), &cpu(RAW));
        let name = size_name(size);
        if !runs[NGINX].is_empty() {
            let to_nginx = ratios(&speed(LAYER), &speed(NGINX));
            let cpu_to_nginx = ratios(&cpu(LAYER), &cpu(NGINX));
            report.target(
                &format!("{name}: throughput / nginx + uploadprogress"),
                to_nginx.show(2),
                ">= 1.10",
                to_nginx.median >= 1.1,
            );
            report.target(
                &format!("{name}: CPU per GiB / nginx (its workers summed)"),
                cpu_to_nginx.show(2),
                "<= 1.00",
                cpu_to_nginx.median <= 1.0,
            );
        }
        if !runs[SHA256].is_empty() {
            let extra = Summary::of(
                &runs[SHA256]
                    .iter()
                    .zip(&runs[LAYER])
                    .map(|(sha, plain)| sha.cpu_per_gib - plain.cpu_per_gib)
                    .collect::<Vec<_>>(),
            );
            report.text(&format!(
                "SHA-256 of every file while it streams: +{} CPU s/GiB over the plain layer \
                 (per-repetition differences).\n",
                extra.show(2)
            ));
        }
        if runs[RAW].is_empty() || runs[AXUM].is_empty() {
            peaks.push((size, Summary::of(&values(&runs[LAYER], |r| r.peak_growth))));
            all.insert(name, runs_json(&runs));
            continue;
        }
        report.target(
            &format!("{name}: throughput / raw-to-file"),
            format!("{:.2}", to_raw.median),
            ">= 0.90",
            to_raw.median >= 0.9,
        );
        report.target(
            &format!("{name}: throughput / axum Multipart"),
            format!("{:.2}", to_axum.median),
            ">= 1.00",
            to_axum.median >= 1.0,
        );
        report.target(
            &format!("{name}: CPU per GiB / raw-to-file"),
            format!("{:.2}", cpu_to_raw.median),
            "<= 1.20",
            cpu_to_raw.median <= 1.2,
        );
        peaks.push((size, Summary::of(&values(&runs[LAYER], |r| r.peak_growth))));
        all.insert(name, runs_json(&runs));
    }
    report.value("single", all.into());
    if let Some(&(size, peak)) = peaks.iter().max_by_key(|(size, _)| *size) {
        report.text("## 3. Memory: server peak RSS above idle, one upload through the layer\n");
        let rows: Vec<Vec<String>> = peaks
            .iter()
            .map(|(size, peak)| {
                vec![
                    size_name(*size),
                    format!("{} MiB", mib(peak.median)),
                    format!("{}-{} MiB", mib(peak.min), mib(peak.max)),
                ]
            })
            .collect();
        report.table(&["file", "peak RSS growth (median)", "min-max"], &rows);
        report.target(
            &format!("peak RSS growth, one {} upload", size_name(size)),
            format!("{} MiB", mib(peak.median)),
            "<= 8 MiB",
            peak.median <= 8.0 * MIB,
        );
    }
    Ok(())
}

/// The layer's throughput and CPU against each baseline, as per-repetition ratios.
fn ratio_table(report: &mut Report, runs: &[Vec<Run>]) {
    let speed = |kind: usize| values(&runs[kind], |r| r.mbps);
    let cpu = |kind: usize| values(&runs[kind], |r| r.cpu_per_gib);
    let user = |kind: usize| values(&runs[kind], |r| r.user_per_gib);
    let mut pairs: Vec<(usize, usize)> = [NGINX, RAW, DRAIN, AXUM]
        .iter()
        .map(|&kind| (LAYER, kind))
        .collect();
    pairs.push((SHA256, LAYER));
    let rows: Vec<Vec<String>> = pairs
        .into_iter()
        .filter(|&(a, b)| !runs[a].is_empty() && !runs[b].is_empty())
        .map(|(a, b)| {
            vec![
                format!("{} / {}", KINDS[a], KINDS[b]),
                ratios(&speed(a), &speed(b)).show(2),
                ratios(&cpu(a), &cpu(b)).show(2),
                ratios(&user(a), &user(b)).show(2),
            ]
        })
        .collect();
    report.table(
        &["ratio", "throughput", "CPU per GiB", "user CPU per GiB"],
        &rows,
    );
}

fn concurrency(report: &mut Report, options: &Options, source: &Source) -> io::Result<()> {
    report.text(&format!(
        "## 2. Concurrent uploads ({} each, one connection each, a fresh server per run)\n\n\
         Peak RSS growth is VmHWM during the run minus VmRSS before it (after a warm-up); \
         \"after\" is VmRSS one second after the last answer.\n",
        size_name(options.concurrent_size)
    ));
    let mut all = serde_json::Map::new();
    for &uploads in &options.concurrency {
        println!(
            "{uploads} concurrent uploads of {}:",
            size_name(options.concurrent_size)
        );
        let runs = repeat(options, source, uploads, options.concurrent_size)?;
        let rows: Vec<Vec<String>> = runs
            .iter()
            .enumerate()
            .filter(|(_, runs)| !runs.is_empty())
            .map(|(index, runs)| {
                vec![
                    KIND_NAMES[index].to_owned(),
                    Summary::of(&values(runs, |r| r.mbps)).show(0),
                    Summary::of(&values(runs, |r| r.cpu_per_gib)).show(2),
                    Summary::of(&values(runs, |r| r.user_per_gib)).show(2),
                    Summary::of(&values(runs, |r| r.idle_rss / MIB)).show(1),
                    Summary::of(&values(runs, |r| r.peak_growth / MIB)).show(1),
                    Summary::of(&values(runs, |r| r.peak_growth / MIB / uploads as f64)).show(2),
                    Summary::of(&values(runs, |r| r.rss_after / MIB)).show(1),
                ]
            })
            .collect();
        report.text(&format!("### {uploads} at once\n"));
        report.table(
            &[
                "server",
                "aggregate MB/s",
                "server CPU s/GiB",
                "of which user",
                "idle RSS MiB",
                "peak RSS growth MiB",
                "growth per upload MiB",
                "RSS 1 s after MiB",
            ],
            &rows,
        );
        ratio_table(report, &runs);
        if uploads == *options.concurrency.iter().max().unwrap_or(&uploads) {
            let layer = &runs[LAYER];
            if !runs[NGINX].is_empty() {
                let to_nginx = ratios(
                    &values(layer, |r| r.mbps),
                    &values(&runs[NGINX], |r| r.mbps),
                );
                report.target(
                    &format!("{uploads} concurrent: throughput / nginx (2 workers)"),
                    to_nginx.show(2),
                    ">= 1.20",
                    to_nginx.median >= 1.2,
                );
            }
            if !runs[AXUM].is_empty() {
                let to_axum = ratios(&values(layer, |r| r.mbps), &values(&runs[AXUM], |r| r.mbps));
                report.target(
                    &format!("{uploads} concurrent: throughput / axum Multipart"),
                    format!("{:.2}", to_axum.median),
                    ">= 1.00",
                    to_axum.median >= 1.0,
                );
            }
            let per_upload = Summary::of(&values(layer, |r| r.peak_growth / uploads as f64));
            report.target(
                &format!("{uploads} concurrent: peak RSS growth per upload"),
                format!("{} MiB", mib(per_upload.median)),
                "<= 1 MiB",
                per_upload.median <= MIB,
            );
            let left = Summary::of(&values(layer, |r| r.rss_after - r.idle_rss));
            let peak = Summary::of(&values(layer, |r| r.peak_growth));
            let allowed = (0.1 * peak.median).max(4.0 * MIB);
            report.target(
                &format!("{uploads} concurrent: RSS 1 s after, above idle"),
                format!("{} MiB", mib(left.median)),
                "<= max(4 MiB, 10 % of the peak growth)",
                left.median <= allowed,
            );
        }
        all.insert(format!("{uploads}"), runs_json(&runs));
    }
    report.value("concurrency", all.into());
    Ok(())
}

fn passthrough(report: &mut Report, options: &Options) -> io::Result<()> {
    println!(
        "pass-through, {} requests per arm and case, in {} processes:",
        options.passthrough_requests, options.reps
    );
    // Per case: the medians of each process (the code and heap layout of a process shifts
    // both arms by several ns, which interleaving inside one process cannot cancel).
    let cases = inproc::PASSTHROUGH_CASES.len();
    let (mut bare, mut layered, mut diffs) = (
        vec![Vec::new(); cases],
        vec![Vec::new(); cases],
        vec![Vec::new(); cases],
    );
    for _ in 0..options.reps {
        let output = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--passthrough-child",
                &options.passthrough_requests.to_string(),
            ])
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other("the pass-through child failed"));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let fields: Vec<f64> = line.split(' ').filter_map(|f| f.parse().ok()).collect();
            if let [index, b, l, d] = fields[..] {
                let index = index as usize;
                bare[index].push(b);
                layered[index].push(l);
                diffs[index].push(d);
            }
        }
    }
    report.text(&format!(
        "## 4. Pass-through cost (in process)\n\n\
         `ready().await` + `call(request)` + `.await` on a current-thread runtime, the inner \
         service a `tower::service_fn` returning a fixed response; {} requests per arm in \
         interleaved blocks of 50 000, in {} fresh processes; ns per request, median of each \
         process, then median (min-max) over the processes.\n",
        options.passthrough_requests, options.reps
    ));
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut worst: Option<(f64, f64)> = None;
    for (index, name) in inproc::PASSTHROUGH_CASES.iter().enumerate() {
        let diff = Summary::of(&diffs[index]);
        let ratio = ratios(&layered[index], &bare[index]);
        rows.push(vec![
            (*name).to_owned(),
            Summary::of(&bare[index]).show(1),
            Summary::of(&layered[index]).show(1),
            diff.show(1),
            ratio.show(3),
        ]);
        json.push(json!({
            "case": name,
            "bare_ns": Summary::of(&bare[index]).to_json(),
            "layered_ns": Summary::of(&layered[index]).to_json(),
            "difference_ns": diff.to_json(),
            "ratio": ratio.to_json(),
        }));
        if worst.is_none_or(|(d, _)| diff.median > d) {
            worst = Some((diff.median, ratio.median));
        }
    }
    report.table(
        &[
            "request",
            "bare ns",
            "through Upload<S> ns",
            "difference ns",
            "ratio",
        ],
        &rows,
    );
    report.value("passthrough", json.into());
    if let Some((diff, ratio)) = worst {
        report.target(
            "pass-through overhead (worst case)",
            format!("{diff:+.1} ns ({:+.1} %)", (ratio - 1.0) * 100.0),
            "<= 2 % or <= 10 ns",
            diff <= 10.0 || ratio <= 1.02,
        );
    }
    Ok(())
}

fn status(report: &mut Report, options: &Options) -> io::Result<()> {
    println!("status service, in process:");
    let cases = inproc::status(options.status_requests, options.reps.max(3) * 2);
    report.text(&format!(
        "## 5. Status service\n\n\
         ### In process (current-thread runtime, {} answers per block, interleaved)\n\n\
         CPU is the thread's own run time (`/proc/thread-self/schedstat`).\n",
        options.status_requests
    ));
    let rows: Vec<Vec<String>> = cases
        .iter()
        .map(|case| {
            vec![
                case.case.to_owned(),
                Summary::of(&case.wall_ns).show(0),
                Summary::of(&case.cpu_ns).show(0),
            ]
        })
        .collect();
    report.table(&["what", "ns per answer", "CPU ns per answer"], &rows);
    let live = Summary::of(&cases[0].cpu_ns);
    report.target(
        "one status answer (live upload), CPU in process",
        format!("{:.0} ns", live.median),
        "<= 1000 ns",
        live.median <= 1000.0,
    );
    let in_process: Vec<Value> = cases
        .iter()
        .map(|case| {
            json!({
                "case": case.case,
                "wall_ns": Summary::of(&case.wall_ns).to_json(),
                "cpu_ns": Summary::of(&case.cpu_ns).to_json(),
            })
        })
        .collect();

    println!("status service, over loopback:");
    const CONNECTIONS: usize = 4;
    let server = Server::start("layer")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status_path = format!("/status?key={LIVE_KEY}&command=status");
    let paths = [status_path.as_str(), "/json"];
    let mut answers_per_s = [Vec::new(), Vec::new()];
    let mut cpu_us = [Vec::new(), Vec::new()];
    runtime.block_on(async {
        let (code, body) = load::get_once(server.addr, &status_path).await?;
        if code != 200 || !body.starts_with(br#"{"status":1,"#) {
            return Err(io::Error::other(format!(
                "unexpected status answer {code} {body:?}"
            )));
        }
        for rep in 0..options.reps.max(3) {
            for offset in 0..2 {
                let index = (offset + rep) % 2;
                let cpu = server.cpu();
                let answers =
                    load::hammer(server.addr, paths[index], CONNECTIONS, options.phase).await?;
                let cpu = server.cpu() - cpu;
                answers_per_s[index].push(answers as f64 / options.phase.as_secs_f64());
                cpu_us[index].push(cpu * 1e6 / answers as f64);
            }
        }
        Ok::<_, io::Error>(())
    })?;
    report.text(&format!(
        "### Over loopback ({CONNECTIONS} keep-alive hyper connections for {:.1} s per phase, \
         client in this process on the same 2 cores, so answers/s is client-bound; server CPU \
         per answer is the fairer figure)\n",
        options.phase.as_secs_f64()
    ));
    let names = [
        "`GET /status?key=K&command=status` (live upload)",
        "plain axum `Json` endpoint, same router",
    ];
    let rows: Vec<Vec<String>> = (0..2)
        .map(|i| {
            vec![
                names[i].to_owned(),
                Summary::of(&answers_per_s[i]).show(0),
                Summary::of(&cpu_us[i]).show(1),
            ]
        })
        .collect();
    report.table(
        &["endpoint", "answers/s", "server CPU us per answer"],
        &rows,
    );
    let rows = vec![vec![
        "status / plain JSON".to_owned(),
        ratios(&answers_per_s[0], &answers_per_s[1]).show(2),
        ratios(&cpu_us[0], &cpu_us[1]).show(2),
    ]];
    report.table(&["ratio", "answers/s", "server CPU per answer"], &rows);
    report.value(
        "status",
        json!({
            "in_process": in_process,
            "loopback": {
                "status_answers_per_s": Summary::of(&answers_per_s[0]).to_json(),
                "json_answers_per_s": Summary::of(&answers_per_s[1]).to_json(),
                "status_server_cpu_us": Summary::of(&cpu_us[0]).to_json(),
                "json_server_cpu_us": Summary::of(&cpu_us[1]).to_json(),
            }
        }),
    );
    Ok(())
}

fn churn(report: &mut Report, options: &Options) {
    println!("registry under churn:");
    let (idle, busy) = inproc::churn(options.phase, options.reps);
    report.text(&format!(
        "## 6. Registry under churn (in process, 2 worker threads, {:.1} s per phase)\n\n\
         4 tasks poll full status answers round-robin over 64 registered uploads; in the busy \
         phase each upload also calls `add_bytes` per 64 KiB and finishes and re-claims its \
         key every 4096 calls (`begin` + `set_status` + `finish`).\n",
        options.phase.as_secs_f64()
    ));
    let row = |name: &str, phases: &[inproc::Churn]| {
        vec![
            name.to_owned(),
            Summary::of(&phases.iter().map(|c| c.polls).collect::<Vec<_>>()).show(0),
            Summary::of(&phases.iter().map(|c| c.add_bytes).collect::<Vec<_>>()).show(0),
            Summary::of(&phases.iter().map(|c| c.cycles).collect::<Vec<_>>()).show(0),
        ]
    };
    report.table(
        &[
            "phase",
            "status answers/s",
            "add_bytes/s",
            "begin..finish cycles/s",
        ],
        &[row("uploads idle", &idle), row("uploads busy", &busy)],
    );
    let polls = |phases: &[inproc::Churn]| phases.iter().map(|c| c.polls).collect::<Vec<_>>();
    report.table(
        &["ratio", "status answers/s"],
        &[vec![
            "busy / idle".to_owned(),
            ratios(&polls(&busy), &polls(&idle)).show(2),
        ]],
    );
    let phase_json = |phases: &[inproc::Churn]| {
        json!({
            "status_answers_per_s": Summary::of(&polls(phases)).to_json(),
            "add_bytes_per_s": Summary::of(&phases.iter().map(|c| c.add_bytes).collect::<Vec<_>>()).to_json(),
            "cycles_per_s": Summary::of(&phases.iter().map(|c| c.cycles).collect::<Vec<_>>()).to_json(),
        })
    };
    report.value(
        "churn",
        json!({"idle": phase_json(&idle), "busy": phase_json(&busy)}),
    );
}
