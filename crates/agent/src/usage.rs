//! What the sandbox's processes use: cpu time from `/proc/PID/stat` (the agent's own
//! `cutime`/`cstime` hold every command it reaped, as their subreaper and parent), and
//! resident memory from `/proc/PID/statm`, summed over the agent's live descendants. The
//! peak is the largest sum seen, sampled every second and at each request, or the
//! largest ended command's own peak (`getrusage` of the children), if larger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sandkit_agent::protocol::Reply;

/// The largest resident sum seen so far, in bytes.
static PEAK: AtomicU64 = AtomicU64::new(0);

/// How often the peak is sampled between requests.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Fields 14 to 17 of `/proc/PID/stat` (utime, stime, cutime, cstime), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm, field 3 (state) is index 0, so field N is index N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some([field(14)?, field(15)?, field(16)?, field(17)?])
}

/// Resident bytes of `pid` (`statm`'s second field, in pages).
fn resident_bytes(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * rustix::param::page_size() as u64)
}

/// Resident bytes of the live `processes`, raising the peak.
fn memory(processes: &[i32]) -> u64 {
    let resident = processes.iter().map(|pid| resident_bytes(*pid)).sum();
    PEAK.fetch_max(resident, Ordering::Relaxed);
    resident
}

/// Samples the peak forever; started once.
pub fn sample_peak(descendants: fn(i32) -> Vec<i32>) {
    std::thread::spawn(move || {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        loop {
            memory(&descendants(me));
            std::thread::sleep(SAMPLE_EVERY);
        }
    });
}

/// The answer to a `usage` request.
pub fn report(descendants: fn(i32) -> Vec<i32>) -> Reply {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let processes = descendants(me);
    let ticks_per_sec = rustix::param::clock_ticks_per_second().max(1);
    // Commands the agent reaped are in its cutime and cstime; a live one's own time and
    // that of the children it reaped are in its four fields. Nothing is counted twice:
    // a child's time moves to its parent's c-fields only once the parent reaps it.
    let reaped = cpu_ticks("self").map_or(0, |[_, _, cutime, cstime]| cutime + cstime);
    let live: u64 = processes
        .iter()
        .filter_map(|pid| cpu_ticks(&pid.to_string()))
        .map(|ticks| ticks.iter().sum::<u64>())
        .sum();
    let memory_bytes = memory(&processes);
    // The largest ended command, as the kernel measured it: a short-lived one may fall
    // between two samples.
    let largest_ended =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
            .map_or(0, |usage| {
                u64::try_from(usage.max_rss()).unwrap_or(0) * 1024
            });
    Reply::Usage {
        cpu_millis: (reaped + live) * 1000 / ticks_per_sec,
        memory_bytes,
        peak_memory_bytes: PEAK
            .load(Ordering::Relaxed)
            .max(memory_bytes)
            .max(largest_ended),
        processes: u32::try_from(processes.len()).unwrap_or(u32::MAX),
    }
}
