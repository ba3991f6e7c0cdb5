//! [`UploadRegistry`]: the uploads in flight and the records of recent ones, and
//! [`UploadHandle`]: the contract between the registry and a protocol front-end.
//!
//! See [`UploadHandle`] for the front-end contract.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::metrics::{Counters, RegistryMetrics};
use crate::store::{Claim, ClaimError, ClaimToken, ProgressStore, StoreError};
use crate::sync::lock;
use crate::watch::{Bells, RemoteFeed};
use crate::{FileError, MemoryStore, UploadInfo, UploadKey, UploadStatus};

/// The longest a `begin` waits for the final save of an earlier claim of its key that ended
/// in this process (a dropped handle). Stores time their operations out well before.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// Maps a request to the owner its uploads are bound to (see [`UploadRegistry::with_owner`]).
type OwnerFn = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

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
/// - Uploads may be bound to owners ([`with_owner`](Self::with_owner)): the binding is
///   defined here, once, and both services apply it.
///
/// See [`UploadHandle`] for what a protocol front-end does with it (the front-end contract).
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
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) store: Box<dyn ProgressStore>,
    live: Mutex<HashMap<UploadKey, Arc<LiveUpload>>>,
    /// `Some` for shared stores: how often live progress is published to the store.
    progress_interval: Option<Duration>,
    /// The origin of [`LiveUpload::last_published`].
    epoch: Instant,
    counters: Counters,
    owner: Mutex<Option<OwnerFn>>,
    /// Whether `owner` is set: read without the lock on the status service's fast path.
    owner_bound: AtomicBool,
    /// The records of keys watched here but not streaming here (see `crate::watch`).
    pub(crate) remote: Mutex<HashMap<UploadKey, Weak<RemoteFeed>>>,
}

/// Where a [`LiveUpload`] is: the table holds it from the claim until its final record is
/// stored.
const CLAIMING: u8 = 0;
const LIVE: u8 = 1;
const ENDED: u8 = 2;

/// An upload claimed in this process.
#[derive(Debug)]
pub(crate) struct LiveUpload {
    pub(crate) bytes: AtomicU64,
    /// Bumped by every change but the byte count (under `info`'s lock): progress watchers
    /// compare it and `bytes` with what they saw, two atomic loads.
    pub(crate) version: AtomicU64,
    /// Progress watchers to wake at once on such a change (a status, above all).
    pub(crate) bells: Bells,
    cancel_requested: AtomicBool,
    cancel: Notify,
    /// When progress was last published to a shared store (milliseconds since the epoch,
    /// plus one; 0 for never).
    last_published: AtomicU64,
    /// Whether a trailing publication is scheduled.
    flush_scheduled: AtomicBool,
    /// Everything but the byte count, which lives in `bytes`.
    info: Mutex<UploadInfo>,
    /// The token every save of this claim carries.
    token: ClaimToken,
    /// `CLAIMING` while the store is asked, `LIVE` while streaming, `ENDED` once terminal
    /// (changed under the table's lock, so that metrics see a consistent picture).
    phase: AtomicU8,
    /// Set (and `settle` notified) once the entry has left the table.
    settled: AtomicBool,
    settle: Notify,
    /// The byte count the claim started from (a resumed upload's offset): only what came
    /// after it counts in the metrics.
    initial_bytes: u64,
    /// Set when a newer request for the same resumable upload asks this one to let go.
    yield_requested: AtomicBool,
    yield_notify: Notify,
}

impl LiveUpload {
    fn new(info: UploadInfo, token: ClaimToken) -> Self {
        let initial_bytes = info.bytes_uploaded;
        Self {
            bytes: AtomicU64::new(info.bytes_uploaded),
            version: AtomicU64::new(0),
            bells: Bells::default(),
            cancel_requested: AtomicBool::new(false),
            cancel: Notify::new(),
            last_published: AtomicU64::new(0),
            flush_scheduled: AtomicBool::new(false),
            info: Mutex::new(info),
            token,
            phase: AtomicU8::new(CLAIMING),
            settled: AtomicBool::new(false),
            settle: Notify::new(),
            initial_bytes,
            yield_requested: AtomicBool::new(false),
            yield_notify: Notify::new(),
        }
    }

    fn new_bytes(&self) -> u64 {
        self.bytes
            .load(Ordering::Relaxed)
            .saturating_sub(self.initial_bytes)
    }

    pub(crate) fn snapshot(&self) -> UploadInfo {
        let mut info = lock(&self.info).clone();
        info.bytes_uploaded = self.bytes.load(Ordering::Relaxed);
        info
    }

