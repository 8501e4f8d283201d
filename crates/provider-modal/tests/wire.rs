//! The provider against a small in-process server (`support`) with scripted failures:
//! headers, retries, throttling, stream resume, router re-authentication, timeouts and
//! fs-tools errors. Full conformance runs against `sandkit-modal-fake`'s emulator (in that
//! crate).

mod support;

use std::time::Duration;

use bytes::Bytes;
use sandkit_core::{
    Error, ExecRequest, FileErrorKind, SandboxId, SandboxProvider, SandboxProviderExt,
};
use tonic::metadata::MetadataMap;

use sandkit_provider_modal::ModalConfig;
use support::{SANDBOX, SECRET, State, header, id, serve, serve_with};

#[tokio::test]
async fn unary_calls_carry_modal_headers_and_retry_with_one_idempotency_key() {
    let (provider, fake) = serve(State {
        terminate_unavailable: 2,
        ..Default::default()
    })
    .await;
    provider.terminate(&id()).await.unwrap();

    let state = fake.state.lock().unwrap();
    let attempts: Vec<&MetadataMap> = state
        .calls
        .iter()
        .filter(|(method, _)| *method == "SandboxTerminate")
        .map(|(_, metadata)| metadata)
        .collect();
    assert_eq!(attempts.len(), 3);
    let keys: Vec<_> = attempts
        .iter()
        .map(|m| header(m, "x-idempotency-key").unwrap())
        .collect();
    assert!(keys.iter().all(|key| *key == keys[0]), "{keys:?}");
    let numbers: Vec<_> = attempts
        .iter()
        .map(|m| header(m, "x-retry-attempt").unwrap())
        .collect();
    assert_eq!(numbers, ["0", "1", "2"]);
    for metadata in attempts {
        assert_eq!(header(metadata, "x-modal-client-type"), Some("9"));
        // libmodal's Go and JS clients announce the protocol level `1.0.0` here.
        assert_eq!(header(metadata, "x-modal-client-version"), Some("1.0.0"));
        assert_eq!(header(metadata, "x-modal-token-id"), Some("ak-test"));
        assert_eq!(header(metadata, "x-modal-token-secret"), Some(SECRET));
        assert!(header(metadata, "x-modal-auth-token").is_some());
    }
    let auth = state
        .calls
        .iter()
        .find(|(method, _)| *method == "AuthTokenGet")
        .unwrap();
    assert!(header(&auth.1, "x-modal-auth-token").is_none());
}

#[tokio::test]
async fn server_directed_delays_do_not_use_up_the_retry_budget() {
    // Five throttles and three outages: more than the 3-retry budget, but the throttles
    // are the server's call and do not count.
    let (provider, fake) = serve(State {
        terminate_throttled: 5,
        terminate_unavailable: 3,
        ..Default::default()
    })
    .await;
    provider.terminate(&id()).await.unwrap();
    let attempts = fake
        .state
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(method, _)| *method == "SandboxTerminate")
        .count();
    assert_eq!(attempts, 9);
}

#[tokio::test]
async fn persistent_outages_surface_as_unavailable_without_secrets() {
    let (provider, _fake) = serve(State {
        terminate_unavailable: 100,
        ..Default::default()
    })
    .await;
    let error = provider.terminate(&id()).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(!format!("{error:?}").contains(SECRET));
}

#[tokio::test]
async fn cut_output_streams_resume_at_their_offset() {
    let (provider, fake) = serve(State {
        cut_after: Some(2500),
        ..Default::default()
    })
    .await;
    let output = provider
        .run(&id(), ExecRequest::new(["emit", "10000"]))
        .await
        .unwrap();
    let expected: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
    assert_eq!(output.stdout, Bytes::from(expected));
    assert!(output.status.success());
    let offsets = fake.state.lock().unwrap().stdio_offsets.clone();
    assert!(offsets.contains(&2500), "{offsets:?}");
}

#[tokio::test]
async fn an_expired_router_jwt_is_fetched_again_once() {
    let (provider, fake) = serve(State::default()).await;
    provider
        .run(&id(), ExecRequest::new(["emit", "10"]))
        .await
        .unwrap();
    fake.state.lock().unwrap().jwt_generation = 1;
    let output = provider
        .run(&id(), ExecRequest::new(["emit", "10"]))
        .await
        .unwrap();
    assert_eq!(output.stdout.len(), 10);
    assert_eq!(fake.state.lock().unwrap().access_fetches, 2);
}

