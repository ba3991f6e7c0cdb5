//! What browser pages on another origin need to be allowed, for a CORS layer of your choice
//! (tower-http's `CorsLayer`) put **outside** the upload layer, so that it answers preflights
//! and decorates the layer's own answers too.
//!
//! ```
//! use tower_http::cors::{AllowOrigin, CorsLayer};
//! use tower_upload_layer::cors;
//!
//! let cors = CorsLayer::new()
//!     .allow_origin(AllowOrigin::exact("https://app.example".parse().unwrap()))
//!     .allow_credentials(true) // the igUpload widget sends credentials
//!     .allow_methods(cors::METHODS)
//!     .allow_headers(cors::ALLOW_HEADERS)
//!     .expose_headers(cors::EXPOSE_HEADERS)
//!     .max_age(std::time::Duration::from_secs(86_400));
//! # let _ = cors;
//! ```

use http::{HeaderName, Method};

/// The methods of every upload protocol served: multipart POSTs, status queries, and tus /
/// the IETF draft (`HEAD`, `PATCH`, `DELETE`, `OPTIONS`).
pub const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::HEAD,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// The request headers browser clients send: tus' and the IETF draft's, plus what tus-js-client
/// and Uppy add (`X-Requested-With`, `X-HTTP-Method-Override`, `Content-Disposition`).
pub const ALLOW_HEADERS: [HeaderName; 14] = [
    HeaderName::from_static("authorization"),
    HeaderName::from_static("content-type"),
    HeaderName::from_static("x-requested-with"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("tus-resumable"),
    HeaderName::from_static("upload-length"),
    HeaderName::from_static("upload-offset"),
    HeaderName::from_static("upload-metadata"),
    HeaderName::from_static("upload-defer-length"),
    HeaderName::from_static("upload-concat"),
    HeaderName::from_static("upload-checksum"),
    HeaderName::from_static("upload-complete"),
    HeaderName::from_static("upload-draft-interop-version"),
    HeaderName::from_static("content-disposition"),
];

/// The answer headers browser clients must be able to read: tus' and the IETF draft's, the
/// keyless uploads' `Upload-Key` and the digests' `Repr-Digest`.
pub const EXPOSE_HEADERS: [HeaderName; 16] = [
    HeaderName::from_static("location"),
    HeaderName::from_static("tus-resumable"),
    HeaderName::from_static("tus-version"),
    HeaderName::from_static("tus-max-size"),
    HeaderName::from_static("tus-extension"),
    HeaderName::from_static("tus-checksum-algorithm"),
    HeaderName::from_static("upload-offset"),
    HeaderName::from_static("upload-length"),
    HeaderName::from_static("upload-metadata"),
    HeaderName::from_static("upload-defer-length"),
    HeaderName::from_static("upload-concat"),
    HeaderName::from_static("upload-expires"),
    HeaderName::from_static("upload-complete"),
    HeaderName::from_static("upload-limit"),
    HeaderName::from_static("upload-key"),
    HeaderName::from_static("repr-digest"),
];
