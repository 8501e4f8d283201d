//! The security referee (`sandkit_conformance::security`) against the local Docker Engine,
//! with the busybox test image `scripts/docker-engine.sh` builds. Every sandbox carries the
//! run's `conformance-run` tag and sandkit's ownership labels, and each attack terminates
//! what it created.

use std::sync::Arc;

use sandkit_conformance::security::{SecurityOptions, security_main, security_trials};
use sandkit_core::{SandboxProvider, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

/// The image every attack starts from (built by `scripts/docker-engine.sh`).
const TEST_IMAGE: &str = "sandkit-test-busybox:latest";

fn main() {
    security_main(|| async {
        let provider = LocalDockerProvider::connect(LocalDockerConfig::default())
            .await
            .map_err(|e| anyhow::anyhow!("no Docker Engine ({e}); run scripts/docker-engine.sh"))?;
        let options = SecurityOptions {
            base_spec: SandboxSpec::new().image(TEST_IMAGE),
            name_prefix: "local_docker::".to_owned(),
            ..SecurityOptions::default()
        };
        Ok(security_trials(
            Arc::new(provider) as Arc<dyn SandboxProvider>,
            options,
        ))
    })
}