#[tokio::test]
async fn a_command_killed_at_its_timeout_is_command_timeout_with_its_output() {
    let (provider, _fake) = serve(State::default()).await;
    let result = provider
        .run(
            &id(),
            ExecRequest::new(["hang"]).timeout(Duration::from_millis(1000)),
        )
        .await;
    match result {
        Err(Error::CommandTimeout {
            timeout, stdout, ..
        }) => {
            assert_eq!(timeout, Duration::from_millis(1000));
            assert_eq!(stdout, "started\n");
        }
        other => panic!("expected CommandTimeout, got {other:?}"),
    }
}

#[tokio::test]
async fn fs_tools_results_and_errors_map_to_files() {
    let (provider, _fake) = serve(State::default()).await;
    assert_eq!(provider.read_file(&id(), "/hello").await.unwrap(), "hi");
    match provider.read_file(&id(), "/missing").await {
        Err(Error::FileOperation { path, kind }) => {
            assert_eq!(path, "/missing");
            assert_eq!(kind, FileErrorKind::NotFound);
        }
        other => panic!("expected a NotFound file error, got {other:?}"),
    }
}

#[tokio::test]
async fn ids_modal_never_minted_are_not_found_without_a_call() {
    let (provider, fake) = serve(State::default()).await;
    let bogus = SandboxId::from("not-a-sandbox");
    assert!(matches!(
        provider.info(&bogus).await,
        Err(Error::NotFound { .. })
    ));
    provider.terminate(&bogus).await.unwrap();
    assert!(fake.state.lock().unwrap().calls.is_empty());
}

#[tokio::test]
async fn create_builds_the_image_and_sends_the_whole_definition() {
    use sandkit_core::{GpuKind, NetworkPolicy, SandboxSpec};
    use sandkit_modal_proto::client::network_access::NetworkAccessType;
    use sandkit_modal_proto::client::sandbox::OpenPortsOneof;

    let (provider, fake) = serve(State::default()).await;
    let spec = SandboxSpec::new()
        .image("alpine:3.21")
        .env("PLAIN", "1")
        .secret("TOKEN", "hunter2")
        .cpu(0.5)
        .memory_mib(512)
        .gpu(GpuKind::A100_80GB, 2)
        .lifetime_secs(600)
        .idle_timeout_secs(60)
        .network(NetworkPolicy::AllowList {
            cidrs: vec!["10.0.0.0/8".into()],
            domains: vec![],
        })
        .region("us-east")
        .port(8080)
        .name("box-1")
        .tag("team", "evals");
    let info = provider.create(&spec).await.unwrap();
    assert_eq!(info.id.as_str(), SANDBOX);
    assert_eq!(info.workdir, "/app", "the image's workdir is the sandbox's");
    assert_eq!(
        info.expires_at_unix_secs,
        Some(info.created_at_unix_secs + 600)
    );

    let state = fake.state.lock().unwrap();
    assert_eq!(
        state.image_joins,
        ["", "1-0"],
        "the build is joined, then resumed"
    );
    let image = &state.images[0];
    assert_eq!(image.builder_version, "2025.06");
    assert_eq!(
        image.image.as_ref().unwrap().dockerfile_commands,
        ["FROM alpine:3.21"]
    );
    let secret = &state.secrets[0];
    assert_eq!(secret.object_creation_type, 5, "EPHEMERAL");
    assert_eq!(secret.env_dict["PLAIN"], "1");
    assert_eq!(secret.env_dict["TOKEN"], "hunter2");

    let request = &state.created[0];
    assert_eq!(request.app_id, "ap-test");
    assert_eq!(request.tags[0].tag_name, "team");
    let definition = request.definition.as_ref().unwrap();
    assert_eq!(definition.image_id, "im-built");
    assert_eq!(definition.secret_ids, ["st-env"]);
    assert_eq!(definition.timeout_secs, 600);
    assert_eq!(definition.idle_timeout_secs, Some(60));
    assert_eq!(definition.name.as_deref(), Some("box-1"));
    let resources = definition.resources.as_ref().unwrap();
    assert_eq!((resources.milli_cpu, resources.memory_mb), (500, 512));
    let gpu = resources.gpu_config.as_ref().unwrap();
    assert_eq!((gpu.gpu_type.as_str(), gpu.count), ("A100-80GB", 2));
    let network = definition.network_access.as_ref().unwrap();
    assert_eq!(
        network.network_access_type,
        NetworkAccessType::Allowlist as i32
    );
    assert_eq!(network.allowed_cidrs, ["10.0.0.0/8"]);
    assert_eq!(
        definition.scheduler_placement.as_ref().unwrap().regions,
        ["us-east"]
    );
    match &definition.open_ports_oneof {
        Some(OpenPortsOneof::OpenPorts(ports)) => assert_eq!(ports.ports[0].port, 8080),
        other => panic!("{other:?}"),
    }
}

