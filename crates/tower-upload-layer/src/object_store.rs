//! [`ObjectStoreSink`]: uploads streamed into object storage (S3 and S3-compatible servers,
//! GCS, Azure) through the `object_store` crate (feature `object-store`).
//!
//! A file smaller than one part is one conditional `PUT`; a larger one is a multipart upload
//! whose parts leave as they fill, with a bounded number in flight. Every way a file can
//! fail aborts its multipart upload, and a journal object per multipart upload lets
//! [`ObjectStoreSink::sweep_stale`] abort what a crash left behind.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::object_store::multipart::{MultipartStore, PartId};
use ::object_store::path::Path;
use ::object_store::{
    Attribute, Attributes, MultipartId, ObjectStore, ObjectStoreExt as _, PutMode,
    PutMultipartOptions, PutOptions, PutPayload,
};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;

use crate::config::{OverwritePolicy, DEFAULT_ORPHAN_AGE, DEFAULT_TEMP_SUBDIR};
use crate::names::numbered;
use crate::sink::{FileSink, FileWriter, SinkFile, SinkFuture};
use tower_upload_state::UploadKey;

/// The smallest part S3 accepts (all parts but the last): 5 MiB.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The default part size: [`MIN_PART_SIZE`], the least memory per upload.
pub const DEFAULT_PART_SIZE: usize = MIN_PART_SIZE;
/// The default most parts of one file on their way to the store at once.
pub const DEFAULT_MAX_PARTS_IN_FLIGHT: usize = 2;

/// The most numbered names tried for one file under [`OverwritePolicy::UniqueSuffix`].
const MAX_SUFFIX_ATTEMPTS: u32 = 1000;

/// A [`FileSink`] that streams every file into an [`ObjectStore`]: S3 and S3-compatible
/// servers (MinIO, Ceph, R2, moto), Google Cloud Storage, Azure Blob Storage, or any other
/// backend of the `object_store` crate that implements [`MultipartStore`].
///
/// The object key is the [prefix](Self::prefix) followed by the file's sanitised (or
/// handler-chosen) name; [`Stored::Sink`](crate::Stored::Sink) in
/// [`UploadedFiles`](crate::UploadedFiles) holds it. The object carries the declared content
/// type and the metadata `upload-key` and `file-name` (percent-encoded), and `sha-256`
/// (base64) for a file stored with one `PUT`.
///
/// **Memory.** Bytes are gathered into parts of [`part_size`](Self::part_size) (5 MiB by
/// default, the S3 minimum); a full part leaves at once while the next one fills, and at
/// most [`max_parts_in_flight`](Self::max_parts_in_flight) (2) are on their way: the request
/// body is not read further until one is through. One upload holds at most
/// [`max_buffered_bytes`](Self::max_buffered_bytes) (15 MiB by default) plus one chunk.
///
/// **Size.** A file smaller than one part is one `PUT`; a larger one is a multipart upload,
/// created when its first part is full.
///
/// **Failures.** Whatever ends a file before it is stored (a cancel, a disconnect, a limit,
/// a veto, a store error, a dropped request future) aborts its multipart upload, so no parts
/// are left to bill; an `upload_finishing` veto deletes the finished object. A crash cannot
/// abort anything: each multipart upload has a small journal object under
/// `<prefix>/.tower-upload-tmp/`, refreshed while the upload moves, and
/// [`sweep_stale`](Self::sweep_stale) (also run by the sink itself, on the first file and
/// then every [`stale_after`](Self::stale_after)) aborts the uploads whose journal went
/// stale. A bucket lifecycle rule (`AbortIncompleteMultipartUpload`) is a good second net.
///
/// **Existing objects** ([`overwrite`](Self::overwrite)): `Overwrite` replaces them;
/// `UniqueSuffix` (the default) picks the first free name among `a.pdf`, `a (1).pdf`, ...;
/// `Reject` refuses the file (before its first byte is stored when the key is already
/// taken). A one-`PUT` file is written with a conditional put (`If-None-Match: *`), so two
/// uploads of one name cannot both win; `object_store` cannot make the completion of a
/// multipart upload conditional, so a larger file checks the key again just before it
/// completes and fails rather than replace an object that appeared meanwhile.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use tower_upload_layer::{ObjectStoreSink, OverwritePolicy, UploadLayer, UploadSink};
/// use tower_upload_state::UploadRegistry;
///
/// // With S3 (object_store's `aws` feature): region and credentials from the usual AWS_*
/// // environment variables, the bucket must exist.
/// //   let store = Arc::new(AmazonS3Builder::from_env().with_bucket_name("my-uploads").build()?);
/// let store = Arc::new(InMemory::new());
/// let sink = ObjectStoreSink::new(store)
///     .prefix("uploads/")
///     .overwrite(OverwritePolicy::Reject);
/// assert_eq!(sink.location("report.pdf").as_ref(), "uploads/report.pdf");
/// assert_eq!(sink.max_buffered_bytes(), 15 << 20);
/// let layer = UploadLayer::new(UploadRegistry::new())
///     .max_file_size(Some(1 << 30))
///     .sink(UploadSink::custom(sink));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    prefix: Path,
    part_size: usize,
    max_parts_in_flight: usize,
    overwrite: OverwritePolicy,
    stale_after: Option<Duration>,
    /// When the next automatic sweep is due, in milliseconds since the Unix epoch (0: now).
    next_sweep: Arc<AtomicU64>,
}

