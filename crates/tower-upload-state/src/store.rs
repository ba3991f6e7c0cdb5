//! The storage behind an [`UploadRegistry`](crate::UploadRegistry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{UploadInfo, UploadKey};

/// The future a [`ProgressStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a shared store calls when another instance asks to cancel an upload (see
/// [`ProgressStore::watch_cancels`]).
pub type CancelCallback = Arc<dyn Fn(&UploadKey) + Send + Sync>;

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
    /// [`ClaimError::Full`] if the store is at capacity with in-flight records only.
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>>;

    /// Stores the latest state of an upload claimed with [`claim`](Self::claim). A terminal
    /// status starts the record's retention.
    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Forgets `key` (an upload that was claimed but never started, e.g. when another key of
    /// its batch was refused).
    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>>;

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

    /// Takes (reads and removes) the `fileSize` answer recorded for `key`.
    fn take_file_size<'a>(
        &'a self,
        key: &'a UploadKey,
    ) -> StoreFuture<'a, Result<Option<u64>, StoreError>>;

    /// Asks the instance streaming `key`, if it is another one, to cancel it.
    ///
    /// The registry calls this only for keys that are not streaming in this process. The
    /// default does nothing: a store that is not shared has no other instance to tell.
    fn request_cancel<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        let _ = key;
        Box::pin(std::future::ready(Ok(())))
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
}

/// A shared store is a store: keep an `Arc` of your store to look at it while the registry
/// uses it (e.g. [`MemoryStore::len`](crate::MemoryStore::len)).
impl<S: ProgressStore + ?Sized> ProgressStore for Arc<S> {
    fn claim<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), ClaimError>> {
        (**self).claim(info)
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).save(info)
    }

    fn remove<'a>(&'a self, key: &'a UploadKey) -> StoreFuture<'a, Result<(), StoreError>> {
        (**self).remove(key)
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

    fn progress_interval(&self) -> Option<Duration> {
        (**self).progress_interval()
    }

    fn watch_cancels(&self, on_cancel: CancelCallback) {
        (**self).watch_cancels(on_cancel);
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
            Self::Store(error) => write!(f, "the upload store failed: {error}"),
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
