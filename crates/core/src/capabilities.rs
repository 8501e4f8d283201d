//! What a provider can do, as plain data.
//!
//! A provider fills a [`Capabilities`] with `..Default::default()` for everything it does not
//! offer. The defaults are the most conservative answers: nothing supported, no limits
//! known.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How the caller reaches the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// On this machine (processes, a local engine).
    #[default]
    Local,
    /// The caller dials in to a remote service.
    DialIn,
    /// The sandbox dials out to the caller.
    DialOut,
}

/// How strongly sandboxes are separated from the host and each other, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Plain processes on the host.
    #[default]
    None,
    /// Linux namespaces (mount, pid, network) without a container runtime.
    Namespaces,
    /// An OCI container runtime such as runc.
    Container,
    /// A user-space kernel such as gVisor.
    UserSpaceKernel,
    /// A micro-VM such as Firecracker.
    MicroVm,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Namespaces => "namespaces",
            Self::Container => "container",
            Self::UserSpaceKernel => "user-space-kernel",
            Self::MicroVm => "micro-vm",
        })
    }
}

impl FromStr for Isolation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "none" => Self::None,
            "namespaces" => Self::Namespaces,
            "container" => Self::Container,
            "user-space-kernel" | "gvisor" => Self::UserSpaceKernel,
            "micro-vm" => Self::MicroVm,
            other => {
                return Err(Error::invalid_spec(
                    "isolation",
                    format!(
                        "unknown isolation `{other}`; expected none, namespaces, container, user-space-kernel or micro-vm"
                    ),
                ));
            }
        })
    }
}

/// Whether pause/resume is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PauseSupport {
    /// Not offered.
    #[default]
    No,
    /// Offered as a preview with caveats.
    Preview,
    /// Offered.
    Yes,
}

/// Where an exec timeout is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TimeoutEnforcement {
    /// Exec timeouts are not supported.
    #[default]
    None,
    /// The client kills the command; a client crash leaves it running.
    Client,
    /// The provider (or a supervisor independent of the client) kills the command.
    Server,
}

/// What outbound traffic a sandbox gets when the spec says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EgressDefault {
    /// Outbound traffic is allowed.
    #[default]
    AllowAll,
    /// Outbound traffic is blocked.
    DenyAll,
}

/// What an idle (running but unused) sandbox costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IdleCost {
    /// Nothing.
    #[default]
    Zero,
    /// Only its storage.
    StorageOnly,
    /// Metered like a busy one.
    Metered,
}

/// How usage is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BillingModel {
    /// Not billed (local providers).
    #[default]
    None,
    /// By wall-clock lifetime.
    WallClock,
    /// By cpu time actually used.
    ActiveCpu,
    /// Per invocation.
    Invocation,
    /// A fixed price.
    Fixed,
}

/// Operating systems a provider runs sandboxes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Os {
    /// Linux.
    Linux,
    /// macOS.
    Macos,
    /// Windows.
    Windows,
}

/// CPU architectures a provider runs sandboxes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
}

impl Os {
    /// The OS this program runs on.
    pub fn host() -> Vec<Os> {
        match std::env::consts::OS {
            "linux" => vec![Os::Linux],
            "macos" => vec![Os::Macos],
            "windows" => vec![Os::Windows],
            _ => Vec::new(),
        }
    }
}

impl Arch {
    /// The architecture this program runs on.
    pub fn host() -> Vec<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => vec![Arch::X86_64],
            "aarch64" => vec![Arch::Aarch64],
            _ => Vec::new(),
        }
    }
}

/// GPU models that providers offer, under the names Modal and most clouds use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum GpuKind {
    /// NVIDIA T4.
    T4,
    /// NVIDIA L4.
    L4,
    /// NVIDIA A10G.
    A10G,
    /// NVIDIA L40S.
    L40S,
    /// NVIDIA A100 with 40 GB.
    #[serde(rename = "A100-40GB")]
    A100_40GB,
    /// NVIDIA A100 with 80 GB.
    #[serde(rename = "A100-80GB")]
    A100_80GB,
    /// NVIDIA H100.
    H100,
    /// NVIDIA H200.
    H200,
    /// NVIDIA B200.
    B200,
}

