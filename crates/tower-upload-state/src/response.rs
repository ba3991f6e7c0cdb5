//! [`json_response`]: the one way both services build their JSON answers.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// A response with `status`, the JSON `body`, `Content-Type: application/json` and
/// `Cache-Control: no-store`: the headers every answer of the upload layer and the status
/// service carries (the widget must never see a cached progress answer).
///
/// The body is taken as it is: it must already be JSON.
///
/// # Example
///
/// ```
/// use http::StatusCode;
/// use tower_upload_state::json_response;
///
/// let response = json_response(StatusCode::OK, r#"{"fileSize":42}"#);
/// assert_eq!(response.status(), StatusCode::OK);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.headers()["cache-control"], "no-store");
/// assert_eq!(response.body(), r#"{"fileSize":42}"#);
///
/// // Any body type that wraps `Bytes` is one `map` away, e.g. `http_body_util::Full`:
/// let response = response.map(|body| body.len());
/// assert_eq!(*response.body(), 15);
/// ```
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
