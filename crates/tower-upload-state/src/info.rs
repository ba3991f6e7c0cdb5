//! Snapshots of one upload, and the JSON answer the widget reads.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{FileError, UploadKey, UploadStatus};

/// A snapshot of one upload: what the status service answers and what event handlers see.
///
/// # Bounds
///
/// A record's size is bounded, so that a store's memory is bounded by its record count (and
/// a Redis value stays small): the registry truncates, at a character boundary, what
/// [`begin`](crate::UploadRegistry::begin), [`update`](crate::UploadHandle::update) and
/// [`finish`](crate::UploadHandle::finish) store:
///
/// | field | at most |
/// |---|---|
/// | `key` | [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) = 128 bytes (checked when parsed) |
/// | `cid` | [`MAX_CID_LEN`](Self::MAX_CID_LEN) = 128 bytes ([`UploadQuery::parse`](crate::UploadQuery::parse) refuses longer) |
/// | `mime_type` | [`MAX_MIME_TYPE_LEN`](Self::MAX_MIME_TYPE_LEN) = 255 bytes |
/// | `server_message` | [`MAX_SERVER_MESSAGE_LEN`](Self::MAX_SERVER_MESSAGE_LEN) = 1024 bytes |
/// | `file_name` | [`MAX_FILE_NAME_LEN`](Self::MAX_FILE_NAME_LEN) = 1024 bytes (the upload layer caps it first) |
///
/// The strings thus hold at most 2 687 bytes (key included), plus the `owner` (which the application's
/// owner function makes; keep it short, e.g. a session or user id); the other fields are
/// numbers and times. As JSON (what the Redis store keeps) a record is under 3 KB
/// plus the owner, or up to six times the string bytes if they are all control characters
/// (escaped as `\u00XX`).
///
/// # Example
///
/// ```
/// use tower_upload_state::{UploadInfo, UploadKey, UploadStatus};
///
/// let mut info = UploadInfo::new(UploadKey::parse("k1")?);
/// info.file_name = Some("report.pdf".into());
/// assert_eq!(info.status, UploadStatus::NotStarted);
/// # Ok::<(), tower_upload_state::KeyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UploadInfo {
    /// The upload's key.
    pub key: UploadKey,
    /// Where the upload is in its lifecycle.
    pub status: UploadStatus,
    /// Why it failed, or [`FileError::None`].
    pub error: FileError,
    /// Bytes of the file received so far.
    pub bytes_uploaded: u64,
    /// The file's size: declared (from `Content-Length`) while streaming when known, exact once
    /// finished.
    pub size: Option<u64>,
    /// A message for the user, set by the layer on failure or by an event handler.
    pub server_message: Option<String>,
    /// The file name as the client sent it (not yet sanitised), once the part headers are in.
    pub file_name: Option<String>,
    /// The MIME type the client declared for the part.
    pub mime_type: Option<String>,
    /// The widget's control id (`cid` query parameter), when not empty.
    pub cid: Option<String>,
    /// The owner the upload is bound to, when an owner binding is configured.
    pub owner: Option<String>,
    /// When the key was registered.
    pub started_at: SystemTime,
    /// When the upload reached a terminal status.
    pub finished_at: Option<SystemTime>,
    /// The digest of the stored bytes, when the layer computes one: `sha-256=:<base64>:`
    /// (RFC 9530's form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The state a resumable upload (tus, the IETF draft) keeps between its requests; `None`
    /// for a one-request upload (multipart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumable: Option<Resumable>,
}

