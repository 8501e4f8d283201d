//! What a caller asks for when it creates a sandbox.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capabilities::GpuKind;
use crate::error::{Error, Result};
use crate::ownership::RESERVED_TAG_PREFIX;

/// The longest lifetime (and idle timeout) any spec may ask for: 30 days.
///
/// Every provider can represent it (the local-process supervisor's shell arithmetic,
/// `sleep`/`timeout` in a container, Modal's own 24 h cap is lower and checked against
/// its capabilities), and a sandbox meant to outlive it should not be a sandbox. A
/// provider's own `max_lifetime_secs` may be lower; the lower bound wins.
pub const MAX_LIFETIME_SECS: u64 = 30 * 24 * 60 * 60;

/// The longest tag key, in bytes.
pub const MAX_TAG_KEY_LEN: usize = 128;

/// The longest tag value, in bytes.
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// A string that never shows itself in `Debug`, `Display` or serialised output.
///
/// Deserialising reads the real value; serialising writes `"[redacted]"`, so a spec can be
/// logged or stored without leaking what it carries.
#[derive(Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call only where the value is handed to the sandbox.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for SecretString {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

/// Where the sandbox's filesystem comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ImageSource {
    /// An image pulled from a registry, e.g. `alpine:3.21`.
    Registry {
        /// The image reference.
        reference: String,
    },
    /// An image built from a local Dockerfile context.
    Dockerfile {
        /// The build context directory.
        context_dir: PathBuf,
        /// The Dockerfile's path inside the context; `Dockerfile` when absent.
        dockerfile: Option<String>,
    },
    /// A filesystem snapshot taken earlier by the same provider.
    Snapshot {
        /// The snapshot's id.
        id: String,
    },
}

/// A GPU request: which kind and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GpuRequest {
    /// The GPU model.
    pub kind: GpuKind,
    /// How many, at least 1.
    pub count: u32,
}

/// What network traffic a sandbox may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum NetworkPolicy {
    /// Outbound traffic allowed.
    AllowAll,
    /// No network at all besides loopback.
    BlockAll,
    /// Outbound traffic only to these destinations.
    AllowList {
        /// CIDR ranges, e.g. `10.0.0.0/8`.
        #[serde(default)]
        cidrs: Vec<String>,
        /// Domain names, e.g. `pypi.org`.
        #[serde(default)]
        domains: Vec<String>,
    },
}

/// A persistent volume mounted into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeMount {
    /// The volume's name at the provider (created when missing).
    pub name: String,
    /// Absolute mount path inside the sandbox.
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A file placed in the sandbox before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitialFile {
    /// Path inside the sandbox (relative to the working directory, or absolute).
    pub path: String,
    /// File contents.
    pub contents: Vec<u8>,
}

/// Everything needed to create a sandbox. Build it with the setter methods, or fill the
/// fields and call [`SandboxSpec::validate`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSpec {
    /// Filesystem source; `None` means the provider's default image.
    pub image: Option<ImageSource>,
    /// The main process; empty means the sandbox idles until its lifetime ends.
    pub entrypoint: Vec<String>,
    /// Environment for the entrypoint and every command.
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: delivered like `env`, never logged or serialised.
    pub secrets: BTreeMap<String, SecretString>,
    /// Absolute working directory; `None` means the provider's default.
    pub workdir: Option<String>,
    /// CPU cores (fractions allowed).
    pub cpu: Option<f64>,
    /// Memory limit in MiB.
    pub memory_mib: Option<u64>,
    /// GPUs.
    pub gpu: Option<GpuRequest>,
    /// Lifetime in seconds, after which the sandbox is terminated even if its creator died;
    /// `None` means the provider's default.
    pub lifetime_secs: Option<u64>,
    /// Seconds without activity after which the sandbox is terminated.
    pub idle_timeout_secs: Option<u64>,
    /// The sandbox lives only while the process that created it does: it holds a lease
    /// that its creator keeps renewing, and ends this many seconds after the renewals
    /// stop (the creator was killed, say), whatever its lifetime says. Needs
    /// `client_lease`.
    pub lease_secs: Option<u64>,
    /// Network policy; `None` means the provider's default egress.
    pub network: Option<NetworkPolicy>,
    /// Volumes to mount.
    pub volumes: Vec<VolumeMount>,
    /// Files written before the sandbox is handed out.
    pub files: Vec<InitialFile>,
    /// A name, unique among the caller's running sandboxes at this provider.
    pub name: Option<String>,
    /// Key/value tags (keys under `sandkit.` are reserved for ownership tags).
    pub tags: BTreeMap<String, String>,
    /// Region to place the sandbox in.
    pub region: Option<String>,
    /// Ports to expose through tunnels.
    pub ports: Vec<u16>,
    /// Provider-specific options, checked against the provider's option schema.
    pub provider_options: BTreeMap<String, serde_json::Value>,
}

