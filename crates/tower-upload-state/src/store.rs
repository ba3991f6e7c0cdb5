//! The storage behind an [`UploadRegistry`](crate::UploadRegistry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{UploadInfo, UploadKey};

/// Identifies one claim of a key: made at random by the registry when an upload begins, and
/// carried by every save of that upload.
///
/// A store keeps the token of the current claim with the record and refuses a save or a
/// remove that carries another one: a late write of an *earlier* claim of the same key (a
/// progress flush still on its way when Chromium re-posted the key after a hang-up) must not
/// overwrite the new upload's record.
///
/// ```
/// use tower_upload_state::ClaimToken;
///
/// let (a, b) = (ClaimToken::random(), ClaimToken::random());
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 32);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(u128);

impl ClaimToken {
    /// A fresh random token (128 bits from the standard library's randomly seeded hasher).
    #[must_use]
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let half = || {
            // Every `RandomState` has its own keys, seeded from the OS; the counter and the
            // time make two tokens differ even if the keys repeated.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos()),
            );
            hasher.finish()
        };
        Self((u128::from(half()) << 64) | u128::from(half()))
    }

    /// The token as a number, e.g. for a store that keeps it.
    #[must_use]
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The token with this value (what [`as_u128`](Self::as_u128) returned).
    #[must_use]
    pub const fn from_u128(value: u128) -> Self {
        Self(value)
    }
}

/// 32 lowercase hex digits.
impl fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimToken({self})")
    }
}

/// What the registry asks of a store when an upload begins (see
/// [`ProgressStore::claim_with`]).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Claim {
    /// The claim's token, to keep with the record.
    pub token: ClaimToken,
    /// Whether the registry binds uploads to owners
    /// ([`UploadRegistry::with_owner`](crate::UploadRegistry::with_owner)): a record without
    /// an owner then belongs to the anonymous owner only.
    pub owner_bound: bool,
}

impl Claim {
    /// A claim with `token`, without owner binding.
    #[must_use]
    pub const fn new(token: ClaimToken) -> Self {
        Self {
            token,
            owner_bound: false,
        }
    }

    /// Sets [`owner_bound`](Self::owner_bound).
    #[must_use]
    pub const fn owner_bound(mut self, owner_bound: bool) -> Self {
        self.owner_bound = owner_bound;
        self
    }
}

/// The future a [`ProgressStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a shared store calls when another instance asks to cancel an upload (see
/// [`ProgressStore::watch_cancels`]).
pub type CancelCallback = Arc<dyn Fn(&UploadKey) + Send + Sync>;

/// What a shared store calls with every record another instance (or this one) saved, so that
/// progress watchers here see uploads that stream elsewhere (see
/// [`ProgressStore::watch_saves`]).
pub type SaveCallback = Arc<dyn Fn(&UploadInfo) + Send + Sync>;

