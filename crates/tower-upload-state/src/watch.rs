//! [`UploadWatch`]: following the progress of uploads, for pushed progress (Server-Sent
//! Events in the status service).
//!
//! Nothing here costs the upload's hot path anything: [`UploadHandle::add_bytes`] stays one
//! atomic add. A watcher compares the upload's byte counter and a version counter (bumped by
//! every other change) with what it saw, at its own pace; only changes other than bytes (a
//! status, a size, a message) and records arriving from other instances ring its bell.
//!
//! [`UploadHandle::add_bytes`]: crate::UploadHandle::add_bytes

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::registry::LiveUpload;
use crate::sync::lock;
use crate::{StoreError, UploadInfo, UploadKey, UploadRegistry};

/// The watchers to wake on a change: weak references to their bells.
#[derive(Debug, Default)]
pub(crate) struct Bells {
    list: Mutex<Vec<Weak<Notify>>>,
    /// Whether `list` was ever non-empty: an upload nobody watches rings without a lock.
    any: AtomicBool,
}

impl Bells {
    fn add(&self, bell: &Arc<Notify>) {
        let mut list = lock(&self.list);
        // Watchers that went away leave dead entries; drop them here so the list stays as
        // long as the number of live watchers.
        list.retain(|bell| bell.strong_count() > 0);
        list.push(Arc::downgrade(bell));
        self.any.store(true, Ordering::Release);
    }

    /// Wakes every watcher. A watcher that is not waiting finds a permit on its next wait
    /// (`Notify::notify_one`), so a change between its check and its wait is not missed.
    pub(crate) fn ring(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        for bell in lock(&self.list).iter() {
            if let Some(bell) = bell.upgrade() {
                bell.notify_one();
            }
        }
    }
}

/// The record of a key watched here that streams on another instance, as the store last
/// told it (`None`: gone).
#[derive(Debug)]
pub(crate) struct RemoteFeed {
    info: Mutex<Option<UploadInfo>>,
    version: AtomicU64,
    bells: Bells,
}

impl RemoteFeed {
    /// Takes a record from the store (a published save or a reload). A terminal record is
    /// never replaced by a live one: messages and reloads may arrive out of order.
    pub(crate) fn offer(&self, info: Option<UploadInfo>) {
        {
            let mut current = lock(&self.info);
            if let (Some(current), Some(new)) = (&*current, &info) {
                if current.status.is_terminal() && !new.status.is_terminal() {
                    return;
                }
                if current == new {
                    return;
                }
            }
            *current = info;
            self.version.fetch_add(1, Ordering::Release);
        }
        self.bells.ring();
    }
}

/// One change seen by an [`UploadWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// The key's current record. A terminal status ends the key's watch: it is reported
    /// once and never again.
    Changed(Box<UploadInfo>),
    /// The key is no longer known (its claim was abandoned, or its record expired or was
    /// removed): as for an unknown key, the watch of it ends.
    Gone(UploadKey),
}

/// Follows the progress of one or more uploads, in this process and, with a shared store
/// ([`ProgressStore::watch_saves`](crate::ProgressStore::watch_saves)), on other instances;
/// made by [`UploadRegistry::watch`].
///
/// A watch is driven by its owner (the status service runs one per event stream):
///
/// 1. [`add`](Self::add) each key: it answers the key's current record (`None` for an
///    unknown key, or one of another owner: the registry's owner rule applies);
/// 2. then, in a loop, wait for [`notified`](Self::notified) (a change of status, size or
///    message, or a record from another instance: at once) or for a timer of your own
///    (progress bytes ring no bell: poll them at the pace you want to report them), and
///    collect [`changes`](Self::changes);
/// 3. now and then (every few seconds) [`refresh`](Self::refresh) the records of uploads
///    streaming elsewhere from the store, in case a published save was lost;
/// 4. stop when [`is_done`](Self::is_done): every key reached a terminal status or is gone.
///
/// Memory: a watch holds its keys and one small entry per key; the uploads it watches hold a
/// weak reference to its bell, dropped with the watch.
///
/// ```
/// use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadRegistry, UploadStatus, WatchEvent};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = UploadRegistry::new();
/// let key = UploadKey::parse("k1")?;
/// let upload = registry.begin(UploadInfo::new(key.clone())).await?;
///
/// let mut watch = registry.watch();
/// let first = watch.add(&key, None).await?.expect("registered");
/// assert_eq!(first.bytes_uploaded, 0);
///
/// upload.add_bytes(10); // no bell: found by the next look
/// let mut seen = Vec::new();
/// watch.changes(true, |event| seen.push(event));
/// assert!(matches!(&seen[..], [WatchEvent::Changed(info)] if info.bytes_uploaded == 10));
///
/// upload.finish(UploadStatus::Finished, FileError::None, None).await;
/// watch.notified().await; // a terminal status rings at once
/// watch.changes(false, |event| seen.push(event));
/// assert!(watch.is_done());
/// # Ok(())
/// # }
/// ```
pub struct UploadWatch {
    registry: UploadRegistry,
    bell: Arc<Notify>,
    keys: Vec<Watched>,
}

