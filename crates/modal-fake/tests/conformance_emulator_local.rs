//! The shared conformance suite for the `modal` provider against the emulator over the
//! local-process backend with bubblewrap (the emulator's default backend): container-like
//! paths (`/tmp`, `/workspace`, `/root`), one pid namespace, outbound network through
//! `pasta`. The same suite runs over Docker in `conformance_emulator`; both must pass the
//! same cases. Capabilities the backend lacks are narrowed away and checked to be refused
//! as unsupported.

mod common;

use std::sync::Arc;

use sandkit_core::SandboxProvider;

fn main() {
    sandkit_conformance::test_main(Default::default(), || async {
        let (server, backend) = common::bubblewrap_emulator("conformance-local").await?;
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