/// Where upload records live, so that the status service can answer for uploads it does not
/// stream itself.
///
/// igUpload called this a `CustomDictionaryProvider`. The default,
/// [`MemoryStore`](crate::MemoryStore), keeps records in this process; a shared store (Redis)
/// lets a status query or a cancel land on another server instance than the upload.
///
/// The registry keeps the live byte count of uploads streaming in this process itself (an
/// atomic per upload), so a store sees a write per status transition, not per chunk.
///
/// Implementations must bound what they keep: terminal records expire after
/// [`retention`](Self::retention), and a flood of keys must not grow memory without limit.
pub trait ProgressStore: fmt::Debug + Send + Sync + 'static {
    /// Claims `info.key` for a new upload and stores `info`.
    ///
    /// A record of a finished upload, of one that ended in a disconnect, or of one that failed
    /// on the server's side is replaced: the key starts over.
    ///
    /// # Errors
    ///
    /// [`ClaimError::InFlight`] if a record for the key is still in flight,
    /// [`ClaimError::Rejected`] (with that record) if its upload ended in a verdict that a
    /// repeated POST gets again
    /// ([`UploadInfo::is_replayed_verdict`](crate::UploadInfo::is_replayed_verdict)),
    /// [`ClaimError::Full`] if the store is at capacity with in-flight records only,
    /// [`ClaimError::Foreign`] if the record belongs to another owner
    /// ([`UploadInfo::is_foreign_to`]`(info.owner, false)`), checked first.
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>>;

    /// [`claim`](Self::claim), keeping `claim.token` with the record so that
    /// [`save_with`](Self::save_with) can refuse the writes of an earlier claim, and applying
    /// the owner rule with `claim.owner_bound`. The registry calls this one.
    ///
    /// The default ignores the token and the binding and calls [`claim`](Self::claim); the
    /// stores of this crate implement it, and a shared store should.
    fn claim_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        claim: Claim,
    ) -> StoreFuture<'a, Result<(), ClaimError>> {
        let _ = claim;
        self.claim(info)
    }

    /// Stores the latest state of an upload claimed with [`claim`](Self::claim). A terminal
    /// status starts the record's retention; a non-terminal save never turns a terminal
    /// record back into a live one (a late progress write must not undo the final status).
    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>>;

    /// [`save`](Self::save) on behalf of the claim `token`: ignored (not an error) when the
    /// record now belongs to another claim of the same key. The registry calls this one.
    ///
    /// The default ignores the token and calls [`save`](Self::save).
    fn save_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        let _ = token;
        self.save(info)
    }

    /// Forgets `key` (an upload that was claimed but never started, e.g. when another key of
    /// its batch was refused).
    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>>;

    /// [`remove`](Self::remove) on behalf of the claim `token`: nothing is removed when the
    /// record belongs to another claim. The default ignores the token.
    fn remove_with<'a>(
        &'a self,
        key: &'a UploadKey,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        let _ = token;
        self.remove(key)
    }

    /// The stored record of `key`, if there is one that has not expired.
    fn load<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>>;

    /// Records the answer to the widget's `command=fileSize` for `key`.
    fn put_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Takes (reads and removes) the `fileSize` answer recorded for `key`, whoever recorded
    /// it.
    fn take_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>>;

    /// [`put_file_size`](Self::put_file_size), bound to `owner`: only
    /// [`take_file_size_for`](Self::take_file_size_for) with the same owner takes it.
    ///
    /// The default ignores the owner: implement both `_for` methods together.
    fn put_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        let _ = owner;
        self.put_file_size(key, size)
    }

    /// Takes the `fileSize` answer for `key` if it was recorded for exactly `owner` (`None`
    /// and `None` match); for anyone else it answers `None` and leaves the answer in place.
    ///
    /// The default ignores the owner.
    fn take_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        let _ = owner;
        self.take_file_size(key)
    }

    /// Asks the instance streaming `key`, if it is another one, to cancel it.
    ///
    /// The registry calls this only for keys that are not streaming in this process. The
    /// default does nothing: a store that is not shared has no other instance to tell.
    fn request_cancel<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        let _ = key;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Takes the paused resumable upload of `key` for one request (see
    /// [`UploadRegistry::resume`](crate::UploadRegistry::resume)), atomically: the record
    /// must be resumable ([`UploadInfo::resumable`]), in flight, not foreign to `owner`
    /// (applying `claim.owner_bound`), and either paused or held by a request whose lease
    /// has run out (`lease_until` before `now`). The stored record then belongs to
    /// `claim.token`, is no longer paused and is leased until `lease_until`; it is returned.
    ///
    /// The default answers [`ClaimError::Store`]: a store must implement it for resumable
    /// uploads (the stores of this crate do).
    ///
    /// # Errors
    ///
    /// [`ClaimError::Foreign`] (checked first), [`ClaimError::NotResumable`],
    /// [`ClaimError::InFlight`] (another request holds it), [`ClaimError::Store`].
    fn resume_with<'a>(
        &'a self,
        key: &'a UploadKey,
        claim: Claim,
        owner: Option<&'a str>,
        now: std::time::SystemTime,
        lease_until: std::time::SystemTime,
    ) -> StoreFuture<'a, Result<UploadInfo, ClaimError>> {
        let _ = (key, claim, owner, now, lease_until);
        Box::pin(std::future::ready(Err(ClaimError::Store(StoreError::new(
            "this store does not support resumable uploads",
        )))))
    }

    /// How long terminal records stay queryable.
    fn retention(&self) -> Duration;

    /// How often an upload streaming in this process should publish its byte count to the
    /// store, for instances that read it from there. `None` (the default) for a store that is
    /// not shared: the registry answers from its live counters.
    fn progress_interval(&self) -> Option<Duration> {
        None
    }

    /// Called once by the registry built on this store: a shared store calls `on_cancel` with
    /// the key of every cancel another instance requested for an upload claimed here. The
    /// default ignores it.
    fn watch_cancels(&self, on_cancel: CancelCallback) {
        let _ = on_cancel;
    }

    /// Called once by the registry built on this store: a shared store calls `on_save` with
    /// every record saved by any instance (the Redis store publishes each save and subscribes
    /// to them), so that [progress watchers](crate::UploadRegistry::watch) on this instance
    /// follow uploads streaming on others. Delivery may be lossy: watchers also reload
    /// records now and then. The default ignores it (a store that is not shared).
    fn watch_saves(&self, on_save: SaveCallback) {
        let _ = on_save;
    }

    /// Shows the record of `key` to `f` at once, without a future, and returns `true`; or
    /// returns `false` without calling `f` when this store cannot answer without waiting
    /// (then use [`load`](Self::load)). `f` sees `None` for an unknown or expired key.
    ///
    /// The status service's fast path: an in-process store (the [`MemoryStore`](crate::MemoryStore))
    /// answers here without boxing a future or cloning the record. The default returns `false`.
    fn inspect(&self, key: &str, f: &mut dyn FnMut(Option<&UploadInfo>)) -> bool {
        let _ = (key, f);
        false
    }
}

