//! Pushed progress: `command=watch` answers a stream of Server-Sent Events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, MissedTickBehavior};
use tower_upload_state::{StatusAnswer, UploadKey, UploadRegistry, UploadWatch, WatchEvent};

use crate::answer::{self, StatusResponse};
use crate::ResponseBody;

/// The defaults of the watch settings (see the builder methods of
/// [`UploadStatusService`](crate::UploadStatusService)).
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_MAX_WATCHERS: usize = 10_000;
pub(crate) const DEFAULT_BUFFER: usize = 8;
/// How often records of uploads streaming on other instances are reloaded from the store,
/// in case a published save was lost.
pub(crate) const RESYNC: Duration = Duration::from_secs(5);
/// What an `EventSource` waits before it reconnects (the `retry:` field).
const RETRY_MS: u32 = 2_000;

/// The `id` of a stream's last event; a reconnect that sends it back gets 204, which tells an
/// `EventSource` to stop reconnecting.
pub(crate) const END_ID: &str = "end";

/// The watch settings, shared by the clones of a service.
#[derive(Clone, Debug)]
pub(crate) struct WatchConfig {
    pub(crate) interval: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) max_watchers: usize,
    pub(crate) buffer: usize,
    /// Open streams, over every clone of the service.
    pub(crate) open: Arc<AtomicUsize>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            heartbeat: DEFAULT_HEARTBEAT,
            max_watchers: DEFAULT_MAX_WATCHERS,
            buffer: DEFAULT_BUFFER,
            open: Arc::default(),
        }
    }
}