    /// Whether the claim ended without a terminal record ([`UploadHandle::abandon`]): the key
    /// is as unknown as if it had never been registered.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.phase() == ENDED && !lock(&self.info).status.is_terminal()
    }

    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn request_cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
        self.cancel.notify_waiters();
    }

    fn is_foreign_to(&self, owner: Option<&str>, owner_bound: bool) -> bool {
        lock(&self.info).is_foreign_to(owner, owner_bound)
    }

    /// Resolves once the entry has left the table, or after `limit`; true if it has.
    async fn settled(&self, limit: Duration) -> bool {
        let notified = self.settle.notified();
        if self.settled.load(Ordering::Acquire) {
            return true;
        }
        tokio::time::timeout(limit, notified).await.is_ok()
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
            .field("binds_owners", &self.binds_owners())
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
            owner: Mutex::new(None),
            owner_bound: AtomicBool::new(false),
            remote: Mutex::default(),
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
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        shared.store.watch_saves(Arc::new(move |info: &UploadInfo| {
            if let Some(shared) = weak.upgrade() {
                let feed = lock(&shared.remote).get(&info.key).and_then(Weak::upgrade);
                if let Some(feed) = feed {
                    feed.offer(Some(info.clone()));
                }
            }
        }));
        Self { shared }
    }

    /// Binds every upload to an owner that `owner` finds in the request (a session cookie, a
    /// user id): the one definition of the binding, which the upload layer and the status
    /// service both apply through [`owner_of`](Self::owner_of).
    ///
    /// With a binding, a key belongs to the owner of the request that claimed it
    /// ([`UploadInfo::owner`]), for as long as its record lives:
    ///
    /// - [`begin`](Self::begin) of that key for anyone else fails with
    ///   [`ClaimError::Foreign`], which tells nothing about the record (no replayed verdict,
    ///   no "in flight");
    /// - [`snapshot_for`](Self::snapshot_for) and [`cancel_for`](Self::cancel_for) answer
    ///   `None` to anyone else (the status service answers "no such file") and a stranger's
    ///   cancel changes nothing;
    /// - a `fileSize` answer recorded with
    ///   [`record_file_size_for`](Self::record_file_size_for) is taken only by the same
    ///   owner.
    ///
    /// Requests for which `owner` returns `None` share one anonymous owner. Off by default:
    /// the igUpload widget knows nothing of owners. It applies to every clone of this
    /// registry, earlier ones included; set it before the first upload.
    ///
    /// ```
    /// use tower_upload_state::UploadRegistry;
    ///
    /// let registry = UploadRegistry::new()
    ///     .with_owner(|parts| parts.headers.get("x-user")?.to_str().ok().map(str::to_owned));
    /// let (parts, ()) = http::Request::get("/").header("x-user", "alice").body(())?.into_parts();
    /// assert_eq!(registry.owner_of(&parts).as_deref(), Some("alice"));
    /// assert!(registry.binds_owners());
    /// # Ok::<(), http::Error>(())
    /// ```
    #[must_use]
    pub fn with_owner<F>(self, owner: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        *lock(&self.shared.owner) = Some(Arc::new(owner));
        self.shared.owner_bound.store(true, Ordering::Release);
        self
    }

    /// The owner of a request, as the [binding](Self::with_owner) finds it; `None` without
    /// a binding, or for an anonymous request.
    #[must_use]
    pub fn owner_of(&self, parts: &http::request::Parts) -> Option<String> {
        if !self.binds_owners() {
            return None;
        }
        let owner = lock(&self.shared.owner).clone();
        owner.and_then(|owner| owner(parts))
    }

    /// Whether uploads are bound to owners ([`with_owner`](Self::with_owner)).
    #[must_use]
    pub fn binds_owners(&self) -> bool {
        self.shared.owner_bound.load(Ordering::Acquire)
    }

    /// Counters of the uploads this registry has seen in this process, for export. Every
    /// counter only grows; an upload's bytes are counted once, while it streams or after.
    #[must_use]
    pub fn metrics(&self) -> RegistryMetrics {
        // Uploads move from live to ended (and their bytes from the live sum to the ended
        // counter) under this lock: a reader never sees them in both or in neither.
        let live = lock(&self.shared.live);
        let (mut in_flight, mut live_bytes) = (0, 0u64);
        for upload in live.values().filter(|upload| upload.phase() == LIVE) {
            in_flight += 1;
            live_bytes += upload.new_bytes();
        }
        self.shared.counters.snapshot(in_flight, live_bytes)
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
        lock(&self.shared.live)
            .values()
            .filter(|upload| upload.phase() == LIVE)
            .count()
    }

    /// Registers a new upload under `info.key` and returns the handle the upload is driven
    /// with.
    ///
    /// Register before reading the body: the widget asks for the status right after its POST
    /// and gives up on a key it does not find. The bounded fields of `info` are truncated
    /// (see [`UploadInfo`]); `info.owner` should be [`owner_of`](Self::owner_of) the request.
    ///
    /// If the key's previous upload in this process has ended but its final record is still
    /// on its way to the store (its handle was just dropped), this waits for it first (at
    /// most a few seconds), so that a browser's retry is not refused because of it.
    ///
    /// # Errors
    ///
    /// - [`ClaimError::Foreign`]: the key's record (live here, or stored) belongs to another
    ///   owner ([`UploadInfo::is_foreign_to`]); checked first.
    /// - [`ClaimError::InFlight`]: the key is streaming in this process, or in flight in the
    ///   store.
    /// - [`ClaimError::Rejected`]: its upload ended in a verdict that a repeat gets again
    ///   ([`UploadInfo::is_replayed_verdict`]).
    /// - [`ClaimError::Full`]: the store is full of uploads in flight.
    ///
    /// When the store fails ([`ClaimError::Store`], e.g. Redis is unreachable), the upload
    /// goes on with this process's own record: the file is still received and kept, and this
    /// instance answers for it; other instances cannot until the store is back. Claims of
    /// the same key in this process are still refused while it streams.
    pub async fn begin(&self, mut info: UploadInfo) -> Result<UploadHandle, ClaimError> {
        info.enforce_bounds();
        let owner_bound = self.binds_owners();
        let key = info.key.clone();
        let owner = info.owner.clone();
        let token = ClaimToken::random();
        let live = Arc::new(LiveUpload::new(info.clone(), token));
        // Reserve the key in this process first: two claims of one key here must not both
        // succeed, whatever the store answers (or fails to).
        loop {
            let ended = {
                let mut table = lock(&self.shared.live);
                match table.get(&key) {
                    Some(entry) => {
                        if entry.is_foreign_to(owner.as_deref(), owner_bound) {
                            return Err(ClaimError::Foreign);
                        }
                        if entry.phase() != ENDED {
                            return Err(ClaimError::InFlight);
                        }
                        Arc::clone(entry)
                    }
                    None => {
                        table.insert(key.clone(), Arc::clone(&live));
                        break;
                    }
                }
            };
            // An earlier claim ended and its final record is being stored: wait for it.
            if !ended.settled(SETTLE_WAIT).await {
                self.forget_live(&key, &ended);
            }
        }
        let mut reservation = Reservation {
            registry: self,
            key: &key,
            live: Some(Arc::clone(&live)),
            asking: true,
        };
        let claim = Claim::new(token).owner_bound(owner_bound);
        match self.shared.store.claim_with(&info, claim).await {
            Ok(()) | Err(ClaimError::Store(_)) => {}
            Err(refused) => {
                reservation.asking = false;
                return Err(refused);
            }
        }
        reservation.live = None;
        drop(reservation);
        {
            let _table = lock(&self.shared.live);
            self.shared.counters.started();
            live.phase.store(LIVE, Ordering::Release);
        }
        Ok(UploadHandle {
            registry: self.clone(),
            key,
            live,
            done: false,
        })
    }

    /// Takes the paused resumable upload of `key` (see [`Resumable`](crate::Resumable)) for
    /// one request of `owner`, and returns the handle that request drives it with: the
    /// handle starts at the stored offset; end the request with
    /// [`UploadHandle::pause`] (the upload waits for its next request), or with
    /// [`UploadHandle::finish`] as any upload. Dropping the handle ends the upload with
    /// status 8, as for any upload: a front-end that keeps data on a disconnect pauses.
    ///
    /// The request holds a lease of [`RESUME_LEASE`](Self::RESUME_LEASE), renewed by
    /// [`UploadHandle::renew_lease`]; once it lapses (the instance died mid-request) a new
    /// request may take the upload.
    ///
    /// # Errors
    ///
    /// - [`ClaimError::Foreign`]: the upload belongs to another owner.
    /// - [`ClaimError::InFlight`]: another request holds it (in this process: ask it to let
    ///   go with [`request_yield`](Self::request_yield) and try again).
    /// - [`ClaimError::NotResumable`]: unknown key, ended or expired upload, not resumable.
    /// - [`ClaimError::Store`]: the store failed or cannot resume uploads.
    pub async fn resume(
        &self,
        key: &UploadKey,
        owner: Option<String>,
    ) -> Result<UploadHandle, ClaimError> {
        let owner_bound = self.binds_owners();
        if let Some(entry) = lock(&self.shared.live).get(key) {
            if entry.is_foreign_to(owner.as_deref(), owner_bound) {
                return Err(ClaimError::Foreign);
            }
            if entry.phase() != ENDED {
                return Err(ClaimError::InFlight);
            }
        }
        let token = ClaimToken::random();
        let claim = Claim::new(token).owner_bound(owner_bound);
        let now = SystemTime::now();
        let info = self
            .shared
            .store
            .resume_with(key, claim, owner.as_deref(), now, now + Self::RESUME_LEASE)
            .await?;
        let live = Arc::new(LiveUpload::new(info, token));
        {
            let mut table = lock(&self.shared.live);
            if let Some(entry) = table.get(key) {
                if entry.phase() != ENDED {
                    return Err(ClaimError::InFlight);
                }
            }
            table.insert(key.clone(), Arc::clone(&live));
            self.shared.counters.resumed();
            live.phase.store(LIVE, Ordering::Release);
        }
        Ok(UploadHandle {
            registry: self.clone(),
            key: key.clone(),
            live,
            done: false,
        })
    }

    /// How long a request holds a resumed upload without renewing its lease.
    pub const RESUME_LEASE: Duration = Duration::from_secs(60);

    /// Asks the request that holds the resumable upload of `key` in this process to let it
    /// go (its [`UploadHandle::yield_requested`] resolves): what the IETF draft recommends
    /// when a new request for an upload arrives while an older one is still in flight.
    /// Returns whether such a request was found here.
    pub fn request_yield(&self, key: &UploadKey) -> bool {
        let Some(live) = self.live(key) else {
            return false;
        };
        if live.phase() != LIVE {
            return false;
        }
        live.yield_requested.store(true, Ordering::Release);
        live.yield_notify.notify_waiters();
        true
    }

    /// Resolves once the entry of `key` in this process has left the table (at once if there
    /// is none), or after `limit`; true if it has.
    pub async fn wait_released(&self, key: &UploadKey, limit: Duration) -> bool {
        let entry = lock(&self.shared.live).get(key).cloned();
        match entry {
            Some(entry) => entry.settled(limit).await,
            None => true,
        }
    }

    /// The current state of `key`: live from this process if it streams here, else the stored
    /// record. `None` when the key is unknown or its record expired.
    ///
    /// This ignores owners; the status service uses [`snapshot_for`](Self::snapshot_for).
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

    /// [`snapshot`](Self::snapshot) on behalf of `owner` (see [`owner_of`](Self::owner_of)):
    /// `None` for a key that belongs to someone else, as for an unknown key.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn snapshot_for(
        &self,
        key: &UploadKey,
        owner: Option<&str>,
    ) -> Result<Option<UploadInfo>, StoreError> {
        let owner_bound = self.binds_owners();
        let info = self.snapshot(key).await?;
        Ok(info.filter(|info| !info.is_foreign_to(owner, owner_bound)))
    }

    /// [`snapshot_for`](Self::snapshot_for) without a future, a clone or a parsed key, when
    /// it can be had at once: `f` sees the record of `key` (`None` for an unknown key or
    /// one of another owner) and its result is returned. `None`, without calling `f`, when
    /// the key does not stream in this process and the store cannot answer without waiting
    /// ([`ProgressStore::inspect`]; a shared store): then use `snapshot_for`.
    ///
    /// `key` is not validated: an invalid key is simply unknown. This is the status
    /// service's fast path; a live record is shown under its lock, so `f` should be quick.
    ///
    /// ```
    /// use tower_upload_state::{UploadInfo, UploadKey, UploadRegistry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = UploadRegistry::new();
    /// let upload = registry.begin(UploadInfo::new(UploadKey::parse("k1")?)).await?;
    /// upload.add_bytes(7);
    /// let seen = registry.inspect_for("k1", None, |info| info.map(|info| info.bytes_uploaded));
    /// assert_eq!(seen, Some(Some(7)));
    /// assert_eq!(registry.inspect_for("nobody", None, |info| info.is_some()), Some(false));
    /// # upload.abandon().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn inspect_for<R>(
        &self,
        key: &str,
        owner: Option<&str>,
        f: impl FnOnce(Option<&UploadInfo>) -> R,
    ) -> Option<R> {
        let owner_bound = self.binds_owners();
        {
            // The table, then the record: the order `begin` takes them in too.
            let table = lock(&self.shared.live);
            if let Some(live) = table.get(key).filter(|live| live.phase() != CLAIMING) {
                let mut info = lock(&live.info);
                info.bytes_uploaded = live.bytes.load(Ordering::Relaxed);
                let visible = !info.is_foreign_to(owner, owner_bound);
                return Some(f(visible.then_some(&*info)));
            }
        }
        let mut f = Some(f);
        let mut result = None;
        let answered = self.shared.store.inspect(key, &mut |info| {
            if let Some(f) = f.take() {
                let info = info.filter(|info| !info.is_foreign_to(owner, owner_bound));
                result = Some(f(info));
            }
        });
        if answered {
            result
        } else {
            None
        }
    }

    /// Asks the upload of `key` to stop, and returns its state at the time of asking.
    ///
    /// An upload streaming here is woken at once (its
    /// [`cancelled`](UploadHandle::cancelled) future resolves); otherwise the store is asked
    /// to tell the instance that streams it. Cancelling an unknown or finished key changes
    /// nothing and is not an error.
    ///
    /// This ignores owners; the status service uses [`cancel_for`](Self::cancel_for).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn cancel(&self, key: &UploadKey) -> Result<Option<UploadInfo>, StoreError> {
        self.cancel_if(key, |_| true).await
    }

    /// [`cancel`](Self::cancel) on behalf of `owner`: a key that belongs to someone else is
    /// left alone and answers `None`, as an unknown key does.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn cancel_for(
        &self,
        key: &UploadKey,
        owner: Option<&str>,
    ) -> Result<Option<UploadInfo>, StoreError> {
        let owner_bound = self.binds_owners();
        self.cancel_if(key, |info| !info.is_foreign_to(owner, owner_bound))
            .await
    }

    async fn cancel_if(
        &self,
        key: &UploadKey,
        allowed: impl Fn(&UploadInfo) -> bool,
    ) -> Result<Option<UploadInfo>, StoreError> {
        if let Some(live) = self.live(key) {
            let info = live.snapshot();
            if !allowed(&info) {
                return Ok(None);
            }
            live.request_cancel();
            return Ok(Some(info));
        }
        let Some(info) = self.shared.store.load(key).await? else {
            return Ok(None);
        };
        if !allowed(&info) {
            return Ok(None);
        }
        if info.resumable.as_ref().is_some_and(|r| r.paused) && info.status.is_in_flight() {
            // A paused resumable upload: no request streams it, so end it here (its data is
            // deleted by the front-end's sweep or its next request).
            if let Ok(upload) = self.resume(key, info.owner.clone()).await {
                upload
                    .finish(UploadStatus::CanceledByClientCommand, FileError::None, None)
                    .await;
                return Ok(Some(info));
            }
        }
        if info.status.is_in_flight() {
            self.shared.store.request_cancel(key).await?;
        }
        Ok(Some(info))
    }

    /// Records the answer to the widget's `command=fileSize` for `key`, for anyone to take.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn record_file_size(&self, key: &UploadKey, size: u64) -> Result<(), StoreError> {
        self.shared.store.put_file_size(key, size).await
    }

    /// Takes the `fileSize` answer for `key`, whoever recorded it: a second call returns
    /// `None`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn take_file_size(&self, key: &UploadKey) -> Result<Option<u64>, StoreError> {
        self.shared.store.take_file_size(key).await
    }

    /// Records the `fileSize` answer for `key`, bound to `owner` (see
    /// [`owner_of`](Self::owner_of)): only [`take_file_size_for`](Self::take_file_size_for)
    /// with the same owner takes it.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn record_file_size_for(
        &self,
        key: &UploadKey,
        size: u64,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        self.shared.store.put_file_size_for(key, size, owner).await
    }

    /// Takes the `fileSize` answer for `key` if it was recorded for `owner`; anyone else gets
    /// `None` and the answer stays for its owner.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn take_file_size_for(
        &self,
        key: &UploadKey,
        owner: Option<&str>,
    ) -> Result<Option<u64>, StoreError> {
        self.shared.store.take_file_size_for(key, owner).await
    }

    /// The entry of `key` in this process, unless it is still being claimed.
    pub(crate) fn live(&self, key: &UploadKey) -> Option<Arc<LiveUpload>> {
        lock(&self.shared.live)
            .get(key)
            .filter(|live| live.phase() != CLAIMING)
            .cloned()
    }

    fn forget_live(&self, key: &UploadKey, live: &Arc<LiveUpload>) {
        {
            let mut table = lock(&self.shared.live);
            // The key may have been claimed again since; only remove our own entry.
            if table.get(key).is_some_and(|entry| Arc::ptr_eq(entry, live)) {
                table.remove(key);
            }
        }
        live.settled.store(true, Ordering::Release);
        live.settle.notify_waiters();
    }
}

