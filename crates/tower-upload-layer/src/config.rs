//! What an [`UploadLayer`](crate::UploadLayer) is configured with.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_upload_state::UploadRegistry;

use crate::events::Events;
use crate::sink::UploadSink;

/// The default URL path the layer intercepts.
pub const DEFAULT_UPLOAD_PATH: &str = "/upload";
/// The default largest file: 4 MiB, as igUpload's `maxFileSizeLimit`.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;
/// The default most file parts (and keys) in one request.
pub const DEFAULT_MAX_FILES_PER_REQUEST: usize = 32;
/// The default most upload requests streaming at once.
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 256;
/// The default most bytes of one part's headers (and of the preamble before the first part).
pub const DEFAULT_MAX_PART_HEADER_SIZE: usize = 16 * 1024;
/// The default most non-file form fields in one request.
pub const DEFAULT_MAX_FIELDS: usize = 64;
/// The default most bytes of one non-file form field.
pub const DEFAULT_MAX_FIELD_SIZE: usize = 64 * 1024;
/// The default write batch: received chunks are gathered up to this many bytes and written
/// with one vectored write.
pub const DEFAULT_BUFFER_SIZE: usize = 256 * 1024;
/// The default time a request body may stay silent before the upload is cut off.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default minimum transfer rate: 1 KiB/s over a minute of waiting for the body. A client
/// below it holds a permit and a temp file for nothing (slowloris).
pub const DEFAULT_MIN_TRANSFER_RATE: (u64, Duration) = (1024, Duration::from_secs(60));
/// The default age past which a temp file that no upload holds is an orphan to delete.
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);
/// The name of the temp folder made inside the upload folder when none is configured.
pub const DEFAULT_TEMP_SUBDIR: &str = ".tower-upload-tmp";

/// What to do when a file with the final name already exists in the upload folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverwritePolicy {
    /// Replace the existing file (igUpload's behaviour).
    Overwrite,
    /// Keep both: the new file gets a free name, `report (1).pdf`, `report (2).pdf`, ...
    #[default]
    UniqueSuffix,
    /// Refuse the upload: status 6 / error 6 (`FileSaving`), HTTP 409.
    Reject,
}

/// Which MIME types a file part may declare.
///
/// Parsed from igUpload's `allowedMIMEType` form: `*` for any, or a list separated by `|`
/// (`,` and whitespace work too). An entry `image/*` allows every subtype. Matching ignores
/// ASCII case and parameters (`; charset=...`).
///
/// # Example
///
/// ```
/// use tower_upload_layer::MimeFilter;
///
/// let filter: MimeFilter = "image/*|application/pdf".parse().unwrap();
/// assert!(filter.allows("image/png"));
/// assert!(filter.allows("Application/PDF; x=y"));
/// assert!(!filter.allows("text/html"));
/// assert!(MimeFilter::any().allows("anything/at-all"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MimeFilter {
    /// Lower-cased entries; empty means any.
    allowed: Vec<String>,
}

impl MimeFilter {
    /// Allows every type.
    #[must_use]
    pub fn any() -> Self {
        Self::default()
    }

    /// Whether `mime_type` (as declared in a part's `Content-Type`) is allowed.
    #[must_use]
    pub fn allows(&self, mime_type: &str) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        let essence = crate::mime::essence(mime_type);
        self.allowed
            .iter()
            .any(|entry| match entry.strip_suffix("/*") {
                Some(top) => essence
                    .split_once('/')
                    .is_some_and(|(candidate, _)| candidate.eq_ignore_ascii_case(top)),
                None => essence.eq_ignore_ascii_case(entry),
            })
    }

    /// Whether every type is allowed.
    #[must_use]
    pub fn is_any(&self) -> bool {
        self.allowed.is_empty()
    }
}

impl fmt::Display for MimeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            f.write_str("*")
        } else {
            f.write_str(&self.allowed.join(", "))
        }
    }
}

impl std::str::FromStr for MimeFilter {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entries: Vec<String> = text
            .split(|c: char| c == '|' || c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        if entries.iter().any(|entry| entry == "*" || entry == "*/*") {
            return Ok(Self::any());
        }
        Ok(Self { allowed: entries })
    }
}

