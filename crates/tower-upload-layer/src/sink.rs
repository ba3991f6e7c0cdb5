//! Where file bytes go: the disk (default), memory, or an application's own sink
//! (igUpload's `FileSaveType`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tower_upload_state::UploadKey;

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
}

/// An application's own destination for uploaded files.
///
/// The layer calls [`open`](Self::open) when a file part starts (after `upload_starting`),
/// then [`FileWriter::write`] for every chunk, and [`FileWriter::finish`] once all bytes are
/// in; on any failure, cancel or disconnect it calls [`FileWriter::abort`] instead. Limits,
/// progress and cancellation work as with the disk.
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
}

/// One file being written to a [`FileSink`].
pub trait FileWriter: fmt::Debug + Send + 'static {
    /// Takes the next chunk.
    fn write(&mut self, chunk: Bytes) -> SinkFuture<'_, io::Result<()>>;

    /// All bytes are in.
    fn finish(self: Box<Self>) -> SinkFuture<'static, io::Result<()>>;

    /// The upload failed or was canceled: discard what was written. The default drops the
    /// writer.
    fn abort(self: Box<Self>) -> SinkFuture<'static, ()> {
        drop(self);
        Box::pin(std::future::ready(()))
    }
}
