//! The shared conformance suite against a provider that declares no tags: local-process
//! (plain processes) under a `CapabilityOverride` with `tags` and `list_by_tags` off. The
//! standard layers then add no ownership tags and refuse tagged specs, so the suite's
//! `tags_unsupported` and `list_by_tags_unsupported` twins run, and every other case must
//! still pass without tags.

use std::sync::Arc;

use sandkit_core::SandboxProvider;
use sandkit_core::layers::CapabilityOverride;
use sandkit_provider_local_process::{Isolation, LocalProcessConfig, LocalProcessProvider};

fn main() {
    let state_dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("local-process-without-tags");
    let config = LocalProcessConfig {
        state_dir: Some(state_dir),
        isolation: Isolation::None,
        ..LocalProcessConfig::default()
    };
    sandkit_conformance::test_main(Default::default(), move || async move {
        let provider: Arc<dyn SandboxProvider> = Arc::new(LocalProcessProvider::new(config)?);
        let untagged = CapabilityOverride::narrowed(provider, |caps| {
            caps.tags = false;
            caps.list_by_tags = false;
        });
        Ok(Arc::new(untagged) as Arc<dyn SandboxProvider>)
    })
}
