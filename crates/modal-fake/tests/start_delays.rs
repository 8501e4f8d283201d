//! The emulator's start delays (`task_start_delay`, `router_ready_delay`) and the `modal`
//! provider waiting them out: a sandbox whose task is scheduled late and whose router
//! answers late still creates and runs commands; a provider configured with a shorter wait
//! fails with a typed timeout that says what it waited for.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sandkit_core::registry::ProviderFactory as _;
use sandkit_core::{
    Error, ExecRequest, SandboxProvider, SandboxProviderExt as _, SandboxSpec, SandboxState,
    SecretString,
};
use sandkit_modal_fake::{EmulatorOptions, ServerHandle, serve_emulator};
use sandkit_provider_modal::{ModalConfig, ModalProvider, Protocol};

/// The emulator over local processes with these start delays.
async fn emulator(name: &str, task_start: Duration, router_ready: Duration) -> ServerHandle {
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": common::state_dir(name) }),
    )
    .await
    .unwrap();
    let mut options = EmulatorOptions::new(backend);
    options.task_start_delay = task_start;
    options.router_ready_delay = router_ready;
    serve_emulator(common::any_port(), options).await.unwrap()
}

/// The provider against `server`, its configuration adjusted by `configure`.
async fn provider(
    server: &ServerHandle,
    configure: impl FnOnce(ModalConfig) -> ModalConfig,
) -> Arc<dyn SandboxProvider> {
    let config = ModalConfig {
        server_url: Some(server.url()),
        token_id: Some("ak-sandkit-test".to_owned()),
        token_secret: Some(SecretString::new("as-sandkit-test-secret")),
        config_path: Some(common::state_dir("no-config").join("absent.toml")),
        environment: Some("main".to_owned()),
        ..ModalConfig::default()
    };
    Arc::new(ModalProvider::from_config(configure(config)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_task_and_a_late_router_are_waited_out() {
    waits_out_late_starts(Protocol::V1).await;
}

/// A V2 sandbox's creation answers with its task, so only the late router is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_v2_sandbox_waits_out_a_late_router() {
    waits_out_late_starts(Protocol::V2).await;
}

async fn waits_out_late_starts(protocol: Protocol) {
    let server = emulator(
        &format!("start-delays-wait-{protocol:?}"),
        Duration::from_secs(3),
        Duration::from_secs(6),
    )
    .await;
    let provider = provider(&server, |config| ModalConfig {
        protocol: Some(protocol),
        ..config
    })
    .await;
    let started = Instant::now();
    let info = provider
        .create(&SandboxSpec::new().lifetime_secs(120))
        .await
        .unwrap();
    let created = started.elapsed();
    if protocol == Protocol::V1 {
        // Polled for until the task was scheduled.
        assert!(created >= Duration::from_secs(3), "{created:?}");
    } else {
        assert!(created < Duration::from_secs(3), "{created:?}");
    }
    let output = provider
        .run(&info.id, ExecRequest::new(["sh", "-c", "echo ready"]))
        .await
        .unwrap();
    assert_eq!(output.stdout_lossy(), "ready\n");
    assert!(started.elapsed() >= Duration::from_secs(6));
    // Initial files are the first router call inside `create`: it waits too.
    let started = Instant::now();
    let info_with_file = provider
        .create(
            &SandboxSpec::new()
                .lifetime_secs(120)
                .file("/tmp/note.txt", "hello"),
        )
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(6));
    let note = provider
        .read_to_string(&info_with_file.id, "/tmp/note.txt")
        .await
        .unwrap();
    assert_eq!(note, "hello");
    provider.terminate(&info.id).await.unwrap();
    provider.terminate(&info_with_file.id).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_router_slower_than_the_configured_window_is_a_timeout() {
    let server = emulator(
        "start-delays-router",
        Duration::ZERO,
        Duration::from_secs(60),
    )
    .await;
    let provider = provider(&server, |config| ModalConfig {
        router_connect_timeout_secs: Some(2),
        ..config
    })
    .await;
    let info = provider
        .create(&SandboxSpec::new().lifetime_secs(120))
        .await
        .unwrap();
    let started = Instant::now();
    let error = provider
        .run(&info.id, ExecRequest::new(["true"]))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let Error::Timeout { operation, timeout } = &error else {
        panic!("not a timeout: {error:?}");
    };
    assert_eq!(*timeout, Duration::from_secs(2));
    assert!(operation.contains("command router"), "{operation}");
    assert!(
        operation.contains("not accepting connections"),
        "{operation}"
    );
    provider.terminate(&info.id).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_slower_than_the_configured_schedule_timeout_is_a_timeout() {
    let server = emulator("start-delays-task", Duration::from_secs(60), Duration::ZERO).await;
    // Scheduling is waited for on V1 only: V2 creation answers with the task.
    let provider = provider(&server, |config| ModalConfig {
        protocol: Some(Protocol::V1),
        schedule_timeout_secs: Some(2),
        ..config
    })
    .await;
    let started = Instant::now();
    let error = provider
        .create(&SandboxSpec::new().lifetime_secs(120))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let Error::Timeout { operation, timeout } = &error else {
        panic!("not a timeout: {error:?}");
    };
    assert_eq!(*timeout, Duration::from_secs(2));
    assert!(operation.contains("to be scheduled"), "{operation}");
    // The sandbox nobody got was terminated.
    let listed = provider.list(&Default::default()).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|info| info.state != SandboxState::Running),
        "{listed:?}"
    );
    server.shutdown().await.unwrap();
}