struct Watched {
    key: UploadKey,
    source: Source,
    /// The (version, bytes) of the last look, to skip unchanged uploads with two loads.
    stamp: Option<(u64, u64)>,
    /// What was last reported.
    last: Option<Reported>,
    done: bool,
    /// Checked again when the source changes (a remote key that starts streaming here).
    owner: Option<String>,
}

enum Source {
    Live(Arc<LiveUpload>),
    Remote(Arc<RemoteFeed>),
    Ended,
}

/// What a status answer shows of a record.
#[derive(Clone, PartialEq, Eq)]
struct Reported {
    status: crate::UploadStatus,
    error: crate::FileError,
    bytes: u64,
    size: u64,
    message: Option<String>,
}

impl Reported {
    fn of(info: &UploadInfo) -> Self {
        let answer = info.status_answer();
        Self {
            status: answer.status,
            error: answer.error,
            bytes: answer.bytes_uploaded,
            size: answer.size,
            message: info.server_message.clone(),
        }
    }

    /// Whether only the byte count or the size differ.
    fn same_status(&self, other: &Self) -> bool {
        self.status == other.status && self.error == other.error && self.message == other.message
    }
}

impl fmt::Debug for UploadWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadWatch")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|watched| &watched.key)
                    .collect::<Vec<_>>(),
            )
            .field("done", &self.is_done())
            .finish()
    }
}

impl UploadRegistry {
    /// Starts a [progress watch](UploadWatch), to which keys are then added.
    #[must_use]
    pub fn watch(&self) -> UploadWatch {
        UploadWatch {
            registry: self.clone(),
            bell: Arc::new(Notify::new()),
            keys: Vec::new(),
        }
    }

    /// The shared feed of a key watched here that does not stream here.
    fn remote_feed(&self, key: &UploadKey, info: UploadInfo) -> Arc<RemoteFeed> {
        let mut remote = lock(&self.shared.remote);
        if let Some(feed) = remote.get(key).and_then(Weak::upgrade) {
            drop(remote);
            feed.offer(Some(info));
            return feed;
        }
        let feed = Arc::new(RemoteFeed {
            info: Mutex::new(Some(info)),
            version: AtomicU64::new(0),
            bells: Bells::default(),
        });
        remote.insert(key.clone(), Arc::downgrade(&feed));
        feed
    }

    fn release_remote(&self, key: &UploadKey, feed: Arc<RemoteFeed>) {
        let mut remote = lock(&self.shared.remote);
        // The last watcher of the key here: forget it (anyone adding it again makes a new
        // feed under the same lock).
        if Arc::strong_count(&feed) == 1
            && remote
                .get(key)
                .is_some_and(|entry| std::ptr::eq(entry.as_ptr(), Arc::as_ptr(&feed)))
        {
            remote.remove(key);
        }
    }
}

