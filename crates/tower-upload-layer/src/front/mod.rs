//! Protocol front-ends: each turns one protocol's requests into file parts of the
//! [pipeline](crate::pipeline) and answers in its protocol's terms. Today: `multipart`
//! (igUpload, HTML forms, any `multipart/form-data` client), `tus` (tus 1.0.0) and `draft` (the
//! IETF resumable-upload draft, served by translating it to tus).

pub(crate) mod draft;
pub(crate) mod multipart;
pub(crate) mod tus;

use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::file::{blocking, sweep_orphans};

/// Starts an orphan sweep of the temp folder when one is due (first upload, then once per
/// [`orphan_age`](crate::UploadLayer::orphan_age)): after a crash and a prompt restart, the
/// crash's temp files are younger than the age at the first sweep.
pub(crate) fn sweep_when_due(config: &Config) {
    let now = now_millis();
    let due = config.next_sweep.load(Ordering::Relaxed);
    let next = now.saturating_add(config.orphan_age.as_millis() as u64);
    if now < due
        || config
            .next_sweep
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let dir = config.temp_dir();
    let min_age = config.orphan_age;
    tokio::spawn(blocking(move || sweep_orphans(&dir, min_age)));
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