/// What a resumable upload (tus 1.0, the IETF resumable-upload draft) keeps in its record
/// between requests: the upload is one key whose file grows by one request at a time.
///
/// Between requests the upload is *paused*: its record is in flight (status 1,
/// `bytesUploaded` = the offset stored on disk) and no request holds it. A request takes it
/// with [`UploadRegistry::resume`](crate::UploadRegistry::resume) and gives it back with
/// [`UploadHandle::pause`](crate::UploadHandle::pause).
///
/// The strings are bounded like the rest of the record: `metadata` and `concat` to
/// [`MAX_LEN`](Self::MAX_LEN) bytes each (the front-end refuses longer ones).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Resumable {
    /// The file's final length; `None` while it is deferred (tus `creation-defer-length`).
    pub length: Option<u64>,
    /// The client's metadata, as received (tus: `Upload-Metadata`).
    pub metadata: Option<String>,
    /// When an unfinished upload expires (it is then deleted, data and record).
    pub expires_at: Option<SystemTime>,
    /// tus concatenation: `partial`, or `final;<urls>`.
    pub concat: Option<String>,
    /// Whether no request holds the upload now.
    pub paused: bool,
    /// Until when the request that holds it counts as alive: past it (the instance died), a
    /// new request may take the upload over.
    pub lease_until: Option<SystemTime>,
}

impl Resumable {
    /// The most bytes of `metadata` and of `concat`.
    pub const MAX_LEN: usize = 4096;
}

impl UploadInfo {
    /// The most bytes of `cid` kept (and accepted in a query).
    pub const MAX_CID_LEN: usize = 128;
    /// The most bytes of `mime_type` kept.
    pub const MAX_MIME_TYPE_LEN: usize = 255;
    /// The most bytes of `server_message` kept.
    pub const MAX_SERVER_MESSAGE_LEN: usize = 1024;
    /// The most bytes of `file_name` kept.
    pub const MAX_FILE_NAME_LEN: usize = 1024;

    /// Truncates the bounded fields to their maximum, at a character boundary (see
    /// [Bounds](Self#bounds)).
    pub(crate) fn enforce_bounds(&mut self) {
        truncate(&mut self.cid, Self::MAX_CID_LEN);
        truncate(&mut self.mime_type, Self::MAX_MIME_TYPE_LEN);
        truncate(&mut self.server_message, Self::MAX_SERVER_MESSAGE_LEN);
        truncate(&mut self.file_name, Self::MAX_FILE_NAME_LEN);
        if let Some(resumable) = &mut self.resumable {
            truncate(&mut resumable.metadata, Resumable::MAX_LEN);
            truncate(&mut resumable.concat, Resumable::MAX_LEN);
        }
    }

    /// Whether this record's key belongs to someone else than `owner`, so that `owner` must
    /// neither claim it again nor read, cancel or otherwise touch it.
    ///
    /// It does when the record has an owner and `owner` is not the same, or, when uploads
    /// are bound to owners (`owner_bound`, see
    /// [`UploadRegistry::with_owner`](crate::UploadRegistry::with_owner)), when the two differ
    /// at all (a record without an owner belongs to the anonymous owner only). This is the one
    /// rule the registry and the stores apply (the Redis store's scripts mirror it).
    ///
    /// ```
    /// use tower_upload_state::{UploadInfo, UploadKey};
    ///
    /// let mut info = UploadInfo::new(UploadKey::parse("k")?);
    /// info.owner = Some("alice".into());
    /// assert!(!info.is_foreign_to(Some("alice"), true));
    /// assert!(info.is_foreign_to(Some("mallory"), false));
    /// assert!(info.is_foreign_to(None, false));
    /// info.owner = None;
    /// assert!(!info.is_foreign_to(Some("alice"), false), "no binding, no owner: anyone");
    /// assert!(info.is_foreign_to(Some("alice"), true));
    /// # Ok::<(), tower_upload_state::KeyError>(())
    /// ```
    #[must_use]
    pub fn is_foreign_to(&self, owner: Option<&str>, owner_bound: bool) -> bool {
        owners_conflict(self.owner.as_deref(), owner, owner_bound)
    }

    /// A fresh record for `key`: [`UploadStatus::NotStarted`], nothing received.
    #[must_use]
    pub fn new(key: UploadKey) -> Self {
        Self {
            key,
            status: UploadStatus::NotStarted,
            error: FileError::None,
            bytes_uploaded: 0,
            size: None,
            server_message: None,
            file_name: None,
            mime_type: None,
            cid: None,
            owner: None,
            started_at: SystemTime::now(),
            finished_at: None,
            digest: None,
            resumable: None,
        }
    }

