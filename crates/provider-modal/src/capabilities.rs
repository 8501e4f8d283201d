//! What Modal offers, as sandkit's capability table states it.

use sandkit_core::{
    Arch, BillingModel, Capabilities, EgressDefault, GpuKind, IdleCost, Isolation, Os,
    PauseSupport, TimeoutEnforcement, Transport,
};

use crate::prices::price_sheet;

/// Longest lifetime Modal allows a sandbox, in seconds.
pub const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;
/// Lifetime Modal's clients give a sandbox when none is asked for, in seconds.
pub const DEFAULT_LIFETIME_SECS: u64 = 300;
/// Regions Modal's region-selection guide names; the server has the final word.
const DEFAULT_REGIONS: [&str; 14] = [
    "us",
    "us-east",
    "us-central",
    "us-west",
    "eu",
    "eu-west",
    "eu-north",
    "uk",
    "ap",
    "ap-northeast",
    "ap-southeast",
    "ap-south",
    "jp",
    "ca",
];

/// What Modal offers, per its documentation and the issue's capability table.
pub fn capabilities() -> Capabilities {
    Capabilities {
        transport: Transport::DialIn,
        isolation: Isolation::UserSpaceKernel,
        fs_snapshot: true,
        // Modal's pause is a preview of V2 "persistent" sandboxes, which take no tags or
        // names and get a new sandbox id on every resume; sandkit's ownership tags and
        // stable ids cannot ride on that, so pause is not offered.
        pause: PauseSupport::No,
        max_lifetime_secs: Some(MAX_LIFETIME_SECS),
        default_lifetime_secs: Some(DEFAULT_LIFETIME_SECS),
        idle_timeout: true,
        // No call extends a running sandbox's timeout, so a lease cannot be renewed.
        client_lease: false,
        os: vec![Os::Linux],
        arch: vec![Arch::X86_64, Arch::Aarch64],
        regions: DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        cpu_limit: true,
        memory_limit: true,
        gpu_kinds: vec![
            GpuKind::T4,
            GpuKind::L4,
            GpuKind::A10G,
            GpuKind::L40S,
            GpuKind::A100_40GB,
            GpuKind::A100_80GB,
            GpuKind::H100,
            GpuKind::H200,
        ],
        max_gpu_count: 8,
        network_block_all: true,
        network_cidr_allowlist: true,
        egress_default: EgressDefault::AllowAll,
        idle_cost: IdleCost::Metered,
        billing: BillingModel::WallClock,
        price_sheet: Some(price_sheet()),
        image_registry: true,
        entrypoint: true,
        entrypoint_output: true,
        entrypoint_stdin: true,
        exec_stdin: true,
        exec_timeout: TimeoutEnforcement::Server,
        exec_separate_stderr: true,
        files: true,
        container_paths: true,
        tunnels: true,
        volumes: true,
        secrets: true,
        tags: true,
        list_by_tags: true,
        lookup_by_name: true,
        // Everything else is not offered: new capabilities default to "no" until the
        // provider proves them.
        ..Capabilities::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_match_the_issue() {
        let caps = capabilities();
        assert_eq!(caps.max_lifetime_secs, Some(86_400));
        assert_eq!(caps.default_lifetime_secs, Some(300));
        assert!(caps.offers_gpu(GpuKind::H100, 8));
        assert!(!caps.offers_gpu(GpuKind::B200, 1));
        assert_eq!(caps.isolation, Isolation::UserSpaceKernel);
        let prices = caps.price_sheet.unwrap();
        assert_eq!(prices.gpu_second[&GpuKind::A100_40GB], 0.001_036);
    }
}