impl SandboxSpec {
    /// An empty spec: the provider's default image, limits and lifetime.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the image from a registry reference.
    pub fn image(mut self, reference: impl Into<String>) -> Self {
        self.image = Some(ImageSource::Registry {
            reference: reference.into(),
        });
        self
    }

    /// Sets the image source.
    pub fn image_source(mut self, source: ImageSource) -> Self {
        self.image = Some(source);
        self
    }

    /// Restores from a snapshot id.
    pub fn from_snapshot(self, id: impl Into<String>) -> Self {
        self.image_source(ImageSource::Snapshot { id: id.into() })
    }

    /// Sets the main process.
    pub fn entrypoint<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Adds a secret environment variable.
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.insert(name.into(), SecretString::new(value));
        self
    }

    /// Sets the working directory (absolute).
    pub fn workdir(mut self, path: impl Into<String>) -> Self {
        self.workdir = Some(path.into());
        self
    }

    /// Sets the cpu cores.
    pub fn cpu(mut self, cores: f64) -> Self {
        self.cpu = Some(cores);
        self
    }

    /// Sets the memory limit in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = Some(mib);
        self
    }

    /// Requests GPUs.
    pub fn gpu(mut self, kind: GpuKind, count: u32) -> Self {
        self.gpu = Some(GpuRequest { kind, count });
        self
    }

    /// Sets the lifetime in seconds.
    pub fn lifetime_secs(mut self, secs: u64) -> Self {
        self.lifetime_secs = Some(secs);
        self
    }

    /// Sets the idle timeout in seconds.
    pub fn idle_timeout_secs(mut self, secs: u64) -> Self {
        self.idle_timeout_secs = Some(secs);
        self
    }

    /// Ends the sandbox `secs` seconds after its creator stops renewing its lease (see
    /// [`SandboxSpec::lease_secs`]).
    pub fn lease_secs(mut self, secs: u64) -> Self {
        self.lease_secs = Some(secs);
        self
    }

    /// Sets the network policy.
    pub fn network(mut self, policy: NetworkPolicy) -> Self {
        self.network = Some(policy);
        self
    }

    /// Mounts a volume.
    pub fn volume(mut self, name: impl Into<String>, mount_path: impl Into<String>) -> Self {
        self.volumes.push(VolumeMount {
            name: name.into(),
            mount_path: mount_path.into(),
            read_only: false,
        });
        self
    }

    /// Adds an initial file.
    pub fn file(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push(InitialFile {
            path: path.into(),
            contents: contents.into(),
        });
        self
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Exposes a port.
    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }

    /// Sets a provider-specific option.
    pub fn provider_option(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.provider_options.insert(key.into(), value);
        self
    }

    /// This spec with `defaults` filling what it leaves unset: options take this spec's
    /// value when set, maps are merged (this spec wins on equal keys), lists are joined
    /// (defaults first).
    pub fn merged_over(&self, defaults: &SandboxSpec) -> SandboxSpec {
        fn joined<T: Clone>(defaults: &[T], own: &[T]) -> Vec<T> {
            defaults.iter().chain(own).cloned().collect()
        }
        fn merged<V: Clone>(
            defaults: &BTreeMap<String, V>,
            own: &BTreeMap<String, V>,
        ) -> BTreeMap<String, V> {
            let mut out = defaults.clone();
            out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            out
        }
        SandboxSpec {
            image: self.image.clone().or_else(|| defaults.image.clone()),
            entrypoint: if self.entrypoint.is_empty() {
                defaults.entrypoint.clone()
            } else {
                self.entrypoint.clone()
            },
            env: merged(&defaults.env, &self.env),
            secrets: merged(&defaults.secrets, &self.secrets),
            workdir: self.workdir.clone().or_else(|| defaults.workdir.clone()),
            cpu: self.cpu.or(defaults.cpu),
            memory_mib: self.memory_mib.or(defaults.memory_mib),
            gpu: self.gpu.or(defaults.gpu),
            lifetime_secs: self.lifetime_secs.or(defaults.lifetime_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(defaults.idle_timeout_secs),
            lease_secs: self.lease_secs.or(defaults.lease_secs),
            network: self.network.clone().or_else(|| defaults.network.clone()),
            volumes: joined(&defaults.volumes, &self.volumes),
            files: joined(&defaults.files, &self.files),
            name: self.name.clone().or_else(|| defaults.name.clone()),
            tags: merged(&defaults.tags, &self.tags),
            region: self.region.clone().or_else(|| defaults.region.clone()),
            ports: joined(&defaults.ports, &self.ports),
            provider_options: merged(&defaults.provider_options, &self.provider_options),
        }
    }

    /// Validates and returns the spec.
    pub fn build(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }

    /// Checks every provider-independent rule; the error names the first bad field.
    ///
    /// Limits that depend on the provider (maximum lifetime, GPU kinds, ...) are checked
    /// against its [`Capabilities`](crate::Capabilities) by [`crate::Requirements`] and the
    /// checking layer.
    pub fn validate(&self) -> Result<()> {
        self.validate_fields(false)
    }

    /// [`SandboxSpec::validate`] for providers: the same rules, except that sandkit's own
    /// ownership tags (added by the checking layer) are accepted. Other keys under the
    /// reserved prefix are still rejected.
    pub fn validate_with_ownership_tags(&self) -> Result<()> {
        self.validate_fields(true)
    }

    fn validate_fields(&self, ownership_tags_allowed: bool) -> Result<()> {
        match &self.image {
            Some(ImageSource::Registry { reference })
                if reference.is_empty()
                    || reference
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err(Error::invalid_spec(
                    "image.reference",
                    format!("`{}` is not an image reference", reference.escape_debug()),
                ));
            }
            Some(ImageSource::Snapshot { id }) if id.trim().is_empty() => {
                return Err(Error::invalid_spec(
                    "image.id",
                    "a snapshot id must not be empty",
                ));
            }
            _ => {}
        }
        validate_argv("entrypoint", &self.entrypoint, true)?;
        validate_env(
            "env",
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        validate_env(
            "secrets",
            self.secrets.iter().map(|(k, v)| (k.as_str(), v.expose())),
        )?;
        for name in self.secrets.keys() {
            if self.env.contains_key(name) {
                return Err(Error::invalid_spec(
                    format!("secrets.{name}"),
                    "also set in `env`; a variable comes from one place",
                ));
            }
        }
        if let Some(workdir) = &self.workdir {
            validate_absolute_path("workdir", workdir)?;
        }
        if let Some(cpu) = self.cpu
            && (!cpu.is_finite() || cpu <= 0.0)
        {
            return Err(Error::invalid_spec(
                "cpu",
                format!("must be a positive number of cores, got {cpu}"),
            ));
        }
        if self.memory_mib == Some(0) {
            return Err(Error::invalid_spec("memory_mib", "must be at least 1 MiB"));
        }
        if let Some(gpu) = &self.gpu
            && gpu.count == 0
        {
            return Err(Error::invalid_spec("gpu.count", "must be at least 1"));
        }
        validate_duration_secs("lifetime_secs", self.lifetime_secs)?;
        validate_duration_secs("idle_timeout_secs", self.idle_timeout_secs)?;
        if let Some(secs) = self.lease_secs
            && !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&secs)
        {
            return Err(Error::invalid_spec(
                "lease_secs",
                format!("must be {MIN_LEASE_SECS} to {MAX_LEASE_SECS} seconds, got {secs}"),
            ));
        }
        if let Some(NetworkPolicy::AllowList { cidrs, domains }) = &self.network {
            for (index, cidr) in cidrs.iter().enumerate() {
                validate_cidr(&format!("network.cidrs[{index}]"), cidr)?;
            }
            for (index, domain) in domains.iter().enumerate() {
                if domain.is_empty()
                    || !domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*'))
                {
                    return Err(Error::invalid_spec(
                        format!("network.domains[{index}]"),
                        format!("`{domain}` is not a domain name"),
                    ));
                }
            }
        }
        for (index, volume) in self.volumes.iter().enumerate() {
            if volume.name.is_empty() {
                return Err(Error::invalid_spec(
                    format!("volumes[{index}].name"),
                    "must not be empty",
                ));
            }
            validate_absolute_path(&format!("volumes[{index}].mount_path"), &volume.mount_path)?;
        }
        for (index, file) in self.files.iter().enumerate() {
            if file.path.is_empty() || file.path.contains('\0') {
                return Err(Error::invalid_spec(
                    format!("files[{index}].path"),
                    "must be a non-empty path without NUL bytes",
                ));
            }
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        for (key, value) in &self.tags {
            if ownership_tags_allowed && crate::ownership::OWNERSHIP_TAGS.contains(&key.as_str()) {
                continue;
            }
            validate_tag(key, value)?;
        }
        if let Some(region) = &self.region
            && region.trim().is_empty()
        {
            return Err(Error::invalid_spec("region", "must not be empty"));
        }
        for (index, port) in self.ports.iter().enumerate() {
            if *port == 0 {
                return Err(Error::invalid_spec(
                    format!("ports[{index}]"),
                    "must be between 1 and 65535",
                ));
            }
        }
        Ok(())
    }
}

