//! Shared by the test targets: an emulator over local processes, and the `modal` provider
//! pointed at a fake server.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sandkit_core::registry::ProviderFactory as _;
use sandkit_core::{Capabilities, Error, Result, SandboxProvider, SecretString};
use sandkit_modal_fake::{
    EmulatorOptions, FaultConfig, RegistryImages, ServerHandle, serve_emulator,
};
use sandkit_provider_local_docker as _;
use sandkit_provider_local_process as _;
use sandkit_provider_modal::{ModalConfig, ModalProvider, Protocol};

/// The loopback address with a free port.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A directory for this test target's sandboxes.
pub fn state_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("modal-fake")
        .join(name)
}

fn unavailable(error: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        message: error.to_string(),
    }
}

/// The busybox image `scripts/docker-engine.sh` builds.
pub const DOCKER_TEST_IMAGE: &str = "sandkit-test-busybox:latest";

/// The emulator over local processes (state under `state_dir(name)`), with `faults`.
pub async fn emulator(name: &str, faults: FaultConfig) -> Result<ServerHandle> {
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": state_dir(name) }),
    )
    .await?;
    serve(backend, faults).await
}

/// The emulator over local processes isolated with bubblewrap (state under
/// `state_dir(name)`), registry tags running as the host's system (no network needed);
/// also returns the backend's capabilities. Fails when bubblewrap cannot run here.
pub async fn bubblewrap_emulator(name: &str) -> Result<(ServerHandle, Capabilities)> {
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": state_dir(name), "isolation": "bubblewrap" }),
    )
    .await?;
    let capabilities = backend.capabilities().clone();
    Ok((serve(backend, FaultConfig::default()).await?, capabilities))
}

/// The emulator over the local Docker Engine, its default image the busybox test image,
/// running registry tags as the engine's images (`RegistryImages::Pull`: the suite's spec
/// names the busybox image, which the engine has); also returns the backend's
/// capabilities. Fails, naming the script, without an engine.
pub async fn docker_emulator(faults: FaultConfig) -> Result<(ServerHandle, Capabilities)> {
    let backend = sandkit_modal_fake::backend(
        "local-docker",
        serde_json::json!({ "default_image": DOCKER_TEST_IMAGE }),
    )
    .await
    .map_err(|error| Error::Unavailable {
        message: format!(
            "the Docker backend is unavailable (run scripts/docker-engine.sh): {error}"
        ),
    })?;
    let capabilities = backend.capabilities().clone();
    Ok((
        serve_with(backend, faults, RegistryImages::Pull).await?,
        capabilities,
    ))
}

async fn serve(backend: Arc<dyn SandboxProvider>, faults: FaultConfig) -> Result<ServerHandle> {
    serve_with(backend, faults, RegistryImages::BackendDefault).await
}

async fn serve_with(
    backend: Arc<dyn SandboxProvider>,
    faults: FaultConfig,
    registry_images: RegistryImages,
) -> Result<ServerHandle> {
    let mut options = EmulatorOptions::new(backend);
    options.faults = faults;
    options.registry_images = registry_images;
    // Small pages, so listing really pages.
    options.list_page_size = 3;
    serve_emulator(any_port(), options)
        .await
        .map_err(unavailable)
}

/// The `modal` provider talking to `server_url`, with test credentials and no config file.
pub async fn modal_provider(server_url: &str) -> Result<Arc<dyn SandboxProvider>> {
    modal_provider_speaking(server_url, Protocol::Auto).await
}

/// [`modal_provider`] creating sandboxes with `protocol`.
pub async fn modal_provider_speaking(
    server_url: &str,
    protocol: Protocol,
) -> Result<Arc<dyn SandboxProvider>> {
    let config = ModalConfig {
        protocol: Some(protocol),
        server_url: Some(server_url.to_owned()),
        token_id: Some("ak-sandkit-test".to_owned()),
        token_secret: Some(SecretString::new("as-sandkit-test-secret")),
        config_path: Some(state_dir("no-config").join("absent.toml")),
        environment: Some("main".to_owned()),
        ..ModalConfig::default()
    };
    Ok(Arc::new(ModalProvider::from_config(config).await?) as Arc<dyn SandboxProvider>)
}

/// The `modal` provider talking to `server_url`, with credentials from the environment or
/// `~/.modal.toml` as Modal's clients read them.
pub async fn modal_provider_with_env_credentials(
    server_url: &str,
    protocol: Protocol,
) -> Result<Arc<dyn SandboxProvider>> {
    let config = ModalConfig {
        protocol: Some(protocol),
        server_url: Some(server_url.to_owned()),
        ..ModalConfig::default()
    };
    Ok(Arc::new(ModalProvider::from_config(config).await?) as Arc<dyn SandboxProvider>)
}

/// The `modal` provider's capabilities, less what the emulator's backend cannot do. Modal
/// itself offers GPUs, regions, CIDR allowlists and more; the emulator passes such
/// requests to its backend, which refuses what it lacks. Conformance against the emulator
/// therefore proves what the backend can really do, and checks the rest is refused as
/// unsupported.
pub fn narrowed(modal: &Capabilities, backend: &Capabilities) -> Capabilities {
    let mut caps = modal.clone();
    caps.fs_snapshot &= backend.fs_snapshot;
    caps.tunnels &= backend.tunnels;
    caps.volumes &= backend.volumes;
    caps.network_block_all &= backend.network_block_all;
    caps.network_cidr_allowlist &= backend.network_cidr_allowlist;
    caps.network_domain_allowlist &= backend.network_domain_allowlist;
    caps.exec_pty &= backend.exec_pty;
    caps.entrypoint_output &= backend.entrypoint_output;
    caps.entrypoint_stdin &= backend.entrypoint_stdin;
    caps.exec_run_as_user &= backend.exec_run_as_user;
    caps.gpu_kinds
        .retain(|kind| backend.gpu_kinds.contains(kind));
    caps.max_gpu_count = caps.max_gpu_count.min(backend.max_gpu_count);
    caps.regions
        .retain(|region| backend.regions.contains(region));
    caps.cpu_limit &= backend.cpu_limit;
    caps.memory_limit &= backend.memory_limit;
    caps
}
