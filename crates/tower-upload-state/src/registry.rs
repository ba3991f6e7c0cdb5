//! [`UploadRegistry`]: the uploads in flight and the records of recent ones.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::metrics::{Counters, RegistryMetrics};
use crate::store::{ClaimError, ProgressStore, StoreError};
use crate::sync::lock;
use crate::{FileError, MemoryStore, UploadInfo, UploadKey, UploadStatus};

/// The shared state of uploads: what the upload layer writes and the status service reads.
///
/// A cheap [`Clone`] handle (an [`Arc`] inside): give one clone to
/// `UploadLayer` and one to `UploadStatusService`. It plays the role of igUpload's
/// `UploadProgressManager`.
///
/// - Uploads streaming in this process are kept in a table of their own, with an atomic byte
///   counter each: recording progress takes no lock, and a status query sees every byte.
/// - Records are kept in a [`ProgressStore`] (by default a bounded [`MemoryStore`]), where
///   finished and failed uploads stay queryable for the store's retention.
///
/// # Example
///
/// ```
/// use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadRegistry, UploadStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = UploadRegistry::new();
/// let key = UploadKey::parse("k1")?;
///
/// // The upload layer registers the key before it reads the body...
/// let upload = registry.begin(UploadInfo::new(key.clone())).await?;
/// upload.set_status(UploadStatus::Started).await?;
/// upload.add_bytes(4096);
///
/// // ...and the status service reads it meanwhile.
/// let info = registry.snapshot(&key).await?.expect("registered");
/// assert_eq!((info.status, info.bytes_uploaded), (UploadStatus::Started, 4096));
///
/// upload.finish(UploadStatus::Finished, FileError::None, None).await;
/// let info = registry.snapshot(&key).await?.expect("kept for the retention");
/// assert_eq!(info.status, UploadStatus::Finished);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "UploadProgressManager")]
#[derive(Clone)]
pub struct UploadRegistry {
    shared: Arc<Shared>,
}

struct Shared {
    store: Box<dyn ProgressStore>,
    live: Mutex<HashMap<UploadKey, Arc<LiveUpload>>>,
    /// `Some` for shared stores: how often live progress is published to the store.
    progress_interval: Option<Duration>,
    /// The origin of [`LiveUpload::last_published`].
    epoch: Instant,
    counters: Counters,
}

/// An upload streaming in this process.
#[derive(Debug)]
struct LiveUpload {
    bytes: AtomicU64,
    cancel_requested: AtomicBool,
    cancel: Notify,
    /// When progress was last published to a shared store (milliseconds since the epoch,
    /// plus one; 0 for never).
    last_published: AtomicU64,
    /// Whether a trailing publication is scheduled.
    flush_scheduled: AtomicBool,
    /// Everything but the byte count, which lives in `bytes`.
    info: Mutex<UploadInfo>,
}

impl LiveUpload {
    fn snapshot(&self) -> UploadInfo {
        let mut info = lock(&self.info).clone();
        info.bytes_uploaded = self.bytes.load(Ordering::Relaxed);
        info
    }

    fn request_cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
        self.cancel.notify_waiters();
    }
}