/// Checks an argv: non-empty (unless `may_be_empty`) and free of NUL bytes.
pub(crate) fn validate_argv(field: &str, argv: &[String], may_be_empty: bool) -> Result<()> {
    if argv.is_empty() && !may_be_empty {
        return Err(Error::invalid_spec(field, "must name a program"));
    }
    if let Some(first) = argv.first()
        && first.is_empty()
    {
        return Err(Error::invalid_spec(
            format!("{field}[0]"),
            "program name must not be empty",
        ));
    }
    for (index, arg) in argv.iter().enumerate() {
        if arg.contains('\0') {
            return Err(Error::invalid_spec(
                format!("{field}[{index}]"),
                "must not contain NUL bytes",
            ));
        }
    }
    Ok(())
}

/// Checks a number of seconds: at least 1, at most [`MAX_LIFETIME_SECS`].
/// The shortest lease: renewals every few seconds must fit in it.
pub const MIN_LEASE_SECS: u64 = 5;
/// The longest lease.
pub const MAX_LEASE_SECS: u64 = 3600;

fn validate_duration_secs(field: &str, secs: Option<u64>) -> Result<()> {
    match secs {
        Some(0) => Err(Error::invalid_spec(field, "must be at least 1 second")),
        Some(secs) if secs > MAX_LIFETIME_SECS => Err(Error::invalid_spec(
            field,
            format!("must be at most {MAX_LIFETIME_SECS} seconds (30 days), got {secs}"),
        )),
        _ => Ok(()),
    }
}