impl<S: AsRef<str>> FromIterator<S> for MimeFilter {
    fn from_iter<I: IntoIterator<Item = S>>(entries: I) -> Self {
        let joined: Vec<String> = entries.into_iter().map(|e| e.as_ref().to_owned()).collect();
        joined.join("|").parse().unwrap_or_default()
    }
}

/// How results are forwarded to the application.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Forwarding {
    /// The layer answers failed requests itself; the application sees successes only.
    pub(crate) answer_refusals: bool,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) registry: UploadRegistry,
    pub(crate) upload_path: String,
    pub(crate) upload_dir: PathBuf,
    pub(crate) temp_dir: Option<PathBuf>,
    pub(crate) max_file_size: Option<u64>,
    pub(crate) max_request_size: Option<u64>,
    pub(crate) max_files_per_request: usize,
    pub(crate) max_concurrent_uploads: usize,
    pub(crate) max_part_header_size: usize,
    pub(crate) max_fields: usize,
    pub(crate) max_field_size: usize,
    pub(crate) allowed_mime_types: MimeFilter,
    pub(crate) sniff_mime_types: bool,
    pub(crate) buffer_size: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) min_transfer_rate: Option<(u64, Duration)>,
    pub(crate) overwrite: OverwritePolicy,
    pub(crate) durable: bool,
    pub(crate) file_mode: Option<u32>,
    pub(crate) orphan_age: Duration,
    pub(crate) events: Option<Arc<Events>>,
    pub(crate) sink: UploadSink,
    /// Where a finished upload request is sent with 303 See Other instead of a JSON answer.
    pub(crate) redirect: Option<String>,
    /// `Some` in forward mode: the inner service answers from the results.
    pub(crate) forward: Option<Forwarding>,
    /// The digest computed for every file, if any.
    pub(crate) digest: Option<crate::DigestAlgorithm>,
    /// Shared by every clone of the layer and its services.
    pub(crate) limiter: Arc<Semaphore>,
    /// When the next orphan sweep is due, in milliseconds since the Unix epoch (0: now).
    pub(crate) next_sweep: Arc<AtomicU64>,
    /// Resumable uploads (tus 1.0, the IETF draft); `None` when off.
    pub(crate) resumable: Option<ResumableConfig>,
}

/// The default time an unfinished resumable upload is kept after its last request.
pub const DEFAULT_RESUMABLE_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The name of the folder, inside the temp folder, that holds resumable uploads' files.
pub const RESUMABLE_SUBDIR: &str = "resumable";

/// How resumable uploads are served.
#[derive(Clone, Debug)]
pub(crate) struct ResumableConfig {
    /// The URL path of the upload collection, ending with `/` (uploads are `{path}{id}`).
    pub(crate) path: String,
    /// How long an unfinished upload is kept after its last request; `None`: until finished
    /// or terminated.
    pub(crate) expiration: Option<Duration>,
    /// When the next expiration sweep is due, in milliseconds since the Unix epoch.
    pub(crate) next_sweep: Arc<AtomicU64>,
}

impl Config {
    /// The folder of resumable uploads' files.
    pub(crate) fn resumable_dir(&self) -> PathBuf {
        self.temp_dir().join(RESUMABLE_SUBDIR)
    }
}

