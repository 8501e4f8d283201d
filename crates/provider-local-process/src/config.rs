//! Configuration of the local-process provider.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How sandboxes are separated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Bubblewrap when `bwrap` is found and works, plain processes otherwise.
    #[default]
    Auto,
    /// Bubblewrap; building the provider fails when it is missing or does not work.
    Bubblewrap,
    /// Plain processes: no namespaces, no network policy.
    None,
}

/// Configuration of [`LocalProcessProvider`](crate::LocalProcessProvider). `{}` gives a
/// working default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalProcessConfig {
    /// Where sandboxes and snapshots live. Default: `$XDG_STATE_HOME/sandkit/local-process`,
    /// or `~/.local/state/sandkit/local-process`.
    pub state_dir: Option<PathBuf>,
    /// Bubblewrap or plain processes.
    pub isolation: Isolation,
    /// Lifetime of a sandbox whose spec sets none, in seconds.
    pub default_lifetime_secs: u64,
    /// The `bwrap` binary; default: `bwrap` on `PATH`. Its absolute path is recorded
    /// with each sandbox, so later callers never run one without it.
    pub bwrap_path: Option<PathBuf>,
    /// The `pasta` binary (Debian's `passt`) that gives sandboxes outbound network;
    /// default: `pasta` on `PATH`. Without it, sandboxes have loopback only.
    pub pasta_path: Option<PathBuf>,
    /// Say on standard error, once per process, that commands run without isolation
    /// when bubblewrap is missing. On by default.
    pub warn_unisolated: bool,
}

impl Default for LocalProcessConfig {
    fn default() -> Self {
        Self {
            state_dir: None,
            isolation: Isolation::Auto,
            default_lifetime_secs: 3600,
            bwrap_path: None,
            pasta_path: None,
            warn_unisolated: true,
        }
    }
}

impl LocalProcessConfig {
    /// The state directory this configuration names, with the XDG default applied.
    pub fn resolved_state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("sandkit-state"));
        base.join("sandkit").join("local-process")
    }
}
