//! Counters of what a registry has seen, for export (e.g. in Prometheus' text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::UploadStatus;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    started: AtomicU64,
    /// By terminal status code.
    ended: [AtomicU64; 10],
    /// Bytes of uploads that ended (abandoned ones included).
    ended_bytes: AtomicU64,
    abandoned: AtomicU64,
    /// Requests that took up a paused resumable upload.
    resumed: AtomicU64,
    /// Requests that left a resumable upload paused.
    paused: AtomicU64,
}

impl Counters {
    pub(crate) fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, status: UploadStatus, bytes: u64) {
        self.ended[status.code() as usize].fetch_add(1, Ordering::Relaxed);
        self.ended_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An upload that never started is forgotten. It stays counted as started: counters
    /// never go down (a Prometheus counter that does reads as a restart).
    pub(crate) fn abandoned(&self, bytes: u64) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        self.ended_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A request took up a paused resumable upload: not a new upload.
    pub(crate) fn resumed(&self) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
    }

    /// A request left a resumable upload paused, with `bytes` new bytes: not an end.
    pub(crate) fn paused(&self, bytes: u64) {
        self.paused.fetch_add(1, Ordering::Relaxed);
        self.ended_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, in_flight: usize, live_bytes: u64) -> RegistryMetrics {
        RegistryMetrics {
            uploads_started: self.started.load(Ordering::Relaxed),
            uploads_abandoned: self.abandoned.load(Ordering::Relaxed),
            requests_resumed: self.resumed.load(Ordering::Relaxed),
            requests_paused: self.paused.load(Ordering::Relaxed),
            uploads_ended: std::array::from_fn(|code| self.ended[code].load(Ordering::Relaxed)),
            bytes_received: self.ended_bytes.load(Ordering::Relaxed) + live_bytes,
            in_flight: in_flight as u64,
        }
    }
}

/// A snapshot of an [`UploadRegistry`](crate::UploadRegistry)'s counters, for the uploads of
/// this process.
///
/// # Example
///
/// ```
/// use tower_upload_state::{FileError, UploadInfo, UploadKey, UploadRegistry, UploadStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = UploadRegistry::new();
/// let upload = registry.begin(UploadInfo::new(UploadKey::parse("k")?)).await?;
/// upload.add_bytes(10);
/// upload.finish(UploadStatus::Finished, FileError::None, None).await;
///
/// let metrics = registry.metrics();
/// assert_eq!(metrics.uploads_started, 1);
/// assert_eq!(metrics.ended(UploadStatus::Finished), 1);
/// assert_eq!(metrics.bytes_received, 10);
/// assert!(metrics.to_prometheus().contains("tower_upload_uploads_ended_total{status=\"finished\"} 1"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryMetrics {
    /// Uploads registered (abandoned ones included).
    pub uploads_started: u64,
    /// Uploads registered and then abandoned before they started (e.g. the other keys of a
    /// batch one of whose keys was refused); they are not counted as ended.
    pub uploads_abandoned: u64,
    /// Uploads ended, by terminal status code (index = [`UploadStatus::code`]).
    pub uploads_ended: [u64; 10],
    /// Requests that took up a paused resumable upload (tus PATCH, draft append); a
    /// resumable upload is started once, at its creation.
    pub requests_resumed: u64,
    /// Requests that left a resumable upload paused (the client will come back).
    pub requests_paused: u64,
    /// File bytes received, ended and in-flight uploads together.
    pub bytes_received: u64,
    /// Uploads streaming now.
    pub in_flight: u64,
}

impl RegistryMetrics {
    /// How many uploads ended with `status`.
    #[must_use]
    pub fn ended(&self, status: UploadStatus) -> u64 {
        self.uploads_ended[status.code() as usize]
    }

    /// The counters in Prometheus' text exposition format, prefixed `tower_upload_`.
    #[must_use]
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(1024);
        family(
            &mut out,
            "uploads_started_total",
            "counter",
            "Uploads registered.",
        );
        sample(&mut out, "uploads_started_total", "", self.uploads_started);
        family(
            &mut out,
            "uploads_abandoned_total",
            "counter",
            "Uploads registered and abandoned before they started.",
        );
        sample(
            &mut out,
            "uploads_abandoned_total",
            "",
            self.uploads_abandoned,
        );
        family(
            &mut out,
            "resumable_requests_resumed_total",
            "counter",
            "Requests that took up a paused resumable upload.",
        );
        sample(
            &mut out,
            "resumable_requests_resumed_total",
            "",
            self.requests_resumed,
        );
        family(
            &mut out,
            "resumable_requests_paused_total",
            "counter",
            "Requests that left a resumable upload paused.",
        );
        sample(
            &mut out,
            "resumable_requests_paused_total",
            "",
            self.requests_paused,
        );
        family(
            &mut out,
            "uploads_ended_total",
            "counter",
            "Uploads ended, by final status.",
        );
        for &status in UploadStatus::ALL
            .iter()
            .filter(|status| status.is_terminal())
        {
            let label = format!("{{status=\"{}\"}}", snake_case(status.name()));
            sample(&mut out, "uploads_ended_total", &label, self.ended(status));
        }
        family(
            &mut out,
            "bytes_received_total",
            "counter",
            "File bytes received.",
        );
        sample(&mut out, "bytes_received_total", "", self.bytes_received);
        family(&mut out, "in_flight", "gauge", "Uploads streaming now.");
        sample(&mut out, "in_flight", "", self.in_flight);
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family (named without its prefix).
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP tower_upload_{name} {help}");
    let _ = writeln!(out, "# TYPE tower_upload_{name} {kind}");
}

/// One sample line: `tower_upload_{name}{labels} {value}`.
fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "tower_upload_{name}{labels} {value}");
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_every_terminal_status() {
        let text = RegistryMetrics::default().to_prometheus();
        for name in [
            "finished",
            "canceled_by_client_command",
            "file_size_exceeded",
            "error_uploading",
            "canceled_by_event",
            "canceled_by_client_connection",
        ] {
            assert!(
                text.contains(&format!("{{status=\"{name}\"}} 0")),
                "{name}\n{text}"
            );
        }
        assert!(!text.contains("not_started"));
    }
}
