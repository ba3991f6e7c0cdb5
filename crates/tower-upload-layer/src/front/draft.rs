//! The IETF resumable-upload draft (`draft-ietf-httpbis-resumable-upload`, interop versions 3
//! to 8; 6 is what tus-js-client's `ietf-draft-05` and recent Apple clients send) on the same
//! upload path as tus.
//!
//! The draft and tus share their model (an upload resource with an offset, appended to by
//! `PATCH`, read by `HEAD`, deleted by `DELETE`), so a draft request is *translated* into the
//! tus request that means the same, served by the tus front-end, and its answer translated
//! back. Every limit, event, owner rule and store works for both alike.
//!
//! | draft | tus equivalent |
//! |---|---|
//! | `POST {path}` with `Upload-Complete` (creation), `Upload-Length`, or `Upload-Complete: ?1` + `Content-Length` | creation; no length: `Upload-Defer-Length: 1`; a body is creation-with-upload |
//! | file name from `Content-Disposition` (`filename=`), type from `Content-Type` | `Upload-Metadata: filename, filetype` |
//! | `PATCH` with `Content-Type: application/partial-upload` (required from interop 6), `Upload-Offset`, `Upload-Complete` | `PATCH` with `application/offset+octet-stream`; `?1` + `Content-Length` sets the length |
//! | `HEAD` | `HEAD`, plus `Upload-Complete` and `Upload-Limit` |
//! | 413 on a limit | 413 plus `Upload-Limit: max-size=N` |
//!
//! **No 104.** The draft's `104 (Upload Resumption Supported)` interim answer would tell the
//! client the upload's URL before the body is sent; hyper cannot send 1xx answers (it has no
//! API for them today), so clients use *careful creation* (an empty `Upload-Complete: ?0`
//! request, answered 201 + `Location`), which tus-js-client does. Supporting 104 needs an
//! interim-response API in hyper (and in the tower `Service` model, a side channel from the
//! service to the connection), then one `104` with `Location` and `Upload-Limit` before the
//! body is read.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Body;

use crate::config::Config;
use crate::BoxError;

/// The interop versions served.
const VERSIONS: std::ops::RangeInclusive<u32> = 3..=8;

/// The draft's interop version of a request, if it is a draft request.
pub(crate) fn interop_version(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get("upload-draft-interop-version")?;
    Some(value.to_str().ok()?.trim().parse().unwrap_or(0))
}

fn text(status: StatusCode, message: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(message.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A Structured Fields Boolean: `?1` or `?0`.
fn boolean(headers: &HeaderMap, name: &str) -> Result<Option<bool>, ()> {
    match headers.get(name).map(HeaderValue::as_bytes) {
        None => Ok(None),
        Some(b"?1") => Ok(Some(true)),
        Some(b"?0") => Ok(Some(false)),
        Some(_) => Err(()),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, value);
    }
}

/// The file name of `Content-Disposition: inline; filename="a b.jpg"` (the plain form).
fn disposition_file_name(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(http::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    value.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|value| value.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.replace("\\\"", "\""))
    })
}

