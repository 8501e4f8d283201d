//! Requirements, the rules they imply, and provider selection with reasons.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capabilities::{
    Capabilities, GpuKind, IdleCost, Isolation, PauseSupport, TimeoutEnforcement,
};
use crate::spec::{ImageSource, NetworkPolicy, SandboxSpec};

/// What a sandbox needs from a provider. Build it from a spec with
/// [`Requirements::from_spec`] and add the orchestrator's own needs on top.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Requirements {
    /// A GPU of this kind...
    pub gpu_kind: Option<GpuKind>,
    /// ...and at least this many of them.
    pub gpu_count: u32,
    /// The provider must allow a lifetime this long.
    pub lifetime_secs: Option<u64>,
    /// Idle timeouts.
    pub idle_timeout: bool,
    /// A lease renewed by the creator.
    pub client_lease: bool,
    /// Block-all network.
    pub network_block_all: bool,
    /// CIDR allowlists.
    pub network_cidr_allowlist: bool,
    /// Domain allowlists.
    pub network_domain_allowlist: bool,
    /// Filesystem snapshots.
    pub fs_snapshot: bool,
    /// Pause and resume (a preview counts).
    pub pause: bool,
    /// Pause must keep memory, not only disk.
    pub pause_keeps_memory: bool,
    /// At least this isolation.
    pub min_isolation: Option<Isolation>,
    /// An idle sandbox must cost nothing.
    pub zero_idle_cost: bool,
    /// The provider must offer this region.
    pub region: Option<String>,
    /// At least this many cpu cores per sandbox, enforced.
    pub cpu: Option<f64>,
    /// At least this much memory per sandbox in MiB, enforced.
    pub memory_mib: Option<u64>,
    /// Images from a registry.
    pub image_registry: bool,
    /// Images from a Dockerfile.
    pub image_dockerfile: bool,
    /// An entrypoint process.
    pub entrypoint: bool,
    /// Standard input for commands.
    pub exec_stdin: bool,
    /// PTYs.
    pub exec_pty: bool,
    /// Commands as another user.
    pub exec_run_as_user: bool,
    /// Exec timeouts enforced independently of the client.
    pub server_enforced_timeouts: bool,
    /// File operations (and initial files).
    pub files: bool,
    /// Tunnels to sandbox ports.
    pub tunnels: bool,
    /// Volumes.
    pub volumes: bool,
    /// Secrets.
    pub secrets: bool,
    /// Listing by tags.
    pub list_by_tags: bool,
    /// Lookup by name.
    pub lookup_by_name: bool,
    /// Capacity queries.
    pub capacity_query: bool,
}

/// One requirement a provider does not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unmet {
    /// A stable identifier such as `gpu.kind` or `network.block_all`.
    pub rule: String,
    /// A sentence a person can read.
    pub reason: String,
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.reason)
    }
}

impl Requirements {
    /// The requirements a spec implies: its GPU, lifetime, network policy, image kind,
    /// resources, volumes, secrets, ports, region and idle timeout.
    pub fn from_spec(spec: &SandboxSpec) -> Self {
        let mut requirements = Self {
            gpu_kind: spec.gpu.map(|gpu| gpu.kind),
            gpu_count: spec.gpu.map_or(0, |gpu| gpu.count),
            lifetime_secs: spec.lifetime_secs,
            idle_timeout: spec.idle_timeout_secs.is_some(),
            client_lease: spec.lease_secs.is_some(),
            region: spec.region.clone(),
            cpu: spec.cpu,
            memory_mib: spec.memory_mib,
            entrypoint: !spec.entrypoint.is_empty(),
            files: !spec.files.is_empty(),
            tunnels: !spec.ports.is_empty(),
            volumes: !spec.volumes.is_empty(),
            secrets: !spec.secrets.is_empty(),
            lookup_by_name: spec.name.is_some(),
            ..Self::default()
        };
        match &spec.network {
            Some(NetworkPolicy::BlockAll) => requirements.network_block_all = true,
            Some(NetworkPolicy::AllowList { cidrs, domains }) => {
                requirements.network_cidr_allowlist = !cidrs.is_empty();
                requirements.network_domain_allowlist = !domains.is_empty();
                // An empty allowlist allows nothing: the same as blocking everything.
                requirements.network_block_all = cidrs.is_empty() && domains.is_empty();
            }
            Some(NetworkPolicy::AllowAll) | None => {}
        }
        match &spec.image {
            Some(ImageSource::Registry { .. }) => requirements.image_registry = true,
            Some(ImageSource::Dockerfile { .. }) => requirements.image_dockerfile = true,
            Some(ImageSource::Snapshot { .. }) => requirements.fs_snapshot = true,
            None => {}
        }
        requirements
    }