impl UploadWatch {
    /// Watches `key` on behalf of `owner` ([`UploadRegistry::owner_of`] the request) and
    /// returns its current record: `None` for a key that is unknown, or another owner's
    /// (which is then not watched). A key whose record is already terminal is not watched
    /// either: its record is the last word.
    ///
    /// # Errors
    ///
    /// The store failed (for a key that does not stream in this process).
    pub async fn add(
        &mut self,
        key: &UploadKey,
        owner: Option<&str>,
    ) -> Result<Option<UploadInfo>, StoreError> {
        let owner_bound = self.registry.binds_owners();
        let mut watched = Watched {
            key: key.clone(),
            source: Source::Ended,
            stamp: None,
            last: None,
            done: false,
            owner: owner.map(str::to_owned),
        };
        let info = if let Some(live) = self.registry.live(key) {
            // The bell first: a change after the look below rings it.
            live.bells.add(&self.bell);
            let stamp = stamp_of(&live);
            let info = live.snapshot();
            if info.is_foreign_to(owner, owner_bound) || live.is_abandoned() {
                return Ok(None);
            }
            watched.stamp = Some(stamp);
            watched.source = Source::Live(live);
            info
        } else {
            let Some(info) = self.registry.shared.store.load(key).await? else {
                return Ok(None);
            };
            if info.is_foreign_to(owner, owner_bound) {
                return Ok(None);
            }
            if !info.status.is_terminal() {
                let feed = self.registry.remote_feed(key, info.clone());
                feed.bells.add(&self.bell);
                watched.stamp = Some((feed.version.load(Ordering::Acquire), 0));
                watched.source = Source::Remote(feed);
            }
            info
        };
        watched.last = Some(Reported::of(&info));
        if info.status.is_terminal() {
            watched.done = true;
            watched.source = Source::Ended;
        }
        self.keys.push(watched);
        Ok(Some(info))
    }

    /// Resolves at a change of anything but the byte count of a watched upload streaming
    /// here (its status above all, terminal ones included), or when a record of one
    /// streaming elsewhere arrives; at once if one happened since the last call. Byte counts
    /// ring no bell: look for them with [`changes`](Self::changes) at your own pace.
    pub async fn notified(&self) {
        self.bell.notified().await;
    }

    /// Reports each watched key whose answer changed since it was last reported (status,
    /// error, bytes, size, message), in the order the keys were added.
    ///
    /// With `progress` false only changes of status, error or message are reported; a
    /// change of bytes or size alone waits for a call with `progress` true. So a caller can
    /// coalesce progress to its own interval and still report a status at once.
    ///
    /// A key is reported for the last time with a terminal status, or as
    /// [`WatchEvent::Gone`].
    pub fn changes(&mut self, progress: bool, mut report: impl FnMut(WatchEvent)) {
        let registry = &self.registry;
        let owner_bound = registry.binds_owners();
        for watched in self.keys.iter_mut().filter(|watched| !watched.done) {
            // A key watched as remote that started streaming here (or only just finished
            // its claim here) is followed live from now on.
            if matches!(watched.source, Source::Remote(_)) {
                if let Some(live) = registry.live(&watched.key) {
                    live.bells.add(&self.bell);
                    if let Source::Remote(feed) =
                        std::mem::replace(&mut watched.source, Source::Live(live))
                    {
                        registry.release_remote(&watched.key, feed);
                    }
                    watched.stamp = None;
                }
            }
            let info = match &watched.source {
                Source::Live(live) => {
                    let stamp = stamp_of(live);
                    if watched.stamp == Some(stamp) {
                        continue;
                    }
                    if live.is_abandoned() {
                        None
                    } else {
                        Some((live.snapshot(), stamp))
                    }
                }
                Source::Remote(feed) => {
                    let stamp = (feed.version.load(Ordering::Acquire), 0);
                    if watched.stamp == Some(stamp) {
                        continue;
                    }
                    lock(&feed.info).clone().map(|info| (info, stamp))
                }
                Source::Ended => continue,
            };
            let Some((info, stamp)) = info else {
                watched.done = true;
                watched.release(registry);
                report(WatchEvent::Gone(watched.key.clone()));
                continue;
            };
            if info.is_foreign_to(watched.owner.as_deref(), owner_bound) {
                watched.done = true;
                watched.release(registry);
                report(WatchEvent::Gone(watched.key.clone()));
                continue;
            }
            let now = Reported::of(&info);
            let terminal = info.status.is_terminal();
            if let Some(last) = &watched.last {
                if !progress && !terminal && last.same_status(&now) {
                    // Left for the next progress look: the stamp stays as it was.
                    continue;
                }
            }
            watched.stamp = Some(stamp);
            if terminal {
                watched.done = true;
                watched.release(registry);
            }
            if watched.last.as_ref() != Some(&now) {
                watched.last = Some(now);
                report(WatchEvent::Changed(Box::new(info)));
            } else if terminal {
                report(WatchEvent::Changed(Box::new(info)));
            }
        }
    }