/// A shared store is a store: keep an `Arc` of your store to look at it while the registry
/// uses it (e.g. [`MemoryStore::len`](crate::MemoryStore::len)).
impl<S: ProgressStore + ?Sized> ProgressStore for Arc<S> {
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
        (**self).claim(info)
    }

    fn claim_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        claim: Claim,
    ) -> StoreFuture<'a, Result<(), ClaimError>> {
        (**self).claim_with(info, claim)
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).save(info)
    }

    fn save_with<'a>(
        &'a self,
        info: &'a UploadInfo,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).save_with(info, token)
    }

    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).remove(key)
    }

    fn remove_with<'a>(
        &'a self,
        key: &'a UploadKey,
        token: ClaimToken,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).remove_with(key, token)
    }

    fn put_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).put_file_size_for(key, size, owner)
    }

    fn take_file_size_for<'a>(
        &'a self,
        key: &'a UploadKey,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        (**self).take_file_size_for(key, owner)
    }

    fn load<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<UploadInfo>, StoreError>> {
        (**self).load(key)
    }

    fn put_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
        size: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).put_file_size(key, size)
    }

    fn take_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>> {
        (**self).take_file_size(key)
    }

    fn request_cancel<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).request_cancel(key)
    }

    fn retention(&self) -> Duration {
        (**self).retention()
    }

    fn resume_with<'a>(
        &'a self,
        key: &'a UploadKey,
        claim: Claim,
        owner: Option<&'a str>,
        now: std::time::SystemTime,
        lease_until: std::time::SystemTime,
    ) -> StoreFuture<'a, Result<UploadInfo, ClaimError>> {
        (**self).resume_with(key, claim, owner, now, lease_until)
    }

    fn progress_interval(&self) -> Option<Duration> {
        (**self).progress_interval()
    }

    fn watch_cancels(&self, on_cancel: CancelCallback) {
        (**self).watch_cancels(on_cancel);
    }

    fn watch_saves(&self, on_save: SaveCallback) {
        (**self).watch_saves(on_save);
    }

    fn inspect(&self, key: &str, f: &mut dyn FnMut(Option<&UploadInfo>)) -> bool {
        (**self).inspect(key, f)
    }
}

/// Why a [`ProgressStore::claim`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClaimError {
    /// An upload with this key is in flight (HTTP 409).
    InFlight,
    /// The key's upload ended in a client-caused verdict
    /// ([`UploadInfo::is_replayed_verdict`]); a repeated POST gets the same verdict.
    Rejected(Box<UploadInfo>),
    /// The store is full of in-flight uploads (HTTP 503).
    Full {
        /// The store's capacity.
        capacity: usize,
    },
    /// The store failed.
    Store(StoreError),
    /// The key's record (in flight or ended) belongs to another owner (see
    /// [`UploadRegistry::with_owner`](crate::UploadRegistry::with_owner)). Nothing about the
    /// record is told: a stranger learns neither its state nor its verdict.
    Foreign,
    /// [`UploadRegistry::resume`](crate::UploadRegistry::resume): the key has no resumable
    /// upload to take (unknown, expired, ended, or not resumable).
    NotResumable,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InFlight => f.write_str("an upload with this key is already in progress"),
            Self::Rejected(info) => write!(
                f,
                "the upload with this key was already refused ({})",
                info.status
            ),
            Self::Full { capacity } => write!(
                f,
                "the server is tracking its maximum of {capacity} uploads; try again later"
            ),
            // The store's error is the `source`: it may name internal hosts, and this text may
            // reach a client.
            Self::Store(_) => f.write_str("the upload store is unavailable"),
            Self::Foreign => f.write_str("this upload key cannot be used"),
            Self::NotResumable => f.write_str("no resumable upload has this key"),
        }
    }
}

impl std::error::Error for ClaimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(error) => Some(error),
            _ => None,
        }
    }
}

impl From<StoreError> for ClaimError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// A failure of the storage behind the registry (e.g. Redis is unreachable).
#[derive(Debug)]
pub struct StoreError {
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_errors_text_never_repeats_the_stores_error() {
        let error = ClaimError::from(StoreError::new("connection refused: redis://10.0.0.7:6379"));
        assert_eq!(error.to_string(), "the upload store is unavailable");
        let source = std::error::Error::source(&error).expect("kept as the source");
        assert!(source.to_string().contains("10.0.0.7"));
        assert!(!ClaimError::Foreign.to_string().contains("owner"));
    }
}
