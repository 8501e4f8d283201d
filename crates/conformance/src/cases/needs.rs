//! What each case needs from a provider's capabilities: one [`Need`] per capability
//! flag and its negation for the negative twin, and a few combined needs.

use sandkit_core::{Feature, GpuKind};

use crate::case::Need;

/// A need on one feature, and its negation for the twin.
macro_rules! needs {
    ($has:ident, $lacks:ident, $feature:ident) => {
        pub(super) const $has: Need = Need::Has(Feature::$feature);
        pub(super) const $lacks: Need = Need::Lacks(Feature::$feature);
    };
}

needs!(TAGS, NO_TAGS, Tags);
needs!(LIST_BY_TAGS, NO_LIST_BY_TAGS, ListByTags);
needs!(LOOKUP_BY_NAME, NO_LOOKUP_BY_NAME, LookupByName);
needs!(SEPARATE_STDERR, MERGED_STDERR, SeparateStderr);
needs!(STDIN, NO_STDIN, ExecStdin);
needs!(TIMEOUTS, NO_TIMEOUTS, ExecTimeout);
needs!(PTY, NO_PTY, ExecPty);
needs!(RUN_AS_USER, NO_RUN_AS_USER, ExecRunAsUser);
needs!(SIGNAL, NO_SIGNAL, ExecSignal);
needs!(USAGE, NO_USAGE, ResourceUsage);
needs!(DETACHED, NO_DETACHED, ExecDetached);
needs!(WATCH, NO_WATCH, FileWatch);
needs!(SECRETS, NO_SECRETS, Secrets);
needs!(FILES, NO_FILES, Files);
needs!(BATCH, NO_BATCH, BatchTransfer);
needs!(SNAPSHOT, NO_SNAPSHOT, FsSnapshot);
needs!(PAUSE, NO_PAUSE, Pause);
needs!(ENTRYPOINT, NO_ENTRYPOINT, Entrypoint);
needs!(CAPACITY, NO_CAPACITY, CapacityQuery);
needs!(TUNNELS, NO_TUNNELS, Tunnels);
needs!(CLIENT_LEASE, NO_CLIENT_LEASE, ClientLease);
needs!(IDLE_TIMEOUT, NO_IDLE_TIMEOUT, IdleTimeout);
needs!(BLOCK_ALL, NO_BLOCK_ALL, NetworkBlockAll);
needs!(CIDR_ALLOWLIST, NO_CIDR_ALLOWLIST, NetworkCidrAllowlist);
needs!(
    DOMAIN_ALLOWLIST,
    NO_DOMAIN_ALLOWLIST,
    NetworkDomainAllowlist
);
needs!(CPU_LIMIT, NO_CPU_LIMIT, CpuLimit);
needs!(MEMORY_LIMIT, NO_MEMORY_LIMIT, MemoryLimit);
pub(super) const ENTRYPOINT_OUTPUT: Need = Need::Custom {
    check: |c| c.entrypoint && c.entrypoint_output,
    reason: "needs `entrypoint` and `entrypoint.output`",
};
pub(super) const NO_ENTRYPOINT_OUTPUT: Need = Need::Lacks(Feature::EntrypointOutput);
pub(super) const ENTRYPOINT_STDIN: Need = Need::Custom {
    check: |c| c.entrypoint && c.entrypoint_output && c.entrypoint_stdin,
    reason: "needs `entrypoint`, `entrypoint.output` and `entrypoint.stdin`",
};
pub(super) const NO_ENTRYPOINT_STDIN: Need = Need::Lacks(Feature::EntrypointStdin);
pub(super) const MAX_LIFETIME: Need = Need::Custom {
    check: |c| c.max_lifetime_secs.is_some(),
    reason: "needs a `max_lifetime_secs`",
};
pub(super) const NO_MAX_LIFETIME: Need = Need::Custom {
    check: |c| c.max_lifetime_secs.is_none(),
    reason: "negative twin: runs only when the provider lacks a `max_lifetime_secs`, which it declares",
};

// Capabilities exercised in one direction only. Images: the base spec already carries the
// image a provider needs, so only the twins run. Volumes: a positive check would leave
// volumes behind, since the trait has no call that deletes one.
pub(super) const REGIONS: Need = Need::Custom {
    check: |c| !c.regions.is_empty(),
    reason: "needs `regions`",
};
pub(super) const NO_REGISTRY_IMAGES: Need = Need::Lacks(Feature::ImageRegistry);
pub(super) const NO_DOCKERFILE_IMAGES: Need = Need::Lacks(Feature::ImageDockerfile);
pub(super) const NO_VOLUMES: Need = Need::Custom {
    check: |c| !c.volumes,
    reason: "negative twin: runs only when the provider lacks `volumes`, which it declares (volumes \
             themselves are not checked: the trait cannot delete a volume a check would create)",
};

pub(super) const PAUSE_KEEPS_MEMORY: Need = Need::Has(Feature::PauseKeepsMemory);
pub(super) const CPU_MAX: Need = Need::Custom {
    check: |c| c.cpu_limit && c.max_cpu.is_some(),
    reason: "needs `cpu_limit` with a `max_cpu`",
};
pub(super) const MEMORY_MAX: Need = Need::Custom {
    check: |c| c.memory_limit && c.max_memory_mib.is_some(),
    reason: "needs `memory_limit` with a `max_memory_mib`",
};
pub(super) const SOME_GPU_NOT_OFFERED: Need = Need::Custom {
    check: |c| GpuKind::ALL.iter().any(|kind| !c.gpu_kinds.contains(kind)),
    reason: "needs a GPU kind the provider does not offer (it offers all of them)",
};
pub(super) const CONTAINER_PATHS: Need = Need::Has(Feature::ContainerPaths);
pub(super) const CONTAINER_PATHS_FILES: Need =
    Need::All(&[Feature::ContainerPaths, Feature::Files]);
pub(super) const READ_ONLY_BASE: Need = Need::All(&[Feature::ReadOnlyBase, Feature::Files]);
pub(super) const FILES_AND_WORKDIR: Need = Need::Has(Feature::Files);