impl ObjectStoreSink {
    /// A sink into `store` (an `AmazonS3`, `GoogleCloudStorage`, `MicrosoftAzure`,
    /// `InMemory`...), at the root of the bucket until a [`prefix`](Self::prefix) is set.
    #[must_use]
    pub fn new<S: ObjectStore + MultipartStore>(store: Arc<S>) -> Self {
        let multipart: Arc<dyn MultipartStore> = store.clone();
        Self::from_parts(store, multipart)
    }

    /// A sink from the two halves of one store, for stores already behind `dyn`: `store`
    /// for `PUT`s, checks, deletes and listings, `multipart` for the multipart uploads. Both
    /// must reach the same bucket.
    #[must_use]
    pub fn from_parts(store: Arc<dyn ObjectStore>, multipart: Arc<dyn MultipartStore>) -> Self {
        Self {
            store,
            multipart,
            prefix: Path::default(),
            part_size: DEFAULT_PART_SIZE,
            max_parts_in_flight: DEFAULT_MAX_PARTS_IN_FLIGHT,
            overwrite: OverwritePolicy::default(),
            stale_after: Some(DEFAULT_ORPHAN_AGE),
            next_sweep: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The folder of the objects: `"uploads/"` stores `report.pdf` as `uploads/report.pdf`.
    /// Empty segments and slashes at either end are ignored; characters that cannot be in
    /// a key are percent-encoded.
    #[must_use]
    pub fn prefix(mut self, prefix: impl AsRef<str>) -> Self {
        self.prefix = Path::from(prefix.as_ref());
        self
    }

    /// The size of every part of a multipart upload but the last; a smaller file is stored
    /// with one `PUT`. S3 needs at least [`MIN_PART_SIZE`] (5 MiB), R2 equal parts;
    /// a smaller value is for stores and test servers that allow it. Memory per upload grows
    /// with it (see [`max_buffered_bytes`](Self::max_buffered_bytes)).
    #[must_use]
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The most parts of one file uploading at once (at least 1). More can be faster over a
    /// long-latency link, at [`part_size`](Self::part_size) bytes of memory each.
    #[must_use]
    pub fn max_parts_in_flight(mut self, parts: usize) -> Self {
        self.max_parts_in_flight = parts.max(1);
        self
    }

    /// What to do when the object key is taken (default
    /// [`OverwritePolicy::UniqueSuffix`]). This sink's own setting: the layer's
    /// [`overwrite`](crate::UploadLayer::overwrite) is for the disk.
    #[must_use]
    pub fn overwrite(mut self, policy: OverwritePolicy) -> Self {
        self.overwrite = policy;
        self
    }

    /// How long a multipart upload may go without a part before a sweep takes it for one a
    /// crash left, and how often the sink sweeps (default one hour, as the layer's
    /// [`orphan_age`](crate::UploadLayer::orphan_age)); `None` turns the automatic sweep
    /// off. Keep it well above the time one part takes to arrive. A live upload rewrites
    /// its journal every quarter of this age (of one hour when `None`).
    #[must_use]
    pub fn stale_after(mut self, age: Option<Duration>) -> Self {
        self.stale_after = age;
        self
    }

    /// The most bytes of file data one upload holds in memory: the part being filled and
    /// the parts in flight, `(max_parts_in_flight + 1) * part_size` (plus one received
    /// chunk).
    #[must_use]
    pub fn max_buffered_bytes(&self) -> usize {
        (self.max_parts_in_flight + 1).saturating_mul(self.part_size)
    }

    /// The object key of a file named `name` (without a numbered suffix).
    #[must_use]
    pub fn location(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }

    /// Aborts the multipart uploads under the prefix whose journal is older than `min_age`
    /// (what a crash or a kill left; live uploads refresh theirs), and deletes their
    /// journals. Returns how many were swept.
    ///
    /// # Errors
    ///
    /// The store's failure to list, read or delete; uploads already swept stay swept.
    pub async fn sweep_stale(&self, min_age: Duration) -> io::Result<usize> {
        let journals = self.prefix.clone().join(DEFAULT_TEMP_SUBDIR);
        let now_ms = millis_since_epoch(SystemTime::now());
        let min_age_ms = u64::try_from(min_age.as_millis()).unwrap_or(u64::MAX);
        let mut listing = self.store.list(Some(&journals));
        let mut swept = 0;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(io_error)?;
            let modified = u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0);
            if now_ms.saturating_sub(modified) < min_age_ms {
                continue;
            }
            let journal = match self.store.get(&meta.location).await {
                Ok(found) => found.bytes().await.map_err(io_error)?,
                Err(::object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(io_error(error)),
            };
            if let Some((path, id)) = read_journal(&journal) {
                match self.multipart.abort_multipart(&path, &id).await {
                    Ok(()) | Err(::object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(io_error(error)),
                }
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(::object_store::Error::NotFound { .. }) => swept += 1,
                Err(error) => return Err(io_error(error)),
            }
        }
        Ok(swept)
    }

    /// Starts a sweep in the background when one is due.
    fn sweep_when_due(&self) {
        let Some(age) = self.stale_after else {
            return;
        };
        let now = millis_since_epoch(SystemTime::now());
        let due = self.next_sweep.load(Ordering::Relaxed);
        let next = now.saturating_add(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        if now < due
            || self
                .next_sweep
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let sink = self.clone();
            runtime.spawn(async move {
                let _swept = sink.sweep_stale(age).await;
                crate::trace::trace!(debug, swept = ?_swept, "object store sweep");
            });
        }
    }

    /// A key in the prefix's temp folder (journals, resumable uploads' tails).
    fn temp_key(&self, name: &str) -> Path {
        self.prefix.clone().join(DEFAULT_TEMP_SUBDIR).join(name)
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(::object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(io_error(error)),
        }
    }

    /// The key of the `attempt`-th name for `name` (0: the name itself).
    fn candidate(&self, name: &str, attempt: u32) -> Path {
        if attempt == 0 {
            self.location(name)
        } else {
            self.location(&numbered(name, attempt))
        }
    }

    /// The first key the overwrite policy allows for `name`, and its attempt number.
    async fn choose(&self, name: &str) -> io::Result<(Path, u32)> {
        match self.overwrite {
            OverwritePolicy::Overwrite => Ok((self.location(name), 0)),
            OverwritePolicy::Reject => {
                let path = self.location(name);
                if self.exists(&path).await? {
                    return Err(taken());
                }
                Ok((path, 0))
            }
            OverwritePolicy::UniqueSuffix => {
                for attempt in 0..MAX_SUFFIX_ATTEMPTS {
                    let path = self.candidate(name, attempt);
                    if !self.exists(&path).await? {
                        return Ok((path, attempt));
                    }
                }
                Err(taken())
            }
        }
    }
}

/// Resumable uploads: a file written over several requests, maybe on several instances.
impl ObjectStoreSink {
    /// Starts a resumable upload of `file`: picks its key (by the overwrite policy) and
    /// stores nothing yet. Keep the state where every instance finds it (the registry's
    /// store), and [`resume`](Self::resume) it for every request that brings bytes.
    ///
    /// A paused upload's journal and tail age: keep [`stale_after`](Self::stale_after)
    /// above the longest pause allowed (tus's `Upload-Expires`), or the sweep ends it.
    ///
    /// # Errors
    ///
    /// The key is taken under [`OverwritePolicy::Reject`] (`AlreadyExists`), or the store
    /// failed.
    pub async fn begin(&self, file: &SinkFile) -> io::Result<ResumableObject> {
        let (path, _) = self.choose(&file.name).await?;
        Ok(ResumableObject {
            location: path.to_string(),
            key: file.key.as_str().to_owned(),
            name: file.name.clone(),
            mime_type: file.mime_type.clone(),
            offset: 0,
            upload_id: None,
            parts: Vec::new(),
            tail: None,
        })
    }

    /// Picks up a resumable upload where `state` left it, on this instance or any other:
    /// the bytes past the last full part come back from the bucket.
    ///
    /// # Errors
    ///
    /// The state names a key that cannot be one, or the store failed.
    pub async fn resume(&self, state: ResumableObject) -> io::Result<ResumableWriter> {
        let path = Path::parse(&state.location)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let mut buffer = VecDeque::new();
        if let Some(tail) = &state.tail {
            let tail = Path::parse(tail)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            let bytes = self
                .store
                .get(&tail)
                .await
                .map_err(io_error)?
                .bytes()
                .await
                .map_err(io_error)?;
            buffer.push_back(bytes);
        }
        let upload = state.upload_id.clone().map(|id| {
            let parts = state
                .parts
                .iter()
                .map(|content_id| PartId {
                    content_id: content_id.clone(),
                })
                .collect();
            let mut upload = Multipart::resumed(self, &path, id, parts);
            upload.abort_on_drop = false;
            upload
        });
        let key = UploadKey::parse(&state.key)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
        let buffered = buffer.iter().map(Bytes::len).sum();
        let writer = ObjectWriter {
            sink: self.clone(),
            file: SinkFile::new(key, state.name.clone(), state.mime_type.clone()),
            path,
            attempt: 0,
            buffer,
            buffered,
            digest: None,
            upload,
        };
        Ok(ResumableWriter { writer, state })
    }

    /// Ends a resumable upload that will not complete (deleted, expired): aborts its
    /// multipart upload and deletes its tail and journal.
    pub async fn abandon(&self, state: ResumableObject) {
        if let (Some(id), Ok(path)) = (&state.upload_id, Path::parse(&state.location)) {
            let journal = hex(&Sha256::digest(id.as_bytes())[..16]);
            abort_upload(
                Arc::clone(&self.store),
                Arc::clone(&self.multipart),
                path,
                id.clone(),
                self.temp_key(&journal),
            )
            .await;
        }
        if let Some(Ok(tail)) = state.tail.as_deref().map(Path::parse) {
            let _ = self.store.delete(&tail).await;
        }
    }

    /// The key of the object that holds a resumable upload's bytes past its last full part.
    fn tail_key(&self, state: &ResumableObject) -> Path {
        let id = format!("{}\n{}", state.key, state.location);
        self.temp_key(&format!(
            "{}.tail",
            hex(&Sha256::digest(id.as_bytes())[..16])
        ))
    }
}

/// Where a resumable upload into an [`ObjectStoreSink`] stands between two requests: what
/// another instance needs to go on with it (serialise it with serde into the registry's
/// store). The parts stay in the bucket's multipart upload; the bytes past the last full
/// part (S3 takes no part under 5 MiB but the last) wait in a small object of the prefix's
/// `.tower-upload-tmp/` folder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ResumableObject {
    /// The object key the file will have.
    pub location: String,
    /// The upload's registry key.
    pub key: String,
    /// The file's (sanitised) name.
    pub name: String,
    /// The declared MIME type.
    pub mime_type: String,
    /// The bytes received so far.
    pub offset: u64,
    /// The multipart upload's id, once a part was full.
    pub upload_id: Option<String>,
    /// The stored parts' ids (S3: their ETags), in order.
    pub parts: Vec<String>,
    /// The key of the object with the bytes past the last part, when there are any.
    pub tail: Option<String>,
}

/// A resumable upload taking the bytes of one request; see [`ObjectStoreSink::begin`].
///
/// End it with [`suspend`](Self::suspend) (the request ended, the upload goes on later),
/// [`finish`](Self::finish) or [`abort`](Self::abort). Dropped without one, it leaves the
/// upload as its last state says: the bytes sent since are sent again after a resume.
#[derive(Debug)]
pub struct ResumableWriter {
    writer: ObjectWriter,
    state: ResumableObject,
}

impl ResumableWriter {
    /// The bytes received so far, this request's included.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.state.offset
    }

