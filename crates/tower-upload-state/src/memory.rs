//! The default, in-process [`ProgressStore`].

use std::collections::{HashMap, VecDeque};
use std::future::ready;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::store::{Claim, ClaimError, ClaimToken, ProgressStore, StoreError, StoreFuture};
use crate::sync::lock;
use crate::{UploadInfo, UploadKey};

/// How long terminal records stay queryable by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(10 * 60);

/// How many records a [`MemoryStore`] keeps by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Keeps upload records in this process, bounded in time and count.
///
/// - A terminal record stays for the [retention](Self::with_retention), then expires.
/// - At [capacity](Self::with_capacity), a new claim evicts the oldest terminal record (expired
///   ones first); when every record is in flight, the claim fails with
///   [`ClaimError::Full`], which the upload layer answers with 503. A flood of distinct keys
///   therefore costs at most `capacity` records.
/// - `fileSize` answers are bounded the same way, separately.
///
/// Expiry is lazy (checked on every access, in amortised O(1)): no background task.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_upload_state::{MemoryStore, UploadRegistry};
///
/// let store = MemoryStore::new()
///     .with_retention(Duration::from_secs(60))
///     .with_capacity(1_000);
/// let registry = UploadRegistry::with_store(store);
/// assert_eq!(registry.retention(), Duration::from_secs(60));
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    retention: Duration,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<UploadKey, Record>,
    /// Terminal records in the order they ended, which is also expiry order because the
    /// retention is the same for all. An entry is stale when its record was since replaced
    /// (the generation differs).
    terminal_order: VecDeque<(Instant, UploadKey, u64)>,
    file_sizes: HashMap<UploadKey, FileSize>,
    file_size_order: VecDeque<(Instant, UploadKey)>,
    next_generation: u64,
}

#[derive(Debug)]
struct Record {
    info: UploadInfo,
    /// Set once the record is terminal.
    expires_at: Option<Instant>,
    generation: u64,
    /// The token of the claim the record belongs to (`None` when saved without one).
    token: Option<ClaimToken>,
}