    /// Every requirement `caps` fails, each with a stable rule id and a reason.
    pub fn check(&self, caps: &Capabilities) -> Vec<Unmet> {
        let mut unmet = Vec::new();
        let mut fail = |rule: &str, reason: String| {
            unmet.push(Unmet {
                rule: rule.to_owned(),
                reason,
            })
        };
        if let Some(kind) = self.gpu_kind {
            if !caps.gpu_kinds.contains(&kind) {
                let offered = if caps.gpu_kinds.is_empty() {
                    "no GPUs".to_owned()
                } else {
                    caps.gpu_kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                fail("gpu.kind", format!("needs GPU {kind}; offers {offered}"));
            } else if self.gpu_count > caps.max_gpu_count {
                fail(
                    "gpu.count",
                    format!(
                        "needs {} GPUs; at most {} per sandbox",
                        self.gpu_count, caps.max_gpu_count
                    ),
                );
            }
        }
        if let (Some(wanted), Some(max)) = (self.lifetime_secs, caps.max_lifetime_secs)
            && wanted > max
        {
            fail(
                "lifetime.max",
                format!("needs a lifetime of {wanted} s; at most {max} s"),
            );
        }
        let flags: [(bool, bool, &str, &str); 21] = [
            (self.files, caps.files, "files", "file operations"),
            (
                self.client_lease,
                caps.client_lease,
                "client_lease",
                "a lease that ends the sandbox when its creator dies",
            ),
            (
                self.idle_timeout,
                caps.idle_timeout,
                "idle_timeout",
                "idle timeouts",
            ),
            (
                self.network_block_all,
                caps.network_block_all,
                "network.block_all",
                "blocking all network traffic",
            ),
            (
                self.network_cidr_allowlist,
                caps.network_cidr_allowlist,
                "network.cidr_allowlist",
                "CIDR allowlists for egress",
            ),
            (
                self.network_domain_allowlist,
                caps.network_domain_allowlist,
                "network.domain_allowlist",
                "domain allowlists for egress",
            ),
            (
                self.fs_snapshot,
                caps.fs_snapshot,
                "fs_snapshot",
                "filesystem snapshots",
            ),
            (
                self.pause,
                caps.pause != PauseSupport::No,
                "pause",
                "pause and resume",
            ),
            (
                self.pause_keeps_memory,
                caps.pause_keeps_memory,
                "pause.keeps_memory",
                "a pause that keeps memory",
            ),
            (
                self.image_registry,
                caps.image_registry,
                "image.registry",
                "images from a registry",
            ),
            (
                self.image_dockerfile,
                caps.image_dockerfile,
                "image.dockerfile",
                "images built from a Dockerfile",
            ),
            (
                self.entrypoint,
                caps.entrypoint,
                "entrypoint",
                "an entrypoint process",
            ),
            (
                self.exec_stdin,
                caps.exec_stdin,
                "exec.stdin",
                "standard input for commands",
            ),
            (self.exec_pty, caps.exec_pty, "exec.pty", "pseudo-terminals"),
            (
                self.exec_run_as_user,
                caps.exec_run_as_user,
                "exec.run_as_user",
                "running commands as another user",
            ),
            (
                self.server_enforced_timeouts,
                caps.exec_timeout == TimeoutEnforcement::Server,
                "exec.server_timeouts",
                "exec timeouts enforced by the provider",
            ),
            (
                self.tunnels,
                caps.tunnels,
                "tunnels",
                "tunnels to sandbox ports",
            ),
            (self.volumes, caps.volumes, "volumes", "volumes"),
            (self.secrets, caps.secrets, "secrets", "secrets"),
            (
                self.list_by_tags,
                caps.list_by_tags,
                "list_by_tags",
                "listing sandboxes by tags",
            ),
            (
                self.lookup_by_name,
                caps.lookup_by_name,
                "lookup_by_name",
                "looking sandboxes up by name",
            ),
        ];
        for (wanted, offered, rule, what) in flags {
            if wanted && !offered {
                fail(rule, format!("needs {what}; not offered"));
            }
        }
        if self.capacity_query && !caps.capacity_query {
            fail(
                "capacity_query",
                "needs capacity queries; not offered".to_owned(),
            );
        }
        if let Some(min) = self.min_isolation
            && caps.isolation < min
        {
            fail(
                "isolation.min",
                format!(
                    "needs isolation of at least {min}; provides {}",
                    caps.isolation
                ),
            );
        }
        if self.zero_idle_cost && caps.idle_cost != IdleCost::Zero {
            fail(
                "idle_cost.zero",
                format!(
                    "needs zero idle cost; idle sandboxes cost ({:?})",
                    caps.idle_cost
                ),
            );
        }
        if let Some(region) = &self.region
            && !caps.regions.iter().any(|r| r == region)
        {
            let offered = if caps.regions.is_empty() {
                "no region choice".to_owned()
            } else {
                caps.regions.join(", ")
            };
            fail("region", format!("needs region {region}; offers {offered}"));
        }
        if let Some(cpu) = self.cpu {
            if !caps.cpu_limit {
                fail(
                    "cpu.limit",
                    format!("needs {cpu} cpu cores enforced; cpu limits not offered"),
                );
            } else if let Some(max) = caps.max_cpu
                && cpu > max
            {
                fail("cpu.max", format!("needs {cpu} cpu cores; at most {max}"));
            }
        }
        if let Some(memory) = self.memory_mib {
            if !caps.memory_limit {
                fail(
                    "memory.limit",
                    format!("needs {memory} MiB enforced; memory limits not offered"),
                );
            } else if let Some(max) = caps.max_memory_mib
                && memory > max
            {
                fail(
                    "memory.max",
                    format!("needs {memory} MiB of memory; at most {max} MiB"),
                );
            }
        }
        unmet
    }

    /// Both sets of requirements at once: every flag of either, the larger of each
    /// minimum, and `other`'s choice where both name a region, GPU or isolation.
    pub fn union(&self, other: &Requirements) -> Requirements {
        fn max_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(if b > a { b } else { a }),
                (a, b) => a.or(b),
            }
        }
        Requirements {
            gpu_kind: other.gpu_kind.or(self.gpu_kind),
            gpu_count: self.gpu_count.max(other.gpu_count),
            lifetime_secs: max_opt(self.lifetime_secs, other.lifetime_secs),
            idle_timeout: self.idle_timeout || other.idle_timeout,
            client_lease: self.client_lease || other.client_lease,
            network_block_all: self.network_block_all || other.network_block_all,
            network_cidr_allowlist: self.network_cidr_allowlist || other.network_cidr_allowlist,
            network_domain_allowlist: self.network_domain_allowlist
                || other.network_domain_allowlist,
            fs_snapshot: self.fs_snapshot || other.fs_snapshot,
            pause: self.pause || other.pause,
            pause_keeps_memory: self.pause_keeps_memory || other.pause_keeps_memory,
            min_isolation: max_opt(self.min_isolation, other.min_isolation),
            zero_idle_cost: self.zero_idle_cost || other.zero_idle_cost,
            region: other.region.clone().or_else(|| self.region.clone()),
            cpu: max_opt(self.cpu, other.cpu),
            memory_mib: max_opt(self.memory_mib, other.memory_mib),
            image_registry: self.image_registry || other.image_registry,
            image_dockerfile: self.image_dockerfile || other.image_dockerfile,
            entrypoint: self.entrypoint || other.entrypoint,
            exec_stdin: self.exec_stdin || other.exec_stdin,
            exec_pty: self.exec_pty || other.exec_pty,
            exec_run_as_user: self.exec_run_as_user || other.exec_run_as_user,
            server_enforced_timeouts: self.server_enforced_timeouts
                || other.server_enforced_timeouts,
            files: self.files || other.files,
            tunnels: self.tunnels || other.tunnels,
            volumes: self.volumes || other.volumes,
            secrets: self.secrets || other.secrets,
            list_by_tags: self.list_by_tags || other.list_by_tags,
            lookup_by_name: self.lookup_by_name || other.lookup_by_name,
            capacity_query: self.capacity_query || other.capacity_query,
        }
    }

    /// Whether `caps` meets every requirement.
    pub fn is_met_by(&self, caps: &Capabilities) -> bool {
        self.check(caps).is_empty()
    }
}

