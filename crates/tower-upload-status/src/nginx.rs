//! The progress answers of nginx's upload progress module (`report_uploads`), in its JSON
//! and JSONP dialects, for clients written against it: `GET ...?X-Progress-ID=K`.

use std::io::Write as _;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tower_upload_state::{FileError, UploadInfo, UploadStatus};

use crate::answer::StatusResponse;
use crate::ResponseBody;

/// The longest JSONP callback name accepted.
pub(crate) const MAX_CALLBACK_LEN: usize = 64;

/// Whether `name` is a safe JSONP callback: a dotted JavaScript identifier path
/// (`jQuery123_456`, `window.app.progress`), nothing that could run code of its own.
pub(crate) fn is_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CALLBACK_LEN
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

/// The HTTP status an upload that ended in `status` / `error` was answered with, as nginx
/// reports it (`{"state":"error","status":CODE}`): the upload layer's answer, except for a
/// dropped connection, which nginx counts as 499 (client closed request).
pub(crate) fn http_status(status: UploadStatus, error: FileError) -> u16 {
    match status {
        UploadStatus::FileSizeExceeded => 413,
        UploadStatus::CanceledByEvent => 403,
        UploadStatus::CanceledByClientCommand => 409,
        UploadStatus::CanceledByClientConnection => 499,
        UploadStatus::ErrorUploading => match error {
            FileError::EstablishingFileName | FileError::HeaderParsing => 400,
            FileError::MimeTypeValidation => 415,
            _ => 500,
        },
        _ => 500,
    }
}

/// The nginx JSON object for a record (`None`: unknown, which nginx calls `starting`).
pub(crate) fn progress_json(info: Option<&UploadInfo>, out: &mut Vec<u8>) {
    // Writing numbers into a Vec cannot fail.
    let _ = match info.map(|info| (info.status, info)) {
        None | Some((UploadStatus::NotStarted | UploadStatus::NoSuchFile, _)) => {
            write!(out, r#"{{"state":"starting"}}"#)
        }
        Some((UploadStatus::Finished, _)) => write!(out, r#"{{"state":"done"}}"#),
        Some((UploadStatus::Started | UploadStatus::UploadFinishing, info)) => {
            let answer = info.status_answer();
            write!(
                out,
                r#"{{"state":"uploading","received":{},"size":{}}}"#,
                answer.bytes_uploaded, answer.size
            )
        }
        Some((status, info)) => write!(
            out,
            r#"{{"state":"error","status":{}}}"#,
            http_status(status, info.error)
        ),
    };
}

/// The answer: JSON, or JSONP `callback(...);` when a (checked) callback is given.
pub(crate) fn answer(info: Option<&UploadInfo>, callback: Option<&str>) -> StatusResponse {
    let mut out = Vec::with_capacity(80);
    let content_type = match callback {
        Some(callback) => {
            out.extend_from_slice(callback.as_bytes());
            out.push(b'(');
            progress_json(info, &mut out);
            out.extend_from_slice(b");");
            "application/javascript"
        }
        None => {
            progress_json(info, &mut out);
            "application/json"
        }
    };
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let mut response = Response::new(ResponseBody::full(Bytes::from(out)));
    *response.status_mut() = StatusCode::OK;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use tower_upload_state::UploadKey;

    use super::*;

    fn json(info: Option<&UploadInfo>) -> String {
        let mut out = Vec::new();
        progress_json(info, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_state_of_the_module() {
        let mut info = UploadInfo::new(UploadKey::parse("k").unwrap());
        assert_eq!(json(None), r#"{"state":"starting"}"#);
        assert_eq!(json(Some(&info)), r#"{"state":"starting"}"#);
        info.status = UploadStatus::Started;
        info.bytes_uploaded = 35_587;
        info.size = Some(193_277);
        assert_eq!(
            json(Some(&info)),
            r#"{"state":"uploading","received":35587,"size":193277}"#
        );
        info.status = UploadStatus::Finished;
        assert_eq!(json(Some(&info)), r#"{"state":"done"}"#);
        for (status, error, code) in [
            (
                UploadStatus::FileSizeExceeded,
                FileError::FileSizeExceeded,
                413,
            ),
            (
                UploadStatus::CanceledByEvent,
                FileError::ServerSideCancel,
                403,
            ),
            (
                UploadStatus::CanceledByClientConnection,
                FileError::None,
                499,
            ),
            (UploadStatus::ErrorUploading, FileError::HeaderParsing, 400),
            (UploadStatus::ErrorUploading, FileError::FileWriting, 500),
        ] {
            info.status = status;
            info.error = error;
            assert_eq!(
                json(Some(&info)),
                format!(r#"{{"state":"error","status":{code}}}"#)
            );
        }
    }

    #[test]
    fn callbacks_are_identifiers_only() {
        for good in ["cb", "jQuery1234_5678", "window.app.$progress", "_"] {
            assert!(is_callback(good), "{good}");
        }
        let long = "a".repeat(MAX_CALLBACK_LEN + 1);
        for bad in [
            "", "a b", "alert(1)", "a..b", ".a", "1a", "a;b", "a-b", &long,
        ] {
            assert!(!is_callback(bad), "{bad}");
        }
    }
}