/// Whether `name` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`
/// (POSIX's portable names, any case), the one grammar for `env`, `secrets` and the
/// environment of commands.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks one environment variable name; the error's field is `{field}.{name}`.
pub fn validate_env_name(field: &str, name: &str) -> Result<()> {
    if is_env_name(name) {
        return Ok(());
    }
    Err(Error::invalid_spec(
        format!("{field}.{}", name.escape_debug()),
        format!(
            "`{}` is not a variable name: names are a letter or `_`, then letters, digits and `_`",
            name.escape_debug()
        ),
    ))
}

/// Checks environment names against [`is_env_name`] and values as `execve` needs them.
pub(crate) fn validate_env<'a>(
    field: &str,
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    for (name, value) in vars {
        validate_env_name(field, name)?;
        if value.contains('\0') {
            return Err(Error::invalid_spec(
                format!("{field}.{name}"),
                "values must not contain NUL bytes",
            ));
        }
    }
    Ok(())
}

fn validate_absolute_path(field: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::invalid_spec(
            field,
            format!("must be an absolute path, got `{path}`"),
        ));
    }
    if path.contains('\0') {
        return Err(Error::invalid_spec(field, "must not contain NUL bytes"));
    }
    Ok(())
}

fn validate_cidr(field: &str, cidr: &str) -> Result<()> {
    let bad = || Error::invalid_spec(field, format!("`{cidr}` is not a CIDR range"));
    let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max_prefix = match address.parse::<std::net::IpAddr>().map_err(|_| bad())? {
        std::net::IpAddr::V4(_) => 32,
        std::net::IpAddr::V6(_) => 128,
    };
    if prefix > max_prefix {
        return Err(bad());
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 {
        return Err(Error::invalid_spec("name", "must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(Error::invalid_spec(
            "name",
            format!("`{name}` may only contain letters, digits, `.`, `_` and `-`"),
        ));
    }
    Ok(())
}

/// Whether `key` is a tag key: 1 to [`MAX_TAG_KEY_LEN`] bytes, a letter or digit, then
/// letters, digits, `.`, `_`, `-` and `/` (`team`, `com.example/run-id`).
///
/// One grammar for every provider: it is within what Docker labels (any string; the
/// engine recommends lowercase reverse-DNS keys) and Modal tags accept, it never needs
/// quoting in a `K=V` flag, a label filter or a shell, and sandkit's own ownership keys
/// (`sandkit.owner`, ...) follow it.
pub fn is_tag_key(key: &str) -> bool {
    let mut chars = key.chars();
    key.len() <= MAX_TAG_KEY_LEN
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

/// Checks a tag key against [`is_tag_key`]; the error's field is `{field}.{key}`. Used
/// for the tags of a spec and for the tags a listing filters by.
pub fn validate_tag_key(field: &str, key: &str) -> Result<()> {
    if is_tag_key(key) {
        return Ok(());
    }
    Err(Error::invalid_spec(
        format!("{field}.{}", key.escape_debug()),
        format!(
            "`{}` is not a tag key: keys are 1 to {MAX_TAG_KEY_LEN} characters, a letter or digit, then letters, digits, `.`, `_`, `-` and `/`",
            key.escape_debug()
        ),
    ))
}

/// Checks a tag value: at most [`MAX_TAG_VALUE_LEN`] bytes, no control characters.
pub fn validate_tag_value(field: &str, key: &str, value: &str) -> Result<()> {
    let field = format!("{field}.{}", key.escape_debug());
    if value.len() > MAX_TAG_VALUE_LEN {
        return Err(Error::invalid_spec(
            field,
            format!("values must be at most {MAX_TAG_VALUE_LEN} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid_spec(
            field,
            "values must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_tag(key: &str, value: &str) -> Result<()> {
    validate_tag_key("tags", key)?;
    if key.starts_with(RESERVED_TAG_PREFIX) {
        return Err(Error::invalid_spec(
            format!("tags.{key}"),
            format!("keys starting with `{RESERVED_TAG_PREFIX}` are reserved for ownership tags"),
        ));
    }
    validate_tag_value("tags", key, value)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