    /// Whether a repeated POST of this record's key gets this record's verdict at once
    /// ([`ClaimError::Rejected`](crate::ClaimError::Rejected)) instead of starting over.
    ///
    /// Only client-caused verdicts are replayed: status 4 (canceled with `command=cancel`),
    /// 5 (too large), 7 (vetoed by an event handler), and 6 with error 0
    /// (`EstablishingFileName`), 1 (`MimeTypeValidation`) or 4 (`HeaderParsing`). A status 6
    /// with a server-side error (3 `UploadFolderNotFound`, 6 `FileSaving`, 7 `FileWriting`,
    /// 8 `FileStarting`, 9 `FileDeleting`) lets a retry start over, as do finished uploads,
    /// disconnects (8) and records in flight.
    ///
    /// ```
    /// use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadStatus};
    ///
    /// let mut info = UploadInfo::new(UploadKey::parse("k")?);
    /// info.status = UploadStatus::ErrorUploading;
    /// info.error = FileError::MimeTypeValidation;
    /// assert!(info.is_replayed_verdict());
    /// info.error = FileError::FileWriting; // disk full: the retry may succeed
    /// assert!(!info.is_replayed_verdict());
    /// # Ok::<(), tower_upload_state::KeyError>(())
    /// ```
    #[must_use]
    pub const fn is_replayed_verdict(&self) -> bool {
        crate::code::replays_verdict(self.status, self.error)
    }

    /// The size the widget is told: the known size, else the bytes received so far (never 0
    /// while bytes are arriving, which would make the widget divide by zero).
    #[must_use]
    pub fn reported_size(&self) -> u64 {
        self.size.unwrap_or(0).max(self.bytes_uploaded)
    }

    /// The status answer for this snapshot, with its server message (as the status service
    /// sends it).
    #[must_use]
    pub fn status_answer(&self) -> StatusAnswer<'_> {
        StatusAnswer {
            status: self.status,
            error: self.error,
            bytes_uploaded: self.bytes_uploaded,
            size: self.reported_size(),
            server_message: Some(self.server_message.as_deref().unwrap_or("")),
            digest: self.digest.as_deref(),
        }
    }
}

/// Whether what `record` belongs to is out of reach for `requester` (see
/// [`UploadInfo::is_foreign_to`]).
pub(crate) fn owners_conflict(record: Option<&str>, requester: Option<&str>, bound: bool) -> bool {
    record != requester && (record.is_some() || bound)
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut Option<String>, max: usize) {
    if let Some(text) = text {
        if text.len() > max {
            let mut end = max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
    }
}

/// The JSON object the igUpload widget reads from status and upload answers:
/// `{"status":S,"error":E,"bytesUploaded":N,"size":N,"serverMessage":"..."}`.
///
/// `serverMessage` is left out when `server_message` is `None`: a successful upload POST must
/// not carry it, or the widget hangs (it then reads the message from the status answer).
///
/// # Example
///
/// ```
/// use tower_upload_state::{FileError, StatusAnswer, UploadStatus};
///
/// let answer = StatusAnswer {
///     status: UploadStatus::Finished,
///     error: FileError::None,
///     bytes_uploaded: 3,
///     size: 3,
///     server_message: None,
///     digest: None,
/// };
/// assert_eq!(answer.to_json(), br#"{"status":2,"error":-1,"bytesUploaded":3,"size":3}"#);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusAnswer<'a> {
    /// The status code.
    pub status: UploadStatus,
    /// The error code.
    pub error: FileError,
    /// Bytes received.
    pub bytes_uploaded: u64,
    /// The file's size.
    pub size: u64,
    /// The message for the user; the key is left out when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_message: Option<&'a str>,
    /// The digest of the stored bytes (`sha-256=:<base64>:`), when computed; left out when
    /// `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<&'a str>,
}

