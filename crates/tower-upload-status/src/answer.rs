//! The JSON answers and the responses that carry them.

use std::io::Write as _;

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{ALLOW, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Serialize;
use tower_upload_state::{
    json_response, KeyError, QueryError, StatusAnswer, StoreError, UploadInfo,
};

use crate::ResponseBody;

/// What the service answers with.
pub(crate) type StatusResponse = Response<ResponseBody>;

/// [`StatusAnswer::NO_SUCH_FILE`](tower_upload_state::StatusAnswer::NO_SUCH_FILE) as JSON,
/// spelled out so that unknown keys (what a key spray asks for) cost no serialisation. A test
/// checks it against `NO_SUCH_FILE.to_json()`.
const NO_SUCH_FILE_JSON: &[u8] =
    br#"{"status":3,"error":5,"bytesUploaded":0,"size":0,"serverMessage":""}"#;

/// The `fileSize` answer for a key with no recorded size; see the crate docs for why `null`.
const NO_FILE_SIZE_JSON: &[u8] = br#"{"fileSize":null,"error":5}"#;

const METHOD_NOT_ALLOWED_JSON: &[u8] = br#"{"error":"method_not_allowed","message":"the upload status service answers GET and POST requests only"}"#;

const TOO_MANY_WATCHERS_JSON: &[u8] = br#"{"error":"too_many_watchers","message":"too many progress streams are open; poll with command=status or try again later"}"#;

const STORE_UNAVAILABLE_JSON: &[u8] = br#"{"error":"store_unavailable","message":"the upload store is unavailable; try again later"}"#;

/// An answer with `status`, the JSON `body` and the headers every answer has (the state
/// crate's [`json_response`], shared with the upload layer).
pub(crate) fn json(status: StatusCode, body: Bytes) -> StatusResponse {
    json_response(status, body).map(ResponseBody::full)
}

/// [`json`] for a 200, from a copy of the headers made once: a clone is two small
/// allocations and copies, where building the map hashes and inserts each name (a third of
/// a status answer's time).
pub(crate) fn json_ok(body: Bytes) -> StatusResponse {
    static HEADERS: OnceLock<HeaderMap> = OnceLock::new();
    let headers = HEADERS.get_or_init(|| {
        json_response(StatusCode::OK, Bytes::new())
            .into_parts()
            .0
            .headers
    });
    let mut response = Response::new(ResponseBody::full(body));
    *response.headers_mut() = headers.clone();
    response
}

/// The answer to `status` and `cancel`: the snapshot's status answer, or `NoSuchFile`.
pub(crate) fn status(info: Option<&UploadInfo>) -> StatusResponse {
    json_ok(status_body(info))
}

/// The body of [`status`]; the fast path makes it under the registry's lock and the
/// response after (a response is moved several times on its way out, a body is small).
pub(crate) fn status_body(info: Option<&UploadInfo>) -> Bytes {
    match info {
        Some(info) => answer_bytes(&info.status_answer()),
        None => Bytes::from_static(NO_SUCH_FILE_JSON),
    }
}

/// The answer as JSON, as [`StatusAnswer::to_json`] writes it, in one allocation of its
/// exact size: written by hand on the stack when the message needs no escaping (every
/// answer without a message, or with a plain one), else by serde.
pub(crate) fn answer_bytes(answer: &StatusAnswer<'_>) -> Bytes {
    let mut out = Stack::new();
    let written = out.put(br#"{"status":"#)
        && out.put_i64(i64::from(answer.status.code()))
        && out.put(br#","error":"#)
        && out.put_i64(i64::from(answer.error.code()))
        && out.put(br#","bytesUploaded":"#)
        && out.put_u64(answer.bytes_uploaded)
        && out.put(br#","size":"#)
        && out.put_u64(answer.size)
        && match answer.server_message {
            None => true,
            Some(message) => {
                message
                    .bytes()
                    .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\' && byte < 0x7f)
                    && out.put(br#","serverMessage":""#)
                    && out.put(message.as_bytes())
                    && out.put(b"\"")
            }
        }
        && match answer.digest {
            None => true,
            // `sha-256=:<base64>:`: no character needs escaping, but check as for the message.
            Some(digest) => {
                digest
                    .bytes()
                    .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\' && byte < 0x7f)
                    && out.put(br#","digest":""#)
                    && out.put(digest.as_bytes())
                    && out.put(b"\"")
            }
        }
        && out.put(b"}");
    if written {
        return Bytes::copy_from_slice(out.as_slice());
    }
    Bytes::from(answer.to_json())
}

/// A small buffer on the stack for [`answer_bytes`].
struct Stack {
    bytes: [u8; 160],
    len: usize,
}

impl Stack {
    fn new() -> Self {
        Self {
            bytes: [0; 160],
            len: 0,
        }
    }

    /// Appends `data`; false when it does not fit.
    #[inline]
    fn put(&mut self, data: &[u8]) -> bool {
        let Some(slot) = self.bytes.get_mut(self.len..self.len + data.len()) else {
            return false;
        };
        slot.copy_from_slice(data);
        self.len += data.len();
        true
    }

    fn put_u64(&mut self, mut n: u64) -> bool {
        let mut len = 1;
        let mut rest = n / 10;
        while rest > 0 {
            len += 1;
            rest /= 10;
        }
        let Some(slot) = self.bytes.get_mut(self.len..self.len + len) else {
            return false;
        };
        for digit in slot.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += len;
        true
    }

    fn put_i64(&mut self, n: i64) -> bool {
        if n < 0 && !self.put(b"-") {
            return false;
        }
        self.put_u64(n.unsigned_abs())
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The 503 beyond the most progress streams, with a hint to come back later.
pub(crate) fn too_many_watchers() -> StatusResponse {
    let mut response = json(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(TOO_MANY_WATCHERS_JSON),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
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
                      expected `status`, `cancel`, `fileSize` or `watch`"
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
        match error {
            QueryError::UnknownCommand(name) => Self::Query {
                code: "unknown_command",
                message: format!(
                    "unknown command {name:?}; expected `status`, `cancel`, `fileSize` or `watch`"
                ),
            },
            // A repeated parameter, and any reason added later.
            error => Self::Query {
                code: "bad_query",
                message: error.to_string(),
            },
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
            TOO_MANY_WATCHERS_JSON,
            STORE_UNAVAILABLE_JSON,
        ] {
            let value: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert!(value.is_object());
        }
    }

    #[test]
    fn answers_are_the_state_crates_json_short_or_long() {
        let mut info = UploadInfo::new(tower_upload_state::UploadKey::parse("k").unwrap());
        info.bytes_uploaded = u64::MAX;
        info.size = Some(u64::MAX);
        let long = "m".repeat(300);
        for message in [
            "",
            "short",
            "a \"quote\"",
            "back\\slash",
            "\u{1}",
            "é",
            &long,
        ] {
            info.server_message = Some(message.to_owned());
            let answer = info.status_answer();
            assert_eq!(answer_bytes(&answer), answer.to_json(), "{message:?}");
            let mut answer = answer;
            answer.server_message = None;
            assert_eq!(answer_bytes(&answer), answer.to_json());
        }
        // With a digest (short message: written by hand; long: by serde).
        info.digest = Some("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:".to_owned());
        for message in ["", &long] {
            info.server_message = Some(message.to_owned());
            let answer = info.status_answer();
            assert_eq!(answer_bytes(&answer), answer.to_json(), "{message:?}");
        }
        info.digest = None;
        for status in 0..=9 {
            for error in -1..=10 {
                info.status = tower_upload_state::UploadStatus::from_code(status).unwrap();
                info.error = tower_upload_state::FileError::from_code(error).unwrap();
                info.bytes_uploaded = 0;
                info.size = Some(0);
                let answer = info.status_answer();
                assert_eq!(answer_bytes(&answer), answer.to_json());
            }
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