/// A `fileSize` answer, bound to whoever recorded it.
#[derive(Debug)]
struct FileSize {
    size: u64,
    expires_at: Instant,
    owner: Option<String>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with [`DEFAULT_RETENTION`] and [`DEFAULT_CAPACITY`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Mutex::default(),
            retention: DEFAULT_RETENTION,
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// How long terminal records stay queryable.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The most records kept (and, separately, the most `fileSize` answers).
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a MemoryStore needs room for at least one record"
        );
        self.capacity = capacity;
        self
    }

    /// How many records are kept now, expired ones not yet purged included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn claim_now(
        &self,
        info: &UploadInfo,
        token: Option<ClaimToken>,
        owner_bound: bool,
        now: Instant,
    ) -> Result<(), ClaimError> {
        let mut inner = self.lock();
        inner.purge_expired(now);
        if let Some(existing) = inner.records.get(&info.key) {
            // First: a stranger learns nothing about the record, not even that it is live.
            if existing
                .info
                .is_foreign_to(info.owner.as_deref(), owner_bound)
            {
                return Err(ClaimError::Foreign);
            }
            if existing.info.status.is_in_flight() {
                return Err(ClaimError::InFlight);
            }
            if existing.info.is_replayed_verdict() {
                return Err(ClaimError::Rejected(Box::new(existing.info.clone())));
            }
        } else if inner.records.len() >= self.capacity && !inner.evict_oldest_terminal() {
            return Err(ClaimError::Full {
                capacity: self.capacity,
            });
        }
        let generation = inner.next_generation();
        inner.records.insert(
            info.key.clone(),
            Record {
                info: info.clone(),
                expires_at: None,
                generation,
                token,
            },
        );
        Ok(())
    }

    /// Saves `info` unless the record belongs to another claim than `token`, or is terminal
    /// and `info` is not; returns whether it saved.
    fn save_now(&self, info: &UploadInfo, token: Option<ClaimToken>, now: Instant) -> bool {
        let mut inner = self.lock();
        inner.purge_expired(now);
        let mut kept_token = token;
        if let Some(existing) = inner.records.get(&info.key) {
            if token.is_some() && existing.token.is_some() && existing.token != token {
                return false;
            }
            if existing.info.status.is_terminal() && !info.status.is_terminal() {
                return false;
            }
            kept_token = token.or(existing.token);
        }
        let generation = inner.next_generation();
        let expires_at = info.status.is_terminal().then(|| now + self.retention);
        if let Some(expires_at) = expires_at {
            inner
                .terminal_order
                .push_back((expires_at, info.key.clone(), generation));
            inner.compact_terminal_order(self.capacity);
        }
        let record = Record {
            info: info.clone(),
            expires_at,
            generation,
            token: kept_token,
        };
        let is_new = inner.records.insert(info.key.clone(), record).is_none();
        // A save for a key that was evicted meanwhile must not push the store past its bound.
        if is_new && inner.records.len() > self.capacity {
            inner.evict_oldest_terminal();
        }
        true
    }

    fn remove_now(&self, key: &UploadKey, token: Option<ClaimToken>) {
        let mut inner = self.lock();
        let theirs = inner.records.get(key).is_some_and(|record| {
            token.is_some() && record.token.is_some() && record.token != token
        });
        if !theirs {
            inner.records.remove(key);
        }
    }

    fn load_now(&self, key: &UploadKey, now: Instant) -> Option<UploadInfo> {
        let inner = self.lock();
        let record = inner.records.get(key)?;
        match record.expires_at {
            Some(expires_at) if expires_at <= now => None,
            _ => Some(record.info.clone()),
        }
    }

    fn resume_now(
        &self,
        key: &UploadKey,
        claim: Claim,
        owner: Option<&str>,
        now: std::time::SystemTime,
        lease_until: std::time::SystemTime,
    ) -> Result<UploadInfo, ClaimError> {
        let mut inner = self.lock();
        inner.purge_expired(Instant::now());
        let record = inner.records.get_mut(key).ok_or(ClaimError::NotResumable)?;
        if record.info.is_foreign_to(owner, claim.owner_bound) {
            return Err(ClaimError::Foreign);
        }
        if !record.info.status.is_in_flight() {
            return Err(ClaimError::NotResumable);
        }
        let resumable = record
            .info
            .resumable
            .as_mut()
            .ok_or(ClaimError::NotResumable)?;
        let lapsed = resumable.lease_until.is_some_and(|until| until < now);
        if !resumable.paused && !lapsed {
            return Err(ClaimError::InFlight);
        }
        resumable.paused = false;
        resumable.lease_until = Some(lease_until);
        record.token = Some(claim.token);
        Ok(record.info.clone())
    }

    fn put_file_size_now(&self, key: &UploadKey, size: u64, owner: Option<&str>, now: Instant) {
        let mut inner = self.lock();
        let expires_at = now + self.retention;
        inner.purge_expired_file_sizes(now);
        if inner.file_sizes.len() >= self.capacity && !inner.file_sizes.contains_key(key) {
            // Drop the oldest answer; the widget asks for a size right after posting it.
            while let Some((_, oldest)) = inner.file_size_order.pop_front() {
                if inner.file_sizes.remove(&oldest).is_some() {
                    break;
                }
            }
        }
        let entry = FileSize {
            size,
            expires_at,
            owner: owner.map(str::to_owned),
        };
        inner.file_sizes.insert(key.clone(), entry);
        inner.file_size_order.push_back((expires_at, key.clone()));
        inner.compact_file_size_order(self.capacity);
    }

    /// Takes the answer for `key`; with `owner` given, only if it was recorded for exactly
    /// that owner (anyone else leaves it in place).
    fn take_file_size_now(
        &self,
        key: &UploadKey,
        owner: Option<Option<&str>>,
        now: Instant,
    ) -> Option<u64> {
        let mut inner = self.lock();
        let entry = inner.file_sizes.get(key)?;
        if let Some(owner) = owner {
            if entry.owner.as_deref() != owner {
                return None;
            }
        }
        let entry = inner.file_sizes.remove(key)?;
        (entry.expires_at > now).then_some(entry.size)
    }
}

