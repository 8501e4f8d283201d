//! Host processes a sandbox is made of (its supervisor, its init, its network helper),
//! each recorded with its start time so a recycled pid is never mistaken for it.

use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

/// A process, as recorded: its pid and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proc {
    /// The pid, as the host sees it.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

impl Proc {
    /// The live process `pid`.
    pub fn of(pid: i32) -> Option<Self> {
        let stat = read_stat(pid)?;
        Some(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether the recorded process still runs (a zombie does not).
    pub fn is_alive(&self) -> bool {
        read_stat(self.pid)
            .is_some_and(|stat| stat.start_time == self.start_time && stat.state != 'Z')
    }

    /// `/proc/PID` of this process, opened and checked. Lookups through the handle fail
    /// once the process is gone, so a recycled pid can never be reached through it.
    pub fn open_proc_dir(&self) -> std::io::Result<OwnedFd> {
        let dir = rustix::fs::open(
            format!("/proc/{}", self.pid),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat_fd = rustix::fs::openat(
            &dir,
            "stat",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut line = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(stat_fd), &mut line)?;
        match parse_stat(&line) {
            Some(stat) if stat.start_time == self.start_time => Ok(dir),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    /// Sends `signal`, when the process is still the recorded one.
    pub fn signal(&self, signal: Signal) {
        if self.is_alive()
            && let Some(pid) = Pid::from_raw(self.pid)
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Its live descendants, found through `/proc/PID/task/TID/children` (a walk of this
    /// tree only, never of every process on the host).
    pub fn descendants(&self) -> Vec<i32> {
        if !self.is_alive() {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut pending = vec![self.pid];
        while let Some(parent) = pending.pop() {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                    continue;
                };
                for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                    if !found.contains(&child) {
                        found.push(child);
                        pending.push(child);
                    }
                }
            }
        }
        found
    }

    /// Kills the process and its whole tree, and waits (a few seconds at most) until
    /// the process is gone.
    pub async fn kill_tree(&self) {
        for _ in 0..200 {
            if !self.is_alive() {
                return;
            }
            let tree = self.descendants();
            self.signal(Signal::KILL);
            for pid in tree.into_iter().filter_map(Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(pid = self.pid, "a sandbox process survived SIGKILL");
    }
}

/// The fields of `/proc/PID/stat` we need.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `/proc/PID/stat`; the command name may contain spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The children of `pid` (its main thread's).
pub(crate) fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.state, stat.start_time), ('S', 12345));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = Proc::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        assert!(me.open_proc_dir().is_ok());
        let impostor = Proc {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(impostor.open_proc_dir().is_err());
    }
}
