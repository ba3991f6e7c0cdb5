//! The temp file an upload streams into, written in batches off the async threads.

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
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .suffix(TEMP_SUFFIX)
                .tempfile_in(dir)
        })
        .await?;
        Ok(Self {
            file: Some(file),
            writing: None,
            pending: Vec::with_capacity(16),
            pending_len: 0,
            buffer_size,
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
            discard(file);
        }
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
    /// Renaming failed.
    Io(io::Error),
}

/// Moves `file` to `dir/name` following `policy`; returns the final path.
pub(crate) async fn persist(
    file: NamedTempFile,
    dir: PathBuf,
    name: String,
    policy: OverwritePolicy,
) -> Result<PathBuf, PersistError> {
    blocking(move || persist_blocking(file, &dir, &name, policy)).await
}

fn persist_blocking(
    file: NamedTempFile,
    dir: &Path,
    name: &str,
    policy: OverwritePolicy,
) -> Result<PathBuf, PersistError> {
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
/// kill left behind). Returns how many were deleted.
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
        if metadata.is_file()
            && age.is_some_and(|age| age >= min_age)
            && std::fs::remove_file(entry.path()).is_ok()
        {
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
            OverwritePolicy::UniqueSuffix,
        )
        .await
        .unwrap();
        assert_eq!(first, base.join("a.txt"));
        let second = persist(
            temp_with(&base, b"2").await,
            base.clone(),
            "a.txt".into(),
            OverwritePolicy::UniqueSuffix,
        )
        .await
        .unwrap();
        assert_eq!(second, base.join("a (1).txt"));
        let rejected = persist(
            temp_with(&base, b"3").await,
            base.clone(),
            "a.txt".into(),
            OverwritePolicy::Reject,
        )
        .await;
        assert!(matches!(rejected, Err(PersistError::Exists(_))));
        let replaced = persist(
            temp_with(&base, b"4").await,
            base.clone(),
            "a.txt".into(),
            OverwritePolicy::Overwrite,
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
            OverwritePolicy::UniqueSuffix,
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
