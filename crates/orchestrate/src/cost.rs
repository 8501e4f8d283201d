//! Cost reports: usage and estimated cost per provider, summed from lifecycle events.

use std::collections::BTreeMap;

use sandkit::{LifecycleEvent, LifecycleKind, Usage};
use serde::Serialize;

/// What one provider's sandboxes used over their whole lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderCost {
    /// Sandboxes that ended.
    pub sandboxes: usize,
    /// Their usage, summed.
    pub usage: Usage,
    /// Their estimated cost, from each provider's price sheet (0 where it has none).
    pub estimated_cost: f64,
    /// Cpu seconds their processes used, measured (from providers that measure it).
    pub measured_cpu_secs: f64,
    /// The most resident memory one of them was seen with, in bytes.
    pub peak_memory_bytes: u64,
}

/// Usage and cost per provider, from the `Terminated` events of the `Traced` layer
/// (each carries the usage of the sandbox's whole life). Feed it every event; it counts
/// only the ones that end a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CostReport {
    by_provider: BTreeMap<String, ProviderCost>,
}

impl CostReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event; all but `Terminated` are ignored.
    pub fn record(&mut self, event: &LifecycleEvent) {
        if event.kind != LifecycleKind::Terminated {
            return;
        }
        let cost = self.by_provider.entry(event.provider.clone()).or_default();
        cost.sandboxes += 1;
        cost.usage.add(&event.usage);
        cost.estimated_cost += event.estimated_cost.unwrap_or(0.0);
        if let Some(measured) = &event.measured {
            cost.measured_cpu_secs += measured.cpu_secs;
            cost.peak_memory_bytes = cost.peak_memory_bytes.max(measured.peak_memory_bytes);
        }
    }

    /// Each provider's totals, sorted by provider name.
    pub fn providers(&self) -> impl Iterator<Item = (&str, &ProviderCost)> {
        self.by_provider
            .iter()
            .map(|(name, cost)| (name.as_str(), cost))
    }

    /// A table a person can read: one line per provider.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<16} {:>9} {:>10} {:>14} {:>14} {:>12} {:>10} {:>10}\n",
            "provider",
            "sandboxes",
            "wall s",
            "cpu core-s",
            "GiB-s",
            "est. cost",
            "cpu s used",
            "peak MiB"
        );
        for (provider, cost) in self.providers() {
            out.push_str(&format!(
                "{:<16} {:>9} {:>10.1} {:>14.1} {:>14.1} {:>12.6} {:>10.2} {:>10.1}\n",
                provider,
                cost.sandboxes,
                cost.usage.wall_secs,
                cost.usage.cpu_core_secs,
                cost.usage.memory_gib_secs,
                cost.estimated_cost,
                cost.measured_cpu_secs,
                cost.peak_memory_bytes as f64 / (1024.0 * 1024.0)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        kind: LifecycleKind,
        provider: &str,
        wall_secs: f64,
        cost: Option<f64>,
    ) -> LifecycleEvent {
        LifecycleEvent {
            kind,
            provider: provider.to_owned(),
            usage: Usage {
                wall_secs,
                ..Usage::default()
            },
            sandbox: sandkit::SandboxId("sb-1".to_owned()),
            at_unix_secs: 0,
            estimated_cost: cost,
            measured: None,
        }
    }

    #[test]
    fn measured_usage_is_summed_and_the_peak_kept() {
        let mut report = CostReport::new();
        for (cpu_secs, peak) in [(1.5, 10 << 20), (0.5, 30 << 20)] {
            let mut ended = event(LifecycleKind::Terminated, "local-docker", 1.0, None);
            ended.measured = Some(sandkit::ResourceUsage {
                cpu_secs,
                peak_memory_bytes: peak,
                ..Default::default()
            });
            report.record(&ended);
        }
        report.record(&event(LifecycleKind::Terminated, "local-docker", 1.0, None));
        let (_, cost) = report.providers().next().expect("one provider");
        assert_eq!(cost.sandboxes, 3);
        assert_eq!(cost.measured_cpu_secs, 2.0);
        assert_eq!(cost.peak_memory_bytes, 30 << 20);
    }

    #[test]
    fn only_terminations_count_and_providers_are_kept_apart() {
        let mut report = CostReport::new();
        report.record(&event(LifecycleKind::Created, "modal", 99.0, Some(9.0)));
        report.record(&event(LifecycleKind::Terminated, "modal", 2.0, Some(0.5)));
        report.record(&event(LifecycleKind::Terminated, "modal", 3.0, None));
        report.record(&event(
            LifecycleKind::Terminated,
            "local-process",
            1.0,
            None,
        ));
        let totals: Vec<_> = report
            .providers()
            .map(|(name, cost)| {
                (
                    name,
                    cost.sandboxes,
                    cost.usage.wall_secs,
                    cost.estimated_cost,
                )
            })
            .collect();
        assert_eq!(
            totals,
            [("local-process", 1, 1.0, 0.0), ("modal", 2, 5.0, 0.5)]
        );
        assert!(report.table().contains("modal"), "{}", report.table());
    }
}
