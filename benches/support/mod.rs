//! Helpers of the `upload` benchmark: see `BENCHMARKS.md` at the repository root.

pub(crate) mod args;
pub(crate) mod client;
pub(crate) mod inproc;
pub(crate) mod load;
pub(crate) mod nginx;
pub(crate) mod procfs;
pub(crate) mod report;
pub(crate) mod server;
