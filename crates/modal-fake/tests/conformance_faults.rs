//! The shared conformance suite for the `modal` provider against the emulator (over
//! Docker, as in `conformance_emulator`) with faults injected: a share of unary calls
//! fails with UNAVAILABLE or with RESOURCE_EXHAUSTED carrying a retry policy, every server
//! stream is cut after a few kilobytes, and the first router call is refused as
//! UNAUTHENTICATED. The provider must retry, resume and re-authenticate so that no case
//! fails and no output byte is lost or duplicated (the output cases compare exact bytes).
//!
//! `SANDKIT_MODAL_FAULTS` overrides the faults (same syntax as `modal-fake --faults`).

mod common;

use std::sync::Arc;

use sandkit_conformance::Options;
use sandkit_core::{Error, SandboxProvider, SandboxSpec};
use sandkit_modal_fake::FaultConfig;

const FAULTS: &str = "unavailable=0.1,exhausted=0.05,retry-after=0.05,cut-stream=4096,\
                      router-unauthenticated-once,seed=20261121";

fn main() {
    let options = Options {
        base_spec: SandboxSpec::new().image(common::DOCKER_TEST_IMAGE),
        ..Options::default()
    };
    sandkit_conformance::test_main(options, || async {
        let text = std::env::var("SANDKIT_MODAL_FAULTS").unwrap_or_else(|_| FAULTS.to_owned());
        let faults: FaultConfig = text.parse().map_err(|error| Error::InvalidConfig {
            provider: "modal-fake".into(),
            reason: format!("SANDKIT_MODAL_FAULTS: {error}"),
        })?;
        let (server, backend) = common::docker_emulator(faults).await?;
        let modal = common::modal_provider(&server.url()).await?;
        std::mem::forget(server);
        let capabilities = common::narrowed(modal.capabilities(), &backend);
        Ok(Arc::new(sandkit_core::layers::CapabilityOverride::new(
            modal,
            capabilities,
        )) as Arc<dyn SandboxProvider>)
    })
}
