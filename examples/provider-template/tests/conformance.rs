//! The whole shared conformance suite, from this crate's own `cargo test`.

use std::sync::Arc;

use sandkit_core::ProviderFactory;
use sandkit_provider_template::{TemplateConfig, TemplateProvider};

fn main() {
    sandkit_conformance::test_main(sandkit_conformance::Options::default(), || async {
        let provider = TemplateProvider::from_config(TemplateConfig::default()).await?;
        Ok(Arc::new(provider) as Arc<dyn sandkit_core::SandboxProvider>)
    })
}
