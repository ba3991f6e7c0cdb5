//! The JSON answers and the responses that carry them.

use std::io::Write as _;

use bytes::Bytes;
use http::header::ALLOW;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use tower_upload_state::{json_response, KeyError, QueryError, StoreError, UploadInfo};

/// What the service answers with.
pub(crate) type StatusResponse = Response<Full<Bytes>>;

/// [`StatusAnswer::NO_SUCH_FILE`](tower_upload_state::StatusAnswer::NO_SUCH_FILE) as JSON,
/// spelled out so that unknown keys (what a key spray asks for) cost no serialisation. A test
/// checks it against `NO_SUCH_FILE.to_json()`.
const NO_SUCH_FILE_JSON: &[u8] =
    br#"{"status":3,"error":5,"bytesUploaded":0,"size":0,"serverMessage":""}"#;

/// The `fileSize` answer for a key with no recorded size; see the crate docs for why `null`.
const NO_FILE_SIZE_JSON: &[u8] = br#"{"fileSize":null,"error":5}"#;

const METHOD_NOT_ALLOWED_JSON: &[u8] = br#"{"error":"method_not_allowed","message":"the upload status service answers GET and POST requests only"}"#;

const STORE_UNAVAILABLE_JSON: &[u8] = br#"{"error":"store_unavailable","message":"the upload store is unavailable; try again later"}"#;

/// An answer with `status`, the JSON `body` and the headers every answer has (the state
/// crate's [`json_response`], shared with the upload layer).
fn json(status: StatusCode, body: Bytes) -> StatusResponse {
    json_response(status, body).map(Full::new)
}

/// The answer to `status` and `cancel`: the snapshot's status answer, or `NoSuchFile`.
pub(crate) fn status(info: Option<&UploadInfo>) -> StatusResponse {
    let body = match info {
        Some(info) => Bytes::from(info.status_answer().to_json()),
        None => Bytes::from_static(NO_SUCH_FILE_JSON),
    };
    json(StatusCode::OK, body)
}

/// The answer to `fileSize`: `{"fileSize":N}`, or `{"fileSize":null,"error":5}`.
pub(crate) fn file_size(size: Option<u64>) -> StatusResponse {
    let body = match size {
        Some(size) => {
            // `{"fileSize":` + at most 20 digits + `}`.
            let mut out = Vec::with_capacity(34);
            // Writing into a Vec cannot fail.
            let _ = write!(out, r#"{{"fileSize":{size}}}"#);
            Bytes::from(out)
        }
        None => Bytes::from_static(NO_FILE_SIZE_JSON),
    };
    json(StatusCode::OK, body)
}

/// 503 for a failed store. The store's error stays in the log: it may name internal hosts.
pub(crate) fn store_unavailable(error: &StoreError) -> StatusResponse {
    #[cfg(feature = "tracing")]
    tracing::warn!(%error, "upload status: the upload store failed");
    #[cfg(not(feature = "tracing"))]
    let _ = error;
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(STORE_UNAVAILABLE_JSON),
    )
}

/// Why a request was refused before the registry was asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 405: not `GET` or `POST`.
    Method,
    /// 400: a stable machine code and a sentence for people.
    Query { code: &'static str, message: String },
}

impl Refusal {
    pub(crate) fn missing_command() -> Self {
        Self::Query {
            code: "missing_command",
            message: "the `command` query parameter is missing; \
                      expected `status`, `cancel` or `fileSize`"
                .to_owned(),
        }
    }

    pub(crate) fn into_response(self) -> StatusResponse {
        let (code, message) = match self {
            Self::Method => {
                let mut response = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Bytes::from_static(METHOD_NOT_ALLOWED_JSON),
                );
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, POST"));
                return response;
            }
            Self::Query { code, message } => (code, message),
        };
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'static str,
            message: &'a str,
        }
        let mut out = Vec::with_capacity(48 + message.len());
        // Serialising two strings into a Vec cannot fail.
        let _ = serde_json::to_writer(
            &mut out,
            &Body {
                error: code,
                message: &message,
            },
        );
        json(StatusCode::BAD_REQUEST, Bytes::from(out))
    }
}

impl From<KeyError> for Refusal {
    fn from(error: KeyError) -> Self {
        let code = match error {
            KeyError::Missing => "missing_key",
            // Empty, too long, a bad character, a `;` batch, and any reason added later.
            _ => "invalid_key",
        };
        Self::Query {
            code,
            message: error.to_string(),
        }
    }
}

impl From<QueryError> for Refusal {
    fn from(error: QueryError) -> Self {
        let code = match error {
            QueryError::UnknownCommand(_) => "unknown_command",
            // A repeated parameter, and any reason added later.
            _ => "bad_query",
        };
        Self::Query {
            code,
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tower_upload_state::StatusAnswer;

    use super::*;

    #[test]
    fn no_such_file_is_the_state_crates_answer() {
        assert_eq!(StatusAnswer::NO_SUCH_FILE.to_json(), NO_SUCH_FILE_JSON);
    }

    #[test]
    fn static_bodies_are_valid_json() {
        for body in [
            NO_SUCH_FILE_JSON,
            NO_FILE_SIZE_JSON,
            METHOD_NOT_ALLOWED_JSON,
            STORE_UNAVAILABLE_JSON,
        ] {
            let value: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert!(value.is_object());
        }
    }

    #[tokio::test]
    async fn file_size_fits_the_largest_number() {
        use http_body_util::BodyExt;
        let body = file_size(Some(u64::MAX)).into_body().collect().await;
        let expected = format!(r#"{{"fileSize":{}}}"#, u64::MAX);
        assert_eq!(body.unwrap().to_bytes(), expected.as_bytes());
    }
}