    /// Takes the next bytes; full parts leave for the bucket at once.
    ///
    /// # Errors
    ///
    /// A part could not be stored; abort (or abandon) the upload.
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.state.offset += chunk.len() as u64;
        self.writer.push(chunk).await
    }

    /// The request is over: waits for the parts in flight, stores the bytes past the last
    /// full part in the tail object, and returns the state to keep for the next request.
    ///
    /// # Errors
    ///
    /// The store failed: the previous state is still valid (its offset is the one to
    /// resume from).
    pub async fn suspend(mut self) -> io::Result<ResumableObject> {
        let sink = self.writer.sink.clone();
        if let Some(upload) = self.writer.upload.take() {
            self.state.upload_id = Some(upload.id.clone());
            self.state.parts = upload
                .suspend()
                .await?
                .into_iter()
                .map(|part| part.content_id)
                .collect();
        }
        let tail = sink.tail_key(&self.state);
        if self.writer.buffered > 0 {
            let rest = self.writer.take(self.writer.buffered);
            sink.store.put(&tail, rest).await.map_err(io_error)?;
            self.state.tail = Some(tail.to_string());
        } else {
            if self.state.tail.is_some() {
                let _ = sink.store.delete(&tail).await;
            }
            self.state.tail = None;
        }
        Ok(self.state)
    }

    /// All bytes are in: stores the object and returns its key.
    ///
    /// # Errors
    ///
    /// The store failed, or the key was taken meanwhile (under a policy other than
    /// `Overwrite`); the multipart upload is then aborted.
    pub async fn finish(self) -> io::Result<String> {
        let sink = self.writer.sink.clone();
        let tail = self
            .state
            .tail
            .is_some()
            .then(|| sink.tail_key(&self.state));
        let mut writer = self.writer;
        if let Some(upload) = writer.upload.as_mut() {
            upload.abort_on_drop = true;
        }
        let location = writer.finish_stored().await;
        if let Some(tail) = tail {
            let _ = sink.store.delete(&tail).await;
        }
        Ok(location?.unwrap_or_default())
    }

    /// The upload will not complete: aborts the multipart upload, deletes the tail.
    pub async fn abort(mut self) {
        if let Some(upload) = self.writer.upload.take() {
            upload.abort().await;
        }
        let sink = self.writer.sink.clone();
        self.state.upload_id = None;
        sink.abandon(self.state).await;
    }
}

