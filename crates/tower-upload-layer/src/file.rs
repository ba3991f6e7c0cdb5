//! The files of the disk sink: the temp file an upload streams into (written in batches off
//! the async threads, locked while it lives), storing it under its final name, and the sweep
//! of what a crash left behind.

use std::io::{self, IoSlice, Write};
use std::mem;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::NamedTempFile;
use tokio::task::JoinHandle;

use crate::config::OverwritePolicy;
use crate::names::numbered;

/// Temp files start with this, so that the start-up sweep recognises its own orphans.
pub(crate) const TEMP_PREFIX: &str = ".tu-";
/// ... and end with this.
pub(crate) const TEMP_SUFFIX: &str = ".part";

/// How many ` (n)` names the unique-suffix policy tries before giving up.
const MAX_SUFFIX_ATTEMPTS: u32 = 10_000;

/// A temp file being written.
///
/// Chunks are gathered (no copy: they are reference-counted slices of the request's own
/// chunks, as the multipart reader hands them out) until
/// `buffer_size` bytes, then written with vectored writes on tokio's blocking pool while the
/// next batch is received: at most two batches per upload are in memory, and the async
/// threads never wait for the disk.
///
/// The file holds an exclusive advisory lock (`flock`) for as long as it is open, handed to
/// an `upload_finishing` handler and until it is stored: the orphan sweep, in this process or
/// another one sharing the folder, deletes only temp files it can lock.
///
/// Dropping it deletes the file, off the async threads when a runtime is there (unlinking a
/// large file can take a while).
#[derive(Debug)]
pub(crate) struct TempUpload {
    /// `None` while a batch is being written (the blocking task owns the file then).
    file: Option<NamedTempFile>,
    writing: Option<JoinHandle<WriteDone>>,
    pending: Vec<Bytes>,
    pending_len: usize,
    buffer_size: usize,
    /// A resumable upload's file: kept (not deleted) when dropped.
    keep_on_drop: bool,
}

#[derive(Debug)]
struct WriteDone {
    file: NamedTempFile,
    /// The written batch, emptied, for reuse.
    batch: Vec<Bytes>,
    result: io::Result<()>,
}

impl TempUpload {
    /// Creates a fresh temp file in `dir`: a random name, created exclusively, mode 0600.
    pub(crate) async fn create(dir: PathBuf, buffer_size: usize) -> io::Result<Self> {
        let file = blocking(move || {
            let file = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .suffix(TEMP_SUFFIX)
                .tempfile_in(dir)?;
            // Marks the file as live for the sweep. A file system without locks leaves it
            // unlocked, and the sweep then leaves every file alone (it deletes only what it
            // can lock).
            let _ = file.as_file().try_lock();
            Ok::<_, io::Error>(file)
        })
        .await?;
        Ok(Self {
            file: Some(file),
            writing: None,
            pending: Vec::with_capacity(16),
            pending_len: 0,
            buffer_size,
            keep_on_drop: false,
        })
    }

    /// The temp file's path.
    #[cfg(test)]
    pub(crate) fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(NamedTempFile::path)
    }

    /// Queues `chunk`; once a batch is full, waits for the previous write and starts this one.
    pub(crate) async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= self.buffer_size {
            self.start_write().await?;
        }
        Ok(())
    }

    /// Writes what is left, waits for it, and hands over the closed file.
    pub(crate) async fn finish(mut self) -> io::Result<NamedTempFile> {
        if self.pending_len > 0 {
            self.start_write().await?;
        }
        self.wait_write().await?;
        Ok(self.file.take().expect("no write is in flight"))
    }

    async fn wait_write(&mut self) -> io::Result<()> {
        let Some(writing) = self.writing.take() else {
            return Ok(());
        };
        let done = writing.await.map_err(io::Error::other)?;
        self.file = Some(done.file);
        done.result?;
        if self.pending.is_empty() {
            self.pending = done.batch;
        }
        Ok(())
    }

    async fn start_write(&mut self) -> io::Result<()> {
        self.wait_write().await?;
        let mut file = self.file.take().expect("no write is in flight");
        let mut batch = mem::take(&mut self.pending);
        self.pending_len = 0;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let result = write_all_vectored(file.as_file_mut(), &batch);
            batch.clear();
            WriteDone {
                file,
                batch,
                result,
            }
        }));
        Ok(())
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        // A write in flight still owns the file: its task drops (and so deletes) it when done.
        if let Some(file) = self.file.take() {
            if self.keep_on_drop {
                let _ = file.into_temp_path().keep();
            } else {
                discard(file);
            }
        }
    }
}

