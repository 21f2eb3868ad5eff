//! What the scale and soak programs measure about their own process: live
//! heap bytes (qmp-testsuite's counting global allocator), resident memory, CPU time, and
//! the open-file limit they raise.

use core::time::Duration;

// The fault suite's counting allocator: the bytes live in this process and
// their high-water mark (a peer in another process is never in the figure).
pub(crate) use qmp_testsuite::faults::{
    Counting, live_bytes as live_heap, peak_bytes as peak_heap, reset_peak,
};

/// Resident memory of this process, in bytes (`VmRSS` in `/proc/self/status`).
pub(crate) fn resident() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib.saturating_mul(1024)
}

/// This process's CPU time, every thread, user and system.
pub(crate) fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Raises the soft open-file limit to at least `want` (up to the hard
/// limit); returns the soft limit now in force.
pub(crate) fn raise_fd_limit(want: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= want {
        return soft;
    }
    let raised = limit.maximum.map_or(want, |hard| hard.min(want));
    let new = Rlimit {
        current: Some(raised),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => raised,
        Err(e) => {
            eprintln!("could not raise the open-file limit from {soft} to {raised}: {e}");
            soft
        }
    }
}

/// `bytes` in KiB, one decimal.
pub(crate) fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}
