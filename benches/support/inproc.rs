//! In-process measurements: the cost of the layer on requests it passes through, the cost of
//! one status answer, and the registry under churn.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service, ServiceExt};
use tower_upload_layer::UploadLayer;
use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadRegistry, UploadStatus};
use tower_upload_status::UploadStatusService;

use super::procfs::thread_cpu;
use super::server::{live_upload, plain_json, LIVE_KEY};

type Req = Request<Empty<Bytes>>;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A request as hyper hands it over: method and URI already parsed (cloning a `Uri` is a
/// reference count).
fn request(method: &Method, uri: &Uri) -> Req {
    let mut request = Request::new(Empty::new());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    request
}

fn ok<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// The pass-through cases: a request the layer rejects by method, and one by path.
pub(crate) const PASSTHROUGH_CASES: [&str; 2] =
    ["GET /", "POST /api/items (method matches, path does not)"];

/// One pass-through case: ns per request of each arm, one value per block.
pub(crate) struct Passthrough {
    pub(crate) bare: Vec<f64>,
    pub(crate) layered: Vec<f64>,
}

/// `ready().await` + `call` + `.await` in a loop, through `Upload<S>` and through the bare
/// `S`, in interleaved blocks on a current-thread runtime; `requests` per arm and case.
pub(crate) fn passthrough(requests: usize) -> Vec<Passthrough> {
    const BLOCK: usize = 50_000;
    let blocks = (requests / BLOCK).max(4);
    let inner = tower::service_fn(|_request: Req| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"ok"),
        ))))
    });
    let layer = UploadLayer::new(UploadRegistry::new());
    let cases = [
        (Method::GET, Uri::from_static("/")),
        (Method::POST, Uri::from_static("/api/items?id=42")),
    ];
    let runtime = current_thread();
    cases
        .into_iter()
        .map(|(method, uri)| {
            runtime.block_on(async {
                let mut bare = inner;
                let mut layered = layer.layer(inner);
                // Warm up both arms.
                time_calls(&mut bare, BLOCK, &method, &uri).await;
                time_calls(&mut layered, BLOCK, &method, &uri).await;
                let mut result = Passthrough {
                    bare: Vec::with_capacity(blocks),
                    layered: Vec::with_capacity(blocks),
                };
                for block in 0..blocks {
                    let per_request = |elapsed: Duration| elapsed.as_nanos() as f64 / BLOCK as f64;
                    if block % 2 == 0 {
                        result.bare.push(per_request(
                            time_calls(&mut bare, BLOCK, &method, &uri).await,
                        ));
                        result.layered.push(per_request(
                            time_calls(&mut layered, BLOCK, &method, &uri).await,
                        ));
                    } else {
                        result.layered.push(per_request(
                            time_calls(&mut layered, BLOCK, &method, &uri).await,
                        ));
                        result.bare.push(per_request(
                            time_calls(&mut bare, BLOCK, &method, &uri).await,
                        ));
                    }
                }
                result
            })
        })
        .collect()
}

async fn time_calls<S, B>(service: &mut S, n: usize, method: &Method, uri: &Uri) -> Duration
where
    S: Service<Req, Response = Response<B>, Error = Infallible>,
{
    let started = Instant::now();
    for _ in 0..n {
        let service = ok(service.ready().await);
        let response = ok(service.call(black_box(request(method, uri))).await);
        black_box(response);
    }
    started.elapsed()
}

/// One in-process status case: per block, wall ns and CPU ns per answer.
pub(crate) struct StatusCase {
    pub(crate) case: &'static str,
    pub(crate) wall_ns: Vec<f64>,
    pub(crate) cpu_ns: Vec<f64>,
}