impl Inner {
    fn next_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((expires_at, _, _)) = self.terminal_order.front() {
            if *expires_at > now {
                break;
            }
            let (_, key, generation) = self.terminal_order.pop_front().expect("front exists");
            self.remove_if_generation(&key, generation);
        }
    }

    /// Drops the entries of records replaced or removed since, once the queue is twice the
    /// bound: amortised O(1), and a repeated key cannot grow the queue.
    fn compact_terminal_order(&mut self, capacity: usize) {
        if self.terminal_order.len() > 2 * capacity.max(self.records.len()) {
            let records = &self.records;
            self.terminal_order.retain(|(_, key, generation)| {
                records
                    .get(key)
                    .is_some_and(|record| record.generation == *generation)
            });
        }
    }

    /// The same for the `fileSize` answers.
    fn compact_file_size_order(&mut self, capacity: usize) {
        if self.file_size_order.len() > 2 * capacity.max(self.file_sizes.len()) {
            let sizes = &self.file_sizes;
            self.file_size_order
                .retain(|(at, key)| sizes.get(key).is_some_and(|size| size.expires_at == *at));
        }
    }

    /// Evicts the oldest terminal record; false when there is none (all are in flight).
    fn evict_oldest_terminal(&mut self) -> bool {
        while let Some((_, key, generation)) = self.terminal_order.pop_front() {
            if self.remove_if_generation(&key, generation) {
                return true;
            }
        }
        false
    }

    fn remove_if_generation(&mut self, key: &UploadKey, generation: u64) -> bool {
        let current = self.records.get(key).map(|record| record.generation);
        if current == Some(generation) {
            self.records.remove(key);
            true
        } else {
            false
        }
    }

    fn purge_expired_file_sizes(&mut self, now: Instant) {
        while let Some((expires_at, _)) = self.file_size_order.front() {
            if *expires_at > now {
                break;
            }
            let (expires_at, key) = self.file_size_order.pop_front().expect("front exists");
            if self.file_sizes.get(&key).map(|size| size.expires_at) == Some(expires_at) {
                self.file_sizes.remove(&key);
            }
        }
    }
}