/// The control-plane methods called since `calls` was last cleared.
fn methods(fake: &support::Fake) -> Vec<&'static str> {
    let state = fake.state.lock().unwrap();
    state.calls.iter().map(|(method, _)| *method).collect()
}

#[tokio::test]
async fn exec_environment_goes_inline_in_secret_sources() {
    use sandkit_modal_proto::client::secret_source::Source;

    let (provider, fake) = serve(State::default()).await;
    provider
        .run(&id(), ExecRequest::new(["emit", "1"]).env("API_KEY", "k-1"))
        .await
        .unwrap();
    let state = fake.state.lock().unwrap();
    let start = state.exec_starts.last().unwrap();
    // Only the exec id, which the kill command finds processes by, goes in `env`.
    assert_eq!(start.env.len(), 1, "{:?}", start.env);
    assert_eq!(start.env["SANDKIT_EXEC_ID"], start.exec_id);
    let [source] = start.secret_sources.as_slice() else {
        panic!("{:?}", start.secret_sources);
    };
    let Some(Source::Env(map)) = &source.source else {
        panic!("{source:?}");
    };
    assert_eq!(map.contents.len(), 1);
    assert_eq!(map.contents["API_KEY"], "k-1");
}

#[tokio::test]
async fn auto_creates_on_v1_when_the_server_does_not_implement_v2() {
    let (provider, fake) = serve_with(State::default(), |config| ModalConfig {
        protocol: Some(sandkit_provider_modal::Protocol::Auto),
        ..config
    })
    .await;
    let info = provider
        .create(&sandkit_core::SandboxSpec::new())
        .await
        .unwrap();
    assert_eq!(info.id, id());
    // Only a V1 sandbox's task is polled for; V2 creation answers with it.
    let calls = methods(&fake);
    assert!(calls.contains(&"SandboxGetTaskId"), "{calls:?}");
}

#[tokio::test]
async fn info_lists_by_the_creation_tags_without_asking_for_them() {
    use sandkit_core::{SandboxSpec, SandboxState};

    let (provider, fake) = serve(State::default()).await;
    let spec = SandboxSpec::new().tag("team", "evals").cpu(0.5);
    provider.create(&spec).await.unwrap();
    fake.state.lock().unwrap().calls.clear();

    let info = provider.info(&id()).await.unwrap();
    assert_eq!(methods(&fake), ["SandboxWait", "SandboxList"]);
    assert_eq!(info.state, SandboxState::Running);
    assert_eq!(info.tags["team"], "evals");
    assert_eq!(info.cpu, Some(0.5), "filled from the spec");
    assert_eq!(info.created_at_unix_secs, 1_700_000_000);
}

#[tokio::test]
async fn info_asks_for_the_tags_when_they_changed_since_creation() {
    use sandkit_modal_proto::client::SandboxTag;

    let (provider, fake) = serve(State::default()).await;
    let spec = sandkit_core::SandboxSpec::new().tag("team", "evals");
    provider.create(&spec).await.unwrap();
    {
        let mut state = fake.state.lock().unwrap();
        state.calls.clear();
        state.tags = vec![SandboxTag {
            tag_name: "team".into(),
            tag_value: "infra".into(),
        }];
    }

    let info = provider.info(&id()).await.unwrap();
    assert_eq!(
        methods(&fake),
        [
            "SandboxWait",
            "SandboxList",
            "SandboxTagsGet",
            "SandboxList"
        ]
    );
    assert_eq!(info.tags["team"], "infra");
}