impl Default for UploadRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for UploadRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadRegistry")
            .field("store", &self.shared.store)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl UploadRegistry {
    /// A registry over a [`MemoryStore`] with its defaults (10 minutes of retention, 10 000
    /// records).
    #[must_use]
    pub fn new() -> Self {
        Self::with_store(MemoryStore::new())
    }

    /// A registry over `store`.
    #[must_use]
    pub fn with_store(store: impl ProgressStore) -> Self {
        let progress_interval = store.progress_interval();
        let shared = Arc::new(Shared {
            store: Box::new(store),
            live: Mutex::default(),
            progress_interval,
            epoch: Instant::now(),
            counters: Counters::default(),
        });
        // The store must not keep the registry alive: it only holds a weak reference.
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        shared.store.watch_cancels(Arc::new(move |key: &UploadKey| {
            if let Some(shared) = weak.upgrade() {
                if let Some(live) = lock(&shared.live).get(key) {
                    live.request_cancel();
                }
            }
        }));
        Self { shared }
    }

    /// Counters of the uploads this registry has seen in this process, for export.
    #[must_use]
    pub fn metrics(&self) -> RegistryMetrics {
        let live = lock(&self.shared.live);
        let live_bytes: u64 = live
            .values()
            .map(|upload| upload.bytes.load(Ordering::Relaxed))
            .sum();
        self.shared.counters.snapshot(live.len(), live_bytes)
    }

    /// The store behind this registry.
    #[must_use]
    pub fn store(&self) -> &dyn ProgressStore {
        &*self.shared.store
    }

    /// How long terminal records stay queryable.
    #[must_use]
    pub fn retention(&self) -> Duration {
        self.shared.store.retention()
    }

    /// How many uploads are streaming in this process.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.live).len()
    }

    /// Registers a new upload under `info.key` and returns the handle the upload is driven
    /// with.
    ///
    /// Register before reading the body: the widget asks for the status right after its POST
    /// and gives up on a key it does not find.
    ///
    /// # Errors
    ///
    /// See [`ProgressStore::claim`]: the key is in flight ([`ClaimError::InFlight`]), was
    /// rejected before ([`ClaimError::Rejected`]), the store is full ([`ClaimError::Full`]) or
    /// failed ([`ClaimError::Store`]).
    ///
    /// When the store fails (a shared store that is unreachable), the upload goes on with
    /// this process's own record: the file is still received and kept, and this instance
    /// answers for it; other instances cannot until the store is back.
    pub async fn begin(&self, info: UploadInfo) -> Result<UploadHandle, ClaimError> {
        match self.shared.store.claim(&info).await {
            Ok(()) | Err(ClaimError::Store(_)) => {}
            Err(refused) => return Err(refused),
        }
        self.shared.counters.started();
        let key = info.key.clone();
        let live = Arc::new(LiveUpload {
            bytes: AtomicU64::new(info.bytes_uploaded),
            cancel_requested: AtomicBool::new(false),
            cancel: Notify::new(),
            last_published: AtomicU64::new(0),
            flush_scheduled: AtomicBool::new(false),
            info: Mutex::new(info),
        });
        lock(&self.shared.live).insert(key.clone(), Arc::clone(&live));
        Ok(UploadHandle {
            registry: self.clone(),
            key,
            live,
            done: false,
        })
    }

    /// The current state of `key`: live from this process if it streams here, else the stored
    /// record. `None` when the key is unknown or its record expired.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn snapshot(&self, key: &UploadKey) -> Result<Option<UploadInfo>, StoreError> {
        if let Some(live) = self.live(key) {
            return Ok(Some(live.snapshot()));
        }
        self.shared.store.load(key).await
    }

    /// Asks the upload of `key` to stop, and returns its state at the time of asking.
    ///
    /// An upload streaming here is woken at once (its
    /// [`cancelled`](UploadHandle::cancelled) future resolves); otherwise the store is asked
    /// to tell the instance that streams it. Cancelling an unknown or finished key changes
    /// nothing and is not an error.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn cancel(&self, key: &UploadKey) -> Result<Option<UploadInfo>, StoreError> {
        if let Some(live) = self.live(key) {
            live.request_cancel();
            return Ok(Some(live.snapshot()));
        }
        let info = self.shared.store.load(key).await?;
        if info.as_ref().is_some_and(|info| info.status.is_in_flight()) {
            self.shared.store.request_cancel(key).await?;
        }
        Ok(info)
    }

    /// Records the answer to the widget's `command=fileSize` for `key`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn record_file_size(&self, key: &UploadKey, size: u64) -> Result<(), StoreError> {
        self.shared.store.put_file_size(key, size).await
    }

    /// Takes the `fileSize` answer for `key`: a second call returns `None`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn take_file_size(&self, key: &UploadKey) -> Result<Option<u64>, StoreError> {
        self.shared.store.take_file_size(key).await
    }

    fn live(&self, key: &UploadKey) -> Option<Arc<LiveUpload>> {
        lock(&self.shared.live).get(key).cloned()
    }

    fn forget_live(&self, key: &UploadKey, live: &Arc<LiveUpload>) {
        let mut table = lock(&self.shared.live);
        // The key may have been claimed again since; only remove our own entry.
        if table.get(key).is_some_and(|entry| Arc::ptr_eq(entry, live)) {
            table.remove(key);
        }
    }
}

