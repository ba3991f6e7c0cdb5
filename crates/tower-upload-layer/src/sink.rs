//! Where file bytes go: the disk (default), memory, or an application's own sink
//! (igUpload's `FileSaveType`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tempfile::NamedTempFile;
use tower_upload_state::UploadKey;

use crate::file::TempUpload;

/// The future a sink method returns.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an upload's bytes go.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum UploadSink {
    /// A temp file, renamed into the upload folder at the end (the default, and the fast
    /// path).
    #[default]
    Disk,
    /// Memory, at most `max_bytes` per file; the bytes are handed to `upload_finishing`
    /// handlers ([`UploadFinishing::data`](crate::UploadFinishing::data)) and then dropped.
    Memory {
        /// The most bytes one file may have; beyond it the upload fails with status 5.
        max_bytes: u64,
    },
    /// The application's own sink: stream the file elsewhere (another service, an object
    /// store) without touching the disk.
    Custom(Arc<dyn FileSink>),
}

impl UploadSink {
    /// The in-memory sink.
    #[must_use]
    pub fn memory(max_bytes: u64) -> Self {
        Self::Memory { max_bytes }
    }

    /// A custom sink.
    #[must_use]
    pub fn custom(sink: impl FileSink) -> Self {
        Self::Custom(Arc::new(sink))
    }
}

impl fmt::Debug for UploadSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk => f.write_str("Disk"),
            Self::Memory { max_bytes } => f
                .debug_struct("Memory")
                .field("max_bytes", max_bytes)
                .finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What a custom sink learns about a file when it starts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SinkFile {
    /// The upload's key.
    pub key: UploadKey,
    /// The (sanitised, possibly handler-chosen) file name.
    pub name: String,
    /// The declared MIME type.
    pub mime_type: String,
    /// The file name as the client sent it (not sanitised: for metadata, never for a path).
    pub original_name: String,
}

impl SinkFile {
    /// A file description, for calling a [`FileSink`] outside the layer (tests, tools); the
    /// original name is `name`.
    #[must_use]
    pub fn new(key: UploadKey, name: impl Into<String>, mime_type: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            key,
            original_name: name.clone(),
            name,
            mime_type: mime_type.into(),
        }
    }
}

/// An application's own destination for uploaded files.
///
/// The layer calls [`open`](Self::open) when a file part starts (after `upload_starting`),
/// then [`FileWriter::write`] for every chunk, and [`FileWriter::finish`] once all bytes are
/// in; on any failure, cancel or disconnect it calls [`FileWriter::abort`] instead. If an
/// `upload_finishing` handler refuses a file the writer already finished, the layer calls
/// [`discard`](Self::discard). Limits, progress and cancellation work as with the disk.
///
/// # Example
///
/// ```
/// use std::io;
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use tower_upload_layer::{FileSink, FileWriter, SinkFile, SinkFuture};
///
/// /// Counts bytes instead of storing them.
/// #[derive(Debug, Default)]
/// struct Counter(Arc<Mutex<u64>>);
///
/// #[derive(Debug)]
/// struct CountingWriter(Arc<Mutex<u64>>);
///
/// impl FileSink for Counter {
///     fn open<'a>(&'a self, _file: &'a SinkFile) -> SinkFuture<'a, io::Result<Box<dyn FileWriter>>> {
///         let writer: Box<dyn FileWriter> = Box::new(CountingWriter(self.0.clone()));
///         Box::pin(async move { Ok(writer) })
///     }
/// }
///
/// impl FileWriter for CountingWriter {
///     fn write(&mut self, chunk: Bytes) -> SinkFuture<'_, io::Result<()>> {
///         *self.0.lock().unwrap() += chunk.len() as u64;
///         Box::pin(async { Ok(()) })
///     }
///     fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait FileSink: fmt::Debug + Send + Sync + 'static {
    /// Starts a file.
    fn open<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, io::Result<Box<dyn FileWriter>>>;

    /// An `upload_finishing` handler refused `file` after its writer
    /// [finished](FileWriter::finish): remove what was stored. The upload is recorded as
    /// vetoed (status 7) whatever this returns; the default does nothing. When the writer
    /// reported where it stored the file ([`FileWriter::finish_stored`]), `file.name` is that
    /// location.
    fn discard<'a>(&'a self, file: &'a SinkFile) -> SinkFuture<'a, ()> {
        let _ = file;
        Box::pin(std::future::ready(()))
    }
}

