use sandkit_core::{GpuKind, NetworkPolicy};

use crate::capabilities::MAX_LIFETIME_SECS;
use sandkit_modal_proto::client::sandbox::OpenPortsOneof;

use super::*;

fn definition_of(spec: &SandboxSpec) -> Result<pb::Sandbox> {
    definition(spec, "im-1".to_owned(), Vec::new(), Vec::new())
}

fn invalid_field(result: Result<pb::Sandbox>) -> String {
    match result {
        Err(Error::InvalidSpec { field, .. }) => field,
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}

#[test]
fn resources_are_requested_and_limited_alike() {
    let spec = SandboxSpec::new()
        .cpu(0.5)
        .memory_mib(512)
        .gpu(GpuKind::A100_80GB, 2);
    let resources = definition_of(&spec).unwrap().resources.unwrap();
    assert_eq!((resources.milli_cpu, resources.milli_cpu_max), (500, 500));
    assert_eq!((resources.memory_mb, resources.memory_mb_max), (512, 512));
    let gpu = resources.gpu_config.unwrap();
    assert_eq!((gpu.gpu_type.as_str(), gpu.count), ("A100-80GB", 2));
}

#[test]
fn unset_resources_are_left_to_modal() {
    let resources = definition_of(&SandboxSpec::new())
        .unwrap()
        .resources
        .unwrap();
    assert_eq!((resources.milli_cpu, resources.memory_mb), (0, 0));
    assert_eq!(resources.gpu_config, Some(pb::GpuConfig::default()));
}

#[test]
fn resources_out_of_range_are_invalid() {
    assert_eq!(
        invalid_field(definition_of(&SandboxSpec::new().cpu(0.0001))),
        "cpu"
    );
    assert_eq!(
        invalid_field(definition_of(&SandboxSpec::new().cpu(1e12))),
        "cpu"
    );
    assert_eq!(
        invalid_field(definition_of(
            &SandboxSpec::new().memory_mib(u64::from(u32::MAX) + 1)
        )),
        "memory_mib"
    );
}

#[test]
fn network_policies_map_to_modal_access_types() {
    let access = |policy: Option<NetworkPolicy>| {
        let mut spec = SandboxSpec::new();
        spec.network = policy;
        let access = definition_of(&spec).unwrap().network_access.unwrap();
        (access.network_access_type(), access.allowed_cidrs)
    };
    assert_eq!(access(None), (NetworkAccessType::Open, vec![]));
    assert_eq!(
        access(Some(NetworkPolicy::AllowAll)),
        (NetworkAccessType::Open, vec![])
    );
    assert_eq!(
        access(Some(NetworkPolicy::BlockAll)),
        (NetworkAccessType::Blocked, vec![])
    );
    assert_eq!(
        access(Some(NetworkPolicy::AllowList {
            cidrs: vec![],
            domains: vec![]
        })),
        (NetworkAccessType::Blocked, vec![])
    );
    assert_eq!(
        access(Some(NetworkPolicy::AllowList {
            cidrs: vec!["10.0.0.0/8".to_owned()],
            domains: vec![]
        })),
        (NetworkAccessType::Allowlist, vec!["10.0.0.0/8".to_owned()])
    );
}

#[test]
fn domain_allowlists_are_unsupported() {
    let spec = SandboxSpec::new().network(NetworkPolicy::AllowList {
        cidrs: vec!["10.0.0.0/8".to_owned()],
        domains: vec!["pypi.org".to_owned()],
    });
    assert!(matches!(
        definition_of(&spec),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn lifetime_defaults_and_is_capped_at_modals_maximum() {
    assert_eq!(
        definition_of(&SandboxSpec::new()).unwrap().timeout_secs,
        300
    );
    let longest = SandboxSpec::new().lifetime_secs(MAX_LIFETIME_SECS);
    assert_eq!(definition_of(&longest).unwrap().timeout_secs, 86_400);
    // The maximum is the capability's rule, the same on every provider.
    let too_long = SandboxSpec::new().lifetime_secs(MAX_LIFETIME_SECS + 1);
    let refused = sandkit_core::Requirements::from_spec(&too_long)
        .enforce("modal", &crate::capabilities::capabilities())
        .map(|()| unreachable_definition());
    assert_eq!(invalid_field(refused), "lifetime_secs");
}

/// Stands for a definition where a refusal was expected.
fn unreachable_definition() -> pb::Sandbox {
    pb::Sandbox::default()
}

#[test]
fn idle_timeout_is_passed_on_when_it_fits() {
    let spec = SandboxSpec::new().idle_timeout_secs(60);
    assert_eq!(definition_of(&spec).unwrap().idle_timeout_secs, Some(60));
    assert_eq!(
        definition_of(&SandboxSpec::new())
            .unwrap()
            .idle_timeout_secs,
        None
    );
    let spec = SandboxSpec::new().idle_timeout_secs(u64::from(u32::MAX) + 1);
    assert_eq!(invalid_field(definition_of(&spec)), "idle_timeout_secs");
}

#[test]
fn names_follow_modals_rules() {
    let spec = SandboxSpec::new().name("web-1.test_a");
    assert_eq!(
        definition_of(&spec).unwrap().name.as_deref(),
        Some("web-1.test_a")
    );
    for bad in ["has space", "slash/es", &"x".repeat(65)] {
        let spec = SandboxSpec::new().name(bad);
        assert_eq!(invalid_field(definition_of(&spec)), "name", "{bad}");
    }
}

#[test]
fn environment_and_secrets_travel_in_one_dictionary() {
    assert_eq!(environment(&SandboxSpec::new()), None);
    let spec = SandboxSpec::new()
        .env("PLAIN", "1")
        .secret("TOKEN", "hunter2");
    let dict = environment(&spec).unwrap();
    assert_eq!(dict.len(), 2);
    assert_eq!(dict["PLAIN"], "1");
    assert_eq!(dict["TOKEN"], "hunter2");
    assert_eq!(
        environment(&SandboxSpec::new().secret("ONLY", "s")).unwrap()["ONLY"],
        "s"
    );
}

#[test]
fn the_definition_carries_image_secrets_volumes_and_entrypoint() {
    let spec = SandboxSpec::new()
        .entrypoint(["sleep", "infinity"])
        .volume("data", "/data");
    let mount = volume_mount(&spec.volumes[0], "vo-1".to_owned());
    assert_eq!(mount.mount_path, "/data");
    assert!(mount.allow_background_commits && !mount.read_only);
    let sandbox = definition(
        &spec,
        "im-7".to_owned(),
        vec!["st-1".to_owned()],
        vec![mount.clone()],
    )
    .unwrap();
    assert_eq!(sandbox.image_id, "im-7");
    assert_eq!(sandbox.secret_ids, ["st-1"]);
    assert_eq!(sandbox.volume_mounts, [mount]);
    assert_eq!(sandbox.entrypoint_args, ["sleep", "infinity"]);
}

#[test]
fn region_and_ports_are_placed_and_opened() {
    let spec = SandboxSpec::new().region("eu").port(8080).port(22);
    let sandbox = definition_of(&spec).unwrap();
    assert_eq!(sandbox.scheduler_placement.unwrap().regions, ["eu"]);
    let Some(OpenPortsOneof::OpenPorts(ports)) = sandbox.open_ports_oneof else {
        panic!("no open ports");
    };
    let ports: Vec<u32> = ports.ports.iter().map(|port| port.port).collect();
    assert_eq!(ports, [8080, 22]);
    assert!(
        definition_of(&SandboxSpec::new())
            .unwrap()
            .scheduler_placement
            .is_none()
    );
}

#[test]
fn workdir_is_the_specs_then_the_images_then_root() {
    let spec = SandboxSpec::new().workdir("/work");
    assert_eq!(workdir(&spec, Some("/image".to_owned())), "/work");
    assert_eq!(
        definition_of(&spec).unwrap().workdir.as_deref(),
        Some("/work")
    );
    assert_eq!(
        workdir(&SandboxSpec::new(), Some("/image".to_owned())),
        "/image"
    );
    assert_eq!(
        workdir(&SandboxSpec::new(), Some("relative".to_owned())),
        "/"
    );
    assert_eq!(workdir(&SandboxSpec::new(), None), "/");
    assert_eq!(definition_of(&SandboxSpec::new()).unwrap().workdir, None);
}

#[test]
fn image_refs_come_from_the_spec_or_the_default() {
    assert_eq!(
        image_ref(&SandboxSpec::new(), "debian:bookworm-slim").unwrap(),
        ImageRef::Registry("debian:bookworm-slim".to_owned())
    );
    assert_eq!(
        image_ref(&SandboxSpec::new().image("alpine:3.21"), "debian").unwrap(),
        ImageRef::Registry("alpine:3.21".to_owned())
    );
    assert_eq!(
        image_ref(&SandboxSpec::new().from_snapshot("im-9"), "debian").unwrap(),
        ImageRef::Snapshot("im-9".to_owned())
    );
    assert_eq!(
        registry_image("alpine:3.21").dockerfile_commands,
        ["FROM alpine:3.21"]
    );
}

#[test]
fn malformed_and_dockerfile_images_are_refused() {
    for bad in ["", "alpine 3", "alpine\n"] {
        assert!(
            matches!(
                image_ref(&SandboxSpec::new().image(bad), "debian"),
                Err(Error::InvalidSpec { field, .. }) if field == "image.reference"
            ),
            "{bad:?}"
        );
    }
    let dockerfile = SandboxSpec::new().image_source(ImageSource::Dockerfile {
        context_dir: ".".into(),
        dockerfile: None,
    });
    assert!(matches!(
        image_ref(&dockerfile, "debian"),
        Err(Error::Unsupported { .. })
    ));
}

#[test]
fn tags_round_trip() {
    let tags = BTreeMap::from([
        ("a".to_owned(), "1".to_owned()),
        ("b".to_owned(), String::new()),
    ]);
    let sent = sandbox_tags(&tags);
    assert_eq!(sent[0].tag_name, "a");
    assert_eq!(tags_from(sent), tags);
}
