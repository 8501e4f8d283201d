//! Process groups of a sandbox: finding every process of a tree through `/proc`, and
//! signalling it.
//!
//! Every process a sandbox starts leads its own process group, recorded with the
//! leader's start time. A recorded group is only signalled when it is still the same
//! group: Linux never reuses a pid while it is some group's id, so a group whose leader
//! is gone is safe to signal, and one whose leader is alive is ours only if the start
//! time matches.

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process group started for a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Group {
    /// The group id (the pid of its leader).
    pub pgid: i32,
    /// The leader's start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl Group {
    /// The group led by `pid`, which must have just been started.
    pub fn of_leader(pid: i32) -> Self {
        let start_time = read_stat(pid).map_or(0, |stat| stat.start_time);
        Self {
            pgid: pid,
            start_time,
        }
    }

    /// Whether the group is still the one that was recorded (see the module docs).
    fn is_ours(&self) -> bool {
        match read_stat(self.pgid) {
            Some(stat) => stat.start_time == self.start_time,
            None => true,
        }
    }
}

/// The groups of `groups` that still have a live (non-zombie) member, with one scan of
/// `/proc`.
pub(crate) fn live_groups(groups: &[Group]) -> Vec<Group> {
    let pgrps: BTreeSet<i32> = all_processes()
        .into_iter()
        .filter(|stat| stat.state != 'Z')
        .map(|stat| stat.pgrp)
        .collect();
    groups
        .iter()
        .filter(|group| pgrps.contains(&group.pgid) && group.is_ours())
        .copied()
        .collect()
}

/// One line of `/proc/PID/stat`, the fields we need.
#[derive(Debug, Clone, Copy)]
struct Stat {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    state: char,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &line)
}

/// Parses `/proc/PID/stat`; the command name may contain spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(pid: i32, line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn all_processes() -> Vec<Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// Live processes of `groups` (those still ours) and all their descendants, parents
/// before children.
pub(crate) fn tree(groups: &[Group]) -> Vec<i32> {
    let pgids: BTreeSet<i32> = groups
        .iter()
        .filter(|group| group.is_ours())
        .map(|group| group.pgid)
        .collect();
    if pgids.is_empty() {
        return Vec::new();
    }
    let processes: Vec<Stat> = all_processes()
        .into_iter()
        .filter(|stat| stat.state != 'Z')
        .collect();
    let mut found: Vec<i32> = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        let before = found.len();
        for stat in &processes {
            if !seen.contains(&stat.pid)
                && (pgids.contains(&stat.pgrp) || seen.contains(&stat.ppid))
            {
                seen.insert(stat.pid);
                found.push(stat.pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Sends `signal` to every process of `groups` and their descendants.
pub(crate) fn signal_tree(groups: &[Group], signal: Signal) {
    let pids = tree(groups);
    for group in groups.iter().filter(|group| group.is_ours()) {
        // ESRCH means the group is already gone: nothing to do.
        let _ = killpg(Pid::from_raw(group.pgid), signal);
    }
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Stops every process of `groups`. Repeats until no new process appears, so a fork
/// racing with the stop is caught too.
pub(crate) fn stop_tree(groups: &[Group]) {
    let mut stopped = BTreeSet::new();
    for _ in 0..10 {
        let pids = tree(groups);
        let fresh: Vec<i32> = pids.into_iter().filter(|p| !stopped.contains(p)).collect();
        if fresh.is_empty() {
            return;
        }
        for pid in fresh {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }
}

/// Kills every process of `groups` and their descendants, and waits (up to a few
/// seconds) until none is left.
pub(crate) async fn kill_tree(groups: &[Group]) {
    for _ in 0..100 {
        let pids = tree(groups);
        if pids.is_empty() {
            return;
        }
        for group in groups.iter().filter(|group| group.is_ours()) {
            let _ = killpg(Pid::from_raw(group.pgid), Signal::SIGKILL);
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(?groups, "processes survived SIGKILL");
}

/// Live processes whose environment carries `SANDKIT_SANDBOX_ID=<id>`: every process a
/// sandbox starts does, so this finds those that left their group and lost their parent.
pub(crate) fn marked(id: &str) -> Vec<i32> {
    let marker = format!("SANDKIT_SANDBOX_ID={id}");
    all_processes()
        .into_iter()
        .filter(|stat| stat.state != 'Z')
        .filter(|stat| {
            std::fs::read(format!("/proc/{}/environ", stat.pid))
                .is_ok_and(|environ| environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
        })
        .map(|stat| stat.pid)
        .collect()
}

/// Kills every process of sandbox `id`: its groups, their descendants, and the marked
/// stragglers; waits (up to a few seconds) until none is left.
pub(crate) async fn kill_sandbox(id: &str, groups: &[Group]) {
    kill_tree(groups).await;
    for _ in 0..100 {
        let stragglers = marked(id);
        if stragglers.is_empty() {
            return;
        }
        for pid in stragglers {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 0 0";
        let stat = parse_stat(42, line).unwrap();
        assert_eq!(
            (stat.ppid, stat.pgrp, stat.state, stat.start_time),
            (1, 42, 'S', 12345)
        );
    }

    #[test]
    fn this_process_is_found_in_its_own_group() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).unwrap();
        let group = Group {
            pgid: stat.pgrp,
            start_time: read_stat(stat.pgrp).map_or(0, |s| s.start_time),
        };
        assert!(tree(&[group]).contains(&me));
    }
}
