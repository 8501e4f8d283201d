//! Sandboxes with more than one user.
//!
//! bubblewrap maps a single user into the sandbox's user namespace. When sandkit runs as
//! root it builds the namespace itself instead, with a range of users, and hands it to
//! bubblewrap (`--userns`): uid and gid 0 stay the host's 0 (so the sandbox's files,
//! which sandkit writes as root, belong to the sandbox's root), and 1..=65535 map to an
//! unused host range, so a sandbox's users are never host accounts. Its agent then holds
//! the capabilities a container's root has, and runs each command as the user the
//! request names (see `sandkit-agent`'s `users` module).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sandkit_core::Result;

use crate::error::internal;

/// Host uid (and gid) of the sandbox's uid 1; the range has 65535 ids.
const HOST_BASE: u32 = 1_000_000_001;

/// How many ids above 0 a sandbox has.
const RANGE: u32 = 65_535;

/// What root in a sandbox may do: Docker's default set, less what a user namespace makes
/// meaningless (`MKNOD`) and file capabilities (`SETFCAP`).
pub(crate) const ROOT_CAPABILITIES: [&str; 12] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_AUDIT_WRITE",
];

/// A user namespace with a range of users, held open by a waiting process until the
/// sandbox's bubblewrap has joined it.
pub(crate) struct UserNamespace {
    holder: Child,
}

impl UserNamespace {
    /// Makes one: `unshare --user` starts a process in a new namespace, whose maps are
    /// then written from here (root may map any host id).
    pub fn new() -> Result<Self> {
        let holder = Command::new("unshare")
            .args(["--user", "--", "/bin/sh", "-c", "read line"])
            .env_clear()
            .env("PATH", crate::launch::DEFAULT_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| internal("starting `unshare --user`", e))?;
        let namespace = Self { holder };
        namespace.map_ids()?;
        Ok(namespace)
    }

    /// The namespace, as a path bubblewrap's supervisor opens.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/user", self.holder.id()))
    }

    fn map_ids(&self) -> Result<()> {
        let ours = std::fs::read_link("/proc/self/ns/user").ok();
        let started = Instant::now();
        // `unshare` is in its namespace once its link differs from ours.
        while std::fs::read_link(self.path()).ok() == ours {
            if started.elapsed() > Duration::from_secs(5) {
                return Err(internal(
                    "waiting for `unshare --user`",
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let map = format!("0 0 1\n1 {HOST_BASE} {RANGE}\n");
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{}/{file}", self.holder.id());
            // One write: the kernel takes a map whole or not at all.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut out| out.write_all(map.as_bytes()))
                .map_err(|e| internal(format!("writing {path}"), e))?;
        }
        Ok(())
    }
}

impl Drop for UserNamespace {
    fn drop(&mut self) {
        // The holder reads its stdin until it closes; a kill covers a stuck one.
        drop(self.holder.stdin.take());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Whether sandboxes here can have more than one user: sandkit runs as root and can
/// make a user namespace with a range of ids. Checked once per process.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| rustix::process::geteuid().is_root() && UserNamespace::new().is_ok())
}