impl fmt::Debug for ObjectStoreSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreSink")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix.as_ref())
            .field("part_size", &self.part_size)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .field("overwrite", &self.overwrite)
            .field("stale_after", &self.stale_after)
            .finish_non_exhaustive()
    }
}

impl FileSink for ObjectStoreSink {
    fn open<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, io::Result<Box<dyn FileWriter>>> {
        Box::pin(async move {
            self.sweep_when_due();
            let (path, attempt) = self.choose(&file.name).await?;
            let writer: Box<dyn FileWriter> = Box::new(ObjectWriter {
                sink: self.clone(),
                file: file.clone(),
                path,
                attempt,
                buffer: VecDeque::new(),
                buffered: 0,
                digest: Some(Sha256::new()),
                upload: None,
            });
            Ok(writer)
        })
    }

    fn discard<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            // `file.name` is the key the writer reported.
            let path = Path::parse(&file.name).unwrap_or_else(|_| Path::from(file.name.as_str()));
            let _deleted = self.store.delete(&path).await;
            crate::trace::trace!(debug, key = %file.key, deleted = _deleted.is_ok(), "object discarded");
        })
    }
}

/// One file on its way into the store.
struct ObjectWriter {
    sink: ObjectStoreSink,
    file: SinkFile,
    /// The key the object will have.
    path: Path,
    /// Which numbered name `path` is (0: the name itself).
    attempt: u32,
    /// The bytes of the part being filled.
    buffer: VecDeque<Bytes>,
    buffered: usize,
    /// `None` for a resumed file: a digest's state does not survive a pause.
    digest: Option<Sha256>,
    /// Once the first part is full.
    upload: Option<Multipart>,
}