/// The cost of one status answer for a live upload and of its parts, next to a plain axum
/// `Json` answer, in interleaved blocks of `requests` each.
pub(crate) fn status(requests: usize, blocks: usize) -> Vec<StatusCase> {
    let runtime = current_thread();
    runtime.block_on(async {
        let registry = UploadRegistry::new();
        let _live = live_upload(&registry).await;
        let key = UploadKey::parse(LIVE_KEY).expect("valid");
        let service = UploadStatusService::new(registry.clone());
        let live_uri: Uri = format!("/status?key={LIVE_KEY}&command=status&_=1718000000000")
            .parse()
            .expect("valid");
        let unknown_uri =
            Uri::from_static("/status?key=nobodyKnowsThisKey0123456789ab&command=status");
        let names = [
            "status service, live key (query + lookup + JSON + response)",
            "status service, unknown key",
            "registry.snapshot(live key) only",
            "snapshot + status_answer().to_json() only",
            "plain axum Json handler (same object) + into_response",
        ];
        let mut cases: Vec<StatusCase> = names
            .iter()
            .map(|&case| StatusCase {
                case,
                wall_ns: Vec::new(),
                cpu_ns: Vec::new(),
            })
            .collect();
        for block in 0..=blocks {
            for (index, case) in cases.iter_mut().enumerate() {
                let wall = Instant::now();
                let cpu = thread_cpu();
                for _ in 0..requests {
                    match index {
                        0 | 1 => {
                            let uri = if index == 0 { &live_uri } else { &unknown_uri };
                            let response =
                                ok(service.clone().call(request(&Method::GET, uri)).await);
                            black_box(response.into_body().frame().await);
                        }
                        2 => {
                            black_box(registry.snapshot(black_box(&key)).await.ok());
                        }
                        3 => {
                            let info = registry.snapshot(black_box(&key)).await.ok().flatten();
                            black_box(info.map(|info| info.status_answer().to_json()));
                        }
                        _ => {
                            let response = plain_json().await.into_response();
                            black_box(response.into_body().frame().await);
                        }
                    }
                }
                let cpu = thread_cpu().saturating_sub(cpu);
                let wall = wall.elapsed();
                // Block 0 warms up.
                if block > 0 {
                    case.wall_ns.push(wall.as_nanos() as f64 / requests as f64);
                    case.cpu_ns.push(cpu.as_nanos() as f64 / requests as f64);
                }
            }
        }
        cases
    })
}

/// Operations per second of one churn phase.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Churn {
    pub(crate) polls: f64,
    pub(crate) add_bytes: f64,
    pub(crate) cycles: f64,
}

const WRITERS: usize = 64;
const POLLERS: usize = 4;
/// `add_bytes` calls per upload before it finishes and its key is claimed again.
const ADDS_PER_UPLOAD: u64 = 4096;

/// Status polls (full in-process answers, [`POLLERS`] tasks) against [`WRITERS`] registered
/// uploads, on a 2-worker runtime: first with the uploads idle, then with every upload
/// calling `add_bytes` per 64 KiB chunk and finishing and re-registering its key every
/// [`ADDS_PER_UPLOAD`] chunks.
pub(crate) fn churn(phase: Duration, reps: usize) -> (Vec<Churn>, Vec<Churn>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let registry = UploadRegistry::new();
        let keys: Arc<Vec<Uri>> = Arc::new(
            (0..WRITERS)
                .map(|i| {
                    format!("/status?key=churn{i:02}&command=status")
                        .parse()
                        .expect("valid")
                })
                .collect(),
        );
        let (mut idle, mut busy) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            idle.push(churn_phase(&registry, &keys, phase, false).await);
            busy.push(churn_phase(&registry, &keys, phase, true).await);
        }
        (idle, busy)
    })
}

async fn churn_phase(
    registry: &UploadRegistry,
    keys: &Arc<Vec<Uri>>,
    phase: Duration,
    writing: bool,
) -> Churn {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        let registry = registry.clone();
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let key = UploadKey::parse(&format!("churn{i:02}")).expect("valid");
            let (mut adds, mut cycles) = (0u64, 0u64);
            loop {
                let handle = registry
                    .begin(UploadInfo::new(key.clone()))
                    .await
                    .expect("claims a finished key");
                let _ = handle.set_status(UploadStatus::Started).await;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && (!writing || n < ADDS_PER_UPLOAD) {
                    if writing {
                        handle.add_bytes(64 * 1024);
                        n += 1;
                        adds += 1;
                        if n % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                handle
                    .finish(UploadStatus::Finished, FileError::None, None)
                    .await;
                if stop.load(Ordering::Relaxed) {
                    return (adds, cycles);
                }
                cycles += 1;
            }
        }));
    }
    let mut pollers = Vec::new();
    for p in 0..POLLERS {
        let service = UploadStatusService::new(registry.clone());
        let keys = Arc::clone(keys);
        let stop = Arc::clone(&stop);
        pollers.push(tokio::spawn(async move {
            let mut polls = 0u64;
            let mut i = p;
            while !stop.load(Ordering::Relaxed) {
                let response = ok(service
                    .clone()
                    .oneshot(request(&Method::GET, &keys[i % keys.len()]))
                    .await);
                black_box(response.into_body().frame().await);
                polls += 1;
                i += 1;
                if polls.is_multiple_of(16) {
                    tokio::task::yield_now().await;
                }
            }
            polls
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut result = Churn::default();
    for poller in pollers {
        result.polls += poller.await.expect("a poller") as f64 / elapsed;
    }
    for writer in writers {
        let (adds, cycles) = writer.await.expect("a writer");
        result.add_bytes += adds as f64 / elapsed;
        result.cycles += cycles as f64 / elapsed;
    }
    result
}