impl GpuKind {
    /// Every kind, in a stable order.
    pub const ALL: [GpuKind; 9] = [
        Self::T4,
        Self::L4,
        Self::A10G,
        Self::L40S,
        Self::A100_40GB,
        Self::A100_80GB,
        Self::H100,
        Self::H200,
        Self::B200,
    ];

    /// The canonical name, e.g. `A100-40GB`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::T4 => "T4",
            Self::L4 => "L4",
            Self::A10G => "A10G",
            Self::L40S => "L40S",
            Self::A100_40GB => "A100-40GB",
            Self::A100_80GB => "A100-80GB",
            Self::H100 => "H100",
            Self::H200 => "H200",
            Self::B200 => "B200",
        }
    }
}

impl fmt::Display for GpuKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GpuKind {
    type Err = Error;
    /// Parses a GPU name case-insensitively (`h100`, `A100-80GB`, `a100_40gb`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let wanted = s.trim().to_ascii_uppercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == wanted)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid_spec(
                    "gpu.kind",
                    format!("unknown GPU `{s}`; known kinds: {}", known.join(", ")),
                )
            })
    }
}

/// Public prices, used to estimate what a sandbox costs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PriceSheet {
    /// ISO currency code, e.g. `USD`.
    pub currency: String,
    /// Price of one cpu core for one second.
    pub cpu_core_second: f64,
    /// Price of one GiB of memory for one second.
    pub memory_gib_second: f64,
    /// Price of one GPU of each kind for one second.
    pub gpu_second: BTreeMap<GpuKind, f64>,
    /// Multipliers applied when a region is requested, keyed by region name or prefix.
    pub region_multipliers: BTreeMap<String, f64>,
    /// Where the prices come from, and when they were read.
    pub source: String,
}