impl fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("path", &self.path.as_ref())
            .field("buffered", &self.buffered)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter {
    /// The first `len` buffered bytes, as one payload (no copy).
    fn take(&mut self, len: usize) -> PutPayload {
        let mut part = Vec::new();
        let mut wanted = len;
        while wanted > 0 {
            let Some(mut chunk) = self.buffer.pop_front() else {
                break;
            };
            if chunk.len() > wanted {
                self.buffer.push_front(chunk.split_off(wanted));
            }
            wanted -= chunk.len();
            part.push(chunk);
        }
        self.buffered -= len - wanted;
        part.into_iter().collect()
    }

    fn attributes(&self, digest: Option<String>) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, self.file.mime_type.clone().into());
        attributes.insert(
            Attribute::Metadata("upload-key".into()),
            self.file.key.as_str().to_owned().into(),
        );
        attributes.insert(
            Attribute::Metadata("file-name".into()),
            percent_encode(&self.file.original_name).into(),
        );
        if let Some(digest) = digest {
            attributes.insert(Attribute::Metadata("sha-256".into()), digest.into());
        }
        attributes
    }

    /// Stores a file smaller than one part with one (conditional) `PUT`.
    async fn put_whole(&mut self) -> io::Result<()> {
        let payload = self.take(self.buffered);
        let digest = self
            .digest
            .take()
            .map(|digest| base64::engine::general_purpose::STANDARD.encode(digest.finalize()));
        let attributes = self.attributes(digest);
        let sink = &self.sink;
        loop {
            let mode = match sink.overwrite {
                OverwritePolicy::Overwrite => PutMode::Overwrite,
                _ => PutMode::Create,
            };
            let options = PutOptions {
                mode,
                attributes: attributes.clone(),
                ..PutOptions::default()
            };
            match sink
                .store
                .put_opts(&self.path, payload.clone(), options)
                .await
            {
                Ok(_) => return Ok(()),
                Err(
                    ::object_store::Error::AlreadyExists { .. }
                    | ::object_store::Error::Precondition { .. },
                ) if sink.overwrite == OverwritePolicy::UniqueSuffix
                    && self.attempt + 1 < MAX_SUFFIX_ATTEMPTS =>
                {
                    // Taken since `open` looked: the next free name.
                    self.attempt += 1;
                    self.path = sink.candidate(&self.file.name, self.attempt);
                }
                Err(error) => return Err(io_error(error)),
            }
        }
    }

    async fn finish_stored(mut self) -> io::Result<Option<String>> {
        let Some(mut upload) = self.upload.take() else {
            self.put_whole().await?;
            return Ok(Some(self.path.to_string()));
        };
        let result = async {
            if self.buffered > 0 {
                let last = self.take(self.buffered);
                upload.put(last, self.sink.max_parts_in_flight).await?;
            }
            upload.wait_all().await?;
            if self.sink.overwrite != OverwritePolicy::Overwrite
                && self.sink.exists(&self.path).await?
            {
                return Err(taken());
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => upload.complete().await?,
            Err(error) => {
                upload.abort().await;
                return Err(error);
            }
        }
        Ok(Some(self.path.to_string()))
    }
}