    /// Reloads the records of watched uploads that stream on other instances from the
    /// store, in case a published save was lost (Redis pub/sub delivers at most once). The
    /// changes are then reported by [`changes`](Self::changes).
    ///
    /// # Errors
    ///
    /// The store failed; the watch goes on with what it had.
    pub async fn refresh(&mut self) -> Result<(), StoreError> {
        for watched in self.keys.iter().filter(|watched| !watched.done) {
            if let Source::Remote(feed) = &watched.source {
                let info = self.registry.shared.store.load(&watched.key).await?;
                feed.offer(info);
            }
        }
        Ok(())
    }

    /// Whether every watched key has reached a terminal status or is gone (also true for a
    /// watch without keys).
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.keys.iter().all(|watched| watched.done)
    }

    /// How many keys are still followed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.iter().filter(|watched| !watched.done).count()
    }

    /// Whether no key is followed any more (the same as [`is_done`](Self::is_done)).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.is_done()
    }
}

impl Watched {
    fn release(&mut self, registry: &UploadRegistry) {
        if let Source::Remote(feed) = std::mem::replace(&mut self.source, Source::Ended) {
            registry.release_remote(&self.key, feed);
        }
    }
}

impl Drop for UploadWatch {
    fn drop(&mut self) {
        let registry = self.registry.clone();
        for watched in &mut self.keys {
            watched.release(&registry);
        }
    }
}