/// Everything a provider (instance) can do. Plain data: compare it, print it, serialise it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Capabilities {
    /// How the caller reaches sandboxes.
    pub transport: Transport,
    /// How strongly sandboxes are isolated.
    pub isolation: Isolation,

    /// Filesystem snapshots that can be restored into a new sandbox.
    pub fs_snapshot: bool,
    /// Pause and resume.
    pub pause: PauseSupport,
    /// Whether a paused sandbox keeps its memory (processes survive), not only its disk.
    pub pause_keeps_memory: bool,

    /// The provider can report free capacity.
    pub capacity_query: bool,
    /// Most sandboxes that may run at once; `None` means unknown, never "unlimited".
    pub max_concurrent: Option<u32>,
    /// Longest lifetime a sandbox may have, in seconds; `None` means no limit.
    pub max_lifetime_secs: Option<u64>,
    /// Lifetime given when the spec sets none, in seconds; `None` means until terminated.
    pub default_lifetime_secs: Option<u64>,
    /// Sandboxes can be ended after a period without activity.
    pub idle_timeout: bool,
    /// A sandbox can hold a lease that its creator renews, and ends soon after the
    /// creator dies ([`SandboxSpec::lease_secs`](crate::SandboxSpec::lease_secs)).
    pub client_lease: bool,

    /// Operating systems sandboxes run.
    pub os: Vec<Os>,
    /// CPU architectures sandboxes run on.
    pub arch: Vec<Arch>,
    /// Regions a sandbox can be placed in; empty means no choice.
    pub regions: Vec<String>,
    /// CPU limits are enforced.
    pub cpu_limit: bool,
    /// Memory limits are enforced.
    pub memory_limit: bool,
    /// Most cpu cores one sandbox may have.
    pub max_cpu: Option<f64>,
    /// Most memory one sandbox may have, in MiB.
    pub max_memory_mib: Option<u64>,

    /// GPU kinds offered; empty means none.
    pub gpu_kinds: Vec<GpuKind>,
    /// Most GPUs one sandbox may have.
    pub max_gpu_count: u32,

    /// All network traffic can be blocked, and blocking really blocks.
    pub network_block_all: bool,
    /// Outbound traffic can be limited to CIDR ranges.
    pub network_cidr_allowlist: bool,
    /// Outbound traffic can be limited to domain names.
    pub network_domain_allowlist: bool,
    /// Outbound traffic when the spec says nothing.
    pub egress_default: EgressDefault,

    /// What an idle sandbox costs.
    pub idle_cost: IdleCost,
    /// How usage is billed.
    pub billing: BillingModel,
    /// Public prices, where there are some.
    pub price_sheet: Option<PriceSheet>,

    /// Images by registry reference (`alpine:3.21`).
    pub image_registry: bool,
    /// Images built from a Dockerfile context.
    pub image_dockerfile: bool,
    /// A command can run as the sandbox's main process (`SandboxSpec::entrypoint`).
    pub entrypoint: bool,
    /// The entrypoint's stdout and stderr can be read, resumably, while it runs and after
    /// it ended (`SandboxProvider::entrypoint_output`).
    pub entrypoint_output: bool,
    /// The entrypoint's stdin can be written, at byte offsets, and closed
    /// (`SandboxProvider::write_entrypoint_stdin`).
    pub entrypoint_stdin: bool,

    /// Commands can read standard input.
    pub exec_stdin: bool,
    /// Commands can run on a pseudo-terminal.
    pub exec_pty: bool,
    /// Commands can run as a chosen user.
    pub exec_run_as_user: bool,
    /// A running command can be sent a signal (`ExecProcess::signal`), delivered to its
    /// process group.
    pub exec_signal: bool,
    /// What a sandbox's processes use, measured (`SandboxProvider::resource_usage`).
    pub resource_usage: bool,
    /// Commands started detached, listed and re-attached by id with their output
    /// replayed (`SandboxProvider::start_detached`, `commands`, `attach`).
    pub exec_detached: bool,
    /// Changes under a directory as a stream of events (`SandboxProvider::watch`).
    pub file_watch: bool,
    /// Where exec timeouts are enforced.
    pub exec_timeout: TimeoutEnforcement,
    /// Standard error is delivered separately from standard output.
    pub exec_separate_stderr: bool,

    /// Read, write, stat, list, mkdir and remove files.
    pub files: bool,
    /// Paths are container-like: an absolute path names the same file for a command and
    /// for the files API, `/tmp` is private and writable, and a command starts in
    /// [`SandboxInfo::workdir`](crate::SandboxInfo::workdir) (what `pwd` prints).
    pub container_paths: bool,
    /// System directories (`/usr`, `/bin`, `/lib`, ...) are read-only: writing there is
    /// [`FileErrorKind::PermissionDenied`](crate::FileErrorKind::PermissionDenied).
    pub read_only_base: bool,
    /// Directory trees move in one archive call.
    pub batch_transfer: bool,
    /// Ports of a sandbox can be reached from outside.
    pub tunnels: bool,
    /// Persistent volumes can be mounted.
    pub volumes: bool,
    /// Secrets are delivered as environment without being stored in the spec or logs.
    pub secrets: bool,
    /// Sandboxes carry key/value tags.
    pub tags: bool,
    /// Sandboxes can be listed by tags.
    pub list_by_tags: bool,
    /// A sandbox can be found by its name.
    pub lookup_by_name: bool,
}

impl Capabilities {
    /// The JSON Schema of this type.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(Capabilities)
    }

    /// Whether a GPU of this kind and count can be had.
    pub fn offers_gpu(&self, kind: GpuKind, count: u32) -> bool {
        self.gpu_kinds.contains(&kind) && count <= self.max_gpu_count
    }
}

/// Declares [`Feature`]: one line per yes/no capability, from which the requirement
/// check, rule ids and sentences, the `Checked` layer's refusals, the CLI's `select
/// --needs` values and the conformance suite's needs all derive.
macro_rules! features {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $rule:literal, $what:literal, |$caps:ident| $offered:expr;
    )*) => {
        /// A yes/no capability a provider offers or not, named by a stable rule id.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            JsonSchema,
        )]
        pub enum Feature {
            $(
                $(#[$doc])*
                #[serde(rename = $rule)]
                $variant,
            )*
        }

        impl Feature {
            /// Every feature, in table order.
            pub const ALL: &'static [Feature] = &[$(Feature::$variant),*];

            /// The stable rule id, such as `network.block_all`.
            pub const fn rule(self) -> &'static str {
                match self {
                    $(Feature::$variant => $rule,)*
                }
            }

            /// What it is, for sentences: "needs {what}; not offered".
            pub const fn describe(self) -> &'static str {
                match self {
                    $(Feature::$variant => $what,)*
                }
            }

            /// Whether `caps` offers it.
            pub fn offered_by(self, caps: &Capabilities) -> bool {
                match self {
                    $(Feature::$variant => {
                        let $caps = caps;
                        $offered
                    })*
                }
            }
        }
    };
}