/// A key reserved in this process while the store is asked: released if the claim is
/// refused or `begin`'s future is dropped.
struct Reservation<'a> {
    registry: &'a UploadRegistry,
    key: &'a UploadKey,
    /// `None` once the claim has succeeded.
    live: Option<Arc<LiveUpload>>,
    /// Whether the store may hold the claim: `begin`'s future was dropped while asking it.
    asking: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let Some(live) = self.live.take() else { return };
        if self.asking {
            // Undo a claim that may have landed, so that the key is not left in flight
            // (only this claim's record: the token guards any other).
            let (registry, key, token) = (self.registry.clone(), self.key.clone(), live.token);
            run_or_spawn(async move {
                let _ = registry.shared.store.remove_with(&key, token).await;
            });
        }
        self.registry.forget_live(self.key, &live);
    }
}

/// One registered upload, owned by the front-end that streams it.
///
/// Dropping it before [`finish`](Self::finish) or [`abandon`](Self::abandon) (for example
/// because the request future was dropped when the client went away) records
/// [`UploadStatus::CanceledByClientConnection`]; the key is free again once that record is
/// stored.
///
/// # The front-end contract
///
/// A *front-end* turns a wire protocol into uploads: the multipart reader of the upload
/// layer today (the igUpload widget, HTML forms, Uppy's XHR uploads), and resumable
/// protocols (tus, the IETF draft) later. Whatever the protocol, a front-end drives each file
/// through the same few calls, and the status service, the metrics and other server
/// instances then see every kind of upload alike:
///
/// | step | call | notes |
/// |---|---|---|
/// | claim | [`UploadRegistry::begin`] | before the first byte of the body is read (the widget asks for the status right after posting); refused with [`ClaimError`] (map it to 409, a replayed verdict, 503, ...) |
/// | describe | [`UploadHandle::update`] | file name, MIME type, size, message, as they become known; bounded (see [`UploadInfo`]) |
/// | progress | [`UploadHandle::add_bytes`] per chunk (lock-free), [`UploadHandle::checkpoint`] after it | `checkpoint` publishes to a shared store at most once per its progress interval and is free otherwise |
/// | status | [`UploadHandle::set_status`] for non-terminal steps (`Started`, `UploadFinishing`) | publishes at once |
/// | cancel watch | [`UploadHandle::cancelled`] (a future to `select!` on), [`UploadHandle::is_cancel_requested`] | set by `command=cancel` here or on another instance, or by [`UploadHandle::request_cancel`] |
/// | end | [`UploadHandle::finish`] with a terminal status, or [`UploadHandle::abandon`] for a claim that never started | exactly one of them |
/// | disconnect | drop the handle | dropping an unfinished handle records status 8 (`CanceledByClientConnection`) |
/// | resumable: between requests | [`UploadHandle::pause`] to give the upload back; [`UploadRegistry::resume`] to take it for the next request | a paused upload stays in flight (status 1, `bytesUploaded` = the offset stored) for the status service; [`UploadHandle::yield_requested`] resolves when a newer request wants it ([`UploadRegistry::request_yield`]); [`UploadHandle::renew_lease`] keeps a long request's claim |
///
/// The registry guarantees, whatever the front-end:
///
/// - one live upload per key: a second `begin` of a key live in this process is refused
///   ([`ClaimError::InFlight`]) even when the store is unreachable, and with a shared store
///   across instances too;
/// - an ended claim never writes again: every save carries the claim's [`ClaimToken`], and
///   the store ignores a write of an earlier claim of the key; a scheduled progress write is
///   dropped once the handle has ended;
/// - a key whose handle was just dropped is free again only once its final record is stored
///   (a retry of the same key waits for it instead of seeing the stale live record);
/// - owner binding ([`UploadRegistry::with_owner`]) applies to every call that touches a key.
///
/// [`UploadHandle::key`], [`UploadHandle::bytes_uploaded`], [`UploadHandle::snapshot`] and
/// [`UploadHandle::save`] are there for front-ends that need them (events, logs).
///
/// # Example
///
/// A minimal front-end: the body arrives as chunks on a channel.
///
/// ```
/// use tokio::sync::mpsc;
/// use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadRegistry, UploadStatus};
///
/// async fn receive(
///     registry: &UploadRegistry,
///     key: UploadKey,
///     mut body: mpsc::Receiver<Vec<u8>>,
/// ) -> Result<UploadInfo, tower_upload_state::ClaimError> {
///     let upload = registry.begin(UploadInfo::new(key)).await?; // claim
///     upload.update(|info| info.file_name = Some("notes.txt".into())); // describe
///     let _ = upload.set_status(UploadStatus::Started).await; // status
///     loop {
///         tokio::select! {
///             _ = upload.cancelled() => {
///                 // (delete what was written)
///                 return Ok(upload.finish(UploadStatus::CanceledByClientCommand, FileError::None, None).await);
///             }
///             chunk = body.recv() => match chunk {
///                 Some(chunk) => {
///                     // (write the chunk)
///                     upload.add_bytes(chunk.len() as u64); // progress
///                     upload.checkpoint().await;
///                 }
///                 None => break,
///             },
///         }
///     }
///     Ok(upload.finish(UploadStatus::Finished, FileError::None, None).await) // end
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = UploadRegistry::new();
/// let (tx, rx) = mpsc::channel(4);
/// tx.send(b"hello".to_vec()).await?;
/// drop(tx);
/// let info = receive(&registry, UploadKey::parse("k1")?, rx).await?;
/// assert_eq!((info.status, info.bytes_uploaded), (UploadStatus::Finished, 5));
/// # Ok(())
/// # }
/// ```
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
    /// [`save`](Self::save) to publish it to a shared store as well. The bounded fields are
    /// truncated afterwards (see [`UploadInfo`]).
    pub fn update<R>(&self, f: impl FnOnce(&mut UploadInfo) -> R) -> R {
        let result = {
            let mut info = lock(&self.live.info);
            let result = f(&mut info);
            info.enforce_bounds();
            self.live.version.fetch_add(1, Ordering::Release);
            result
        };
        self.live.bells.ring();
        result
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
    /// publication at its end, so the last progress before a stall is not lost (it is
    /// dropped if the upload has ended by then). Returns at once for a store that is not
    /// shared (the memory store). A store failure is ignored.
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
            // Once the handle has ended, its final save says everything: a late progress
            // write would at best be refused (by the claim token, or because the record is
            // terminal).
            if live.phase() != LIVE {
                return;
            }
            let now = registry.shared.epoch.elapsed().as_millis() as u64 + 1;
            live.last_published.store(now, Ordering::Relaxed);
            let _ = registry
                .shared
                .store
                .save_with(&live.snapshot(), live.token)
                .await;
        });
    }

    /// Publishes the upload's current state to the store, on behalf of this claim (a save
    /// is ignored once another claim owns the key).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn save(&self) -> Result<(), StoreError> {
        let info = self.snapshot();
        self.registry
            .shared
            .store
            .save_with(&info, self.live.token)
            .await
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

    /// Sets the byte count (a resumable upload whose last chunk was discarded goes back to
    /// the offset before it).
    pub fn set_bytes(&self, bytes: u64) {
        self.live.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Whether a newer request for this resumable upload asked this one to let go
    /// ([`UploadRegistry::request_yield`]).
    #[must_use]
    pub fn is_yield_requested(&self) -> bool {
        self.live.yield_requested.load(Ordering::Acquire)
    }

    /// Resolves once a newer request asks this one to let go of the upload.
    pub async fn yield_requested(&self) {
        loop {
            let notified = self.live.yield_notify.notified();
            if self.is_yield_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Renews the lease of a resumed upload (see [`UploadRegistry::resume`]) and publishes
    /// the record.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn renew_lease(&self) -> Result<(), StoreError> {
        self.update(|info| {
            if let Some(resumable) = &mut info.resumable {
                resumable.lease_until = Some(SystemTime::now() + UploadRegistry::RESUME_LEASE);
            }
        });
        self.save().await
    }

    /// Gives a resumable upload back after one of its requests: the record stays in flight
    /// (status unchanged, `bytesUploaded` = what is stored), marked paused, for the next
    /// request to [`resume`](UploadRegistry::resume). Returns the stored record. A store
    /// failure is not reported (as for [`finish`](Self::finish)).
    pub async fn pause(mut self) -> UploadInfo {
        self.done = true;
        self.update(|info| {
            if let Some(resumable) = &mut info.resumable {
                resumable.paused = true;
                resumable.lease_until = None;
            }
        });
        {
            let _table = lock(&self.registry.shared.live);
            self.registry.shared.counters.paused(self.live.new_bytes());
            self.live.phase.store(ENDED, Ordering::Release);
        }
        let info = self.snapshot();
        let _ = self
            .registry
            .shared
            .store
            .save_with(&info, self.live.token)
            .await;
        self.registry.forget_live(&self.key, &self.live);
        info
    }

    /// Asks this upload to stop, as a `command=cancel` would (for server-side shutdown).
    pub fn request_cancel(&self) {
        self.live.request_cancel();
    }

    /// Ends the upload with a terminal `status`, `error` and message, publishes the final
    /// record and returns it. A store failure is not reported: the record stays correct in
    /// this process until the handle is gone, and the upload's outcome does not depend on it.
    /// The message is truncated to [`UploadInfo::MAX_SERVER_MESSAGE_LEN`].
    pub async fn finish(
        mut self,
        status: UploadStatus,
        error: FileError,
        server_message: Option<String>,
    ) -> UploadInfo {
        self.done = true;
        let info = self.record_terminal(status, error, server_message);
        let _ = self
            .registry
            .shared
            .store
            .save_with(&info, self.live.token)
            .await;
        self.registry.forget_live(&self.key, &self.live);
        info
    }

    /// Forgets an upload that never started (for example because another key of its batch
    /// was refused), as if it had never been registered. It still counts as started in the
    /// [metrics](UploadRegistry::metrics) (counters never go down), and as abandoned.
    pub async fn abandon(mut self) {
        self.done = true;
        {
            let _table = lock(&self.registry.shared.live);
            self.registry
                .shared
                .counters
                .abandoned(self.live.new_bytes());
            self.live.phase.store(ENDED, Ordering::Release);
        }
        self.live.version.fetch_add(1, Ordering::Release);
        self.live.bells.ring();
        let _ = self
            .registry
            .shared
            .store
            .remove_with(&self.key, self.live.token)
            .await;
        self.registry.forget_live(&self.key, &self.live);
    }

    /// Records the terminal state in this process and moves the upload from live to ended
    /// (in the metrics too), then returns the final record. The caller stores it and then
    /// forgets the live entry.
    fn record_terminal(
        &self,
        status: UploadStatus,
        error: FileError,
        server_message: Option<String>,
    ) -> UploadInfo {
        debug_assert!(status.is_terminal(), "finish() takes terminal statuses");
        self.update(|info| {
            info.status = status;
            info.error = error;
            if server_message.is_some() {
                info.server_message = server_message;
            }
            info.finished_at = Some(SystemTime::now());
        });
        {
            let _table = lock(&self.registry.shared.live);
            self.registry
                .shared
                .counters
                .ended(status, self.live.new_bytes());
            self.live.phase.store(ENDED, Ordering::Release);
        }
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
        // The entry stays in the table (ended) until the final record is stored, so that a
        // retry of the key in this process waits for it rather than finding the stale live
        // record in the store. The guard forgets it however the save ends, even if it
        // cannot run at all.
        let forget = Forget {
            registry: self.registry.clone(),
            key: self.key.clone(),
            live: Arc::clone(&self.live),
        };
        let save = async move {
            let store = &forget.registry.shared.store;
            let _ = store.save_with(&info, forget.live.token).await;
            drop(forget);
        };
        run_or_spawn(save);
    }
}

/// Forgets a live entry when dropped.
struct Forget {
    registry: UploadRegistry,
    key: UploadKey,
    live: Arc<LiveUpload>,
}

impl Drop for Forget {
    fn drop(&mut self) {
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
        assert_eq!(metrics.uploads_started, 4);
        assert_eq!(metrics.uploads_abandoned, 1);
        assert_eq!(metrics.ended(UploadStatus::Finished), 1);
        assert_eq!(metrics.ended(UploadStatus::CanceledByClientConnection), 1);
        assert_eq!(metrics.bytes_received, 112);
        assert_eq!(metrics.in_flight, 1);
        live.abandon().await;
    }

    #[tokio::test]
    async fn metrics_count_an_upload_once_and_never_go_down() {
        let registry = UploadRegistry::new();
        let mut upload = registry.begin(UploadInfo::new(key("once"))).await.unwrap();
        upload.add_bytes(100);
        assert_eq!(registry.metrics().bytes_received, 100);
        // Between the terminal record and forgetting the live entry (what `finish` does
        // around its store write), the bytes are counted once.
        let info = upload.record_terminal(UploadStatus::Finished, FileError::None, None);
        let between = registry.metrics();
        assert_eq!(between.bytes_received, 100);
        assert_eq!(between.in_flight, 0);
        assert_eq!(between.ended(UploadStatus::Finished), 1);
        registry.shared.store.save(&info).await.unwrap();
        upload.done = true;
        registry.forget_live(&upload.key, &upload.live);
        assert_eq!(registry.metrics(), between);

        let never = registry.begin(UploadInfo::new(key("never"))).await.unwrap();
        let before = registry.metrics();
        assert_eq!(before.uploads_started, 2);
        never.abandon().await;
        let after = registry.metrics();
        assert_eq!(after.uploads_started, 2, "counters never go down");
        assert_eq!(after.uploads_abandoned, 1);
        assert_eq!(after.bytes_received, 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_monotonic_under_a_concurrent_reader() {
        let registry = UploadRegistry::new();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (registry, stop) = (registry.clone(), Arc::clone(&stop));
            tokio::task::spawn_blocking(move || {
                let mut last = registry.metrics();
                while !stop.load(Ordering::Relaxed) {
                    let now = registry.metrics();
                    assert!(
                        now.bytes_received >= last.bytes_received,
                        "{last:?} {now:?}"
                    );
                    assert!(
                        now.uploads_started >= last.uploads_started,
                        "{last:?} {now:?}"
                    );
                    last = now;
                }
            })
        };
        for round in 0..2_000 {
            let upload = registry
                .begin(UploadInfo::new(key(&format!("mono{round}"))))
                .await
                .unwrap();
            upload.add_bytes(10);
            if round % 3 == 0 {
                upload.abandon().await;
            } else if round % 3 == 1 {
                drop(upload);
            } else {
                upload
                    .finish(UploadStatus::Finished, FileError::None, None)
                    .await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        let metrics = registry.metrics();
        assert_eq!(metrics.bytes_received, 20_000);
        assert_eq!(metrics.uploads_started, 2_000);
    }

    /// The memory store, with saves that take `delay` (as over a network) and claims that
    /// fail while `down` is set.
    #[derive(Debug)]
    struct Remote {
        inner: MemoryStore,
        delay: Duration,
        down: AtomicBool,
    }

    impl Remote {
        fn new(delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryStore::new(),
                delay,
                down: AtomicBool::new(false),
            })
        }
    }

    impl ProgressStore for Remote {
        fn claim<'a>(
            &'a self,
            info: &'a UploadInfo,
        ) -> crate::StoreFuture<'a, Result<(), ClaimError>> {
            self.inner.claim(info)
        }
        fn claim_with<'a>(
            &'a self,
            info: &'a UploadInfo,
            claim: Claim,
        ) -> crate::StoreFuture<'a, Result<(), ClaimError>> {
            if self.down.load(Ordering::Relaxed) {
                return Box::pin(std::future::ready(Err(ClaimError::Store(StoreError::new(
                    "down",
                )))));
            }
            self.inner.claim_with(info, claim)
        }
        fn save<'a>(
            &'a self,
            info: &'a UploadInfo,
        ) -> crate::StoreFuture<'a, Result<(), StoreError>> {
            self.inner.save(info)
        }
        fn save_with<'a>(
            &'a self,
            info: &'a UploadInfo,
            token: ClaimToken,
        ) -> crate::StoreFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                self.inner.save_with(info, token).await
            })
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
    }

    #[tokio::test]
    async fn a_retry_waits_for_the_final_save_of_a_dropped_handle() {
        let store = Remote::new(Duration::from_millis(50));
        let registry = UploadRegistry::with_store(Arc::clone(&store));
        let upload = registry.begin(UploadInfo::new(key("retry"))).await.unwrap();
        upload.set_status(UploadStatus::Started).await.unwrap();
        upload.add_bytes(9);
        drop(upload);
        // Until the final record is stored, the key answers it from here...
        let seen = registry.snapshot(&key("retry")).await.unwrap().unwrap();
        assert_eq!(seen.status, UploadStatus::CanceledByClientConnection);
        assert_eq!(registry.in_flight(), 0);
        // ...and a retry waits for it instead of meeting the stale live record (409).
        let retry = registry.begin(UploadInfo::new(key("retry"))).await.unwrap();
        let stored = store.inner.load(&key("retry")).await.unwrap().unwrap();
        assert_eq!(stored.status, UploadStatus::NotStarted);
        retry.abandon().await;
    }

    #[tokio::test]
    async fn one_key_is_claimed_once_in_this_process_even_when_the_store_is_down() {
        let store = Remote::new(Duration::ZERO);
        store.down.store(true, Ordering::Relaxed);
        let registry = UploadRegistry::with_store(Arc::clone(&store));
        let first = registry.begin(UploadInfo::new(key("out"))).await.unwrap();
        assert!(matches!(
            registry.begin(UploadInfo::new(key("out"))).await,
            Err(ClaimError::InFlight)
        ));
        let (a, b) = tokio::join!(
            registry.begin(UploadInfo::new(key("race"))),
            registry.begin(UploadInfo::new(key("race")))
        );
        assert!(a.is_ok() != b.is_ok(), "exactly one claim wins");
        first
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        // Ended here: the key may start over (the store is still down).
        let again = registry.begin(UploadInfo::new(key("out"))).await.unwrap();
        again.abandon().await;
    }

    #[tokio::test]
    async fn the_trailing_flush_is_dropped_once_the_handle_has_ended() {
        let store = Arc::new(Throttled {
            inner: MemoryStore::new(),
            saves: Default::default(),
        });
        let registry = UploadRegistry::with_store(Arc::clone(&store));
        let upload = registry.begin(UploadInfo::new(key("late"))).await.unwrap();
        upload.add_bytes(1);
        upload.checkpoint().await;
        upload.add_bytes(1);
        upload.checkpoint().await; // within the interval: a flush is scheduled
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        assert_eq!(store.saves.load(Ordering::Relaxed), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            store.saves.load(Ordering::Relaxed),
            2,
            "no write after the final one"
        );
    }

    fn owned(text: &str, owner: Option<&str>) -> UploadInfo {
        let mut info = UploadInfo::new(key(text));
        info.owner = owner.map(str::to_owned);
        info
    }

    fn user(parts: &http::request::Parts) -> Option<String> {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn strangers_cannot_claim_read_or_cancel_an_owned_key() {
        let registry = UploadRegistry::new().with_owner(user);
        let (parts, ()) = http::Request::get("/")
            .header("x-user", "alice")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(registry.owner_of(&parts).as_deref(), Some("alice"));
        let alice = Some("alice");
        let upload = registry.begin(owned("own", alice)).await.unwrap();
        upload.add_bytes(5);
        for stranger in [Some("mallory"), None] {
            assert!(
                matches!(
                    registry.begin(owned("own", stranger)).await,
                    Err(ClaimError::Foreign)
                ),
                "{stranger:?}"
            );
            assert_eq!(
                registry.snapshot_for(&key("own"), stranger).await.unwrap(),
                None
            );
            assert_eq!(
                registry.cancel_for(&key("own"), stranger).await.unwrap(),
                None
            );
        }
        assert!(
            !upload.is_cancel_requested(),
            "a stranger's cancel changes nothing"
        );
        let seen = registry.snapshot_for(&key("own"), alice).await.unwrap();
        assert_eq!(seen.unwrap().bytes_uploaded, 5);
        upload
            .finish(
                UploadStatus::FileSizeExceeded,
                FileError::FileSizeExceeded,
                Some("too big".into()),
            )
            .await;
        // A stranger's repeated POST does not get alice's verdict; alice's does.
        assert!(matches!(
            registry.begin(owned("own", Some("mallory"))).await,
            Err(ClaimError::Foreign)
        ));
        assert!(matches!(
            registry.begin(owned("own", alice)).await,
            Err(ClaimError::Rejected(_))
        ));
        assert_eq!(
            ClaimError::Foreign.to_string(),
            "this upload key cannot be used"
        );
        // With a binding, an anonymous record is the anonymous owner's only.
        let anonymous = registry.begin(owned("anon", None)).await.unwrap();
        assert!(matches!(
            registry.begin(owned("anon", alice)).await,
            Err(ClaimError::Foreign)
        ));
        assert!(registry
            .cancel_for(&key("anon"), None)
            .await
            .unwrap()
            .is_some());
        assert!(anonymous.is_cancel_requested());
        anonymous.abandon().await;
    }

    #[tokio::test]
    async fn an_owned_record_is_foreign_even_without_a_binding() {
        // E.g. written by another instance that binds owners.
        let registry = UploadRegistry::new();
        let upload = registry.begin(owned("o", Some("alice"))).await.unwrap();
        assert!(matches!(
            registry.begin(owned("o", None)).await,
            Err(ClaimError::Foreign)
        ));
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        assert!(matches!(
            registry.begin(owned("o", Some("bob"))).await,
            Err(ClaimError::Foreign)
        ));
        assert_eq!(registry.snapshot_for(&key("o"), None).await.unwrap(), None);
        // Unowned records are anyone's without a binding.
        let free = registry.begin(owned("free", None)).await.unwrap();
        assert!(registry
            .snapshot_for(&key("free"), Some("bob"))
            .await
            .unwrap()
            .is_some());
        free.abandon().await;
    }

    #[tokio::test]
    async fn file_size_answers_are_bound_to_their_owner() {
        let registry = UploadRegistry::new().with_owner(user);
        registry
            .record_file_size_for(&key("fs"), 42, Some("alice"))
            .await
            .unwrap();
        for stranger in [Some("mallory"), None] {
            assert_eq!(
                registry
                    .take_file_size_for(&key("fs"), stranger)
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            registry
                .take_file_size_for(&key("fs"), Some("alice"))
                .await
                .unwrap(),
            Some(42),
            "a stranger's take does not consume it"
        );
        assert_eq!(
            registry
                .take_file_size_for(&key("fs"), Some("alice"))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn stored_strings_are_bounded() {
        let registry = UploadRegistry::new();
        let mut info = UploadInfo::new(key("b"));
        info.mime_type = Some("x".repeat(10_000));
        info.cid = Some("c".repeat(10_000));
        let upload = registry.begin(info).await.unwrap();
        upload.update(|info| {
            info.server_message = Some("é".repeat(1_000));
            info.file_name = Some("n".repeat(5_000));
        });
        let live = upload.snapshot();
        assert_eq!(live.mime_type.unwrap().len(), UploadInfo::MAX_MIME_TYPE_LEN);
        assert_eq!(live.cid.unwrap().len(), UploadInfo::MAX_CID_LEN);
        assert_eq!(live.server_message.unwrap().len(), 1024);
        assert_eq!(live.file_name.unwrap().len(), UploadInfo::MAX_FILE_NAME_LEN);
        let done = upload
            .finish(
                UploadStatus::ErrorUploading,
                FileError::FileWriting,
                Some("m".repeat(5_000)),
            )
            .await;
        assert_eq!(done.server_message.unwrap().len(), 1024);
        let stored = registry.snapshot(&key("b")).await.unwrap().unwrap();
        assert_eq!(stored.server_message.unwrap().len(), 1024);
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
