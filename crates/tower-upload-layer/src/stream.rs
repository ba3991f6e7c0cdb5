//! The request body as the byte stream the multipart reader reads, with the request's limits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// Counters the stream and the upload loop share (both run in the same task; atomics only
/// because the future must be `Send`).
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    /// Bytes pulled from the body so far.
    pulled: AtomicU64,
    /// While part headers are read: once this many bytes were pulled, asking for more
    /// means the headers are too large.
    header_limit_at: AtomicU64,
    /// Whether a read already started past the header budget.
    over_budget: AtomicBool,
}

impl Gauge {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            pulled: AtomicU64::new(0),
            header_limit_at: AtomicU64::new(u64::MAX),
            over_budget: AtomicBool::new(false),
        })
    }

    /// From now on, at most `limit` more bytes may be pulled until [`Self::end_headers`].
    pub(crate) fn begin_headers(&self, limit: usize) {
        let at = self
            .pulled
            .load(Ordering::Relaxed)
            .saturating_add(limit as u64);
        self.header_limit_at.store(at, Ordering::Relaxed);
        self.over_budget.store(false, Ordering::Relaxed);
    }

    pub(crate) fn end_headers(&self) {
        self.header_limit_at.store(u64::MAX, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn pulled(&self) -> u64 {
        self.pulled.load(Ordering::Relaxed)
    }
}

/// Why the body stream stopped early.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body failed: in practice the client disconnected.
    Read(BoxError),
    /// The body was silent for longer than the idle timeout.
    Idle(Duration),
    /// The body arrived slower than the minimum rate over a whole window of waiting.
    TooSlow {
        /// The minimum, in bytes per second.
        min_rate: u64,
        /// The waiting time it was measured over.
        window: Duration,
    },
    /// The body is larger than the request limit.
    TooLarge(u64),
    /// Part headers (or the preamble) went on past the limit without ending.
    HeadersTooLarge(usize),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(error) => write!(f, "reading the request body failed: {error}"),
            Self::Idle(after) => write!(f, "no data received for {} s", after.as_secs()),
            Self::TooSlow { min_rate, window } => write!(
                f,
                "fewer than {min_rate} bytes per second over {} s",
                window.as_secs()
            ),
            Self::TooLarge(limit) => write!(f, "the request is larger than {limit} bytes"),
            Self::HeadersTooLarge(limit) => {
                write!(f, "the part headers are larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for BodyError {}

pin_project! {
    /// Adapts a request body to the multipart reader's input stream.
    ///
    /// - **Idle timeout** and **minimum rate** measure only the time spent *waiting* for the
    ///   body, from the first `Pending` on: time the server spent elsewhere (writing, running
    ///   event handlers) is not the client's fault. The timer is re-armed only when it fires,
    ///   so a busy upload costs one `Instant::now()` per wait.
    /// - **Request and part-header limits**, counted as bytes are pulled.
    pub(crate) struct BodyStream<B> {
        #[pin]
        body: B,
        gauge: Arc<Gauge>,
        limit: Option<u64>,
        idle: Option<Idle>,
        rate: Option<Rate>,
        // When the current wait for the body began; `None` while data is flowing.
        waiting_since: Option<Instant>,
        header_limit: usize,
    }
}

struct Idle {
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

/// The minimum transfer rate, measured over windows of waiting time.
#[derive(Debug, Clone, Copy)]
struct Rate {
    min: u64,
    window: Duration,
    /// Waiting time in the current window.
    waited: Duration,
    /// Bytes received in the current window.
    bytes: u64,
}

impl Rate {
    /// Counts `bytes` that arrived after `waited`; false once a whole window of waiting
    /// brought fewer bytes than the minimum.
    fn record(&mut self, waited: Duration, bytes: u64) -> bool {
        self.waited += waited;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.waited < self.window {
            return true;
        }
        let needed = (self.min as f64 * self.waited.as_secs_f64()) as u64;
        let fast_enough = self.bytes >= needed;
        self.waited = Duration::ZERO;
        self.bytes = 0;
        fast_enough
    }
}

/// How slow a body may be: the idle timeout and the minimum rate `(bytes per second, window
/// of waiting time)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pace {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) min_rate: Option<(u64, Duration)>,
}

impl<B> BodyStream<B> {
    pub(crate) fn new(
        body: B,
        gauge: Arc<Gauge>,
        limit: Option<u64>,
        pace: Pace,
        header_limit: usize,
    ) -> Self {
        let idle = pace.idle_timeout.map(|timeout| Idle {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        });
        let rate = pace
            .min_rate
            .filter(|&(min, window)| min > 0 && !window.is_zero())
            .map(|(min, window)| Rate {
                min,
                window,
                waited: Duration::ZERO,
                bytes: 0,
            });
        Self {
            body,
            gauge,
            limit,
            idle,
            rate,
            waiting_since: None,
            header_limit,
        }
    }
}

impl Idle {
    /// Whether the wait that began at `since` has lasted the whole timeout; re-arms the timer
    /// otherwise.
    fn expired(&mut self, since: Instant, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = since + self.timeout;
            if Instant::now() >= deadline {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<B> Stream for BodyStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let frame = match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if this.idle.is_none() && this.rate.is_none() {
                        return Poll::Pending;
                    }
                    let since = *this.waiting_since.get_or_insert_with(Instant::now);
                    if let Some(idle) = this.idle.as_mut() {
                        if idle.expired(since, cx) {
                            return Poll::Ready(Some(Err(BodyError::Idle(idle.timeout))));
                        }
                    }
                    return Poll::Pending;
                }
            };
            let data = match frame {
                None => return Poll::Ready(None),
                Some(Err(error)) => return Poll::Ready(Some(Err(BodyError::Read(error.into())))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    // Trailers and empty frames carry nothing for us.
                    _ => continue,
                },
            };
            let before = this
                .gauge
                .pulled
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Some(limit) = *this.limit {
                if before + data.len() as u64 > limit {
                    return Poll::Ready(Some(Err(BodyError::TooLarge(limit))));
                }
            }
            // Headers that still have not ended once their budget is spent are too large. A
            // read that starts within the budget is fine whatever its size: one socket read
            // can hold the rest of the headers and much of the part's data.
            // The reader may read one chunk more than it needs before it parses (it reads
            // while it looks for the first boundary), so the first read past the budget passes;
            // the upload path checks the parsed headers' size exactly.
            if before >= this.gauge.header_limit_at.load(Ordering::Relaxed)
                && this.gauge.over_budget.swap(true, Ordering::Relaxed)
            {
                return Poll::Ready(Some(Err(BodyError::HeadersTooLarge(*this.header_limit))));
            }
            let waited = this
                .waiting_since
                .take()
                .map_or(Duration::ZERO, |since| since.elapsed());
            if let Some(rate) = this.rate.as_mut() {
                if !rate.record(waited, data.len() as u64) {
                    return Poll::Ready(Some(Err(BodyError::TooSlow {
                        min_rate: rate.min,
                        window: rate.window,
                    })));
                }
            }
            return Poll::Ready(Some(Ok(data)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|part| Ok(http_body::Frame::data(Bytes::from_static(part))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn enforces_the_request_limit() {
        let gauge = Gauge::new();
        let stream = BodyStream::new(
            chunks(&[b"1234", b"5678"]),
            gauge.clone(),
            Some(6),
            Pace::default(),
            10,
        );
        let items: Vec<_> = stream.collect().await;
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err(BodyError::TooLarge(6))));
        assert_eq!(gauge.pulled(), 8);
    }

    #[tokio::test]
    async fn enforces_the_header_limit_only_while_armed() {
        let gauge = Gauge::new();
        let stream = BodyStream::new(
            chunks(&[b"12345", b"67890", b"abcde", b"fghij"]),
            gauge.clone(),
            None,
            Pace::default(),
            3,
        );
        let mut stream = std::pin::pin!(stream);
        assert!(stream.next().await.unwrap().is_ok());
        gauge.begin_headers(3);
        // A read that starts within the budget passes whatever its size...
        assert!(stream.next().await.unwrap().is_ok());
        // ...and so does one more (the reader may read a chunk ahead)...
        assert!(stream.next().await.unwrap().is_ok());
        // ...but asking for more again does not.
        assert!(matches!(
            stream.next().await.unwrap(),
            Err(BodyError::HeadersTooLarge(3))
        ));
        gauge.end_headers();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_on_a_silent_body() {
        let (mut sender, body) = channel_body();
        let stream = BodyStream::new(body, Gauge::new(), None, idle(5), 10);
        let mut stream = std::pin::pin!(stream);
        sender.send(Bytes::from_static(b"x")).await;
        assert!(stream.next().await.unwrap().is_ok());
        let started = Instant::now();
        let item = stream.next().await.unwrap();
        assert!(matches!(item, Err(BodyError::Idle(_))), "{item:?}");
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn steady_data_keeps_the_idle_timer_away() {
        let (mut sender, body) = channel_body();
        let stream = BodyStream::new(body, Gauge::new(), None, idle(5), 10);
        let feeder = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                sender.send(Bytes::from_static(b"tick")).await;
            }
        });
        let items: Vec<_> = stream.collect().await;
        feeder.await.unwrap();
        assert_eq!(items.len(), 10);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn body_errors_and_trailers() {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"a"))),
            Ok(http_body::Frame::trailers(http::HeaderMap::new())),
            Err("connection reset".into()),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let items: Vec<_> = BodyStream::new(body, Gauge::new(), None, Pace::default(), 10)
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[1], Err(BodyError::Read(e)) if e.to_string() == "connection reset")
        );
    }

    fn idle(seconds: u64) -> Pace {
        Pace {
            idle_timeout: Some(Duration::from_secs(seconds)),
            min_rate: None,
        }
    }

    /// The idle timeout counts waits for the body only: a consumer busy for longer than the
    /// timeout between two reads is not a silent client (this failed before the fix).
    #[tokio::test(start_paused = true)]
    async fn time_the_server_is_busy_is_not_idle_time() {
        let (mut sender, body) = channel_body();
        let stream = BodyStream::new(body, Gauge::new(), None, idle(5), 10);
        let mut stream = std::pin::pin!(stream);
        sender.send(Bytes::from_static(b"a")).await;
        assert!(stream.next().await.unwrap().is_ok());
        // The server is busy for 8 s (say, an event handler), then waits 1 s for the next chunk.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sender.send(Bytes::from_static(b"b")).await;
            sender
        });
        let item = stream.next().await.unwrap();
        assert!(item.is_ok(), "{item:?}");
        drop(feeder.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_minimum_rate_is_cut_off() {
        let (mut sender, body) = channel_body();
        let pace = Pace {
            idle_timeout: Some(Duration::from_secs(30)),
            min_rate: Some((100, Duration::from_secs(10))),
        };
        let stream = BodyStream::new(body, Gauge::new(), None, pace, 10);
        let feeder = tokio::spawn(async move {
            // One byte every 3 s: never idle for 30 s, but 0.33 bytes per second.
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                sender.send(Bytes::from_static(b"x")).await;
            }
        });
        let items: Vec<_> = stream.take(20).collect().await;
        let cut = items.iter().position(Result::is_err).expect("cut off");
        assert!(
            matches!(items[cut], Err(BodyError::TooSlow { min_rate: 100, .. })),
            "{:?}",
            items[cut]
        );
        // A whole window of waiting (10 s) at one byte per 3 s: the fourth byte ends it.
        assert_eq!(cut, 3);
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_upload_above_the_minimum_rate_passes() {
        let (mut sender, body) = channel_body();
        let pace = Pace {
            idle_timeout: None,
            min_rate: Some((100, Duration::from_secs(10))),
        };
        let stream = BodyStream::new(body, Gauge::new(), None, pace, 10);
        let feeder = tokio::spawn(async move {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                sender.send(Bytes::from(vec![0u8; 150])).await;
            }
        });
        let items: Vec<_> = stream.collect().await;
        feeder.await.unwrap();
        assert_eq!(items.len(), 30);
        assert!(items.iter().all(Result::is_ok));
    }

    struct Sender(tokio::sync::mpsc::Sender<Bytes>);

    impl Sender {
        async fn send(&mut self, data: Bytes) {
            self.0.send(data).await.unwrap();
        }
    }

    fn channel_body() -> (Sender, impl Body<Data = Bytes, Error = BoxError>) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|data| (Ok::<_, BoxError>(http_body::Frame::data(data)), rx))
        });
        (Sender(tx), StreamBody::new(stream))
    }
}