impl ProgressStore for MemoryStore {
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
        Box::pin(ready(self.claim_now(info, None, false, Instant::now())))
    }

    fn claim_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        claim: Claim,
    ) -> StoreFuture<'a, Result<(), ClaimError>> {
        let result = self.claim_now(info, Some(claim.token), claim.owner_bound, Instant::now());
        Box::pin(ready(result))
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
        self.save_now(info, None, Instant::now());
        Box::pin(ready(Ok(())))
    }

    fn save_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.save_now(info, Some(token), Instant::now());
        Box::pin(ready(Ok(())))
    }

    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        self.remove_now(key, None);
        Box::pin(ready(Ok(())))
    }

    fn remove_with<'a>(
        &'a self,
        key: &'a UploadKey,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.remove_now(key, Some(token));
        Box::pin(ready(Ok(())))
    }

    fn load<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
        Box::pin(ready(Ok(self.load_now(key, Instant::now()))))
    }

    /// Answers at once, under the store's lock, without cloning the record.
    fn inspect(&self, key: &str, f: &mut dyn FnMut(Option<&UploadInfo>)) -> bool {
        let inner = self.lock();
        let record = inner.records.get(key).filter(|record| {
            record
                .expires_at
                .is_none_or(|expires_at| expires_at > Instant::now())
        });
        f(record.map(|record| &record.info));
        true
    }

    fn put_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.put_file_size_now(key, size, None, Instant::now());
        Box::pin(ready(Ok(())))
    }

    fn take_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(ready(Ok(self.take_file_size_now(
            key,
            None,
            Instant::now(),
        ))))
    }

    fn put_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.put_file_size_now(key, size, owner, Instant::now());
        Box::pin(ready(Ok(())))
    }

    fn take_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        let size = self.take_file_size_now(key, Some(owner), Instant::now());
        Box::pin(ready(Ok(size)))
    }

    fn resume_with<'a>(
        &'a self,
        key: &'a UploadKey,
        claim: Claim,
        owner: Option<&'a str>,
        now: std::time::SystemTime,
        lease_until: std::time::SystemTime,
    ) -> StoreFuture<'a, Result<UploadInfo, ClaimError>> {
        Box::pin(ready(self.resume_now(key, claim, owner, now, lease_until)))
    }

    fn retention(&self) -> Duration {
        self.retention
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileError, UploadStatus};

    fn info(key: &str, status: UploadStatus) -> UploadInfo {
        let mut info = UploadInfo::new(UploadKey::parse(key).unwrap());
        info.status = status;
        info
    }

    fn key(key: &str) -> UploadKey {
        UploadKey::parse(key).unwrap()
    }

    #[test]
    fn claim_refuses_in_flight_and_replays_rejections() {
        let store = MemoryStore::new();
        let now = Instant::now();
        store
            .claim_now(&info("a", UploadStatus::NotStarted), None, false, now)
            .unwrap();
        assert!(matches!(
            store.claim_now(&info("a", UploadStatus::NotStarted), None, false, now),
            Err(ClaimError::InFlight)
        ));
        store.save_now(&info("a", UploadStatus::FileSizeExceeded), None, now);
        match store.claim_now(&info("a", UploadStatus::NotStarted), None, false, now) {
            Err(ClaimError::Rejected(previous)) => {
                assert_eq!(previous.status, UploadStatus::FileSizeExceeded)
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        // A finished or disconnected key may start over.
        store.save_now(&info("b", UploadStatus::Finished), None, now);
        store
            .claim_now(&info("b", UploadStatus::NotStarted), None, false, now)
            .unwrap();
        store.save_now(
            &info("c", UploadStatus::CanceledByClientConnection),
            None,
            now,
        );
        store
            .claim_now(&info("c", UploadStatus::NotStarted), None, false, now)
            .unwrap();
    }

    #[test]
    fn server_side_failures_let_a_retry_start_over() {
        let store = MemoryStore::new();
        let now = Instant::now();
        for (name, error, replayed) in [
            ("name", FileError::EstablishingFileName, true),
            ("mime", FileError::MimeTypeValidation, true),
            ("parse", FileError::HeaderParsing, true),
            ("folder", FileError::UploadFolderNotFound, false),
            ("saving", FileError::FileSaving, false),
            ("writing", FileError::FileWriting, false),
            ("starting", FileError::FileStarting, false),
            ("deleting", FileError::FileDeleting, false),
        ] {
            let mut failed = info(name, UploadStatus::ErrorUploading);
            failed.error = error;
            store.save_now(&failed, None, now);
            let retry = store.claim_now(&info(name, UploadStatus::NotStarted), None, false, now);
            if replayed {
                assert!(matches!(retry, Err(ClaimError::Rejected(_))), "{error}");
            } else {
                retry.unwrap_or_else(|e| panic!("{error}: {e}"));
                let record = store.load_now(&key(name), now).unwrap();
                assert_eq!(record.status, UploadStatus::NotStarted, "{error}");
            }
        }
    }

    #[test]
    fn a_late_write_of_an_earlier_claim_is_ignored() {
        let store = MemoryStore::new();
        let now = Instant::now();
        let (old, new) = (ClaimToken::random(), ClaimToken::random());
        store
            .claim_now(&info("k", UploadStatus::NotStarted), Some(old), false, now)
            .unwrap();
        assert!(store.save_now(
            &info("k", UploadStatus::CanceledByClientConnection),
            Some(old),
            now
        ));
        store
            .claim_now(&info("k", UploadStatus::NotStarted), Some(new), false, now)
            .unwrap();
        let mut late = info("k", UploadStatus::Started);
        late.bytes_uploaded = 99;
        assert!(
            !store.save_now(&late, Some(old), now),
            "another claim's write"
        );
        assert!(!store.save_now(&info("k", UploadStatus::Finished), Some(old), now));
        store.remove_now(&key("k"), Some(old));
        let record = store.load_now(&key("k"), now).unwrap();
        assert_eq!(record.status, UploadStatus::NotStarted);
        // The claim's own writes land; a late live write never undoes a terminal one.
        assert!(store.save_now(&info("k", UploadStatus::Started), Some(new), now));
        assert!(store.save_now(&info("k", UploadStatus::Finished), Some(new), now));
        assert!(!store.save_now(&info("k", UploadStatus::Started), Some(new), now));
        assert_eq!(
            store.load_now(&key("k"), now).unwrap().status,
            UploadStatus::Finished
        );
    }

    #[test]
    fn terminal_records_expire_after_the_retention_and_live_ones_do_not() {
        let store = MemoryStore::new().with_retention(Duration::from_secs(5));
        let start = Instant::now();
        store
            .claim_now(&info("live", UploadStatus::NotStarted), None, false, start)
            .unwrap();
        store.save_now(&info("done", UploadStatus::Finished), None, start);
        let just_before = start + Duration::from_millis(4_999);
        assert!(store.load_now(&key("done"), just_before).is_some());
        let after = start + Duration::from_secs(5);
        assert!(store.load_now(&key("done"), after).is_none());
        assert!(store
            .load_now(&key("live"), after + Duration::from_secs(3600))
            .is_some());
        // The expired record is purged on the next write.
        store.save_now(&info("other", UploadStatus::Finished), None, after);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_flood_of_keys_is_bounded_and_evicts_terminal_records_oldest_first() {
        let store = MemoryStore::new().with_capacity(3);
        let now = Instant::now();
        for name in ["t1", "t2"] {
            store
                .claim_now(&info(name, UploadStatus::NotStarted), None, false, now)
                .unwrap();
            store.save_now(&info(name, UploadStatus::Finished), None, now);
        }
        store
            .claim_now(&info("live1", UploadStatus::NotStarted), None, false, now)
            .unwrap();
        // Full: the oldest terminal record (t1) makes room, then t2.
        store
            .claim_now(&info("live2", UploadStatus::NotStarted), None, false, now)
            .unwrap();
        assert!(store.load_now(&key("t1"), now).is_none());
        assert!(store.load_now(&key("t2"), now).is_some());
        store
            .claim_now(&info("live3", UploadStatus::NotStarted), None, false, now)
            .unwrap();
        assert!(store.load_now(&key("t2"), now).is_none());
        // Only live records remain: refuse.
        assert!(matches!(
            store.claim_now(&info("live4", UploadStatus::NotStarted), None, false, now),
            Err(ClaimError::Full { capacity: 3 })
        ));
        assert_eq!(store.len(), 3);
        for i in 0..10_000 {
            let _ = store.claim_now(
                &info(&format!("spray{i}"), UploadStatus::NotStarted),
                None,
                false,
                now,
            );
        }
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_replaced_record_is_not_evicted_by_its_stale_expiry_entry() {
        let store = MemoryStore::new().with_retention(Duration::from_secs(1));
        let start = Instant::now();
        store.save_now(&info("k", UploadStatus::Finished), None, start);
        // The key starts over and is in flight when the old entry expires.
        store
            .claim_now(&info("k", UploadStatus::NotStarted), None, false, start)
            .unwrap();
        let later = start + Duration::from_secs(2);
        store.save_now(&info("x", UploadStatus::Finished), None, later);
        let record = store.load_now(&key("k"), later).expect("still in flight");
        assert_eq!(record.status, UploadStatus::NotStarted);
    }

    #[test]
    fn file_sizes_are_read_once_expire_and_are_bounded() {
        let store = MemoryStore::new()
            .with_capacity(2)
            .with_retention(Duration::from_secs(1));
        let now = Instant::now();
        store.put_file_size_now(&key("a"), 10, None, now);
        assert_eq!(store.take_file_size_now(&key("a"), None, now), Some(10));
        assert_eq!(store.take_file_size_now(&key("a"), None, now), None);
        store.put_file_size_now(&key("b"), 1, None, now);
        store.put_file_size_now(&key("c"), 2, None, now);
        store.put_file_size_now(&key("d"), 3, None, now);
        assert_eq!(store.lock().file_sizes.len(), 2);
        assert_eq!(store.take_file_size_now(&key("b"), None, now), None);
        assert_eq!(
            store.take_file_size_now(&key("d"), None, now + Duration::from_secs(1)),
            None
        );
    }
}
