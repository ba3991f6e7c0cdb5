//! [`Failure`]: how an upload ends when it does not finish, and the one place where every
//! kind of error (body, multipart, file system, event handler) becomes the registry's status
//! and error codes, an HTTP status and a message for the user.

use std::fmt;
use std::io;

use http::StatusCode;
use tower_upload_state::{FileError, UploadInfo, UploadStatus};

use crate::answer::human_size;
use crate::events::{EventError, EventErrorKind};
use crate::multipart::Error as MultipartError;
use crate::stream::BodyError;
use crate::trace::trace;

/// How an upload failed: the registry's status and error, the HTTP status of the answer and
/// the message a user reads (the widget shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: UploadStatus,
    pub(crate) error: FileError,
    pub(crate) http: StatusCode,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: UploadStatus, error: FileError, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            http: http_status(status, error),
            message: message.into(),
        }
    }

    pub(crate) fn with_http(mut self, http: StatusCode) -> Self {
        self.http = http;
        self
    }

    pub(crate) fn file_too_large(limit: u64) -> Self {
        Self::new(
            UploadStatus::FileSizeExceeded,
            FileError::FileSizeExceeded,
            format!("file is larger than the {} limit", human_size(limit)),
        )
    }

    pub(crate) fn request_too_large(limit: u64) -> Self {
        Self::new(
            UploadStatus::FileSizeExceeded,
            FileError::FileSizeExceeded,
            format!("request is larger than the {} limit", human_size(limit)),
        )
    }

    pub(crate) fn parse(detail: impl fmt::Display) -> Self {
        Self::new(
            UploadStatus::ErrorUploading,
            FileError::HeaderParsing,
            format!(
                "the upload request is malformed: {}",
                plain(&detail.to_string())
            ),
        )
    }

    /// A refused name or type: status 6 with `error`, HTTP 400 or 415.
    pub(crate) fn refused(error: FileError, message: impl Into<String>) -> Self {
        Self::new(UploadStatus::ErrorUploading, error, message)
    }

    pub(crate) fn canceled() -> Self {
        Self::new(
            UploadStatus::CanceledByClientCommand,
            FileError::None,
            "the upload was canceled",
        )
    }

    pub(crate) fn disconnected() -> Self {
        Self::new(
            UploadStatus::CanceledByClientConnection,
            FileError::None,
            "the client disconnected before the upload finished",
        )
    }

    /// A slow or silent client was cut off: 408, and a retry may start over.
    pub(crate) fn too_slow(message: String) -> Self {
        Self::new(
            UploadStatus::ErrorUploading,
            FileError::FileWriting,
            message,
        )
        .with_http(StatusCode::REQUEST_TIMEOUT)
    }

    /// A file-system failure while doing `what`. The message names the kind of problem,
    /// never a server path; the details go to the server's logs.
    pub(crate) fn io(error: &io::Error, code: FileError, what: &str) -> Self {
        trace!(warn, %error, what, "upload I/O failure");
        let cause = match error.kind() {
            io::ErrorKind::StorageFull => "no space left",
            io::ErrorKind::PermissionDenied => "permission denied",
            io::ErrorKind::NotFound => "folder not found",
            io::ErrorKind::ReadOnlyFilesystem => "read-only storage",
            io::ErrorKind::QuotaExceeded => "quota exceeded",
            _ => "I/O error",
        };
        let code = if error.kind() == io::ErrorKind::NotFound {
            FileError::UploadFolderNotFound
        } else {
            code
        };
        Self::new(
            UploadStatus::ErrorUploading,
            code,
            format!("the server could not {what} ({cause})"),
        )
    }

    /// An event handler stopped the upload: a veto (status 7, error 10) or a failure
    /// (status 6 with `code`, the stage it failed in).
    pub(crate) fn event(error: EventError, code: FileError) -> Self {
        match error.into_kind() {
            EventErrorKind::Veto { message, status } => Self::new(
                UploadStatus::CanceledByEvent,
                FileError::ServerSideCancel,
                message,
            )
            .with_http(status),
            EventErrorKind::Failed(error) => {
                trace!(warn, %error, "an upload event handler failed");
                #[cfg(not(feature = "tracing"))]
                let _ = error;
                Self::new(
                    UploadStatus::ErrorUploading,
                    code,
                    "the server failed to process the upload",
                )
            }
        }
    }

    /// The record this failure leaves in the registry, as the client sees it.
    pub(crate) fn from_info(info: &UploadInfo) -> Self {
        Self {
            status: info.status,
            error: info.error,
            http: http_status(info.status, info.error),
            message: info.server_message.clone().unwrap_or_default(),
        }
    }
}