/// One registered upload, owned by whoever streams it (the upload layer).
///
/// Dropping it before [`finish`](Self::finish) or [`abandon`](Self::abandon) (for example
/// because the request future was dropped when the client went away) records
/// [`UploadStatus::CanceledByClientConnection`].
#[must_use = "dropping an UploadHandle records the upload as canceled by the client"]
pub struct UploadHandle {
    registry: UploadRegistry,
    key: UploadKey,
    live: Arc<LiveUpload>,
    done: bool,
}

impl fmt::Debug for UploadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadHandle")
            .field("key", &self.key)
            .field("bytes_uploaded", &self.bytes_uploaded())
            .field("cancel_requested", &self.is_cancel_requested())
            .finish()
    }
}

impl UploadHandle {
    /// The upload's key.
    #[must_use]
    pub fn key(&self) -> &UploadKey {
        &self.key
    }

    /// Adds `n` received bytes and returns the new total. Lock-free: call it per chunk.
    pub fn add_bytes(&self, n: u64) -> u64 {
        self.live.bytes.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Bytes received so far.
    #[must_use]
    pub fn bytes_uploaded(&self) -> u64 {
        self.live.bytes.load(Ordering::Relaxed)
    }

    /// Changes the record in this process (file name, MIME type, size, message); call
    /// [`save`](Self::save) to publish it to a shared store as well.
    pub fn update<R>(&self, f: impl FnOnce(&mut UploadInfo) -> R) -> R {
        f(&mut lock(&self.live.info))
    }

    /// The upload's current state.
    #[must_use]
    pub fn snapshot(&self) -> UploadInfo {
        self.live.snapshot()
    }

    /// Moves the upload to a non-terminal `status` and publishes its state to the store.
    ///
    /// # Errors
    ///
    /// The store failed; the status is changed in this process regardless.
    pub async fn set_status(&self, status: UploadStatus) -> Result<(), StoreError> {
        debug_assert!(!status.is_terminal(), "use finish() for terminal statuses");
        self.update(|info| info.status = status);
        self.save().await
    }

    /// Publishes the byte count to a shared store, at most once per the store's progress
    /// interval: the first call publishes at once; a call within the interval schedules one
    /// publication at its end, so the last progress before a stall is not lost. Returns at
    /// once for a store that is not shared (the memory store). A store failure is ignored.
    pub async fn checkpoint(&self) {
        let Some(interval) = self.registry.shared.progress_interval else {
            return;
        };
        let shared = &self.registry.shared;
        // Milliseconds since the registry's epoch, plus one so that 0 means "never".
        let now = shared.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.live.last_published.load(Ordering::Relaxed);
        let interval_ms = interval.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < interval_ms {
            self.schedule_flush(Duration::from_millis(last + interval_ms - now));
            return;
        }
        self.live.last_published.store(now, Ordering::Relaxed);
        let _ = self.save().await;
    }

    fn schedule_flush(&self, delay: Duration) {
        if self.live.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.live.flush_scheduled.store(false, Ordering::Release);
            return;
        };
        let (registry, live) = (self.registry.clone(), Arc::clone(&self.live));
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            live.flush_scheduled.store(false, Ordering::Release);
            let now = registry.shared.epoch.elapsed().as_millis() as u64 + 1;
            live.last_published.store(now, Ordering::Relaxed);
            // A shared store must not let this late write undo a final status (the Redis
            // store's save script refuses to).
            let _ = registry.shared.store.save(&live.snapshot()).await;
        });
    }

    /// Publishes the upload's current state to the store.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn save(&self) -> Result<(), StoreError> {
        let info = self.snapshot();
        self.registry.shared.store.save(&info).await
    }

    /// Whether a cancel was requested.
    #[must_use]
    pub fn is_cancel_requested(&self) -> bool {
        self.live.cancel_requested.load(Ordering::Acquire)
    }

    /// Resolves once a cancel is requested (at once if it already was).
    pub async fn cancelled(&self) {
        loop {
            // Created before the flag is read: `notify_waiters` wakes a `Notified` from its
            // creation on, so a cancel between the read and the await is not missed.
            let notified = self.live.cancel.notified();
            if self.is_cancel_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Asks this upload to stop, as a `command=cancel` would (for server-side shutdown).
    pub fn request_cancel(&self) {
        self.live.request_cancel();
    }

    /// Ends the upload with a terminal `status`, `error` and message, publishes the final
    /// record and returns it. A store failure is not reported: the record stays correct in
    /// this process until the handle is gone, and the upload's outcome does not depend on it.
    pub async fn finish(
        mut self,
        status: UploadStatus,
        error: FileError,
        server_message: Option<String>,
    ) -> UploadInfo {
        self.done = true;
        let info = self.record_terminal(status, error, server_message);
        let _ = self.registry.shared.store.save(&info).await;
        self.registry.forget_live(&self.key, &self.live);
        info
    }

    /// Forgets an upload that never started (for example because another key of its batch
    /// was refused), as if it had never been registered.
    pub async fn abandon(mut self) {
        self.done = true;
        self.registry.shared.counters.abandoned();
        let _ = self.registry.shared.store.remove(&self.key).await;
        self.registry.forget_live(&self.key, &self.live);
    }

    fn record_terminal(
        &self,
        status: UploadStatus,
        error: FileError,
        server_message: Option<String>,
    ) -> UploadInfo {
        debug_assert!(status.is_terminal(), "finish() takes terminal statuses");
        self.registry
            .shared
            .counters
            .ended(status, self.bytes_uploaded());
        self.update(|info| {
            info.status = status;
            info.error = error;
            if server_message.is_some() {
                info.server_message = server_message;
            }
            info.finished_at = Some(SystemTime::now());
        });
        self.snapshot()
    }
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let info = self.record_terminal(
            UploadStatus::CanceledByClientConnection,
            FileError::None,
            None,
        );
        let registry = self.registry.clone();
        let save = async move {
            let _ = registry.shared.store.save(&info).await;
        };
        run_or_spawn(save);
        self.registry.forget_live(&self.key, &self.live);
    }
}

