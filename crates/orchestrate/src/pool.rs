//! Pools: a named provider with its configuration, a default spec and a concurrency
//! limit, usually loaded from a `sandkit.toml` file.
//!
//! ```toml
//! [[pool]]
//! name = "local"
//! provider = "local-process"
//! max_concurrent = 8
//! [pool.spec]
//! lifetime_secs = 600
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use sandkit::capabilities::Capabilities;
use sandkit::error::{Error, Result};
use sandkit::layers::LayerOptions;
use sandkit::provider::SandboxProvider;
use sandkit::registry;
use sandkit::requirements::Requirements;
use sandkit::spec::SandboxSpec;

use crate::plan::{Decision, plan_over};

/// One pool as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name, unique in the file.
    pub name: String,
    /// Registry name of the provider.
    pub provider: String,
    /// Provider configuration (checked against the provider's config schema).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Defaults for every sandbox of this pool; a job's own spec overrides them.
    #[serde(default)]
    pub spec: SandboxSpec,
    /// Most sandboxes of this pool alive at once; `None` means no limit of ours.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Ready sandboxes to keep for the pool's default spec (a warm pool).
    #[serde(default)]
    pub warm: u32,
}

/// The pools file: an ordered list of `[[pool]]` tables. Order is preference order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolsFile {
    /// The pools, most preferred first.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
}

impl PoolsFile {
    /// The JSON Schema of the file (TOML maps onto it one to one).
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(PoolsFile)
    }

    /// Parses TOML. Errors carry the line and the offending field; `origin` names the
    /// file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: PoolsFile = parse_toml(text).map_err(|(line, reason)| Error::ConfigFile {
            path: origin.to_owned(),
            line,
            reason,
        })?;
        let mut seen = std::collections::BTreeSet::new();
        for (index, pool) in file.pools.iter().enumerate() {
            let line = line_of_pool(text, index);
            if pool.name.trim().is_empty() {
                return Err(Error::ConfigFile {
                    path: origin.to_owned(),
                    line,
                    reason: format!("pool[{index}].name: must not be empty"),
                });
            }
            if !seen.insert(pool.name.as_str()) {
                return Err(Error::ConfigFile {
                    path: origin.to_owned(),
                    line,
                    reason: format!("pool `{}`: the name is used twice", pool.name),
                });
            }
        }
        Ok(file)
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::ConfigFile {
            path: path.display().to_string(),
            line: None,
            reason: error.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Which pools could take `spec` with the extra `requirements`, from each provider's
    /// registered capabilities, without building or connecting to any provider. A pool
    /// naming a provider this build does not link is an error naming the pool.
    pub fn plan(&self, spec: &SandboxSpec, requirements: &Requirements) -> Result<Decision> {
        let mut pools = Vec::with_capacity(self.pools.len());
        for pool in &self.pools {
            let registration =
                registry::find(&pool.provider).map_err(|error| Error::ConfigFile {
                    path: format!("pool `{}`", pool.name),
                    line: None,
                    reason: error.to_string(),
                })?;
            pools.push((pool, registration.capabilities()));
        }
        Ok(plan_over(
            pools
                .iter()
                .map(|(pool, capabilities)| (pool.name.as_str(), &pool.spec, capabilities)),
            spec,
            requirements,
        ))
    }

    /// Builds every pool: finds its provider in the registry, builds it with its config,
    /// wraps it in the standard layers, and checks that the provider can honour the
    /// pool's default spec. Errors name the pool.
    pub async fn build(&self, options: LayerOptions) -> Result<Vec<Arc<Pool>>> {
        let mut pools = Vec::with_capacity(self.pools.len());
        for config in &self.pools {
            pools.push(Arc::new(Pool::build(config, options.clone()).await?));
        }
        Ok(pools)
    }
}

/// Deserializes the file, naming the line (from the toml crate's span) and the field
/// (the path serde took, such as `pool[1].spec.cpu`) of the first error.
fn parse_toml(text: &str) -> std::result::Result<PoolsFile, (Option<usize>, String)> {
    let line_of = |error: &toml::de::Error| {
        error
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
    };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|error| (line_of(&error), error.message().to_owned()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        let error = error.into_inner();
        let reason = if field == "." {
            error.message().to_owned()
        } else {
            format!("`{field}`: {}", error.message())
        };
        (line_of(&error), reason)
    })
}

/// The line where the `index`-th `[[pool]]` table starts, for error messages.
fn line_of_pool(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with("[[pool]]"))
        .nth(index)
        .map(|(number, _)| number + 1)
}

