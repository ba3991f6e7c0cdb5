//! [`UploadedFiles`]: what an upload request brought, for the application to answer from.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadStatus};

use crate::events::FormField;

/// What one upload request brought: every file part (stored or refused) and the form fields.
///
/// In [forward mode](crate::UploadLayer::forward) the layer stores the files, then calls the
/// inner service with the request (its body consumed) and this as a request extension; with
/// the `axum` feature it is an extractor. One type for every way in: the layer, the leaf
/// service and the resumable front-ends report the same thing.
///
/// # Example
///
/// ```
/// use tower_upload_layer::UploadedFiles;
///
/// // In an axum handler behind `UploadLayer::new(registry).forward()`:
/// async fn uploaded(files: UploadedFiles) -> String {
///     let stored: Vec<String> = files
///         .stored()
///         .map(|file| format!("{} ({} bytes)", file.file_name.as_deref().unwrap_or("?"), file.size))
///         .collect();
///     format!("stored {}", stored.join(", "))
/// }
/// # let _ = uploaded;
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UploadedFiles {
    /// Every file part, in part order: stored ones and refused ones alike.
    pub files: Vec<UploadedFile>,
    /// The non-file form fields, in order.
    pub fields: Arc<Vec<FormField>>,
    /// The failure the layer would have answered with, when the request failed (a file over
    /// the limit, a malformed body, a veto...). Files listed before it may still be stored.
    pub failure: Option<RequestFailure>,
}

impl UploadedFiles {
    /// The files that were stored (status 2).
    pub fn stored(&self) -> impl Iterator<Item = &UploadedFile> {
        self.files.iter().filter(|file| file.is_stored())
    }

    /// The value of the first form field named `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|field| field.name == name)
            .map(|field| field.value.as_str())
    }

    /// Whether every file was stored and nothing failed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failure.is_none() && self.files.iter().all(UploadedFile::is_stored)
    }
}

/// One file part of an upload request and what became of it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UploadedFile {
    /// The registry key (the client's, or a generated one for a keyless upload).
    pub key: UploadKey,
    /// The part's form field name.
    pub field_name: Option<String>,
    /// The file name as the client sent it.
    pub file_name: Option<String>,
    /// Where the bytes are.
    pub stored: Stored,
    /// The bytes received.
    pub size: u64,
    /// The MIME type the client declared (essence, lower case).
    pub declared_type: Option<String>,
    /// The type the first bytes showed, when sniffing is on and a signature matched.
    pub sniffed_type: Option<&'static str>,
    /// The digest of the bytes when digests are on: `sha-256=:<base64>:` (RFC 9530).
    pub digest: Option<String>,
    /// The registry's final status: 2 when stored.
    pub status: UploadStatus,
    /// The registry's error code.
    pub error: FileError,
    /// The message a user reads (a handler's, or the failure's).
    pub message: Option<String>,
}

impl UploadedFile {
    /// Whether the file was stored (status 2).
    #[must_use]
    pub fn is_stored(&self) -> bool {
        self.status == UploadStatus::Finished
    }

    /// A file known only by its final record (it ended before its part was read).
    pub(crate) fn from_info(info: &UploadInfo) -> Self {
        Self {
            key: info.key.clone(),
            field_name: None,
            file_name: info.file_name.clone(),
            stored: Stored::Nowhere,
            size: info.bytes_uploaded,
            declared_type: info.mime_type.clone(),
            sniffed_type: None,
            digest: None,
            status: info.status,
            error: info.error,
            message: info.server_message.clone(),
        }
    }
}

/// Where a file's bytes ended up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stored {
    /// On disk, under its final name.
    Path(PathBuf),
    /// In memory (the memory sink): the whole file.
    Memory(Bytes),
    /// With the application's own sink: the location its writer reported (the object key,
    /// such as `uploads/report.pdf`, with the `object-store` feature's `ObjectStoreSink`), or
    /// else the file's name.
    Sink(String),
    /// An `upload_finishing` handler took the file (moved or deleted it).
    Taken,
    /// Nowhere: the file was refused or failed, and nothing was kept.
    #[default]
    Nowhere,
}

/// The request-level failure of an upload request, as the layer would answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestFailure {
    /// The HTTP status of the layer's own answer.
    pub http: StatusCode,
    /// The registry's status code.
    pub status: UploadStatus,
    /// The registry's error code.
    pub error: FileError,
    /// What the user reads.
    pub message: String,
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::StatusCode;

    use super::UploadedFiles;

    /// The rejection of the [`UploadedFiles`] extractor: the request did not come through an
    /// `UploadLayer` in forward mode (a 500: the application is wired wrong).
    #[derive(Debug, Clone, Copy, Default)]
    #[non_exhaustive]
    pub struct MissingUploadedFiles;

    impl std::fmt::Display for MissingUploadedFiles {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "no UploadedFiles in the request: is the route behind \
                 `UploadLayer::new(registry).forward()` and is the request a POST to its \
                 upload path?",
            )
        }
    }

    impl std::error::Error for MissingUploadedFiles {}

    impl IntoResponse for MissingUploadedFiles {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }

    /// With the `axum` feature: take the request's [`UploadedFiles`] in a handler.
    impl<S: Send + Sync> FromRequestParts<S> for UploadedFiles {
        type Rejection = MissingUploadedFiles;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<UploadedFiles>()
                .cloned()
                .ok_or(MissingUploadedFiles)
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingUploadedFiles;
