//! The shared conformance suite against the local Docker Engine, with the busybox test
//! image `scripts/docker-engine.sh` builds. Without an engine this fails, naming the
//! script: the test script always starts one, so a missing engine is a broken setup.

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
        let provider = LocalDockerProvider::connect(LocalDockerConfig::default()).await?;
        Ok(Arc::new(provider) as Arc<dyn SandboxProvider>)
    })
}
