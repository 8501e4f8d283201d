//! The host side of execs: process trees and out-of-memory counters in /proc and /sys.

use super::*;

/// `pid ppid pgrp session` of every process on this host.
pub(super) fn process_table() -> std::io::Result<Vec<[i32; 4]>> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end while we read; skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp session ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok());
        if let (Some(ppid), Some(pgrp), Some(session)) = (number(1), number(2), number(3)) {
            table.push([pid, ppid, pgrp, session]);
        }
    }
    Ok(table)
}

/// Whether host process `pid` belongs to the container (its cgroup names the id).
pub(super) fn in_container(pid: i32, container_id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|cgroups| cgroups.contains(container_id))
}

/// SIGKILLs host process `root`, every process in its session and process group, and
/// every descendant of those, in rounds until none is left: a process that forks while
/// the tree is being killed is caught by the next round. Only processes of the container
/// are touched. A process that left the session and was re-parented away escapes, as it
/// would from any process-tree kill.
pub(super) fn kill_process_tree(root: i32, container_id: &str) -> std::io::Result<()> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    for _ in 0..50 {
        let victims = process_tree(root, container_id)?;
        if victims.is_empty() {
            return Ok(());
        }
        for pid in &victims {
            // ESRCH: it ended on its own meanwhile.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(std::io::Error::other(
        "processes kept appearing after 50 rounds of killing",
    ))
}

/// Sends `signal` once to host process `root` and the rest of its tree (as
/// [`kill_process_tree`] finds it): what the command does with it is its own business.
pub(super) fn signal_process_tree(
    root: i32,
    container_id: &str,
    signal: nix::sys::signal::Signal,
) -> std::io::Result<()> {
    for pid in process_tree(root, container_id)? {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
    Ok(())
}

/// Host process `root`, every process in its session and process group, and every
/// descendant of those, that belong to the container (none once `root` is gone, or its
/// id was reused by a process that is not ours).
fn process_tree(root: i32, container_id: &str) -> std::io::Result<HashSet<i32>> {
    if !in_container(root, container_id) {
        return Ok(HashSet::new());
    }
    {
        let table = process_table()?;
        let mut victims: HashSet<i32> = table
            .iter()
            .filter(|[pid, _, pgrp, session]| *pid == root || *pgrp == root || *session == root)
            .map(|[pid, ..]| *pid)
            .collect();
        let children: HashMap<i32, Vec<i32>> =
            table
                .iter()
                .fold(HashMap::new(), |mut map, [pid, ppid, ..]| {
                    map.entry(*ppid).or_default().push(*pid);
                    map
                });
        let mut queue: Vec<i32> = victims.iter().copied().collect();
        while let Some(pid) = queue.pop() {
            for child in children.get(&pid).into_iter().flatten() {
                if victims.insert(*child) {
                    queue.push(*child);
                }
            }
        }
        victims.retain(|pid| in_container(*pid, container_id));
        Ok(victims)
    }
}

/// The sandbox's out-of-memory kill counter, when this host can read it.
pub(crate) fn oom_kills(engine: &Engine, meta: &Meta) -> Option<u64> {
    if !engine.shares_processes {
        return None;
    }
    let file = oom_counter_file(&meta.container_id)?;
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Where the memory cgroup of a container keeps its `oom_kill` counter: cgroup v2's
/// `memory.events`, or v1's `memory.oom_control`, under the usual driver layouts.
pub(super) fn oom_counter_file(container_id: &str) -> Option<PathBuf> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control"),
        format!(
            "/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/memory.oom_control"
        ),
        format!("/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.events"),
        format!("/sys/fs/cgroup/docker/{container_id}/memory.events"),
    ];
    candidates
        .into_iter()
        .map(PathBuf::from)
        .find(|path| Path::new(path).exists())
}