impl FileWriter for ObjectWriter {
    fn write(&mut self, chunk: Bytes) -> SinkFuture<'_, io::Result<()>> {
        Box::pin(self.push(chunk))
    }

    fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>> {
        Box::pin(async move { (*self).finish_stored().await.map(drop) })
    }

    fn finish_stored(self: Box<Self>) -> SinkFuture<'static, io::Result<Option<String>>> {
        Box::pin((*self).finish_stored())
    }

    fn abort(mut self: Box<Self>) -> SinkFuture<'static, ()> {
        Box::pin(async move {
            if let Some(upload) = self.upload.take() {
                upload.abort().await;
            }
        })
    }
}

impl ObjectWriter {
    /// Takes a chunk: buffers it, and sends every part that is full.
    async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        {
            if let (None, Some(digest)) = (&self.upload, self.digest.as_mut()) {
                // Only a one-`PUT` file carries its digest: no hashing past the first part.
                digest.update(&chunk);
            }
            self.buffered += chunk.len();
            self.buffer.push_back(chunk);
            while self.buffered >= self.sink.part_size {
                let part = self.take(self.sink.part_size);
                if self.upload.is_none() {
                    let attributes = self.attributes(None);
                    self.upload = Some(Multipart::start(&self.sink, &self.path, attributes).await?);
                }
                let upload = self.upload.as_mut().expect("just started");
                upload.put(part, self.sink.max_parts_in_flight).await?;
            }
            if let Some(upload) = self.upload.as_mut() {
                // Also without the automatic sweep: a manual one must not take a live upload.
                let age = self.sink.stale_after.unwrap_or(DEFAULT_ORPHAN_AGE);
                upload.refresh_journal(age / 4);
            }
            Ok(())
        }
    }
}

/// A multipart upload in progress; dropped before it completed or aborted, it aborts itself
/// in the background.
struct Multipart {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    journal: Path,
    journal_body: Bytes,
    journal_written: Instant,
    /// The part ids, in part order (`None` while a part is in flight).
    parts: Vec<Option<PartId>>,
    in_flight: JoinSet<(usize, ::object_store::Result<PartId>)>,
    /// Until completed or aborted.
    open: bool,
    /// Whether dropping it open aborts the upload (not for a resumable one: its last
    /// suspended state stays valid, and the parts sent since are sent again).
    abort_on_drop: bool,
}

