//! The JSON answers of the upload path.

use std::fmt;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use tower_upload_state::{json_response as json, StatusAnswer, UploadInfo, UploadStatus};

use crate::failure::Failure;

/// `1.5 MiB`, `4 MiB`, `512 KiB`, `100 bytes`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} bytes")
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

/// The answer to an upload request, from the final records of its keys (in key order); a
/// `batch` request (several keys) answers in the batch form even when one key ended.
///
/// - One key, success: `200 {"status":2,"error":-1,"bytesUploaded":N,"size":N}`, without
///   `serverMessage` (the widget hangs on a success that carries one; it reads the message
///   from the status service instead).
/// - One key, failure: the failure's HTTP status and the full status answer with the message.
/// - Batch: `{"files":[{"key":..,"status":..,...}]}`; on success no top-level `error` (the
///   only answer the widget accepts as a completed batch); on failure the failed key's fields
///   at the top level too, so the widget reports it.
pub(crate) fn upload_answer(
    records: &[UploadInfo],
    batch: bool,
    failure: Option<&Failure>,
) -> Response<Bytes> {
    let http = failure.map_or(StatusCode::OK, |failure| failure.http);
    if let (false, [record]) = (batch, records) {
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
    use tower_upload_state::{FileError, UploadKey};

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(512 * 1024), "512 KiB");
        assert_eq!(human_size(100), "100 bytes");
        assert_eq!(human_size(3 << 30), "3 GiB");
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
        let response = upload_answer(&records, false, None);
        assert_eq!(response.status(), 200);
        assert_eq!(
            body(&response),
            serde_json::json!({"status":2,"error":-1,"bytesUploaded":3,"size":3})
        );
        assert_eq!(response.headers()[http::header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn a_batch_success_has_no_top_level_error() {
        let records = [
            record("a", UploadStatus::Finished, FileError::None, None),
            record("b", UploadStatus::Finished, FileError::None, None),
        ];
        let json = body(&upload_answer(&records, true, None));
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
        let response = upload_answer(&records, true, Some(&failure));
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