// ---- Resumable uploads (tus, the IETF draft) ------------------------------------------
//
// A resumable upload's file has a fixed name made from its id, in a folder of its own (the
// orphan sweep, which reads only the temp folder itself, never sees it; the expiration sweep
// manages it). It is locked while a request appends to it, and unlocked between requests.

impl TempUpload {
    /// Opens (creating it, mode 0600, when `create`) the resumable file at `path` to append at
    /// `offset`: a longer file is cut back to `offset` (bytes past the stored offset were never
    /// acknowledged). Returns the file and its length, which is less than `offset` only if
    /// data was lost (the caller then goes on from there). Fails with `WouldBlock` when
    /// another request holds the file.
    pub(crate) async fn open_resumable(
        path: PathBuf,
        offset: u64,
        create: bool,
        buffer_size: usize,
    ) -> io::Result<(Self, u64)> {
        let (file, len) = blocking(move || {
            use std::io::Seek;
            let mut options = std::fs::OpenOptions::new();
            options.read(true).write(true).create(create);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
                // No locks on this file system: go on unlocked.
                Err(std::fs::TryLockError::Error(_)) => {}
            }
            let mut len = file.metadata()?.len();
            if len > offset {
                file.set_len(offset)?;
                len = offset;
            }
            file.seek(io::SeekFrom::End(0))?;
            let file = NamedTempFile::from_parts(file, tempfile::TempPath::try_from_path(path)?);
            Ok::<_, io::Error>((file, len))
        })
        .await?;
        Ok((
            Self {
                file: Some(file),
                writing: None,
                pending: Vec::with_capacity(16),
                pending_len: 0,
                buffer_size,
                keep_on_drop: true,
            },
            len,
        ))
    }

    /// Writes what is pending and cuts the file back to `len` bytes (a discarded chunk).
    pub(crate) async fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.pending_len > 0 {
            self.start_write().await?;
        }
        self.wait_write().await?;
        let file = self.file.take().expect("no write is in flight");
        let (file, result) = blocking(move || {
            use std::io::Seek;
            let result = file
                .as_file()
                .set_len(len)
                .and_then(|()| file.as_file().seek(io::SeekFrom::End(0)).map(drop));
            (file, result)
        })
        .await;
        self.file = Some(file);
        result
    }

    /// Writes what is pending and closes the file, keeping it (unlocked) for the next request;
    /// `durable` syncs it first.
    pub(crate) async fn keep(mut self, durable: bool) -> io::Result<()> {
        let file = self.finish_in_place().await?;
        blocking(move || {
            if durable {
                file.as_file().sync_data()?;
            }
            file.into_temp_path()
                .keep()
                .map(drop)
                .map_err(|error| error.error)
        })
        .await
    }

    async fn finish_in_place(&mut self) -> io::Result<NamedTempFile> {
        if self.pending_len > 0 {
            self.start_write().await?;
        }
        self.wait_write().await?;
        Ok(self.file.take().expect("no write is in flight"))
    }
}

/// Deletes a temp file off the async threads when possible.
pub(crate) fn discard(file: NamedTempFile) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(file));
        }
        Err(_) => drop(file),
    }
}

fn write_all_vectored(file: &mut std::fs::File, batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|chunk| IoSlice::new(chunk)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut remaining, n),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Why a finished temp file could not be given its final name.
#[derive(Debug)]
pub(crate) enum PersistError {
    /// A file with that name exists and the policy is [`OverwritePolicy::Reject`].
    Exists(PathBuf),
    /// The folder could not be made.
    Folder(io::Error),
    /// Renaming failed.
    Io(io::Error),
}

/// How a finished file is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreOptions {
    pub(crate) overwrite: OverwritePolicy,
    /// `fsync` the data before the rename, and the folder after it.
    pub(crate) durable: bool,
    /// The final file's permissions (Unix); temp files are 0600 until then.
    pub(crate) mode: Option<u32>,
    /// Create `dir` (and its parents) when it is missing.
    pub(crate) create_dir: bool,
}

