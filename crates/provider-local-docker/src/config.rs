//! Configuration of the local-docker provider.

use sandkit_core::GpuKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Linux capabilities a sandbox keeps by default: enough for package managers and for
/// commands that change file ownership or drop privileges, and nothing that reaches the
/// kernel or the network stack beyond that (no `NET_RAW`, `MKNOD`, `SYS_*`, `AUDIT_*`).
pub const DEFAULT_CAPABILITIES: [&str; 8] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
];

/// Configuration of [`LocalDockerProvider`](crate::LocalDockerProvider). `{}` gives a
/// working default: the engine at `DOCKER_HOST` (or `/var/run/docker.sock`), runc, and
/// `debian:bookworm-slim` when a spec names no image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalDockerConfig {
    /// Engine address such as `unix:///var/run/docker.sock` or `tcp://127.0.0.1:2375`.
    /// `None` uses `DOCKER_HOST`, then the default socket.
    pub host: Option<String>,
    /// Image (registry reference) used when a spec names none.
    pub default_image: String,
    /// OCI runtime for sandboxes, e.g. `runsc` for gVisor; `None` is the engine's default
    /// (usually `runc`). Building the provider fails when the engine does not know it.
    pub runtime: Option<String>,
    /// Most processes one sandbox may run (the cgroup pids limit).
    pub pids_limit: u32,
    /// Linux capabilities sandboxes keep; every other one is dropped.
    pub capabilities: Vec<String>,
    /// Run a small init (`docker-init`, i.e. tini) as process 1, so processes orphaned
    /// by commands are reaped instead of piling up as zombies against the pids limit.
    pub init: bool,
    /// Lifetime of a sandbox whose spec sets none, in seconds; `None` keeps it until it
    /// is terminated.
    pub default_lifetime_secs: Option<u64>,
    /// How long one engine API request may take before it fails, in seconds (streams
    /// such as command output are not limited by this).
    pub request_timeout_secs: u64,
    /// GPU models installed on the engine's host. GPUs are offered only when the engine
    /// also reports the `nvidia` runtime; the engine API cannot tell the model itself.
    pub gpu_kinds: Vec<GpuKind>,
    /// How many GPUs the host has (with `gpu_kinds`).
    pub gpu_count: u32,
    /// Most sandboxes the engine may hold at once (running or paused, whoever created
    /// them); `create` refuses more with `ResourceLimitExceeded`, and `capacity` reports
    /// how many still fit. `None` sets no limit, and then there is no capacity query: the
    /// engine has no count of sandboxes that still fit to give.
    pub max_sandboxes: Option<u32>,
    /// Run sandkit's agent as each sandbox's init (a read-only bind mount of a host
    /// binary; the image is not changed): commands start in about a millisecond, output
    /// moves at a pipe's speed, and signals, terminals, file watching, usage and
    /// timeouts enforced inside the sandbox come with it. It needs an engine on this
    /// host and the `runc` runtime; otherwise, or with `false`, commands go through the
    /// Engine exec API.
    pub agent: bool,
    /// Where the agent's binary and sockets go on this host; `None` is
    /// `$XDG_RUNTIME_DIR/sandkit/local-docker`, or `/run/sandkit/local-docker` for root.
    pub agent_dir: Option<std::path::PathBuf>,
}

impl Default for LocalDockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            default_image: "debian:bookworm-slim".to_owned(),
            runtime: None,
            pids_limit: 512,
            capabilities: DEFAULT_CAPABILITIES.map(str::to_owned).to_vec(),
            init: true,
            default_lifetime_secs: Some(3600),
            request_timeout_secs: 120,
            gpu_kinds: Vec::new(),
            gpu_count: 0,
            max_sandboxes: None,
            agent: true,
            agent_dir: None,
        }
    }
}

impl LocalDockerConfig {
    /// The engine address this configuration names: `host`, else `DOCKER_HOST`, else
    /// the default Unix socket.
    pub fn resolved_host(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
    }
}