features! {
    /// File operations (and initial files).
    Files = "files", "file operations", |c| c.files;
    /// Absolute paths are paths inside the sandbox, with a private `/tmp`.
    ContainerPaths = "container_paths", "container paths (absolute paths inside the sandbox)", |c| c.container_paths;
    /// The base filesystem is read-only.
    ReadOnlyBase = "read_only_base", "a read-only base filesystem", |c| c.read_only_base;
    /// Archive upload and download in one call.
    BatchTransfer = "batch_transfer", "archive transfers", |c| c.batch_transfer;
    /// A lease renewed by the creator.
    ClientLease = "client_lease", "a lease that ends the sandbox when its creator dies", |c| c.client_lease;
    /// Idle timeouts.
    IdleTimeout = "idle_timeout", "idle timeouts", |c| c.idle_timeout;
    /// Block-all network.
    NetworkBlockAll = "network.block_all", "blocking all network traffic", |c| c.network_block_all;
    /// CIDR allowlists for egress.
    NetworkCidrAllowlist = "network.cidr_allowlist", "CIDR allowlists for egress", |c| c.network_cidr_allowlist;
    /// Domain allowlists for egress.
    NetworkDomainAllowlist = "network.domain_allowlist", "domain allowlists for egress", |c| c.network_domain_allowlist;
    /// Filesystem snapshots.
    FsSnapshot = "fs_snapshot", "filesystem snapshots", |c| c.fs_snapshot;
    /// Pause and resume (a preview counts).
    Pause = "pause", "pause and resume", |c| c.pause != PauseSupport::No;
    /// A pause that keeps memory, not only disk.
    PauseKeepsMemory = "pause.keeps_memory", "a pause that keeps memory", |c| c.pause != PauseSupport::No && c.pause_keeps_memory;
    /// An idle sandbox costs nothing.
    ZeroIdleCost = "idle_cost.zero", "zero idle cost", |c| c.idle_cost == IdleCost::Zero;
    /// Images from a registry.
    ImageRegistry = "image.registry", "images from a registry", |c| c.image_registry;
    /// Images built from a Dockerfile.
    ImageDockerfile = "image.dockerfile", "images built from a Dockerfile", |c| c.image_dockerfile;
    /// An entrypoint process.
    Entrypoint = "entrypoint", "an entrypoint process", |c| c.entrypoint;
    /// Reading an entrypoint's output.
    EntrypointOutput = "entrypoint.output", "reading an entrypoint's output", |c| c.entrypoint_output;
    /// Writing to an entrypoint's stdin.
    EntrypointStdin = "entrypoint.stdin", "writing to an entrypoint's stdin", |c| c.entrypoint_stdin;
    /// Standard input for commands.
    ExecStdin = "exec.stdin", "standard input for commands", |c| c.exec_stdin;
    /// Pseudo-terminals.
    ExecPty = "exec.pty", "pseudo-terminals", |c| c.exec_pty;
    /// Commands as another user.
    ExecRunAsUser = "exec.run_as_user", "running commands as another user", |c| c.exec_run_as_user;
    /// Signals to a running command.
    ExecSignal = "exec.signal", "signalling a running command", |c| c.exec_signal;
    /// Watching a directory for changes.
    FileWatch = "files.watch", "watching a directory for changes", |c| c.file_watch;
    /// Detached commands, re-attached by id.
    ExecDetached = "exec.detached", "detached commands, re-attached by id", |c| c.exec_detached;
    /// Measured resource usage of a sandbox.
    ResourceUsage = "resource_usage", "measured resource usage (cpu time, memory)", |c| c.resource_usage;
    /// Exec timeouts, enforced by the client or the provider.
    ExecTimeout = "exec.timeout", "exec timeouts", |c| c.exec_timeout != TimeoutEnforcement::None;
    /// Exec timeouts enforced by the provider, independently of the client.
    ServerTimeouts = "exec.server_timeouts", "exec timeouts enforced by the provider", |c| c.exec_timeout == TimeoutEnforcement::Server;
    /// Standard error apart from standard output.
    SeparateStderr = "exec.separate_stderr", "standard error apart from standard output", |c| c.exec_separate_stderr;
    /// Tunnels to sandbox ports.
    Tunnels = "tunnels", "tunnels to sandbox ports", |c| c.tunnels;
    /// Volumes.
    Volumes = "volumes", "volumes", |c| c.volumes;
    /// Secrets.
    Secrets = "secrets", "secrets", |c| c.secrets;
    /// Tags on sandboxes.
    Tags = "tags", "tags on sandboxes", |c| c.tags;
    /// Listing sandboxes by tags.
    ListByTags = "list_by_tags", "listing sandboxes by tags", |c| c.tags && c.list_by_tags;
    /// Looking sandboxes up by name.
    LookupByName = "lookup_by_name", "looking sandboxes up by name", |c| c.lookup_by_name;
    /// Capacity queries.
    CapacityQuery = "capacity_query", "capacity queries", |c| c.capacity_query;
    /// Enforced cpu limits.
    CpuLimit = "cpu.limit", "cpu limits", |c| c.cpu_limit;
    /// Enforced memory limits.
    MemoryLimit = "memory.limit", "memory limits", |c| c.memory_limit;
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rule())
    }
}

