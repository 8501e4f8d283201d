//! Requirements, the rules they imply, and provider selection with reasons.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use crate::capabilities::{Capabilities, Feature, GpuKind, Isolation};
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::spec::{ImageSource, NetworkPolicy, SandboxSpec};

/// What a sandbox needs from a provider. Build it from a spec with
/// [`Requirements::from_spec`] and add the orchestrator's own needs on top.
///
/// Quantities (GPU, lifetime, isolation, region, cpu, memory) are fields; every yes/no
/// need is a [`Feature`], written by its rule id (`{"features": ["fs_snapshot"]}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Requirements {
    /// A GPU of this kind...
    pub gpu_kind: Option<GpuKind>,
    /// ...and at least this many of them.
    pub gpu_count: u32,
    /// The provider must allow a lifetime this long.
    pub lifetime_secs: Option<u64>,
    /// At least this isolation.
    pub min_isolation: Option<Isolation>,
    /// The provider must offer this region.
    pub region: Option<String>,
    /// At least this many cpu cores per sandbox, enforced.
    pub cpu: Option<f64>,
    /// At least this much memory per sandbox in MiB, enforced.
    pub memory_mib: Option<u64>,
    /// Yes/no capabilities the provider must offer.
    pub features: BTreeSet<Feature>,
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

impl Unmet {
    /// A feature that is not offered.
    pub fn feature(feature: Feature) -> Self {
        Self {
            rule: feature.rule().to_owned(),
            reason: format!("needs {}; not offered", feature.describe()),
        }
    }
}

impl Requirements {
    /// No requirements.
    pub fn new() -> Self {
        Self::default()
    }

    /// These requirements and `feature`.
    #[must_use]
    pub fn with(mut self, feature: Feature) -> Self {
        self.features.insert(feature);
        self
    }

    /// Whether `feature` is required.
    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }

    /// The requirements a spec implies: its GPU, lifetime, network policy, image kind,
    /// resources, volumes, secrets, tags, ports, region and idle timeout.
    pub fn from_spec(spec: &SandboxSpec) -> Self {
        let mut requirements = Self {
            gpu_kind: spec.gpu.map(|gpu| gpu.kind),
            gpu_count: spec.gpu.map_or(0, |gpu| gpu.count),
            lifetime_secs: spec.lifetime_secs,
            region: spec.region.clone(),
            cpu: spec.cpu,
            memory_mib: spec.memory_mib,
            ..Self::default()
        };
        let implied = [
            (spec.idle_timeout_secs.is_some(), Feature::IdleTimeout),
            (spec.lease_secs.is_some(), Feature::ClientLease),
            (!spec.entrypoint.is_empty(), Feature::Entrypoint),
            (!spec.files.is_empty(), Feature::Files),
            (!spec.ports.is_empty(), Feature::Tunnels),
            (!spec.volumes.is_empty(), Feature::Volumes),
            (!spec.secrets.is_empty(), Feature::Secrets),
            (!spec.tags.is_empty(), Feature::Tags),
            (spec.name.is_some(), Feature::LookupByName),
        ];
        for (needed, feature) in implied {
            if needed {
                requirements.features.insert(feature);
            }
        }
        match &spec.network {
            Some(NetworkPolicy::BlockAll) => {
                requirements.features.insert(Feature::NetworkBlockAll);
            }
            Some(NetworkPolicy::AllowList { cidrs, domains }) => {
                if !cidrs.is_empty() {
                    requirements.features.insert(Feature::NetworkCidrAllowlist);
                }
                if !domains.is_empty() {
                    requirements
                        .features
                        .insert(Feature::NetworkDomainAllowlist);
                }
                // An empty allowlist allows nothing: the same as blocking everything.
                if cidrs.is_empty() && domains.is_empty() {
                    requirements.features.insert(Feature::NetworkBlockAll);
                }
            }
            Some(NetworkPolicy::AllowAll) | None => {}
        }
        match &spec.image {
            Some(ImageSource::Registry { .. }) => {
                requirements.features.insert(Feature::ImageRegistry);
            }
            Some(ImageSource::Dockerfile { .. }) => {
                requirements.features.insert(Feature::ImageDockerfile);
            }
            Some(ImageSource::Snapshot { .. }) => {
                requirements.features.insert(Feature::FsSnapshot);
            }
            None => {}
        }
        requirements
    }

    /// The features a command needs: standard input, a PTY, another user, a timeout.
    pub fn from_exec(request: &ExecRequest) -> Self {
        let mut requirements = Self::default();
        let implied = [
            (request.stdin, Feature::ExecStdin),
            (request.pty, Feature::ExecPty),
            (request.user.is_some(), Feature::ExecRunAsUser),
            (request.timeout.is_some(), Feature::ExecTimeout),
        ];
        for (needed, feature) in implied {
            if needed {
                requirements.features.insert(feature);
            }
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
                    Feature::CpuLimit.rule(),
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
                    Feature::MemoryLimit.rule(),
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
        for feature in &self.features {
            let quantity_checked = (*feature == Feature::CpuLimit && self.cpu.is_some())
                || (*feature == Feature::MemoryLimit && self.memory_mib.is_some());
            if !quantity_checked && !feature.offered_by(caps) {
                let Unmet { rule, reason } = Unmet::feature(*feature);
                fail(&rule, reason);
            }
        }
        unmet
    }

    /// Both sets of requirements at once: every feature of either, the larger of each
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
            min_isolation: max_opt(self.min_isolation, other.min_isolation),
            region: other.region.clone().or_else(|| self.region.clone()),
            cpu: max_opt(self.cpu, other.cpu),
            memory_mib: max_opt(self.memory_mib, other.memory_mib),
            features: self.features.union(&other.features).copied().collect(),
        }
    }

    /// The one refusal rule, for the `Checked` layer and for a provider that must not run
    /// what it cannot honour even when called without layers: the first unmet
    /// requirement as an error. A value over a provider maximum (`lifetime.max`,
    /// `gpu.count`, `cpu.max`, `memory.max`) is [`Error::InvalidSpec`] naming the spec
    /// field; anything missing is [`Error::Unsupported`] naming the rule.
    pub fn enforce(&self, provider: &str, caps: &Capabilities) -> Result<()> {
        let Some(unmet) = self.check(caps).into_iter().next() else {
            return Ok(());
        };
        let field = match unmet.rule.as_str() {
            "lifetime.max" => Some("lifetime_secs"),
            "gpu.count" => Some("gpu.count"),
            "cpu.max" => Some("cpu"),
            "memory.max" => Some("memory_mib"),
            _ => None,
        };
        Err(match field {
            Some(field) => Error::invalid_spec(field, unmet.reason),
            None => Error::unsupported(provider, format!("{} ({})", unmet.rule, unmet.reason)),
        })
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
    use crate::capabilities::{IdleCost, PauseSupport};

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
        let requirements = Requirements::new()
            .with(Feature::PauseKeepsMemory)
            .with(Feature::ZeroIdleCost);
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
        assert!(Requirements::from_spec(&spec).has(Feature::NetworkBlockAll));
    }
}
