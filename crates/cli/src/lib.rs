//! sandkit-cli: the facade that links every provider sandkit ships, and the `sandkit`
//! command line built on it.
//!
//! Provider crates register themselves with `sandkit_core::register_provider!`, but a
//! crate is only linked when something names it. This library is the one place that
//! names them all, so depending on it (or running the `sandkit` binary) gives a registry
//! with every provider. [`open`] builds one by name, wrapped in the standard layers.

use std::sync::Arc;

pub use sandkit_core;
pub use sandkit_core::layers::LayerOptions;
use sandkit_core::{ProviderRegistration, Result, SandboxProvider, layers, registry};

// The one list of linked providers. Add a provider crate here (and its name to
// `LINKED_PROVIDERS`) to ship it.
use sandkit_provider_local_docker as _;
use sandkit_provider_local_process as _;
use sandkit_provider_modal as _;

/// Registry names of the providers this facade links, sorted. A test checks that the
/// registry holds exactly these.
pub const LINKED_PROVIDERS: &[&str] = &["local-docker", "local-process", "modal"];

/// The provider `sandkit` uses when none is named: embedded, no daemon, no credentials.
pub const DEFAULT_PROVIDER: &str = "local-process";

/// Every registered provider, sorted by name. Two providers under one name are an error.
pub fn providers() -> Result<Vec<&'static ProviderRegistration>> {
    registry::registrations()
}

/// Builds the provider registered as `name` from its JSON configuration (`Value::Null`
/// for the default one) and wraps it in [`sandkit_core::layers::standard`]: capability
/// checks, retries, tracing and ownership tags.
///
/// An unknown name is [`sandkit_core::Error::UnknownProvider`] listing the known ones; a
/// configuration that does not parse is [`sandkit_core::Error::InvalidConfig`].
pub async fn open(
    name: &str,
    config: serde_json::Value,
    options: LayerOptions,
) -> Result<Arc<dyn SandboxProvider>> {
    let registration = registry::find(name)?;
    let provider = registration.build(config).await?;
    Ok(layers::standard(provider, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_every_linked_provider() {
        let registered: Vec<&str> = providers()
            .expect("no duplicate registrations")
            .iter()
            .map(|registration| registration.name)
            .collect();
        assert_eq!(registered, LINKED_PROVIDERS);
    }

    #[tokio::test]
    async fn an_unknown_provider_names_the_known_ones() {
        let error = open(
            "no-such-provider",
            serde_json::Value::Null,
            LayerOptions::default(),
        )
        .await
        .err()
        .expect("an unknown provider must not open");
        match error {
            sandkit_core::Error::UnknownProvider { name, known } => {
                assert_eq!(name, "no-such-provider");
                assert_eq!(known, LINKED_PROVIDERS);
            }
            other => panic!("expected UnknownProvider, got {other:?}"),
        }
    }
}
