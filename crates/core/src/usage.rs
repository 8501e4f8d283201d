//! Usage, lifecycle events and estimated cost.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capabilities::PriceSheet;
use crate::provider::{SandboxId, SandboxInfo};

/// Resources a sandbox held, integrated over its life so far. Based on what was allocated
/// (as providers bill), not on what was used.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Wall-clock seconds alive.
    pub wall_secs: f64,
    /// Cpu cores allocated × seconds.
    pub cpu_core_secs: f64,
    /// GiB of memory allocated × seconds.
    pub memory_gib_secs: f64,
    /// GPUs allocated × seconds.
    pub gpu_secs: f64,
}

impl Usage {
    /// Usage of `info`'s allocation from its creation until `until_unix_secs`.
    pub fn of(info: &SandboxInfo, until_unix_secs: u64) -> Self {
        let wall_secs = until_unix_secs.saturating_sub(info.created_at_unix_secs) as f64;
        Self {
            wall_secs,
            cpu_core_secs: info.cpu.unwrap_or(0.0) * wall_secs,
            memory_gib_secs: info.memory_mib.unwrap_or(0) as f64 / 1024.0 * wall_secs,
            gpu_secs: info.gpu.map_or(0.0, |gpu| f64::from(gpu.count) * wall_secs),
        }
    }

    /// Adds another usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.wall_secs += other.wall_secs;
        self.cpu_core_secs += other.cpu_core_secs;
        self.memory_gib_secs += other.memory_gib_secs;
        self.gpu_secs += other.gpu_secs;
    }
}

/// What a sandbox's processes use, as measured (not allocated: see [`Usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ResourceUsage {
    /// Cpu seconds (user and system) of every process the sandbox has run, ended ones
    /// included.
    pub cpu_secs: f64,
    /// Resident memory of its live processes now, in bytes.
    pub memory_bytes: u64,
    /// The most resident memory seen at once, in bytes (the provider says how often it
    /// looks).
    pub peak_memory_bytes: u64,
    /// Its live processes.
    pub processes: u32,
}

impl PriceSheet {
    /// Estimated price of `usage` for a sandbox described by `info` (its GPU kind and
    /// region choose the GPU price and the regional multiplier).
    pub fn estimate(&self, usage: &Usage, info: &SandboxInfo) -> f64 {
        let gpu_price = info
            .gpu
            .and_then(|gpu| self.gpu_second.get(&gpu.kind))
            .copied()
            .unwrap_or(0.0);
        let base = usage.cpu_core_secs * self.cpu_core_second
            + usage.memory_gib_secs * self.memory_gib_second
            + usage.gpu_secs * gpu_price;
        let multiplier = info
            .region
            .as_deref()
            .and_then(|region| {
                self.region_multipliers
                    .iter()
                    .find(|(prefix, _)| region.starts_with(prefix.as_str()))
                    .map(|(_, m)| *m)
            })
            .unwrap_or(1.0);
        base * multiplier
    }
}

/// What happened to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleKind {
    /// Created and running.
    Created,
    /// Paused.
    Paused,
    /// Resumed.
    Resumed,
    /// Terminated.
    Terminated,
}

/// One lifecycle event, with usage so far and its estimated cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LifecycleEvent {
    /// What happened.
    pub kind: LifecycleKind,
    /// The provider's registry name.
    pub provider: String,
    /// The sandbox.
    pub sandbox: SandboxId,
    /// When, Unix seconds.
    pub at_unix_secs: u64,
    /// Usage from creation until now.
    pub usage: Usage,
    /// Estimated cost of that usage, when the provider has a price sheet.
    pub estimated_cost: Option<f64>,
    /// What the sandbox's processes used, measured just before the event, when the
    /// provider measures it (`resource_usage`) and the event is not a creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<ResourceUsage>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::capabilities::GpuKind;
    use crate::provider::SandboxState;
    use crate::spec::GpuRequest;

    fn info(region: Option<&str>) -> SandboxInfo {
        SandboxInfo {
            id: SandboxId::from("sb-1"),
            provider: "test".into(),
            name: None,
            state: SandboxState::Running,
            tags: BTreeMap::new(),
            created_at_unix_secs: 1_000,
            expires_at_unix_secs: None,
            workdir: "/".into(),
            cpu: Some(2.0),
            memory_mib: Some(4096),
            gpu: Some(GpuRequest {
                kind: GpuKind::A100_40GB,
                count: 1,
            }),
            region: region.map(Into::into),
            notes: Vec::new(),
        }
    }

    fn sheet() -> PriceSheet {
        PriceSheet {
            currency: "USD".into(),
            cpu_core_second: 0.0000394,
            memory_gib_second: 0.00000672,
            gpu_second: BTreeMap::from([(GpuKind::A100_40GB, 0.001036)]),
            region_multipliers: BTreeMap::from([("us".into(), 1.25)]),
            source: "test".into(),
        }
    }

    #[test]
    fn usage_integrates_the_allocation() {
        let usage = Usage::of(&info(None), 1_100);
        assert_eq!(usage.wall_secs, 100.0);
        assert_eq!(usage.cpu_core_secs, 200.0);
        assert_eq!(usage.memory_gib_secs, 400.0);
        assert_eq!(usage.gpu_secs, 100.0);
    }

    #[test]
    fn cost_adds_cpu_memory_gpu_and_the_region_multiplier() {
        let usage = Usage::of(&info(None), 1_100);
        let expected = 200.0 * 0.0000394 + 400.0 * 0.00000672 + 100.0 * 0.001036;
        assert!((sheet().estimate(&usage, &info(None)) - expected).abs() < 1e-12);
        let regional = sheet().estimate(&usage, &info(Some("us-east")));
        assert!((regional - expected * 1.25).abs() < 1e-12);
    }
}
