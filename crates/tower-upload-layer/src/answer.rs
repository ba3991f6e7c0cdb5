//! The JSON answers of the upload path, and how a failed upload maps to HTTP.

use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde::Serialize;
use tower_upload_state::{FileError, StatusAnswer, UploadInfo, UploadStatus};

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

    /// A file-system failure; the details go to the server's logs, not to the client.
    pub(crate) fn io(error: FileError, what: &str) -> Self {
        Self::new(
            UploadStatus::ErrorUploading,
            error,
            format!("the server could not {what}"),
        )
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

/// `1.5 MiB`, `4 MiB`, `512 KiB`, `100 bytes`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return if bytes % size == 0 {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A refusal that concerns the request, not an upload (no key to report on): `{"error":
/// "<code>","message":"..."}`, the same shape as the status service's protocol errors.
pub(crate) fn protocol_error(
    status: StatusCode,
    code: &str,
    message: impl fmt::Display,
) -> Response<Bytes> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        message: String,
    }
    let body = serde_json::to_vec(&Body {
        error: code,
        message: message.to_string(),
    })
    .expect("serialising a string pair cannot fail");
    json(status, body)
}

/// One key's result in a batch answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileResult<'a> {
    key: &'a str,
    #[serde(flatten)]
    answer: StatusAnswer<'a>,
}

/// The answer to an upload request, from the final records of its keys (in key order).
///
/// - One key, success: `200 {"status":2,"error":-1,"bytesUploaded":N,"size":N}`, without
///   `serverMessage` (the widget hangs on a success that carries one; it reads the message
///   from the status service instead).
/// - One key, failure: the failure's HTTP status and the full status answer with the message.
/// - Batch: `{"files":[{"key":..,"status":..,...}]}`; on success no top-level `error` (the
///   only answer the widget accepts as a completed batch); on failure the failed key's fields
///   at the top level too, so the widget reports it.
pub(crate) fn upload_answer(records: &[UploadInfo], failure: Option<&Failure>) -> Response<Bytes> {
    let http = failure.map_or(StatusCode::OK, |failure| failure.http);
    if let [record] = records {
        let mut answer = record.status_answer();
        if failure.is_none() {
            answer.server_message = None;
        }
        return json(http, answer.to_json());
    }
    let files: Vec<FileResult<'_>> = records
        .iter()
        .map(|record| {
            let mut answer = record.status_answer();
            if record.status == UploadStatus::Finished {
                answer.server_message = None;
            }
            FileResult {
                key: record.key.as_str(),
                answer,
            }
        })
        .collect();
    let body = match failure {
        None => serde_json::to_vec(&serde_json::json!({ "files": files })),
        Some(failure) => serde_json::to_vec(&serde_json::json!({
            "status": failure.status,
            "error": failure.error,
            "serverMessage": failure.message,
            "files": files,
        })),
    }
    .expect("serialising an answer cannot fail");
    json(http, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_upload_state::UploadKey;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(512 * 1024), "512 KiB");
        assert_eq!(human_size(100), "100 bytes");
        assert_eq!(human_size(3 << 30), "3 GiB");
    }

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

    fn record(
        key: &str,
        status: UploadStatus,
        error: FileError,
        message: Option<&str>,
    ) -> UploadInfo {
        let mut info = UploadInfo::new(UploadKey::parse(key).unwrap());
        info.status = status;
        info.error = error;
        info.bytes_uploaded = 3;
        info.size = Some(3);
        info.server_message = message.map(str::to_owned);
        info
    }

    fn body(response: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn a_single_success_never_carries_a_server_message() {
        let records = [record(
            "a",
            UploadStatus::Finished,
            FileError::None,
            Some("saved"),
        )];
        let response = upload_answer(&records, None);
        assert_eq!(response.status(), 200);
        assert_eq!(
            body(&response),
            serde_json::json!({"status":2,"error":-1,"bytesUploaded":3,"size":3})
        );
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn a_batch_success_has_no_top_level_error() {
        let records = [
            record("a", UploadStatus::Finished, FileError::None, None),
            record("b", UploadStatus::Finished, FileError::None, None),
        ];
        let json = body(&upload_answer(&records, None));
        assert!(json.get("error").is_none());
        assert_eq!(json["files"][1]["key"], "b");
        assert_eq!(json["files"][1]["status"], 2);
    }

    #[test]
    fn a_batch_failure_reports_at_the_top() {
        let failure = Failure::file_too_large(10);
        let records = [
            record("a", UploadStatus::Finished, FileError::None, None),
            record(
                "b",
                UploadStatus::FileSizeExceeded,
                FileError::FileSizeExceeded,
                Some(&failure.message),
            ),
        ];
        let response = upload_answer(&records, Some(&failure));
        assert_eq!(response.status(), 413);
        let json = body(&response);
        assert_eq!(json["error"], 2);
        assert_eq!(json["status"], 5);
        assert_eq!(
            json["serverMessage"],
            "file is larger than the 10 bytes limit"
        );
        assert_eq!(json["files"][0]["status"], 2);
    }
}
