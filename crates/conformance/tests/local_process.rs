//! The suite against the local-process provider with its default isolation (bubblewrap
//! where installed).

use std::sync::Arc;

use sandkit_core::SandboxProvider;
use sandkit_provider_local_process::{Isolation, LocalProcessConfig, LocalProcessProvider};

fn main() {
    let config = LocalProcessConfig {
        state_dir: Some(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-local-process"),
        ),
        isolation: Isolation::Auto,
        ..LocalProcessConfig::default()
    };
    sandkit_conformance::test_main(Default::default(), move || async move {
        Ok(Arc::new(LocalProcessProvider::new(config)?) as Arc<dyn SandboxProvider>)
    })
}
