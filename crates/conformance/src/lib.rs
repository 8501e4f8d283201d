#![doc = include_str!("../README.md")]

mod case;
mod cases;
mod report;
pub mod security;
mod suite;

pub use case::{Case, Need, TAG_CASE, TAG_RUN};
pub use report::{CaseResult, Outcome, Report};
pub use suite::{Options, run, test_main};

/// Every case, in report order.
pub fn cases() -> &'static [Case] {
    cases::CASES
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_table_has_at_least_fifty_uniquely_named_cases() {
        let names: BTreeSet<_> = cases().iter().map(|case| case.name).collect();
        assert_eq!(names.len(), cases().len(), "duplicate case names");
        assert!(cases().len() >= 50, "only {} cases", cases().len());
    }

    #[test]
    fn every_gated_case_says_why_it_would_be_skipped() {
        for case in cases() {
            let skippable = !case.needs.met_by(&sandkit_core::Capabilities::default())
                || !case.needs.met_by(&everything());
            if skippable {
                assert!(
                    !case.needs.reason().is_empty(),
                    "{} has no skip reason",
                    case.name
                );
            }
        }
    }

    /// Capabilities with every flag on.
    fn everything() -> sandkit_core::Capabilities {
        use sandkit_core::*;
        Capabilities {
            fs_snapshot: true,
            pause: PauseSupport::Yes,
            pause_keeps_memory: true,
            capacity_query: true,
            max_lifetime_secs: Some(3600),
            idle_timeout: true,
            regions: vec!["r".into()],
            cpu_limit: true,
            memory_limit: true,
            max_cpu: Some(4.0),
            max_memory_mib: Some(4096),
            network_block_all: true,
            network_cidr_allowlist: true,
            network_domain_allowlist: true,
            image_registry: true,
            image_dockerfile: true,
            entrypoint: true,
            exec_stdin: true,
            exec_pty: true,
            exec_run_as_user: true,
            exec_timeout: TimeoutEnforcement::Server,
            exec_separate_stderr: true,
            files: true,
            container_paths: true,
            read_only_base: true,
            batch_transfer: true,
            tunnels: true,
            volumes: true,
            secrets: true,
            tags: true,
            list_by_tags: true,
            lookup_by_name: true,
            ..Capabilities::default()
        }
    }

    #[test]
    fn each_capability_is_exercised_one_way_or_the_other() {
        // With nothing declared, the Unsupported twins run; with everything, the positive
        // cases do. Both sets are large, so neither kind of provider gets an empty run.
        let none = cases()
            .iter()
            .filter(|c| c.needs.met_by(&sandkit_core::Capabilities::default()))
            .count();
        let all = cases()
            .iter()
            .filter(|c| c.needs.met_by(&everything()))
            .count();
        assert!(none >= 40 && all >= 50, "none: {none}, all: {all}");
    }
}
