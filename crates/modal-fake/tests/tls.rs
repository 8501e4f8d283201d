//! The emulator over TLS, verified: with `tls_ca_file` it serves a certificate issued by a
//! fresh CA and writes that CA's certificate out, and the `modal` provider, trusting that
//! file (`ca_file`), runs a sandbox over TLS to the control plane and the router. A
//! provider trusting another CA is refused at the handshake: the certificate is checked.

mod common;

use std::path::Path;
use std::sync::Arc;

use sandkit_core::registry::ProviderFactory as _;
use sandkit_core::{
    ExecRequest, SandboxProvider, SandboxProviderExt as _, SandboxSpec, SecretString,
};
use sandkit_modal_fake::{EmulatorOptions, ServerHandle, serve_emulator};
use sandkit_provider_modal::{ModalConfig, ModalProvider};

async fn tls_emulator(name: &str, ca_file: &Path) -> ServerHandle {
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": common::state_dir(name) }),
    )
    .await
    .unwrap();
    let mut options = EmulatorOptions::new(backend);
    options.tls_ca_file = Some(ca_file.to_owned());
    serve_emulator(common::any_port(), options).await.unwrap()
}

async fn provider(server: &ServerHandle, ca_file: &Path) -> Arc<dyn SandboxProvider> {
    let config = ModalConfig {
        // A loopback `https` URL is TLS once a CA is given.
        server_url: Some(format!("https://localhost:{}", server.addr().port())),
        token_id: Some("ak-tls".to_owned()),
        token_secret: Some(SecretString::new("as-tls-secret")),
        config_path: Some(common::state_dir("no-config").join("absent.toml")),
        environment: Some("main".to_owned()),
        ca_file: Some(ca_file.to_owned()),
        ..ModalConfig::default()
    };
    Arc::new(ModalProvider::from_config(config).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_runs_a_sandbox_over_verified_tls() {
    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("ca.pem");
    let server = tls_emulator("tls", &ca_file).await;
    let pem = std::fs::read_to_string(&ca_file).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    let modal = provider(&server, &ca_file).await;
    let info = modal
        .create(&SandboxSpec::new().lifetime_secs(120))
        .await
        .unwrap();
    let output = modal
        .run(&info.id, ExecRequest::new(["sh", "-c", "echo over-tls"]))
        .await
        .unwrap();
    assert_eq!(output.stdout_lossy(), "over-tls\n");
    modal
        .write_file(&info.id, "/tmp/tls.txt", "sealed".into())
        .await
        .unwrap();
    assert_eq!(
        modal
            .read_to_string(&info.id, "/tmp/tls.txt")
            .await
            .unwrap(),
        "sealed"
    );
    modal.terminate(&info.id).await.unwrap();

    // Another emulator, another CA: the first CA does not vouch for it.
    let other_ca = directory.path().join("other-ca.pem");
    let other = tls_emulator("tls-other", &other_ca).await;
    let stranger = provider(&other, &ca_file).await;
    let refused = stranger.create(&SandboxSpec::new()).await.unwrap_err();
    assert!(
        refused.to_string().contains("invalid peer certificate"),
        "{refused:?}"
    );
    other.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
