//! What each case needs from a provider's capabilities: one [`Need`] per capability
//! flag and its negation for the negative twin, and a few combined needs.

use sandkit_core::{Capabilities, GpuKind, PauseSupport, TimeoutEnforcement};

use crate::case::Need;

/// A need on one capability flag, and its negation for the twin.
macro_rules! needs {
    ($has:ident, $lacks:ident, |$caps:ident| $flag:expr, $what:literal) => {
        pub(super) const $has: Need = Need {
            check: |$caps: &Capabilities| $flag,
            reason: concat!("needs ", $what),
        };
        pub(super) const $lacks: Need = Need {
            check: |$caps: &Capabilities| !($flag),
            reason: concat!(
                "negative twin: runs only when the provider lacks ",
                $what,
                ", which it declares"
            ),
        };
    };
}

needs!(TAGS, NO_TAGS, |c| c.tags, "`tags`");
needs!(
    LIST_BY_TAGS,
    NO_LIST_BY_TAGS,
    |c| c.tags && c.list_by_tags,
    "`tags` and `list_by_tags`"
);
needs!(
    LOOKUP_BY_NAME,
    NO_LOOKUP_BY_NAME,
    |c| c.lookup_by_name,
    "`lookup_by_name`"
);
needs!(
    SEPARATE_STDERR,
    MERGED_STDERR,
    |c| c.exec_separate_stderr,
    "`exec_separate_stderr`"
);
needs!(STDIN, NO_STDIN, |c| c.exec_stdin, "`exec_stdin`");
needs!(
    TIMEOUTS,
    NO_TIMEOUTS,
    |c| c.exec_timeout != TimeoutEnforcement::None,
    "`exec_timeout` (client or server)"
);
needs!(PTY, NO_PTY, |c| c.exec_pty, "`exec_pty`");
needs!(
    RUN_AS_USER,
    NO_RUN_AS_USER,
    |c| c.exec_run_as_user,
    "`exec_run_as_user`"
);
needs!(SECRETS, NO_SECRETS, |c| c.secrets, "`secrets`");
needs!(FILES, NO_FILES, |c| c.files, "`files`");
needs!(BATCH, NO_BATCH, |c| c.batch_transfer, "`batch_transfer`");
needs!(SNAPSHOT, NO_SNAPSHOT, |c| c.fs_snapshot, "`fs_snapshot`");
needs!(
    PAUSE,
    NO_PAUSE,
    |c| c.pause != PauseSupport::No,
    "`pause` (preview or yes)"
);
needs!(ENTRYPOINT, NO_ENTRYPOINT, |c| c.entrypoint, "`entrypoint`");
needs!(
    CAPACITY,
    NO_CAPACITY,
    |c| c.capacity_query,
    "`capacity_query`"
);
needs!(TUNNELS, NO_TUNNELS, |c| c.tunnels, "`tunnels`");
needs!(
    CLIENT_LEASE,
    NO_CLIENT_LEASE,
    |c| c.client_lease,
    "`client_lease`"
);
needs!(
    IDLE_TIMEOUT,
    NO_IDLE_TIMEOUT,
    |c| c.idle_timeout,
    "`idle_timeout`"
);
needs!(
    BLOCK_ALL,
    NO_BLOCK_ALL,
    |c| c.network_block_all,
    "`network_block_all`"
);
needs!(
    CIDR_ALLOWLIST,
    NO_CIDR_ALLOWLIST,
    |c| c.network_cidr_allowlist,
    "`network_cidr_allowlist`"
);
needs!(
    DOMAIN_ALLOWLIST,
    NO_DOMAIN_ALLOWLIST,
    |c| c.network_domain_allowlist,
    "`network_domain_allowlist`"
);
needs!(CPU_LIMIT, NO_CPU_LIMIT, |c| c.cpu_limit, "`cpu_limit`");
needs!(
    MEMORY_LIMIT,
    NO_MEMORY_LIMIT,
    |c| c.memory_limit,
    "`memory_limit`"
);
needs!(
    MAX_LIFETIME,
    NO_MAX_LIFETIME,
    |c| c.max_lifetime_secs.is_some(),
    "a `max_lifetime_secs`"
);

// Capabilities exercised in one direction only. Images: the base spec already carries the
// image a provider needs, so only the twins run. Volumes: a positive check would leave
// volumes behind, since the trait has no call that deletes one.
pub(super) const REGIONS: Need = Need {
    check: |c| !c.regions.is_empty(),
    reason: "needs `regions`",
};
pub(super) const NO_REGISTRY_IMAGES: Need = Need {
    check: |c| !c.image_registry,
    reason: "negative twin: runs only when the provider lacks `image_registry`, which it declares",
};
pub(super) const NO_DOCKERFILE_IMAGES: Need = Need {
    check: |c| !c.image_dockerfile,
    reason: "negative twin: runs only when the provider lacks `image_dockerfile`, which it declares",
};
pub(super) const NO_VOLUMES: Need = Need {
    check: |c| !c.volumes,
    reason: "negative twin: runs only when the provider lacks `volumes`, which it declares (volumes \
             themselves are not checked: the trait cannot delete a volume a check would create)",
};

pub(super) const PAUSE_KEEPS_MEMORY: Need = Need {
    check: |c| c.pause != PauseSupport::No && c.pause_keeps_memory,
    reason: "needs `pause` with `pause_keeps_memory` (processes survive a pause)",
};
pub(super) const CPU_MAX: Need = Need {
    check: |c| c.cpu_limit && c.max_cpu.is_some(),
    reason: "needs `cpu_limit` with a `max_cpu`",
};
pub(super) const MEMORY_MAX: Need = Need {
    check: |c| c.memory_limit && c.max_memory_mib.is_some(),
    reason: "needs `memory_limit` with a `max_memory_mib`",
};
pub(super) const SOME_GPU_NOT_OFFERED: Need = Need {
    check: |c| GpuKind::ALL.iter().any(|kind| !c.gpu_kinds.contains(kind)),
    reason: "needs a GPU kind the provider does not offer (it offers all of them)",
};
pub(super) const CONTAINER_PATHS: Need = Need {
    check: |c| c.container_paths,
    reason: "needs `container_paths` (absolute paths are sandbox paths, /tmp is private)",
};
pub(super) const CONTAINER_PATHS_FILES: Need = Need {
    check: |c| c.container_paths && c.files,
    reason: "needs `container_paths` and `files`",
};
pub(super) const READ_ONLY_BASE: Need = Need {
    check: |c| c.read_only_base && c.files,
    reason: "needs `read_only_base` and `files`",
};
pub(super) const FILES_AND_WORKDIR: Need = Need {
    check: |c| c.files,
    reason: "needs `files`",
};