/// Answers a request of the draft by translating it to tus and back.
pub(crate) async fn handle<B>(
    config: Arc<Config>,
    mut parts: http::request::Parts,
    body: B,
    method: Method,
    version: u32,
) -> Response<Bytes>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if !VERSIONS.contains(&version) {
        return text(
            StatusCode::BAD_REQUEST,
            "unsupported Upload-Draft-Interop-Version (supported: 3 to 8)",
        );
    }
    let Ok(complete) = boolean(&parts.headers, "upload-complete") else {
        return text(StatusCode::BAD_REQUEST, "Upload-Complete must be ?0 or ?1");
    };
    let resumable = config.resumable.clone().expect("configured");
    let is_upload = parts.uri.path().len() > resumable.path.len()
        && parts.uri.path().starts_with(resumable.path.as_str());
    let declared = number(&parts.headers, CONTENT_LENGTH.as_str());
    let has_body =
        declared.unwrap_or(0) > 0 || parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    let headers = &mut parts.headers;
    headers.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
    match (&method, is_upload) {
        (&Method::POST, false) => {
            let Some(complete) = complete else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Upload-Complete is required to create a resumable upload",
                );
            };
            if !headers.contains_key("upload-length") {
                match declared.filter(|_| complete) {
                    Some(length) => set(headers, "upload-length", length),
                    None => set(headers, "upload-defer-length", 1),
                }
            } else if complete && declared.is_some() && number(headers, "upload-length") != declared
            {
                return inconsistent_length();
            }
            if !headers.contains_key("upload-metadata") {
                let mut metadata = Vec::new();
                if let Some(name) = disposition_file_name(headers) {
                    metadata.push(format!("filename {}", BASE64.encode(name)));
                }
                if let Some(kind) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
                    metadata.push(format!("filetype {}", BASE64.encode(kind)));
                }
                if !metadata.is_empty() {
                    set(headers, "upload-metadata", metadata.join(","));
                }
            }
            if has_body {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/offset+octet-stream"),
                );
            }
        }
        (&Method::PATCH, true) => {
            let partial = headers
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(';').next())
                .is_some_and(|essence| {
                    essence
                        .trim()
                        .eq_ignore_ascii_case("application/partial-upload")
                });
            if version >= 6 && !partial {
                return text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "an append must be application/partial-upload",
                );
            }
            let Some(complete) = complete else {
                return text(StatusCode::BAD_REQUEST, "Upload-Complete is required");
            };
            if complete {
                if let (Some(offset), Some(declared)) = (number(headers, "upload-offset"), declared)
                {
                    let length = offset.saturating_add(declared);
                    if number(headers, "upload-length").is_some_and(|given| given != length) {
                        return inconsistent_length();
                    }
                    set(headers, "upload-length", length);
                }
            }
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/offset+octet-stream"),
            );
        }
        (&Method::HEAD | &Method::DELETE, true) => {}
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
            set(
                response.headers_mut(),
                "allow",
                if is_upload {
                    "HEAD, PATCH, DELETE"
                } else {
                    "POST, OPTIONS"
                },
            );
            return response;
        }
    }
    let mut response = super::tus::dispatch(Arc::clone(&config), parts, body, method.clone()).await;
    translate(&config, &method, complete, &mut response);
    response
}

fn inconsistent_length() -> Response<Bytes> {
    text(
        StatusCode::BAD_REQUEST,
        "inconsistent upload length: the lengths given do not match",
    )
}

/// Turns a tus answer into the draft's: its fields in, tus' out.
fn translate(
    config: &Config,
    method: &Method,
    complete: Option<bool>,
    response: &mut Response<Bytes>,
) {
    let status = response.status();
    let headers = response.headers_mut();
    let offset = number(headers, "upload-offset");
    let length = number(headers, "upload-length");
    let done = match *method {
        Method::HEAD => offset.is_some() && offset == length,
        _ => status.is_success() && complete == Some(true),
    };
    for tus_only in [
        "tus-resumable",
        "tus-version",
        "tus-max-size",
        "tus-extension",
        "upload-defer-length",
        "upload-metadata",
        "upload-expires",
    ] {
        headers.remove(tus_only);
    }
    if status.is_success() && *method != Method::DELETE {
        set(headers, "upload-complete", if done { "?1" } else { "?0" });
    }
    let limits = upload_limit(config);
    let announces =
        matches!(*method, Method::HEAD | Method::POST) || status == StatusCode::PAYLOAD_TOO_LARGE;
    if announces && !limits.is_empty() {
        set(headers, "upload-limit", limits);
    }
}

/// `Upload-Limit`: `max-size` (the size limit) and `max-age` (the expiration).
fn upload_limit(config: &Config) -> String {
    let mut limits = Vec::new();
    if let Some(max) = config.max_file_size {
        limits.push(format!("max-size={max}"));
    }
    if let Some(expiration) = config.resumable.as_ref().and_then(|r| r.expiration) {
        limits.push(format!("max-age={}", expiration.as_secs()));
    }
    limits.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_content_disposition() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline; filename=\"file name.jpg\""),
        );
        assert_eq!(
            disposition_file_name(&headers).as_deref(),
            Some("file name.jpg")
        );
        headers.insert(
            http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=plain.txt"),
        );
        assert_eq!(
            disposition_file_name(&headers).as_deref(),
            Some("plain.txt")
        );
    }

    #[test]
    fn booleans_are_structured_fields() {
        let mut headers = HeaderMap::new();
        assert_eq!(boolean(&headers, "upload-complete"), Ok(None));
        headers.insert("upload-complete", HeaderValue::from_static("?1"));
        assert_eq!(boolean(&headers, "upload-complete"), Ok(Some(true)));
        headers.insert("upload-complete", HeaderValue::from_static("true"));
        assert!(boolean(&headers, "upload-complete").is_err());
    }
}