impl StatusAnswer<'_> {
    /// The answer for a key the registry does not know: status 3, error 5.
    pub const NO_SUCH_FILE: StatusAnswer<'static> = StatusAnswer {
        status: UploadStatus::NoSuchFile,
        error: FileError::KeyFileNotFound,
        bytes_uploaded: 0,
        size: 0,
        server_message: Some(""),
        digest: None,
    };

    /// The answer as JSON bytes.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        self.write_json(&mut out);
        out
    }

    /// Appends the answer as JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing plain numbers and a string into a Vec cannot fail.
        serde_json::to_writer(out, self).expect("serialising a status answer cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_answer_always_has_a_message_field() {
        let mut info = UploadInfo::new(UploadKey::parse("k").unwrap());
        info.status = UploadStatus::Started;
        info.bytes_uploaded = 10;
        info.size = Some(100);
        let json: serde_json::Value =
            serde_json::from_slice(&info.status_answer().to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status":1,"error":-1,"bytesUploaded":10,"size":100,"serverMessage":""})
        );
    }

    #[test]
    fn bounded_fields_are_cut_at_a_char_boundary() {
        let mut info = UploadInfo::new(UploadKey::parse("k").unwrap());
        info.cid = Some("c".repeat(129));
        info.mime_type = Some(format!("{}é", "m".repeat(254)));
        info.server_message = Some("€".repeat(400));
        info.file_name = Some("n".repeat(1024));
        info.enforce_bounds();
        assert_eq!(info.cid.as_ref().unwrap().len(), 128);
        assert_eq!(info.mime_type.as_deref(), Some(&*"m".repeat(254)));
        // 341 three-byte characters fit in 1024 bytes.
        assert_eq!(info.server_message.as_deref(), Some(&*"€".repeat(341)));
        assert_eq!(info.file_name.as_ref().unwrap().len(), 1024);
    }

    #[test]
    fn a_bounded_record_is_under_3_kb_as_json() {
        let mut info = UploadInfo::new(UploadKey::parse(&"k".repeat(128)).unwrap());
        info.status = UploadStatus::ErrorUploading;
        info.error = FileError::FileWriting;
        info.bytes_uploaded = u64::MAX;
        info.size = Some(u64::MAX);
        info.cid = Some("c".repeat(10_000));
        info.mime_type = Some("m".repeat(10_000));
        info.server_message = Some("s".repeat(10_000));
        info.file_name = Some("n".repeat(10_000));
        info.finished_at = Some(SystemTime::now());
        info.enforce_bounds();
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.len() < 3_000, "{}", json.len());
    }

    #[test]
    fn only_client_caused_verdicts_are_replayed() {
        let mut info = UploadInfo::new(UploadKey::parse("k").unwrap());
        for &status in UploadStatus::ALL {
            for &error in FileError::ALL {
                info.status = status;
                info.error = error;
                let expected = match status {
                    UploadStatus::CanceledByClientCommand
                    | UploadStatus::FileSizeExceeded
                    | UploadStatus::CanceledByEvent => true,
                    UploadStatus::ErrorUploading => [0, 1, 4].contains(&error.code()),
                    _ => false,
                };
                assert_eq!(info.is_replayed_verdict(), expected, "{status} {error}");
            }
        }
    }

    #[test]
    fn reported_size_never_trails_the_bytes() {
        let mut info = UploadInfo::new(UploadKey::parse("k").unwrap());
        assert_eq!(info.reported_size(), 0);
        info.bytes_uploaded = 7;
        assert_eq!(info.reported_size(), 7);
        info.size = Some(70);
        assert_eq!(info.reported_size(), 70);
    }

    #[test]
    fn no_such_file_is_3_and_5() {
        let json: serde_json::Value =
            serde_json::from_slice(&StatusAnswer::NO_SUCH_FILE.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status":3,"error":5,"bytesUploaded":0,"size":0,"serverMessage":""})
        );
    }

    #[test]
    fn info_round_trips_through_json() {
        let mut info = UploadInfo::new(UploadKey::parse("k").unwrap());
        info.file_name = Some("a.txt".into());
        info.status = UploadStatus::Finished;
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<UploadInfo>(&json).unwrap(), info);
    }
}