/// One file being written to a [`FileSink`].
pub trait FileWriter: fmt::Debug + Send + 'static {
    /// Takes the next chunk.
    fn write(&mut self, chunk: Bytes) -> SinkFuture<'_, io::Result<()>>;

    /// All bytes are in.
    fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>>;

    /// All bytes are in, as [`finish`](Self::finish), and where they are now: an object
    /// store's key, a URL. The layer calls this one; the location becomes the file's
    /// [`Stored::Sink`](crate::Stored::Sink) (the file name when it is `None`). The default
    /// calls `finish` and reports no location.
    fn finish_stored(self: Box<Self>) -> SinkFuture<'static, io::Result<Option<String>>> {
        let finish = self.finish();
        Box::pin(async move { finish.await.map(|()| None) })
    }

    /// The upload failed or was canceled: discard what was written. The default drops the
    /// writer.
    fn abort(self: Box<Self>) -> SinkFuture<'static, ()> {
        drop(self);
        Box::pin(std::future::ready(()))
    }
}

/// Where one file part's bytes are going: the writer of the configured [`UploadSink`].
pub(crate) enum Writer {
    Disk(TempUpload),
    Memory(Vec<Bytes>),
    Custom(CustomWriter),
}

/// A file's bytes once all are in.
pub(crate) enum Received {
    Disk(NamedTempFile),
    Memory(Bytes),
    /// The custom sink has them, under this description.
    Custom(Arc<dyn FileSink>, SinkFile),
}

/// A custom sink's writer; dropped before `finish`, it is aborted.
pub(crate) struct CustomWriter {
    sink: Arc<dyn FileSink>,
    file: SinkFile,
    writer: Option<Box<dyn FileWriter>>,
}

impl Drop for CustomWriter {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(writer.abort());
            }
        }
    }
}

impl Writer {
    /// Opens the configured sink's writer for `file`; disk files go to `temp_dir`.
    pub(crate) async fn open(
        sink: &UploadSink,
        temp_dir: impl FnOnce() -> std::path::PathBuf,
        buffer_size: usize,
        file: SinkFile,
    ) -> io::Result<Self> {
        Ok(match sink {
            UploadSink::Disk => Self::Disk(TempUpload::create(temp_dir(), buffer_size).await?),
            UploadSink::Memory { .. } => Self::Memory(Vec::new()),
            UploadSink::Custom(sink) => {
                let writer = sink.open(&file).await?;
                Self::Custom(CustomWriter {
                    sink: Arc::clone(sink),
                    file,
                    writer: Some(writer),
                })
            }
        })
    }

    pub(crate) async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Self::Disk(temp) => temp.push(chunk).await,
            Self::Memory(chunks) => {
                chunks.push(chunk);
                Ok(())
            }
            Self::Custom(custom) => {
                let writer = custom.writer.as_mut().expect("open until finished");
                writer.write(chunk).await
            }
        }
    }

    pub(crate) async fn finish(self) -> io::Result<Received> {
        match self {
            Self::Disk(temp) => Ok(Received::Disk(temp.finish().await?)),
            Self::Memory(chunks) => Ok(Received::Memory(concat(chunks))),
            Self::Custom(mut custom) => {
                let writer = custom.writer.take().expect("open until finished");
                let location = writer.finish_stored().await?;
                let mut file = custom.file.clone();
                if let Some(location) = location {
                    // What the application (`Stored::Sink`) and `discard` know it by.
                    file.name = location;
                }
                Ok(Received::Custom(Arc::clone(&custom.sink), file))
            }
        }
    }

    /// Ends a writer that will not finish; waits for a custom sink's `abort`.
    pub(crate) async fn abort(self) {
        if let Self::Custom(mut custom) = self {
            if let Some(writer) = custom.writer.take() {
                writer.abort().await;
            }
        }
        // A temp file deletes itself as it drops; memory is just freed.
    }
}

impl Received {
    /// The file will not be kept (a veto): delete it, or tell the custom sink.
    pub(crate) async fn discard(self) {
        match self {
            Self::Disk(file) => crate::file::discard(file),
            Self::Memory(_) => {}
            Self::Custom(sink, file) => sink.discard(&file).await,
        }
    }
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(chunks) {
        Ok([only]) => only,
        Err(chunks) => {
            let mut whole = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in &chunks {
                whole.extend_from_slice(chunk);
            }
            Bytes::from(whole)
        }
    }
}
