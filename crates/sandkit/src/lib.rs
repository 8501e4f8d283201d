#![doc = include_str!("../README.md")]

use std::sync::Arc;

pub use sandkit_core::*;

#[cfg(feature = "local-docker")]
#[doc(inline)]
pub use sandkit_provider_local_docker as local_docker;
#[cfg(feature = "local-process")]
#[doc(inline)]
pub use sandkit_provider_local_process as local_process;
#[cfg(feature = "modal")]
#[doc(inline)]
pub use sandkit_provider_modal as modal;

use sandkit_core::layers::LayerOptions;

/// The workspace README's library example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct WorkspaceReadme;

/// Registry names of the providers this build links (one per enabled feature), sorted.
pub const LINKED_PROVIDERS: &[&str] = &[
    #[cfg(feature = "local-docker")]
    "local-docker",
    #[cfg(feature = "local-process")]
    "local-process",
    #[cfg(feature = "modal")]
    "modal",
];

/// The provider to use when none is named: embedded, no daemon, no credentials.
pub const DEFAULT_PROVIDER: &str = "local-process";

/// Every registered provider, sorted by name: the ones this crate links, plus any a
/// third-party crate in the build registers with [`register_provider!`]. Two providers
/// under one name are an error.
pub fn providers() -> Result<Vec<&'static ProviderRegistration>> {
    registry::registrations()
}

/// Opens the provider registered as `name` with its default configuration, wrapped in the
/// standard layers. Shorthand for `Provider::named(name).open()`.
///
/// An unknown name is [`Error::UnknownProvider`], listing the known ones (a provider of
/// this crate whose feature is off is unknown).
pub async fn open(name: &str) -> Result<Arc<dyn SandboxProvider>> {
    Provider::named(name).open().await
}

/// A provider to open: its registry name, its configuration, and the layers around it.
#[derive(Debug)]
#[must_use = "a Provider does nothing until `open` is awaited"]
pub struct Provider {
    name: String,
    config: std::result::Result<serde_json::Value, String>,
    layers: Option<LayerOptions>,
}

impl Provider {
    /// The provider registered as `name`, with its default configuration and the default
    /// layer options.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            config: Ok(serde_json::Value::Null),
            layers: Some(LayerOptions::default()),
        }
    }

    /// The provider's configuration: its JSON document (`serde_json::json!({...})`), or
    /// any value that serialises to one, such as the provider crate's own config struct.
    /// A value that does not serialise is [`Error::InvalidConfig`] at [`Provider::open`].
    pub fn config(mut self, config: impl serde::Serialize) -> Self {
        self.config = serde_json::to_value(config).map_err(|error| error.to_string());
        self
    }

    /// The options of the standard layers: ownership tags, retry policy, lifecycle events.
    pub fn layers(mut self, options: LayerOptions) -> Self {
        self.layers = Some(options);
        self
    }

    /// No layers: the provider as it registered itself, with no capability checks,
    /// ownership tags, retries or tracing. For tests of a provider itself.
    pub fn bare(mut self) -> Self {
        self.layers = None;
        self
    }

    /// Builds the provider and wraps it in [`layers::standard`] (unless [`Provider::bare`]).
    pub async fn open(self) -> Result<Arc<dyn SandboxProvider>> {
        let registration = registry::find(&self.name)?;
        let config = self.config.map_err(|reason| Error::InvalidConfig {
            provider: self.name.clone(),
            reason,
        })?;
        let provider = registration.build(config).await?;
        Ok(match self.layers {
            Some(options) => sandkit_core::layers::standard(provider, options),
            None => provider,
        })
    }
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
        let error = open("no-such-provider")
            .await
            .err()
            .expect("an unknown provider must not open");
        match error {
            Error::UnknownProvider { name, known } => {
                assert_eq!(name, "no-such-provider");
                assert_eq!(known, LINKED_PROVIDERS);
            }
            other => panic!("expected UnknownProvider, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_config_of_the_wrong_shape_names_the_provider() {
        let error = Provider::named(DEFAULT_PROVIDER)
            .config(serde_json::json!({ "no_such_field": 1 }))
            .open()
            .await
            .err()
            .expect("an unknown config field must be refused");
        assert!(
            matches!(&error, Error::InvalidConfig { provider, reason }
                if provider == DEFAULT_PROVIDER && reason.contains("no_such_field")),
            "{error:?}"
        );
    }
}