impl fmt::Debug for Multipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multipart")
            .field("parts", &self.parts.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Multipart {
    /// Creates the multipart upload and its journal.
    async fn start(
        sink: &ObjectStoreSink,
        path: &Path,
        attributes: Attributes,
    ) -> io::Result<Self> {
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let id = match sink.multipart.create_multipart_opts(path, options).await {
            Ok(id) => id,
            // A store that keeps no attributes on multipart uploads (`InMemory`).
            Err(::object_store::Error::NotSupported { .. }) => sink
                .multipart
                .create_multipart(path)
                .await
                .map_err(io_error)?,
            Err(error) => return Err(io_error(error)),
        };
        let upload = Self::resumed(sink, path, id, Vec::new());
        if let Err(error) = upload
            .store
            .put(&upload.journal, upload.journal_body.clone().into())
            .await
        {
            upload.abort().await;
            return Err(io_error(error));
        }
        Ok(upload)
    }

    /// The handle of an upload that exists, with its first parts stored.
    fn resumed(sink: &ObjectStoreSink, path: &Path, id: MultipartId, parts: Vec<PartId>) -> Self {
        let journal_name = hex(&Sha256::digest(id.as_bytes())[..16]);
        let journal = sink.temp_key(&journal_name);
        let journal_body =
            Bytes::from(serde_json::json!({ "path": path.as_ref(), "id": id }).to_string());
        Self {
            store: Arc::clone(&sink.store),
            multipart: Arc::clone(&sink.multipart),
            path: path.clone(),
            id,
            journal,
            journal_body,
            journal_written: Instant::now(),
            parts: parts.into_iter().map(Some).collect(),
            in_flight: JoinSet::new(),
            open: true,
            abort_on_drop: true,
        }
    }

    /// Waits for the parts in flight and lets go of the upload without ending it; its
    /// journal is rewritten, so a sweep counts its age from now. The stored part ids.
    async fn suspend(mut self) -> io::Result<Vec<PartId>> {
        self.wait_all().await?;
        self.open = false;
        let _ = self
            .store
            .put(&self.journal, self.journal_body.clone().into())
            .await;
        Ok(std::mem::take(&mut self.parts)
            .into_iter()
            .map(|part| part.expect("every part was awaited"))
            .collect())
    }

    /// Sends the next part once fewer than `max_in_flight` are on their way.
    async fn put(&mut self, part: PutPayload, max_in_flight: usize) -> io::Result<()> {
        while self.in_flight.len() >= max_in_flight {
            self.join_one().await?;
        }
        let index = self.parts.len();
        self.parts.push(None);
        let (multipart, path, id) = (
            Arc::clone(&self.multipart),
            self.path.clone(),
            self.id.clone(),
        );
        self.in_flight
            .spawn(async move { (index, multipart.put_part(&path, &id, index, part).await) });
        Ok(())
    }

    async fn join_one(&mut self) -> io::Result<()> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok((index, Ok(part)))) => {
                self.parts[index] = Some(part);
                Ok(())
            }
            Some(Ok((_, Err(error)))) => Err(io_error(error)),
            Some(Err(error)) => Err(io::Error::other(error)),
        }
    }

    async fn wait_all(&mut self) -> io::Result<()> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    /// Rewrites the journal (in the background) when it is older than `every`, so a sweep
    /// sees that the upload is alive.
    fn refresh_journal(&mut self, every: Duration) {
        if self.journal_written.elapsed() < every {
            return;
        }
        self.journal_written = Instant::now();
        let (store, journal, body) = (
            Arc::clone(&self.store),
            self.journal.clone(),
            self.journal_body.clone(),
        );
        tokio::spawn(async move {
            let _ = store.put(&journal, body.into()).await;
        });
    }

    async fn complete(mut self) -> io::Result<()> {
        let parts: Vec<PartId> = std::mem::take(&mut self.parts)
            .into_iter()
            .map(|part| part.expect("every part was awaited"))
            .collect();
        match self
            .multipart
            .complete_multipart(&self.path, &self.id, parts)
            .await
        {
            Ok(_) => {
                self.open = false;
                let _ = self.store.delete(&self.journal).await;
                Ok(())
            }
            Err(error) => {
                self.abort().await;
                Err(io_error(error))
            }
        }
    }

    async fn abort(mut self) {
        self.open = false;
        self.in_flight.shutdown().await;
        abort_upload(
            Arc::clone(&self.store),
            Arc::clone(&self.multipart),
            self.path.clone(),
            self.id.clone(),
            self.journal.clone(),
        )
        .await;
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        self.in_flight.abort_all();
        if !self.open || !self.abort_on_drop {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(abort_upload(
                Arc::clone(&self.store),
                Arc::clone(&self.multipart),
                self.path.clone(),
                self.id.clone(),
                self.journal.clone(),
            ));
        }
    }
}