fn stamp_of(live: &LiveUpload) -> (u64, u64) {
    (
        live.version.load(Ordering::Acquire),
        live.bytes.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{FileError, MemoryStore, ProgressStore, UploadStatus};

    fn key(text: &str) -> UploadKey {
        UploadKey::parse(text).unwrap()
    }

    fn collect(watch: &mut UploadWatch, progress: bool) -> Vec<WatchEvent> {
        let mut seen = Vec::new();
        watch.changes(progress, |event| seen.push(event));
        seen
    }

    fn bytes(events: &[WatchEvent]) -> Vec<(UploadStatus, u64)> {
        events
            .iter()
            .map(|event| match event {
                WatchEvent::Changed(info) => (info.status, info.bytes_uploaded),
                WatchEvent::Gone(_) => (UploadStatus::NoSuchFile, 0),
            })
            .collect()
    }

    #[tokio::test]
    async fn progress_is_coalesced_and_a_status_rings_at_once() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("w"))).await.unwrap();
        let mut watch = registry.watch();
        assert!(watch.add(&key("w"), None).await.unwrap().is_some());
        assert!(collect(&mut watch, true).is_empty(), "nothing changed");
        for _ in 0..100 {
            upload.add_bytes(1);
        }
        assert!(
            collect(&mut watch, false).is_empty(),
            "bytes wait for a progress look"
        );
        assert_eq!(
            bytes(&collect(&mut watch, true)),
            [(UploadStatus::NotStarted, 100)]
        );
        upload.set_status(UploadStatus::Started).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), watch.notified())
            .await
            .expect("a status rings");
        assert_eq!(
            bytes(&collect(&mut watch, false)),
            [(UploadStatus::Started, 100)]
        );
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        tokio::time::timeout(Duration::from_secs(1), watch.notified())
            .await
            .expect("a terminal status rings");
        assert_eq!(
            bytes(&collect(&mut watch, false)),
            [(UploadStatus::Finished, 100)]
        );
        assert!(watch.is_done());
        assert!(collect(&mut watch, true).is_empty());
    }

    #[tokio::test]
    async fn unknown_foreign_and_abandoned_keys() {
        let registry = UploadRegistry::new();
        let mut watch = registry.watch();
        assert_eq!(watch.add(&key("nobody"), None).await.unwrap(), None);
        let mut info = UploadInfo::new(key("theirs"));
        info.owner = Some("alice".into());
        let theirs = registry.begin(info).await.unwrap();
        assert_eq!(watch.add(&key("theirs"), Some("bob")).await.unwrap(), None);
        assert!(watch.is_done(), "nothing was added");
        let upload = registry.begin(UploadInfo::new(key("gone"))).await.unwrap();
        assert!(watch.add(&key("gone"), None).await.unwrap().is_some());
        upload.abandon().await;
        assert_eq!(collect(&mut watch, false), [WatchEvent::Gone(key("gone"))]);
        assert!(watch.is_done());
        theirs.abandon().await;
    }

    #[tokio::test]
    async fn a_finished_key_is_answered_and_not_followed() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("f"))).await.unwrap();
        upload.add_bytes(3);
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        let mut watch = registry.watch();
        let info = watch.add(&key("f"), None).await.unwrap().unwrap();
        assert_eq!(info.status, UploadStatus::Finished);
        assert!(watch.is_done());
    }

    /// A memory store that "publishes" every save, as a shared store does.
    #[derive(Default)]
    struct Publishing {
        inner: MemoryStore,
        on_save: Mutex<Vec<crate::SaveCallback>>,
    }

    impl fmt::Debug for Publishing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Publishing")
        }
    }

    impl ProgressStore for Publishing {
        fn claim<'a>(
            &'a self,
            info: &'a UploadInfo,
        ) -> crate::StoreFuture<'a, Result<(), crate::ClaimError>> {
            self.inner.claim(info)
        }
        fn save<'a>(
            &'a self,
            info: &'a UploadInfo,
        ) -> crate::StoreFuture<'a, Result<(), StoreError>> {
            for on_save in lock(&self.on_save).iter() {
                on_save(info);
            }
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
        fn watch_saves(&self, on_save: crate::SaveCallback) {
            lock(&self.on_save).push(on_save);
        }
    }

    #[tokio::test]
    async fn records_saved_elsewhere_reach_the_watchers_here() {
        let store = Arc::new(Publishing::default());
        // Two registries over one store: two instances.
        let a = UploadRegistry::with_store(Arc::clone(&store));
        let b = UploadRegistry::with_store(Arc::clone(&store));
        let upload = a.begin(UploadInfo::new(key("x"))).await.unwrap();
        upload.set_status(UploadStatus::Started).await.unwrap();
        let mut watchers = [b.watch(), b.watch()];
        for watch in &mut watchers {
            let first = watch.add(&key("x"), None).await.unwrap().unwrap();
            assert_eq!(first.status, UploadStatus::Started);
        }
        assert_eq!(lock(&b.shared.remote).len(), 1, "one feed per key");
        upload.add_bytes(5);
        upload.save().await.unwrap();
        for watch in &mut watchers {
            tokio::time::timeout(Duration::from_secs(1), watch.notified())
                .await
                .expect("a published save rings");
            assert_eq!(bytes(&collect(watch, true)), [(UploadStatus::Started, 5)]);
        }
        upload
            .finish(UploadStatus::Finished, FileError::None, None)
            .await;
        for watch in &mut watchers {
            watch.notified().await;
            assert_eq!(bytes(&collect(watch, false)), [(UploadStatus::Finished, 5)]);
            assert!(watch.is_done());
        }
        assert!(lock(&b.shared.remote).is_empty(), "feeds are released");
        drop(watchers);
    }

    #[tokio::test]
    async fn refresh_reloads_and_dropping_a_watch_releases_its_feed() {
        let store = Arc::new(MemoryStore::new());
        let a = UploadRegistry::with_store(Arc::clone(&store));
        let b = UploadRegistry::with_store(Arc::clone(&store));
        let upload = a.begin(UploadInfo::new(key("r"))).await.unwrap();
        upload.add_bytes(9);
        upload.save().await.unwrap();
        let mut watch = b.watch();
        watch.add(&key("r"), None).await.unwrap().unwrap();
        upload.add_bytes(1);
        upload.save().await.unwrap();
        assert!(collect(&mut watch, true).is_empty(), "no publication");
        watch.refresh().await.unwrap();
        assert_eq!(
            bytes(&collect(&mut watch, true)),
            [(UploadStatus::NotStarted, 10)]
        );
        drop(watch);
        assert!(lock(&b.shared.remote).is_empty());
        upload.abandon().await;
    }

    #[tokio::test]
    async fn watchers_that_went_away_leave_no_bells_behind() {
        let registry = UploadRegistry::new();
        let upload = registry.begin(UploadInfo::new(key("b"))).await.unwrap();
        let live = registry.live(&key("b")).unwrap();
        for _ in 0..1_000 {
            let mut watch = registry.watch();
            watch.add(&key("b"), None).await.unwrap();
        }
        assert!(lock(&live.bells.list).len() <= 1);
        upload.abandon().await;
    }
}
