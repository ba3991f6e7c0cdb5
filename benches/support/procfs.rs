//! What `/proc` says about a process: CPU time and resident memory.

use std::fs;
use std::time::Duration;

/// `utime` and `stime` are counted in clock ticks of `USER_HZ`, which the Linux ABI fixes at
/// 100 per second on every architecture it supports.
const USER_HZ: f64 = 100.0;

/// User and system CPU time of process `pid` (all its threads, exited ones included), in
/// seconds, with a resolution of 10 ms.
pub(crate) fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces; fields after it are fixed.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is index 0 here, so utime (14) is 11 and stime (15) is 12.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) as f64 / USER_HZ, ticks(12) as f64 / USER_HZ)
}

/// Minor page faults of process `pid` so far (all its threads, exited ones included).
pub(crate) fn minor_faults(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Field 10 (minflt) is index 7 after the name.
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}

/// A `Vm*` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
pub(crate) fn vm_bytes(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?;
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Resets `VmHWM` to the current `VmRSS` (writing 5 to `clear_refs`, Linux 4.0+), so that the
/// next peak is the peak of what follows. Returns whether the kernel took it.
pub(crate) fn reset_peak_rss(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time the calling thread has run, from `/proc/thread-self/schedstat` (nanoseconds).
pub(crate) fn thread_cpu() -> Duration {
    let text = fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}