/// Runs `future` to completion if it is ready at once (the memory store always is), else
/// spawns it on the current tokio runtime; without a runtime it is dropped.
fn run_or_spawn(future: impl Future<Output = ()> + Send + 'static) {
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    if future.as_mut().poll(&mut cx).is_ready() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(text: &str) -> UploadKey {
        UploadKey::parse(text).unwrap()
    }

    #[tokio::test]
    async fn begin_refuses_a_key_in_flight_and_snapshot_is_live() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("a"))).await.unwrap();
        assert!(matches!(
            registry.begin(UploadInfo::new(key("a"))).await,
            Err(ClaimError::InFlight)
        ));
        upload.add_bytes(5);
        upload.add_bytes(6);
        let info = registry.snapshot(&key("a")).await.unwrap().unwrap();
        assert_eq!(info.bytes_uploaded, 11);
        assert_eq!(registry.in_flight(), 1);
        let info = upload
            .finish(
                UploadStatus::FileSizeExceeded,
                FileError::FileSizeExceeded,
                Some("too big".into()),
            )
            .await;
        assert_eq!(info.server_message.as_deref(), Some("too big"));
        assert_eq!(registry.in_flight(), 0);
        let stored = registry.snapshot(&key("a")).await.unwrap().unwrap();
        assert_eq!(stored, info);
        assert!(stored.finished_at.is_some());
        match registry.begin(UploadInfo::new(key("a"))).await {
            Err(ClaimError::Rejected(previous)) => assert_eq!(*previous, info),
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_keys_have_no_snapshot() {
        let registry = UploadRegistry::new();
        assert_eq!(registry.snapshot(&key("nope")).await.unwrap(), None);
        assert_eq!(registry.cancel(&key("nope")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cancel_wakes_a_waiting_upload() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("c"))).await.unwrap();
        assert!(!upload.is_cancel_requested());
        let waiter = tokio::spawn(async move {
            upload.cancelled().await;
            upload
                .finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
                .await
        });
        tokio::task::yield_now().await;
        let seen = registry.cancel(&key("c")).await.unwrap().unwrap();
        assert!(seen.status.is_in_flight());
        let info = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the cancel woke the upload")
            .unwrap();
        assert_eq!(info.status, UploadStatus::CanceledByClientCommand);
        // Cancelling a finished key answers its state and changes nothing.
        let again = registry.cancel(&key("c")).await.unwrap().unwrap();
        assert_eq!(again.status, UploadStatus::CanceledByClientCommand);
    }

    #[tokio::test]
    async fn a_cancel_before_waiting_is_not_lost() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("early"))).await.unwrap();
        registry.cancel(&key("early")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), upload.cancelled())
            .await
            .expect("resolves at once");
        upload.abandon().await;
    }

    #[tokio::test]
    async fn dropping_a_handle_records_a_disconnect() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("d"))).await.unwrap();
        upload.add_bytes(3);
        drop(upload);
        let info = registry.snapshot(&key("d")).await.unwrap().unwrap();
        assert_eq!(info.status, UploadStatus::CanceledByClientConnection);
        assert_eq!(info.bytes_uploaded, 3);
        assert_eq!(registry.in_flight(), 0);
        // A disconnected key may be posted again (the browser retries).
        let retry = registry.begin(UploadInfo::new(key("d"))).await.unwrap();
        retry.abandon().await;
        assert_eq!(registry.snapshot(&key("d")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn retention_expires_terminal_records() {
        let registry = UploadRegistry::with_store(
            MemoryStore::new().with_retention(Duration::from_millis(50)),
        );
        let upload = registry.begin(UploadInfo::new(key("r"))).await.unwrap();
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        assert!(registry.snapshot(&key("r")).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(registry.snapshot(&key("r")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn capacity_refuses_new_uploads_when_only_live_ones_remain() {
        let registry = UploadRegistry::with_store(MemoryStore::new().with_capacity(2));
        let first = registry.begin(UploadInfo::new(key("1"))).await.unwrap();
        let _second = registry.begin(UploadInfo::new(key("2"))).await.unwrap();
        assert!(matches!(
            registry.begin(UploadInfo::new(key("3"))).await,
            Err(ClaimError::Full { capacity: 2 })
        ));
        first
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        // A terminal record can be evicted to make room.
        let _third = registry.begin(UploadInfo::new(key("3"))).await.unwrap();
        assert_eq!(registry.snapshot(&key("1")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn file_size_answers_are_read_once() {
        let registry = UploadRegistry::new();
        registry.record_file_size(&key("f"), 1234).await.unwrap();
        assert_eq!(
            registry.take_file_size(&key("f")).await.unwrap(),
            Some(1234)
        );
        assert_eq!(registry.take_file_size(&key("f")).await.unwrap(), None);
    }

    /// A shared-looking store: the memory store plus a progress interval and a write count.
    #[derive(Debug)]
    struct Throttled {
        inner: MemoryStore,
        saves: std::sync::atomic::AtomicUsize,
    }

    impl ProgressStore for Throttled {
        fn claim<'a>(
            &'a self,
            info: &'a UploadInfo,
        ) -> crate::StoreFuture<'a, Result<(), ClaimError>> {
            self.inner.claim(info)
        }
        fn save<'a>(
            &'a self,
            info: &'a UploadInfo,
        ) -> crate::StoreFuture<'a, Result<(), StoreError>> {
            self.saves.fetch_add(1, Ordering::Relaxed);
            self.inner.save(info)
        }
        fn remove<'a>(
            &'a self,
            key: &'a UploadKey,
        ) -> crate::StoreFuture<'a, Result<(), StoreError>> {
            self.inner.remove(key)
        }
        fn load<'a>(
            &'a self,
            key: &'a UploadKey,
        ) -> crate::StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
            self.inner.load(key)
        }
        fn put_file_size<'a>(
            &'a self,
            key: &'a UploadKey,
            size: u64,
        ) -> crate::StoreFuture<'a, Result<(), StoreError>> {
            self.inner.put_file_size(key, size)
        }
        fn take_file_size<'a>(
            &'a self,
            key: &'a UploadKey,
        ) -> crate::StoreFuture<'a, Result<Option<u64>, StoreError>> {
            self.inner.take_file_size(key)
        }
        fn retention(&self) -> Duration {
            self.inner.retention()
        }
        fn progress_interval(&self) -> Option<Duration> {
            Some(Duration::from_millis(100))
        }
    }

    #[tokio::test]
    async fn checkpoints_are_throttled_and_the_last_progress_is_published() {
        let store = Arc::new(Throttled {
            inner: MemoryStore::new(),
            saves: Default::default(),
        });
        let registry = UploadRegistry::with_store(Arc::clone(&store));
        let upload = registry.begin(UploadInfo::new(key("t"))).await.unwrap();
        for _ in 0..1_000 {
            upload.add_bytes(10);
            upload.checkpoint().await;
        }
        // One at once; the burst within the interval is folded into one trailing write.
        assert_eq!(store.saves.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(store.saves.load(Ordering::Relaxed), 2);
        let stored = store.inner.load(&key("t")).await.unwrap().unwrap();
        assert_eq!(
            stored.bytes_uploaded, 10_000,
            "the trailing write has the last count"
        );
        upload.abandon().await;
    }

    #[tokio::test]
    async fn metrics_count_what_the_registry_saw() {
        let registry = UploadRegistry::new();
        let done = registry.begin(UploadInfo::new(key("m1"))).await.unwrap();
        done.add_bytes(100);
        done.finish(UploadStatus::Finished, FileError::None, None)
            .await;
        let dropped = registry.begin(UploadInfo::new(key("m2"))).await.unwrap();
        dropped.add_bytes(7);
        drop(dropped);
        let never = registry.begin(UploadInfo::new(key("m3"))).await.unwrap();
        never.abandon().await;
        let live = registry.begin(UploadInfo::new(key("m4"))).await.unwrap();
        live.add_bytes(5);
        let metrics = registry.metrics();
        assert_eq!(metrics.uploads_started, 3);
        assert_eq!(metrics.ended(UploadStatus::Finished), 1);
        assert_eq!(metrics.ended(UploadStatus::CanceledByClientConnection), 1);
        assert_eq!(metrics.bytes_received, 112);
        assert_eq!(metrics.in_flight, 1);
        live.abandon().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_progress_loses_no_bytes() {
        const TASKS: u64 = 16;
        const CHUNKS: u64 = 2_000;
        let registry = UploadRegistry::new();
        let mut writers = Vec::new();
        for task in 0..TASKS {
            let upload = registry
                .begin(UploadInfo::new(key(&format!("p{task}"))))
                .await
                .unwrap();
            writers.push(tokio::spawn(async move {
                for chunk in 0..CHUNKS {
                    upload.add_bytes(chunk % 7 + 1);
                    if chunk % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                upload
                    .finish(UploadStatus::Finished, FileError::None, None)
                    .await
            }));
        }
        let reader = {
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut last = vec![0u64; TASKS as usize];
                for _ in 0..2_000 {
                    for (task, last) in last.iter_mut().enumerate() {
                        if let Some(info) =
                            registry.snapshot(&key(&format!("p{task}"))).await.unwrap()
                        {
                            assert!(info.bytes_uploaded >= *last, "progress never goes back");
                            *last = info.bytes_uploaded;
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let expected: u64 = (0..CHUNKS).map(|chunk| chunk % 7 + 1).sum();
        for writer in writers {
            assert_eq!(writer.await.unwrap().bytes_uploaded, expected);
        }
        reader.await.unwrap();
        for task in 0..TASKS {
            let info = registry
                .snapshot(&key(&format!("p{task}")))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(info.bytes_uploaded, expected);
        }
    }
}
