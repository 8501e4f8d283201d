//! Detached commands: started without a client, they run on when it goes, and are found
//! again by id ([`SandboxProvider::commands`](crate::SandboxProvider::commands)) and
//! re-attached ([`SandboxProvider::attach`](crate::SandboxProvider::attach)), with their
//! output replayed from an offset.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ExitStatus;

/// A detached command, as [`SandboxProvider::commands`](crate::SandboxProvider::commands)
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandInfo {
    /// Its id within the sandbox, for `attach`.
    pub id: String,
    /// What was started.
    pub argv: Vec<String>,
    /// How it ended; `None` while it runs.
    pub exit: Option<ExitStatus>,
    /// Bytes it has written to standard output.
    pub stdout_bytes: u64,
    /// Bytes it has written to standard error.
    pub stderr_bytes: u64,
}

impl CommandInfo {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

/// Where an attach starts replaying each stream: the byte offset of the first byte to
/// send (0 replays from the start; output older than what the provider keeps is gone,
/// and the replay then starts at the oldest byte kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttachFrom {
    /// Offset into standard output.
    pub stdout: u64,
    /// Offset into standard error.
    pub stderr: u64,
}

impl AttachFrom {
    /// Only what comes from now on, as far as `info` knows.
    pub fn end_of(info: &CommandInfo) -> Self {
        Self {
            stdout: info.stdout_bytes,
            stderr: info.stderr_bytes,
        }
    }
}