/// Moves `file` to `dir/name` following `options`; returns the final path.
pub(crate) async fn persist(
    file: NamedTempFile,
    dir: PathBuf,
    name: String,
    options: StoreOptions,
) -> Result<PathBuf, PersistError> {
    blocking(move || {
        if options.create_dir {
            std::fs::create_dir_all(&dir).map_err(PersistError::Folder)?;
        }
        prepare(&file, options).map_err(PersistError::Io)?;
        let target = persist_blocking(file, &dir, &name, options.overwrite)?;
        if options.durable {
            sync_dir(&dir).map_err(PersistError::Io)?;
        }
        Ok(target)
    })
    .await
}

fn prepare(file: &NamedTempFile, options: StoreOptions) -> io::Result<()> {
    if options.durable {
        file.as_file().sync_data()?;
    }
    #[cfg(unix)]
    if let Some(mode) = options.mode {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = options.mode;
    Ok(())
}

/// Makes a rename in `dir` durable (on Unix; elsewhere the rename is all there is).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn persist_blocking(
    file: NamedTempFile,
    dir: &Path,
    name: &str,
    policy: OverwritePolicy,
) -> Result<PathBuf, PersistError> {
    // A last check that the name is one plain component: nothing may leave `dir`.
    if !crate::names::is_single_normal_component(name) {
        return Err(PersistError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the file name is not a single path component",
        )));
    }
    let target = dir.join(name);
    match policy {
        OverwritePolicy::Overwrite => match file.persist(&target) {
            Ok(_) => Ok(target),
            Err(error) => Err(PersistError::Io(error.error)),
        },
        OverwritePolicy::Reject => match file.persist_noclobber(&target) {
            Ok(_) => Ok(target),
            Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
                Err(PersistError::Exists(target))
            }
            Err(error) => Err(PersistError::Io(error.error)),
        },
        OverwritePolicy::UniqueSuffix => {
            let mut file = file;
            let mut target = target;
            for attempt in 1..=MAX_SUFFIX_ATTEMPTS {
                // `persist_noclobber` is atomic (RENAME_NOREPLACE or link + unlink): two
                // uploads of the same name cannot both win.
                match file.persist_noclobber(&target) {
                    Ok(_) => return Ok(target),
                    Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
                        file = error.file;
                        target = dir.join(numbered(name, attempt));
                    }
                    Err(error) => return Err(PersistError::Io(error.error)),
                }
            }
            Err(PersistError::Exists(dir.join(name)))
        }
    }
}