impl From<BodyError> for Failure {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::Read(_) => Self::disconnected(),
            BodyError::Idle(after) => Self::too_slow(format!(
                "no data was received for {} s; the upload was cut off",
                after.as_secs()
            )),
            BodyError::TooSlow { min_rate, window } => Self::too_slow(format!(
                "the upload was slower than {}/s over {} s; it was cut off",
                human_size(min_rate),
                window.as_secs()
            )),
            BodyError::TooLarge(limit) => Self::request_too_large(limit),
            BodyError::HeadersTooLarge(limit) => {
                Self::parse(format_args!("part headers are larger than {limit} bytes"))
                    .with_http(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
        }
    }
}

impl From<MultipartError> for Failure {
    fn from(error: MultipartError) -> Self {
        match error {
            MultipartError::Stream(body_error) => body_error.into(),
            MultipartError::Parse(message) => Self::parse(message),
        }
    }
}

/// `text` without the characters that make markup: messages can quote the request (a field
/// name, the parser's details) and the widget's pages may render them as HTML.
fn plain(text: &str) -> String {
    text.replace(['<', '>', '&'], "_")
}

/// The HTTP status of the answer to an upload that ended with `status` and `error`.
#[must_use]
pub fn http_status(status: UploadStatus, error: FileError) -> StatusCode {
    match status {
        UploadStatus::FileSizeExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        UploadStatus::CanceledByEvent => StatusCode::FORBIDDEN,
        UploadStatus::CanceledByClientCommand => StatusCode::CONFLICT,
        UploadStatus::CanceledByClientConnection => StatusCode::BAD_REQUEST,
        UploadStatus::ErrorUploading => match error {
            FileError::EstablishingFileName | FileError::HeaderParsing => StatusCode::BAD_REQUEST,
            FileError::MimeTypeValidation => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rejections_map_to_http() {
        use FileError as E;
        use UploadStatus as S;
        let cases = [
            (S::FileSizeExceeded, E::FileSizeExceeded, 413),
            (S::CanceledByEvent, E::ServerSideCancel, 403),
            (S::ErrorUploading, E::EstablishingFileName, 400),
            (S::ErrorUploading, E::HeaderParsing, 400),
            (S::ErrorUploading, E::MimeTypeValidation, 415),
            (S::ErrorUploading, E::FileWriting, 500),
            (S::ErrorUploading, E::UploadFolderNotFound, 500),
            (S::ErrorUploading, E::FileSaving, 500),
            (S::CanceledByClientCommand, E::None, 409),
            (S::Finished, E::None, 200),
        ];
        for (status, error, http) in cases {
            assert_eq!(
                http_status(status, error).as_u16(),
                http,
                "{status} {error}"
            );
        }
    }

    #[test]
    fn body_errors_map_to_one_answer_each() {
        let cases: [(BodyError, u16, FileError); 5] = [
            (BodyError::Read("reset".into()), 400, FileError::None),
            (
                BodyError::Idle(Duration::from_secs(30)),
                408,
                FileError::FileWriting,
            ),
            (
                BodyError::TooSlow {
                    min_rate: 1024,
                    window: Duration::from_secs(60),
                },
                408,
                FileError::FileWriting,
            ),
            (BodyError::TooLarge(10), 413, FileError::FileSizeExceeded),
            (
                BodyError::HeadersTooLarge(10),
                431,
                FileError::HeaderParsing,
            ),
        ];
        for (error, http, code) in cases {
            let failure = Failure::from(error);
            assert_eq!((failure.http.as_u16(), failure.error), (http, code));
            assert!(!failure.message.is_empty());
        }
    }

    #[test]
    fn io_failures_name_the_cause_not_the_path() {
        let error = io::Error::new(io::ErrorKind::StorageFull, "/secret/path: no space");
        let failure = Failure::io(&error, FileError::FileWriting, "write the file");
        assert_eq!(
            failure.message,
            "the server could not write the file (no space left)"
        );
        assert_eq!(failure.error, FileError::FileWriting);
        let missing = io::Error::from(io::ErrorKind::NotFound);
        let failure = Failure::io(&missing, FileError::FileSaving, "save the file");
        assert_eq!(failure.error, FileError::UploadFolderNotFound);
        assert_eq!(failure.http, 500);
    }

    #[test]
    fn parse_messages_carry_no_markup() {
        let failure = Failure::parse("<script>");
        assert!(!failure.message.contains('<'), "{}", failure.message);
    }
}
