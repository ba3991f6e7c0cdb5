//! Shared state for [tower-upload]: upload keys, the igUpload status and error codes, upload
//! snapshots, and the [`UploadRegistry`] that the upload layer writes and the status service
//! reads.
//!
//! ```
//! use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadRegistry, UploadStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = UploadRegistry::new();
//! let key = UploadKey::parse("4bW9zLkq0V8cJmXr2TtYpAe61sHdUf")?;
//! let upload = registry.begin(UploadInfo::new(key.clone())).await?;
//! upload.add_bytes(1024);
//! upload.finish(UploadStatus::Finished, FileError::None, None).await;
//!
//! let info = registry.snapshot(&key).await?.expect("kept for the retention");
//! assert_eq!(info.status, UploadStatus::Finished);
//! assert_eq!(info.bytes_uploaded, 1024);
//! # Ok(())
//! # }
//! ```
//!
//! Most applications use these types through the `tower-upload` facade crate.
//!
//! [tower-upload]: https://docs.rs/tower-upload

mod code;
mod info;
mod key;
mod memory;
mod metrics;
mod query;
#[cfg(feature = "redis")]
mod redis;
mod registry;
mod response;
mod store;
mod sync;
mod watch;

pub use code::{FileError, UploadStatus};
pub use info::{Resumable, StatusAnswer, UploadInfo};
pub use key::{KeyError, UploadKey, GENERATED_KEY_LEN, MAX_BATCH_KEYS, MAX_KEY_LEN};
pub use memory::{MemoryStore, DEFAULT_CAPACITY, DEFAULT_RETENTION};
pub use metrics::RegistryMetrics;
pub use query::{Command, QueryError, UploadQuery};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};
pub use registry::{UploadHandle, UploadRegistry};
pub use response::json_response;
pub use store::{
    CancelCallback, Claim, ClaimError, ClaimToken, ProgressStore, SaveCallback, StoreError,
    StoreFuture,
};
#[doc(hidden)]
pub use sync::lock_unpoisoned;
pub use watch::{UploadWatch, WatchEvent};