/// A built pool: provider (with layers), default spec and admission control.
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The provider, wrapped in the standard layers.
    pub provider: Arc<dyn SandboxProvider>,
    /// Default spec for sandboxes of this pool.
    pub spec: SandboxSpec,
    /// Ready sandboxes to keep for the default spec.
    pub warm: u32,
    limit: Option<Arc<Semaphore>>,
    max_concurrent: Option<u32>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("provider", &self.provider.name())
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool over an existing provider (wrap it in layers yourself).
    pub fn new(
        name: impl Into<String>,
        provider: Arc<dyn SandboxProvider>,
        spec: SandboxSpec,
        max_concurrent: Option<u32>,
    ) -> Result<Self> {
        let name = name.into();
        let unmet = Requirements::from_spec(&spec).check(provider.capabilities());
        if !unmet.is_empty() {
            let reasons: Vec<String> = unmet.iter().map(ToString::to_string).collect();
            return Err(Error::ConfigFile {
                path: format!("pool `{name}`"),
                line: None,
                reason: format!(
                    "provider `{}` cannot honour the pool's spec: {}",
                    provider.name(),
                    reasons.join("; ")
                ),
            });
        }
        spec.validate().map_err(|error| Error::ConfigFile {
            path: format!("pool `{name}`"),
            line: None,
            reason: error.to_string(),
        })?;
        Ok(Self {
            name,
            provider,
            spec,
            warm: 0,
            limit: max_concurrent.map(|n| Arc::new(Semaphore::new(n as usize))),
            max_concurrent,
        })
    }

    async fn build(config: &PoolConfig, options: LayerOptions) -> Result<Self> {
        let in_pool = |error: Error| Error::ConfigFile {
            path: format!("pool `{}`", config.name),
            line: None,
            reason: error.to_string(),
        };
        // The facade's one way to find, build and layer a provider by name.
        let provider = sandkit::Provider::named(&config.provider)
            .config(&config.config)
            .layers(options)
            .open()
            .await
            .map_err(in_pool)?;
        let mut pool = Self::new(
            config.name.clone(),
            provider,
            config.spec.clone(),
            config.max_concurrent,
        )?;
        pool.warm = config.warm;
        Ok(pool)
    }

    /// The provider's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        self.provider.capabilities()
    }

    /// The concurrency limit, if any.
    pub fn max_concurrent(&self) -> Option<u32> {
        self.max_concurrent
    }

    /// Sandboxes that may still be started under the concurrency limit.
    pub fn available_permits(&self) -> Option<usize> {
        self.limit.as_ref().map(|limit| limit.available_permits())
    }

    /// Takes a concurrency slot without waiting; `None` when the pool is full.
    pub fn try_admit(&self) -> Option<Admission> {
        match &self.limit {
            None => Some(Admission(None)),
            Some(limit) => limit
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|p| Admission(Some(p))),
        }
    }

    /// Takes a concurrency slot, waiting at most `timeout` for one.
    pub async fn admit(&self, timeout: Duration) -> Option<Admission> {
        match &self.limit {
            None => Some(Admission(None)),
            Some(limit) => tokio::time::timeout(timeout, limit.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|p| Admission(Some(p))),
        }
    }
}

/// A held concurrency slot of a pool; released when dropped.
#[derive(Debug)]
pub struct Admission(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pools_file_parses_in_order() {
        let file = PoolsFile::parse(
            r#"
[[pool]]
name = "first"
provider = "local-process"
max_concurrent = 4
[pool.spec]
lifetime_secs = 60

[[pool]]
name = "second"
provider = "local-docker"
warm = 2
"#,
            "sandkit.toml",
        )
        .unwrap();
        let names: Vec<_> = file.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        assert_eq!(file.pools[0].spec.lifetime_secs, Some(60));
        assert_eq!(file.pools[1].warm, 2);
    }

    #[test]
    fn a_wrong_field_is_reported_with_its_line_and_name() {
        let error = PoolsFile::parse(
            "[[pool]]\nname = \"a\"\nprovider = \"x\"\nmax_concurent = 3\n",
            "sandkit.toml",
        )
        .unwrap_err();
        match &error {
            Error::ConfigFile { line, reason, .. } => {
                assert_eq!(*line, Some(4), "{error}");
                assert!(reason.contains("max_concurent"), "{reason}");
            }
            other => panic!("expected ConfigFile, got {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_names_what_was_expected() {
        let error = PoolsFile::parse(
            "[[pool]]\nname = \"a\"\nprovider = \"x\"\nwarm = \"two\"\n",
            "sandkit.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("line 4")
                && error.contains("`pool[0].warm`")
                && error.contains("expected u32"),
            "{error}"
        );
    }

    #[test]
    fn a_nested_field_is_named_by_its_path() {
        let error = PoolsFile::parse(
            "[[pool]]\nname = \"a\"\nprovider = \"x\"\n\n[[pool]]\nname = \"b\"\nprovider = \"y\"\n[pool.spec]\ncpu = \"two\"\n",
            "sandkit.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("sandkit.toml")
                && error.contains("line 9")
                && error.contains("`pool[1].spec.cpu`"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_pool_names_are_rejected() {
        let error = PoolsFile::parse(
            "[[pool]]\nname = \"a\"\nprovider = \"x\"\n[[pool]]\nname = \"a\"\nprovider = \"y\"\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("line 4") && error.contains("twice"),
            "{error}"
        );
    }
}