impl FromStr for Feature {
    type Err = Error;
    /// Parses a rule id, such as `fs_snapshot` or `network.block_all`.
    fn from_str(s: &str) -> Result<Self, Error> {
        Feature::ALL
            .iter()
            .copied()
            .find(|feature| feature.rule() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Feature::ALL.iter().map(|f| f.rule()).collect();
                Error::invalid_spec(
                    "needs",
                    format!("unknown feature `{s}`; known: {}", known.join(", ")),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names_parse_case_insensitively() {
        assert_eq!("h100".parse::<GpuKind>().unwrap(), GpuKind::H100);
        assert_eq!("a100_80gb".parse::<GpuKind>().unwrap(), GpuKind::A100_80GB);
        let error = "H1000".parse::<GpuKind>().unwrap_err().to_string();
        assert!(
            error.contains("gpu.kind") && error.contains("H100"),
            "{error}"
        );
    }

    #[test]
    fn gpu_kinds_serialise_under_their_canonical_names() {
        let json = serde_json::to_string(&GpuKind::A100_40GB).unwrap();
        assert_eq!(json, "\"A100-40GB\"");
    }

    #[test]
    fn isolation_is_ordered_weakest_first() {
        assert!(Isolation::None < Isolation::Namespaces);
        assert!(Isolation::Container < Isolation::UserSpaceKernel);
        assert!(Isolation::UserSpaceKernel < Isolation::MicroVm);
    }

    #[test]
    fn defaults_offer_nothing() {
        let caps = Capabilities::default();
        assert!(!caps.fs_snapshot && !caps.files && caps.gpu_kinds.is_empty());
        assert_eq!(caps.max_concurrent, None);
    }

    #[test]
    fn feature_rule_ids_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for feature in Feature::ALL {
            assert!(seen.insert(feature.rule()), "{} twice", feature.rule());
            assert_eq!(feature.rule().parse::<Feature>().unwrap(), *feature);
            let json = serde_json::to_string(feature).unwrap();
            assert_eq!(json, format!("\"{}\"", feature.rule()));
        }
        assert!("no.such".parse::<Feature>().is_err());
    }

    #[test]
    fn defaults_offer_no_feature() {
        let caps = Capabilities::default();
        let offered: Vec<_> = Feature::ALL
            .iter()
            .filter(|feature| feature.offered_by(&caps))
            // The defaults are conservative, and an idle default sandbox costs nothing.
            .filter(|feature| **feature != Feature::ZeroIdleCost)
            .collect();
        assert!(offered.is_empty(), "{offered:?}");
    }
}