/// A provider that was not chosen, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rejection {
    /// The provider (or pool) name.
    pub name: String,
    /// Every rule it failed.
    pub unmet: Vec<Unmet>,
}

/// The outcome of [`select`]: the providers that fit, in the caller's order, and every
/// other provider with its reasons.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Selection {
    /// Providers meeting every requirement, in the order they were offered.
    pub chosen: Vec<String>,
    /// Providers failing at least one requirement.
    pub rejected: Vec<Rejection>,
}

/// Splits candidates into those meeting `requirements` and those that do not. Nothing is
/// dropped silently: every candidate lands in exactly one list.
pub fn select<'a>(
    requirements: &Requirements,
    candidates: impl IntoIterator<Item = (&'a str, &'a Capabilities)>,
) -> Selection {
    let mut selection = Selection::default();
    for (name, caps) in candidates {
        let unmet = requirements.check(caps);
        if unmet.is_empty() {
            selection.chosen.push(name.to_owned());
        } else {
            selection.rejected.push(Rejection {
                name: name.to_owned(),
                unmet,
            });
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_cloud() -> Capabilities {
        Capabilities {
            gpu_kinds: vec![GpuKind::H100, GpuKind::A100_80GB],
            max_gpu_count: 8,
            max_lifetime_secs: Some(86_400),
            network_block_all: true,
            fs_snapshot: true,
            isolation: Isolation::UserSpaceKernel,
            idle_cost: IdleCost::Metered,
            ..Default::default()
        }
    }

    fn local() -> Capabilities {
        Capabilities {
            pause: PauseSupport::Yes,
            pause_keeps_memory: true,
            ..Default::default()
        }
    }

    #[test]
    fn spec_implies_gpu_lifetime_and_network_rules() {
        let spec = SandboxSpec::new()
            .gpu(GpuKind::H100, 2)
            .lifetime_secs(30 * 3600)
            .network(NetworkPolicy::BlockAll);
        let unmet = Requirements::from_spec(&spec).check(&gpu_cloud());
        let rules: Vec<_> = unmet.iter().map(|u| u.rule.as_str()).collect();
        assert_eq!(rules, ["lifetime.max"]);
        assert!(unmet[0].reason.contains("86400"), "{}", unmet[0].reason);

        let unmet = Requirements::from_spec(&spec).check(&local());
        let rules: Vec<_> = unmet.iter().map(|u| u.rule.as_str()).collect();
        assert_eq!(rules, ["gpu.kind", "network.block_all"]);
        assert!(unmet[0].reason.contains("no GPUs"));
    }

    #[test]
    fn gpu_count_over_the_maximum_is_its_own_rule() {
        let spec = SandboxSpec::new().gpu(GpuKind::H100, 16);
        let unmet = Requirements::from_spec(&spec).check(&gpu_cloud());
        assert_eq!(unmet[0].rule, "gpu.count");
    }

    #[test]
    fn select_keeps_order_and_explains_every_rejection() {
        let requirements = Requirements {
            pause_keeps_memory: true,
            zero_idle_cost: true,
            ..Default::default()
        };
        let (a, b, c) = (local(), gpu_cloud(), local());
        let selection = select(&requirements, [("a", &a), ("b", &b), ("c", &c)]);
        assert_eq!(selection.chosen, ["a", "c"]);
        assert_eq!(selection.rejected.len(), 1);
        assert_eq!(selection.rejected[0].name, "b");
        let rules: Vec<_> = selection.rejected[0]
            .unmet
            .iter()
            .map(|u| u.rule.as_str())
            .collect();
        assert_eq!(rules, ["pause.keeps_memory", "idle_cost.zero"]);
    }

    #[test]
    fn minimum_isolation_is_compared_by_strength() {
        let requirements = Requirements {
            min_isolation: Some(Isolation::Container),
            ..Default::default()
        };
        assert!(requirements.is_met_by(&gpu_cloud()));
        let unmet = requirements.check(&local());
        assert_eq!(unmet[0].rule, "isolation.min");
        assert!(unmet[0].reason.contains("container"));
    }

    #[test]
    fn an_empty_allowlist_means_block_all() {
        let spec = SandboxSpec::new().network(NetworkPolicy::AllowList {
            cidrs: vec![],
            domains: vec![],
        });
        assert!(Requirements::from_spec(&spec).network_block_all);
    }
}
