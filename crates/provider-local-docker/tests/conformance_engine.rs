//! The shared conformance suite against the local Docker Engine without sandkit's agent
//! (`agent: false`): commands through the engine's exec API and files through its
//! archive API, as on a runtime the agent cannot start in (gVisor, Kata) or a remote
//! engine. The capabilities follow (no PTY, watch, usage or detached commands), so the
//! cases that need those are skipped with that reason.

use std::sync::Arc;

use sandkit_conformance::Options;
use sandkit_core::{SandboxProvider, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

/// The image every case starts from (built by `scripts/docker-engine.sh`).
const TEST_IMAGE: &str = "sandkit-test-busybox:latest";

fn main() {
    let options = Options {
        base_spec: SandboxSpec::new().image(TEST_IMAGE),
        ..Options::default()
    };
    sandkit_conformance::test_main(options, || async {
        let config = LocalDockerConfig {
            agent: false,
            ..LocalDockerConfig::default()
        };
        let provider = LocalDockerProvider::connect(config).await?;
        assert!(
            provider.agent_fallback().is_some(),
            "`agent: false` must leave the provider on the Engine path"
        );
        Ok(Arc::new(provider) as Arc<dyn SandboxProvider>)
    })
}