impl Config {
    pub(crate) fn new(registry: UploadRegistry) -> Self {
        Self {
            registry,
            upload_path: DEFAULT_UPLOAD_PATH.to_owned(),
            upload_dir: std::env::temp_dir().join("tower-upload"),
            temp_dir: None,
            max_file_size: Some(DEFAULT_MAX_FILE_SIZE),
            max_request_size: None,
            max_files_per_request: DEFAULT_MAX_FILES_PER_REQUEST,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
            max_part_header_size: DEFAULT_MAX_PART_HEADER_SIZE,
            max_fields: DEFAULT_MAX_FIELDS,
            max_field_size: DEFAULT_MAX_FIELD_SIZE,
            allowed_mime_types: MimeFilter::any(),
            sniff_mime_types: false,
            buffer_size: DEFAULT_BUFFER_SIZE,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            min_transfer_rate: Some(DEFAULT_MIN_TRANSFER_RATE),
            overwrite: OverwritePolicy::default(),
            durable: false,
            file_mode: None,
            orphan_age: DEFAULT_ORPHAN_AGE,
            events: None,
            sink: UploadSink::Disk,
            redirect: None,
            forward: None,
            digest: None,
            limiter: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_UPLOADS)),
            next_sweep: Arc::new(AtomicU64::new(0)),
            resumable: None,
        }
    }

    pub(crate) fn temp_dir(&self) -> PathBuf {
        self.temp_dir
            .clone()
            .unwrap_or_else(|| self.upload_dir.join(DEFAULT_TEMP_SUBDIR))
    }

    /// The largest body a request with `files` file parts can legitimately have under the
    /// configured limits, or `None` when no limit bounds it. A `Content-Length` above it
    /// proves the request too large before a byte is read.
    pub(crate) fn request_limit(&self, files: usize) -> Option<u64> {
        let derived = self.max_file_size.map(|max_file| {
            let files = files as u64;
            let fields = self.max_fields as u64;
            // Every part: its headers, a boundary line and CRLFs (boundaries are at most 70
            // bytes by RFC 2046), plus the preamble and the closing boundary.
            let per_part = self.max_part_header_size as u64 + 80;
            max_file
                .saturating_mul(files)
                .saturating_add(fields.saturating_mul(self.max_field_size as u64))
                .saturating_add((files + fields + 2).saturating_mul(per_part))
        });
        match (self.max_request_size, derived) {
            (Some(explicit), Some(derived)) => Some(explicit.min(derived)),
            (explicit, derived) => explicit.or(derived),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("upload_path", &self.upload_path)
            .field("upload_dir", &self.upload_dir)
            .field("temp_dir", &self.temp_dir())
            .field("max_file_size", &self.max_file_size)
            .field("max_request_size", &self.max_request_size)
            .field("max_files_per_request", &self.max_files_per_request)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("max_part_header_size", &self.max_part_header_size)
            .field("max_fields", &self.max_fields)
            .field("max_field_size", &self.max_field_size)
            .field("allowed_mime_types", &self.allowed_mime_types)
            .field("sniff_mime_types", &self.sniff_mime_types)
            .field("buffer_size", &self.buffer_size)
            .field("idle_timeout", &self.idle_timeout)
            .field("min_transfer_rate", &self.min_transfer_rate)
            .field("overwrite", &self.overwrite)
            .field("durable", &self.durable)
            .field("file_mode", &self.file_mode)
            .field("orphan_age", &self.orphan_age)
            .field("events", &self.events)
            .field("sink", &self.sink)
            .field("redirect", &self.redirect)
            .field("forward", &self.forward)
            .field("digest", &self.digest)
            .field("resumable", &self.resumable)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_filter_parses_igupload_lists() {
        let filter: MimeFilter = "image/png | image/jpeg,application/pdf".parse().unwrap();
        assert!(filter.allows("image/png"));
        assert!(filter.allows("IMAGE/JPEG"));
        assert!(filter.allows("application/pdf"));
        assert!(!filter.allows("image/gif"));
        assert!(!filter.allows(""));
        assert!("*".parse::<MimeFilter>().unwrap().is_any());
        assert!("".parse::<MimeFilter>().unwrap().is_any());
        assert!("image/png|*".parse::<MimeFilter>().unwrap().is_any());
        let wildcard: MimeFilter = ["text/*"].into_iter().collect();
        assert!(wildcard.allows("text/plain; charset=utf-8"));
        assert!(!wildcard.allows("textual/plain"));
        assert!(!wildcard.allows("text"));
    }

    #[test]
    fn request_limit_is_derived_from_the_file_limit() {
        let mut config = Config::new(UploadRegistry::new());
        let one = config.request_limit(1).unwrap();
        assert!(one > DEFAULT_MAX_FILE_SIZE);
        assert!(config.request_limit(2).unwrap() > one + DEFAULT_MAX_FILE_SIZE - 1);
        config.max_request_size = Some(1000);
        assert_eq!(config.request_limit(1), Some(1000));
        config.max_file_size = None;
        assert_eq!(config.request_limit(1), Some(1000));
        config.max_request_size = None;
        assert_eq!(config.request_limit(1), None);
    }
}
