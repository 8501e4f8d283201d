//! The shared conformance suite for the `modal` provider against the emulator, which runs
//! its sandboxes on the local Docker Engine (the busybox test image built by
//! `scripts/docker-engine.sh`): Docker's paths are the container's own, as on Modal.
//! Capabilities the engine lacks (GPUs, regions, CIDR allowlists, PTYs) are narrowed away
//! and checked to be refused as unsupported.

mod common;

use std::sync::Arc;

use sandkit_conformance::Options;
use sandkit_core::{SandboxProvider, SandboxSpec};

fn main() {
    let options = Options {
        base_spec: SandboxSpec::new().image(common::DOCKER_TEST_IMAGE),
        ..Options::default()
    };
    sandkit_conformance::test_main(options, || async {
        let (server, backend) = common::docker_emulator(Default::default()).await?;
        let modal = common::modal_provider(&server.url()).await?;
        // The server lives as long as the test process.
        std::mem::forget(server);
        let capabilities = common::narrowed(modal.capabilities(), &backend);
        Ok(Arc::new(sandkit_core::layers::CapabilityOverride::new(
            modal,
            capabilities,
        )) as Arc<dyn SandboxProvider>)
    })
}
