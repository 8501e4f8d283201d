//! The shared conformance suite against local-process with bubblewrap (plain processes:
//! `conformance_plain`).

use std::sync::Arc;

use sandkit_core::SandboxProvider;
use sandkit_provider_local_process::{Isolation, LocalProcessConfig, LocalProcessProvider};

fn main() {
    let state_dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("local-process-conformance");
    let config = LocalProcessConfig {
        state_dir: Some(state_dir),
        isolation: Isolation::Bubblewrap,
        ..LocalProcessConfig::default()
    };
    sandkit_conformance::test_main(Default::default(), move || async move {
        Ok(Arc::new(LocalProcessProvider::new(config)?) as Arc<dyn SandboxProvider>)
    })
}