/// One open stream's place among the [`WatchConfig::max_watchers`]; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub(crate) fn acquire(config: &WatchConfig) -> Option<Self> {
        config
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < config.max_watchers).then_some(open + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(&config.open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a watch request asked for, checked in `call`.
#[derive(Debug)]
pub(crate) struct WatchRequest {
    pub(crate) keys: Vec<UploadKey>,
    pub(crate) owner: Option<String>,
    /// The deprecated owner override: keys without an owner are nobody's.
    pub(crate) strict: bool,
    /// The number of the first event (one past a numeric `Last-Event-ID`).
    pub(crate) first_id: u64,
}

/// Writes SSE frames: `id`, then `data` with the status answer (with a leading `"key"`
/// member in a batch stream).
struct Frames {
    out: Vec<u8>,
    next_id: u64,
    batch: bool,
    /// Where the last event's `id:` value starts and ends, to mark it as the end.
    last_id: Option<(usize, usize)>,
}

impl Frames {
    fn new(first_id: u64, batch: bool) -> Self {
        Self {
            out: Vec::with_capacity(128),
            next_id: first_id,
            batch,
            last_id: None,
        }
    }

    fn event(&mut self, key: &UploadKey, answer: &StatusAnswer<'_>) {
        use std::io::Write as _;
        self.out.extend_from_slice(b"id: ");
        let start = self.out.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{}", self.next_id);
        self.last_id = Some((start, self.out.len()));
        self.next_id += 1;
        self.out.extend_from_slice(b"\ndata: ");
        let json = answer.to_json();
        if self.batch {
            // Keys are `[A-Za-z0-9_.-]`: nothing to escape.
            self.out.extend_from_slice(br#"{"key":""#);
            self.out.extend_from_slice(key.as_str().as_bytes());
            self.out.extend_from_slice(b"\",");
            self.out.extend_from_slice(&json[1..]);
        } else {
            self.out.extend_from_slice(&json);
        }
        self.out.extend_from_slice(b"\n\n");
    }

    fn watch_event(&mut self, event: &WatchEvent) {
        match event {
            WatchEvent::Changed(info) => self.event(&info.key, &info.status_answer()),
            WatchEvent::Gone(key) => self.event(key, &StatusAnswer::NO_SUCH_FILE),
            _ => {}
        }
    }

    /// Marks the last event written as the stream's last (`id: end`).
    fn end(&mut self) {
        if let Some((start, end)) = self.last_id.take() {
            self.out.splice(start..end, END_ID.bytes());
        }
    }

    fn take(&mut self) -> Option<Bytes> {
        self.last_id = None;
        (!self.out.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.out)))
    }
}

/// The headers of an event stream.
fn stream_response(body: ResponseBody) -> StatusResponse {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx buffers proxied answers unless told otherwise.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    response
}

/// 204 to a reconnect after the last event: an `EventSource` stops reconnecting.
pub(crate) fn ended() -> StatusResponse {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answers a watch request: the current state of every key at once, then (unless every key
/// is already terminal or unknown) a task that pushes the changes.
pub(crate) async fn start(
    registry: UploadRegistry,
    request: WatchRequest,
    config: Arc<WatchConfig>,
    slot: Slot,
) -> StatusResponse {
    let mut watch = registry.watch();
    let mut frames = Frames::new(request.first_id, request.keys.len() > 1);
    frames
        .out
        .extend_from_slice(format!("retry: {RETRY_MS}\n").as_bytes());
    let owner = request.owner.as_deref();
    for key in &request.keys {
        if request.strict {
            // The deprecated override: a key without an owner is nobody's.
            match registry.snapshot_for(key, owner).await {
                Ok(Some(info)) if info.owner.is_some() => {}
                Ok(_) => {
                    frames.event(key, &StatusAnswer::NO_SUCH_FILE);
                    continue;
                }
                Err(error) => return answer::store_unavailable(&error),
            }
        }
        match watch.add(key, owner).await {
            Ok(Some(info)) => frames.event(key, &info.status_answer()),
            Ok(None) => frames.event(key, &StatusAnswer::NO_SUCH_FILE),
            Err(error) => return answer::store_unavailable(&error),
        }
    }
    if watch.is_done() {
        frames.end();
        let body = frames.take().unwrap_or_default();
        return stream_response(ResponseBody::full(body));
    }
    let (tx, rx) = mpsc::channel(config.buffer.max(1));
    if let Some(first) = frames.take() {
        // The channel is new and empty.
        let _ = tx.try_send(first);
    }
    tokio::spawn(run(watch, tx, frames, config, slot));
    stream_response(ResponseBody::events(rx))
}

/// Sends a frame; false when the stream must end: the client went away, or it stopped
/// reading and its buffer is full (a lagging watcher is dropped, and the `EventSource`
/// reconnects to the current state).
fn send(tx: &mpsc::Sender<Bytes>, frame: Bytes) -> bool {
    match tx.try_send(frame) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Closed(_)) => false,
    }
}

/// Pushes changes until every key is terminal or gone, the client goes away or lags.
async fn run(
    mut watch: UploadWatch,
    tx: mpsc::Sender<Bytes>,
    mut frames: Frames,
    config: Arc<WatchConfig>,
    slot: Slot,
) {
    let _slot = slot;
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(start + config.interval, config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_sent = start;
    let mut next_refresh = start + RESYNC;
    loop {
        let heartbeat_at = last_sent + config.heartbeat;
        let progress = tokio::select! {
            biased;
            () = tx.closed() => return,
            () = watch.notified() => false,
            _ = tick.tick() => true,
            () = tokio::time::sleep_until(heartbeat_at) => {
                if !send(&tx, Bytes::from_static(b":\n\n")) {
                    return;
                }
                last_sent = Instant::now();
                continue;
            }
        };
        if progress && Instant::now() >= next_refresh {
            // A failed reload is retried later; what was known stays.
            let _ = watch.refresh().await;
            next_refresh = Instant::now() + RESYNC;
        }
        watch.changes(progress, |event| frames.watch_event(&event));
        let done = watch.is_done();
        if done {
            frames.end();
        }
        if let Some(frame) = frames.take() {
            if !send(&tx, frame) {
                return;
            }
            last_sent = Instant::now();
        }
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tower_upload_state::{FileError, UploadStatus};

    use super::*;

    #[test]
    fn frames_mark_the_last_event_and_name_keys_in_a_batch() {
        let key = UploadKey::parse("k1").unwrap();
        let mut frames = Frames::new(7, false);
        frames.event(&key, &StatusAnswer::NO_SUCH_FILE);
        frames.event(&key, &StatusAnswer::NO_SUCH_FILE);
        frames.end();
        let text = String::from_utf8(frames.take().unwrap().to_vec()).unwrap();
        assert_eq!(
            text,
            "id: 7\ndata: {\"status\":3,\"error\":5,\"bytesUploaded\":0,\"size\":0,\"serverMessage\":\"\"}\n\n\
             id: end\ndata: {\"status\":3,\"error\":5,\"bytesUploaded\":0,\"size\":0,\"serverMessage\":\"\"}\n\n"
        );
        let mut frames = Frames::new(1, true);
        let answer = StatusAnswer {
            status: UploadStatus::Started,
            error: FileError::None,
            bytes_uploaded: 1,
            size: 2,
            server_message: Some(""),
            digest: None,
        };
        frames.event(&key, &answer);
        let text = String::from_utf8(frames.take().unwrap().to_vec()).unwrap();
        assert_eq!(
            text,
            "id: 1\ndata: {\"key\":\"k1\",\"status\":1,\"error\":-1,\"bytesUploaded\":1,\"size\":2,\"serverMessage\":\"\"}\n\n"
        );
        assert!(frames.take().is_none());
    }

    #[test]
    fn slots_are_bounded_and_freed() {
        let config = WatchConfig {
            max_watchers: 2,
            ..WatchConfig::default()
        };
        let a = Slot::acquire(&config).unwrap();
        let b = Slot::acquire(&config).unwrap();
        assert!(Slot::acquire(&config).is_none());
        drop(a);
        let c = Slot::acquire(&config).unwrap();
        assert_eq!(config.open.load(Ordering::Relaxed), 2);
        drop((b, c));
        assert_eq!(config.open.load(Ordering::Relaxed), 0);
    }
}