/// Runs blocking file-system work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Deletes this layer's temp files in `dir` that are older than `min_age` (what a crash or a
/// kill left behind) and that no live upload holds: a file is deleted only while the sweep
/// holds its lock, so a slow upload's file or one in an `upload_finishing` handler's hands is
/// never touched, whatever its age, also by another process sharing the folder. Returns how
/// many were deleted.
pub(crate) fn sweep_orphans(dir: &Path, min_age: std::time::Duration) -> io::Result<usize> {
    let mut deleted = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let age = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if !metadata.is_file() || age.is_none_or(|age| age < min_age) {
            continue;
        }
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        // Held by a live upload (or locks are not supported here): leave it.
        if file.try_lock().is_err() {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn batches_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut upload = TempUpload::create(dir.path().to_owned(), 10).await.unwrap();
        let mut expected = Vec::new();
        for i in 0..100u8 {
            let chunk = vec![i; (i % 7 + 1) as usize];
            expected.extend_from_slice(&chunk);
            upload.push(Bytes::from(chunk)).await.unwrap();
        }
        let file = upload.finish().await.unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), expected);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn temp_files_are_private_and_deleted_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut upload = TempUpload::create(dir.path().to_owned(), 4).await.unwrap();
        let path = upload.path().unwrap().to_owned();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        upload.push(Bytes::from_static(b"12345678")).await.unwrap();
        drop(upload);
        // Deletion runs on the blocking pool.
        for _ in 0..100 {
            if !path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!path.exists());
        assert!(files_in(dir.path()).is_empty());
    }

    fn options(overwrite: OverwritePolicy) -> StoreOptions {
        StoreOptions {
            overwrite,
            durable: false,
            mode: None,
            create_dir: false,
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn durable_stores_get_the_configured_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_owned();
        let path = persist(
            temp_with(&base, b"data").await,
            base.join("made/here"),
            "a.txt".into(),
            StoreOptions {
                overwrite: OverwritePolicy::Reject,
                durable: true,
                mode: Some(0o640),
                create_dir: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[tokio::test]
    async fn a_name_that_is_not_one_component_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("uploads");
        std::fs::create_dir(&base).unwrap();
        for bad in ["../escape.txt", "a/b.txt", "..", ""] {
            let result = persist(
                temp_with(&base, b"x").await,
                base.clone(),
                bad.into(),
                options(OverwritePolicy::Overwrite),
            )
            .await;
            assert!(matches!(result, Err(PersistError::Io(_))), "{bad:?}");
        }
        assert!(files_in(dir.path()) == ["uploads"]);
        assert!(files_in(&base).is_empty());
    }

    /// A live temp file is never swept, whatever its age (this failed before the lock: the
    /// sweep went by age alone).
    #[tokio::test]
    async fn the_sweep_never_deletes_a_live_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = TempUpload::create(dir.path().to_owned(), 4).await.unwrap();
        live.push(Bytes::from_static(b"12345678")).await.unwrap();
        let orphan = dir.path().join(format!("{TEMP_PREFIX}orphan{TEMP_SUFFIX}"));
        std::fs::write(&orphan, b"left by a crash").unwrap();
        let swept = blocking({
            let dir = dir.path().to_owned();
            move || sweep_orphans(&dir, std::time::Duration::ZERO)
        })
        .await
        .unwrap();
        assert_eq!(swept, 1);
        assert!(!orphan.exists());
        let file = live.finish().await.unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), b"12345678");
    }

    async fn temp_with(dir: &Path, content: &[u8]) -> NamedTempFile {
        let mut file = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .unwrap();
        file.write_all(content).unwrap();
        file
    }

    #[tokio::test]
    async fn overwrite_policies() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_owned();
        let first = persist(
            temp_with(&base, b"1").await,
            base.clone(),
            "a.txt".into(),
            options(OverwritePolicy::UniqueSuffix),
        )
        .await
        .unwrap();
        assert_eq!(first, base.join("a.txt"));
        let second = persist(
            temp_with(&base, b"2").await,
            base.clone(),
            "a.txt".into(),
            options(OverwritePolicy::UniqueSuffix),
        )
        .await
        .unwrap();
        assert_eq!(second, base.join("a (1).txt"));
        let rejected = persist(
            temp_with(&base, b"3").await,
            base.clone(),
            "a.txt".into(),
            options(OverwritePolicy::Reject),
        )
        .await;
        assert!(matches!(rejected, Err(PersistError::Exists(_))));
        let replaced = persist(
            temp_with(&base, b"4").await,
            base.clone(),
            "a.txt".into(),
            options(OverwritePolicy::Overwrite),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(replaced).unwrap(), b"4");
        assert_eq!(std::fs::read(base.join("a (1).txt")).unwrap(), b"2");
        // The rejected temp file is gone too.
        assert_eq!(files_in(&base), ["a (1).txt", "a.txt"]);
    }

    #[tokio::test]
    async fn persist_into_a_missing_dir_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_owned();
        let result = persist(
            temp_with(&base, b"x").await,
            base.join("gone"),
            "a".into(),
            options(OverwritePolicy::UniqueSuffix),
        )
        .await;
        assert!(matches!(result, Err(PersistError::Io(_))));
        assert!(files_in(&base).is_empty());
    }

    #[test]
    fn sweep_deletes_only_old_own_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join(format!("{TEMP_PREFIX}abc{TEMP_SUFFIX}"));
        let other = dir.path().join("keep.part");
        std::fs::write(&own, b"x").unwrap();
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(
            sweep_orphans(dir.path(), std::time::Duration::from_secs(3600)).unwrap(),
            0
        );
        assert_eq!(
            sweep_orphans(dir.path(), std::time::Duration::ZERO).unwrap(),
            1
        );
        assert!(!own.exists());
        assert!(other.exists());
        assert_eq!(
            sweep_orphans(&dir.path().join("missing"), std::time::Duration::ZERO).unwrap(),
            0
        );
    }
}
