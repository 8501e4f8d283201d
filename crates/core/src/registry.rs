//! Providers register themselves with [`register_provider!`](crate::register_provider);
//! orchestrators find and build them by name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::provider::SandboxProvider;

/// A provider type that can be registered: a name, static capabilities, a configuration
/// type with a JSON Schema, and an async constructor.
pub trait ProviderFactory: SandboxProvider + Sized {
    /// Registry name, e.g. `local-docker`.
    const NAME: &'static str;
    /// One line saying what it is.
    const SUMMARY: &'static str;
    /// Configuration, deserialised from JSON; `{}` must give a working default.
    type Config: DeserializeOwned + schemars::JsonSchema + Send;

    /// Capabilities with the default configuration, readable without building the
    /// provider. An instance may report less (e.g. no bubblewrap installed).
    fn static_capabilities() -> Capabilities;

    /// Builds a provider from its configuration.
    fn from_config(config: Self::Config) -> impl Future<Output = Result<Self>> + Send;
}

type BuildFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn SandboxProvider>>> + Send>>;

/// One registered provider. Created by [`register_provider!`](crate::register_provider).
pub struct ProviderRegistration {
    /// Registry name.
    pub name: &'static str,
    /// One line saying what it is.
    pub summary: &'static str,
    capabilities: fn() -> Capabilities,
    config_schema: fn() -> schemars::Schema,
    build: fn(serde_json::Value) -> BuildFuture,
}

impl std::fmt::Debug for ProviderRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRegistration")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ProviderRegistration {
    /// The registration of provider type `P`.
    pub const fn of<P: ProviderFactory>() -> Self {
        Self {
            name: P::NAME,
            summary: P::SUMMARY,
            capabilities: P::static_capabilities,
            config_schema: config_schema_of::<P>,
            build: build_of::<P>,
        }
    }

    /// Capabilities with the default configuration.
    pub fn capabilities(&self) -> Capabilities {
        (self.capabilities)()
    }

    /// JSON Schema of the configuration.
    pub fn config_schema(&self) -> schemars::Schema {
        (self.config_schema)()
    }

    /// Builds the bare provider (no layers) from a JSON configuration; `Value::Null` means
    /// the default configuration.
    pub async fn build(&self, config: serde_json::Value) -> Result<Arc<dyn SandboxProvider>> {
        (self.build)(config).await
    }
}

fn config_schema_of<P: ProviderFactory>() -> schemars::Schema {
    schemars::schema_for!(P::Config)
}

fn build_of<P: ProviderFactory>(config: serde_json::Value) -> BuildFuture {
    Box::pin(async move {
        let config = if config.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            config
        };
        let config: P::Config =
            serde_json::from_value(config).map_err(|error| Error::InvalidConfig {
                provider: P::NAME.to_owned(),
                reason: error.to_string(),
            })?;
        let provider = P::from_config(config).await?;
        Ok(Arc::new(provider) as Arc<dyn SandboxProvider>)
    })
}

inventory::collect!(ProviderRegistration);

/// Registers a provider type implementing [`ProviderFactory`]. Put it in the provider
/// crate; the crate must be linked (`use my_provider as _;`) for it to appear.
#[macro_export]
macro_rules! register_provider {
    ($provider:ty) => {
        $crate::inventory::submit! {
            $crate::registry::ProviderRegistration::of::<$provider>()
        }
    };
}

/// Every linked registration, sorted by name. Two registrations under one name are an
/// error naming it.
pub fn registrations() -> Result<Vec<&'static ProviderRegistration>> {
    let mut all: Vec<_> = inventory::iter::<ProviderRegistration>
        .into_iter()
        .collect();
    all.sort_by_key(|registration| registration.name);
    if let Some(pair) = all.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(Error::InvalidConfig {
            provider: pair[0].name.to_owned(),
            reason: "two providers are registered under this name".to_owned(),
        });
    }
    Ok(all)
}

/// The registration named `name`; an unknown name lists the known ones.
pub fn find(name: &str) -> Result<&'static ProviderRegistration> {
    let all = registrations()?;
    all.iter()
        .find(|registration| registration.name == name)
        .copied()
        .ok_or_else(|| Error::UnknownProvider {
            name: name.to_owned(),
            known: all.iter().map(|r| r.name.to_owned()).collect(),
        })
}
