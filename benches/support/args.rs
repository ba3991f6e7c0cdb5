//! Command line and environment of the benchmark.

use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "\
usage: upload [--quick] [--reps N] [--sizes 1G,4G] [--concurrency 8,64] [--concurrent-size 64M]
              [--only single,concurrency,passthrough,status,churn] [--out PATH] [--source-dir DIR]
              [--kinds layer,raw,drain,axum,nginx,layer-sha256]
       upload --serve layer|raw|drain|axum|layer-sha256 --dir DIR   (a server child; prints PORT n)
       upload --upload-to 127.0.0.1:PORT --size 1G       (one client upload, for profiling)

Every option can also be given as an environment variable: BENCH_QUICK=1, BENCH_REPS,
BENCH_SIZES, BENCH_CONCURRENCY, BENCH_CONCURRENT_SIZE, BENCH_ONLY, BENCH_OUT, BENCH_SOURCE_DIR,
BENCH_KINDS. BENCH_NGINX and BENCH_NGINX_MODULE name nginx and its upload progress module.
Sizes take K, M, G (powers of 1024).";

/// What the binary was asked to do.
pub(crate) enum Mode {
    /// Run the benchmark and write a report.
    Bench(Options),
    /// Be a server of one kind (a child of the benchmark).
    Serve { kind: String, dir: PathBuf },
    /// Upload once to a running server and print the time.
    UploadTo { addr: String, size: u64 },
    /// Measure the pass-through cost in this process and print it (a child of the benchmark).
    Passthrough { requests: usize },
}

/// The benchmark's settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) reps: usize,
    /// Single-upload sizes, in bytes.
    pub(crate) sizes: Vec<u64>,
    /// How many uploads run at once in the concurrency scenarios.
    pub(crate) concurrency: Vec<usize>,
    /// Bytes per upload in the concurrency scenarios.
    pub(crate) concurrent_size: u64,
    /// Scenario groups to run.
    pub(crate) only: Vec<String>,
    /// Server kinds to run in the upload scenarios (`layer` always).
    pub(crate) kinds: Vec<String>,
    /// Report path without extension: `.md` and `.json` are written.
    pub(crate) out: PathBuf,
    /// Where the client's source file is made.
    pub(crate) source_dir: Option<PathBuf>,
    /// Requests per arm in the pass-through benchmark.
    pub(crate) passthrough_requests: usize,
    /// Answers per block in the in-process status benchmark.
    pub(crate) status_requests: usize,
    /// How long one over-the-socket request phase or churn phase lasts.
    pub(crate) phase: Duration,
}

impl Options {
    pub(crate) fn runs(&self, group: &str) -> bool {
        self.only.iter().any(|name| name == group)
    }

    pub(crate) fn has_kind(&self, kind: &str) -> bool {
        self.kinds.iter().any(|name| name == kind)
    }
}

pub(crate) const GROUPS: [&str; 5] = ["single", "concurrency", "passthrough", "status", "churn"];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Parses `512K`, `64M`, `4G` or a plain byte count.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("not a size: {text:?}"))?;
    let shift = match unit.trim_end_matches(['i', 'B', 'b']) {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(format!("unknown size unit in {text:?}")),
    };
    Ok(number << shift)
}

fn parse_list<T>(text: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| item(part.trim()))
        .collect()
}

fn parse_count(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

/// Reads the command line (after cargo's own `--bench`) and the environment.
pub(crate) fn parse() -> Result<Mode, String> {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let mut quick = env("BENCH_QUICK").is_some_and(|value| value != "0");
    let mut reps = env("BENCH_REPS");
    let mut sizes = env("BENCH_SIZES");
    let mut concurrency = env("BENCH_CONCURRENCY");
    let mut concurrent_size = env("BENCH_CONCURRENT_SIZE");
    let mut only = env("BENCH_ONLY");
    let mut out = env("BENCH_OUT");
    let mut source_dir = env("BENCH_SOURCE_DIR");
    let mut kinds = env("BENCH_KINDS");
    let mut serve = None;
    let mut dir = None;
    let mut upload_to = None;
    let mut size = None;
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--reps" => reps = Some(value()?),
            "--sizes" => sizes = Some(value()?),
            "--concurrency" => concurrency = Some(value()?),
            "--concurrent-size" => concurrent_size = Some(value()?),
            "--only" => only = Some(value()?),
            "--out" => out = Some(value()?),
            "--source-dir" => source_dir = Some(value()?),
            "--kinds" => kinds = Some(value()?),
            "--serve" => serve = Some(value()?),
            "--dir" => dir = Some(value()?),
            "--upload-to" => upload_to = Some(value()?),
            "--size" => size = Some(value()?),
            "--passthrough-child" => {
                let requests = parse_count(&value()?)?;
                return Ok(Mode::Passthrough { requests });
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if let Some(kind) = serve {
        let dir = dir.ok_or("--serve needs --dir")?;
        return Ok(Mode::Serve {
            kind,
            dir: dir.into(),
        });
    }
    if let Some(addr) = upload_to {
        let size = parse_size(size.as_deref().unwrap_or("1G"))?;
        return Ok(Mode::UploadTo { addr, size });
    }
    let target = env("CARGO_TARGET_DIR").unwrap_or_else(|| "target".to_owned());
    let only = match only {
        Some(list) => parse_list(&list, |name| {
            if GROUPS.contains(&name) {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "unknown group {name:?}; groups: {}",
                    GROUPS.join(",")
                ))
            }
        })?,
        None => GROUPS.iter().map(|&name| name.to_owned()).collect(),
    };
    let all_kinds = super::server::KINDS;
    let mut kinds = match kinds {
        Some(list) => parse_list(&list, |name| {
            if all_kinds.contains(&name) {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "unknown kind {name:?}; kinds: {}",
                    all_kinds.join(",")
                ))
            }
        })?,
        None => all_kinds.iter().map(|&name| name.to_owned()).collect(),
    };
    if !kinds.iter().any(|kind| kind == "layer") {
        kinds.insert(0, "layer".to_owned());
    }
    let options = Options {
        quick,
        reps: match reps {
            Some(reps) => parse_count(&reps)?.max(1),
            None if quick => 2,
            // Each kind goes first in one repetition of four.
            None => 4,
        },
        sizes: parse_list(
            sizes
                .as_deref()
                .unwrap_or(if quick { "256M" } else { "1G,4G" }),
            parse_size,
        )?,
        concurrency: parse_list(concurrency.as_deref().unwrap_or("8,64"), parse_count)?,
        concurrent_size: parse_size(concurrent_size.as_deref().unwrap_or(if quick {
            "8M"
        } else {
            "64M"
        }))?,
        only,
        kinds,
        // A quick run does not overwrite the results of a full one.
        out: out.map_or_else(
            || {
                let name = if quick {
                    "bench-results-quick"
                } else {
                    "bench-results"
                };
                PathBuf::from(target).join(name)
            },
            PathBuf::from,
        ),
        source_dir: source_dir.map(PathBuf::from),
        passthrough_requests: if quick { 400_000 } else { 4_000_000 },
        status_requests: if quick { 50_000 } else { 200_000 },
        phase: Duration::from_millis(if quick { 300 } else { 1_500 }),
    };
    Ok(Mode::Bench(options))
}