/// Aborts a multipart upload and deletes its journal; a failure leaves both to the sweep.
async fn abort_upload(
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    journal: Path,
) {
    let aborted = multipart.abort_multipart(&path, &id).await;
    crate::trace::trace!(debug, aborted = aborted.is_ok(), "multipart upload aborted");
    if aborted.is_ok() {
        let _ = store.delete(&journal).await;
    }
}

fn read_journal(body: &[u8]) -> Option<(Path, MultipartId)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let path = Path::parse(value.get("path")?.as_str()?).ok()?;
    let id = value.get("id")?.as_str()?.to_owned();
    Some((path, id))
}

/// The `io::Error` the layer reports a store failure as (its text goes to the logs only).
fn io_error(error: ::object_store::Error) -> io::Error {
    let kind = match &error {
        ::object_store::Error::AlreadyExists { .. }
        | ::object_store::Error::Precondition { .. } => io::ErrorKind::AlreadyExists,
        ::object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        ::object_store::Error::PermissionDenied { .. }
        | ::object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error)
}

fn taken() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "an object with this key already exists",
    )
}

fn millis_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A file name as an ASCII metadata value: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' || byte == b' ' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use ::object_store::memory::InMemory;
    use tower_upload_state::UploadKey;

    use super::*;

    fn file(name: &str) -> SinkFile {
        SinkFile::new(UploadKey::parse("k1").unwrap(), name, "text/plain")
    }

    async fn store(sink: &ObjectStoreSink, name: &str, chunks: &[&[u8]]) -> io::Result<String> {
        let mut writer = sink.open(&file(name)).await?;
        for chunk in chunks {
            writer.write(Bytes::copy_from_slice(chunk)).await?;
        }
        Ok(writer.finish_stored().await?.expect("a location"))
    }

    #[tokio::test]
    async fn small_and_multipart_files_land_whole() {
        let memory = Arc::new(InMemory::new());
        let sink = ObjectStoreSink::new(memory.clone())
            .prefix("/up//loads/")
            .part_size(4);
        assert_eq!(sink.max_buffered_bytes(), 12);
        let key = store(&sink, "a.txt", &[b"abc"]).await.unwrap();
        assert_eq!(key, "up/loads/a.txt");
        let key = store(&sink, "b.txt", &[b"abcdefg", b"h", b"ijklmnopq"])
            .await
            .unwrap();
        assert_eq!(key, "up/loads/b.txt");
        let bytes = memory
            .get(&Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"abcdefghijklmnopq");
        // No journal is left.
        let left: Vec<_> = memory
            .list(Some(&Path::from("up/loads/.tower-upload-tmp")))
            .collect()
            .await;
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn overwrite_policies_map_onto_keys() {
        let memory = Arc::new(InMemory::new());
        let sink = ObjectStoreSink::new(memory.clone());
        assert_eq!(store(&sink, "a.txt", &[b"1"]).await.unwrap(), "a.txt");
        assert_eq!(store(&sink, "a.txt", &[b"2"]).await.unwrap(), "a (1).txt");
        let reject = sink.clone().overwrite(OverwritePolicy::Reject);
        let error = store(&reject, "a.txt", &[b"3"]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        let overwrite = sink.clone().overwrite(OverwritePolicy::Overwrite);
        assert_eq!(store(&overwrite, "a.txt", &[b"4"]).await.unwrap(), "a.txt");
        let bytes = memory
            .get(&Path::from("a.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"4");
    }

    #[tokio::test]
    async fn sweep_aborts_what_a_crash_left() {
        let memory = Arc::new(InMemory::new());
        let sink = ObjectStoreSink::new(memory.clone())
            .part_size(2)
            .stale_after(None);
        let mut writer = sink.open(&file("c.bin")).await.unwrap();
        writer.write(Bytes::from_static(b"12345")).await.unwrap();
        // A crash: the writer is never finished, aborted or dropped.
        std::mem::forget(writer);
        assert_eq!(
            sink.sweep_stale(Duration::from_secs(3600)).await.unwrap(),
            0
        );
        assert_eq!(sink.sweep_stale(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(sink.sweep_stale(Duration::ZERO).await.unwrap(), 0);
    }

    #[test]
    fn metadata_names_are_ascii() {
        assert_eq!(
            percent_encode("résumé 100%.pdf"),
            "r%C3%A9sum%C3%A9 100%25.pdf"
        );
    }
}
