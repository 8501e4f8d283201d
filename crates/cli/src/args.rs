//! Flags shared by several subcommands, and the parsers that turn flag values into
//! sandkit types. A parser's error is shown by clap next to the flag it came from.

use std::path::PathBuf;

use clap::Args;
use sandkit::{GpuKind, GpuRequest, ImageSource, NetworkPolicy, SandboxSpec, SecretString};

use crate::error::CliError;

/// The sandbox a `run` or `create` asks for. Flags add to (or override) `--spec FILE`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Sandbox spec")]
pub struct SpecArgs {
    /// Start from this JSON SandboxSpec (`sandkit schema spec`); other flags add to it.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,

    /// Image from a registry, e.g. alpine:3.21.
    #[arg(long, value_name = "REFERENCE", conflicts_with = "snapshot")]
    pub image: Option<String>,

    /// Restore the filesystem from a snapshot (see `sandkit snapshot`).
    #[arg(long, value_name = "SNAPSHOT_ID")]
    pub snapshot: Option<String>,

    /// Environment variable for every command (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env, allow_hyphen_values = true)]
    pub env: Vec<(String, String)>,

    /// Secret environment variable, never logged; K alone takes the value from this
    /// process's environment, which keeps it off the command line (repeatable).
    #[arg(
        long = "secret",
        value_name = "K=V|K",
        value_parser = parse_secret,
        allow_hyphen_values = true
    )]
    pub secrets: Vec<(String, SecretString)>,

    /// Absolute working directory inside the sandbox.
    #[arg(long, value_name = "PATH")]
    pub workdir: Option<String>,

    /// CPU cores (fractions allowed).
    #[arg(long, value_name = "CORES", allow_negative_numbers = true)]
    pub cpu: Option<f64>,

    /// Memory limit in MiB.
    #[arg(long, value_name = "MIB", allow_negative_numbers = true)]
    pub memory_mib: Option<u64>,

    /// GPUs, e.g. H100 or A100-80GB:2.
    #[arg(long, value_name = "KIND[:N]", value_parser = parse_gpu)]
    pub gpu: Option<GpuRequest>,

    /// Lifetime in seconds, at most 2592000 (30 days; Modal allows 24 h); the sandbox
    /// ends then even if nobody terminates it.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub lifetime_secs: Option<u64>,

    /// End the sandbox after this many seconds without activity (at most 30 days).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub idle_timeout_secs: Option<u64>,

    /// End the sandbox this many seconds after this process stops renewing its lease
    /// (5 to 3600; providers with `client_lease`). `run` takes a 15 s lease unless
    /// `--keep` is given, so a killed `run` leaves nothing behind.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub lease_secs: Option<u64>,

    /// No network besides loopback.
    #[arg(long, conflicts_with_all = ["allow_cidr", "allow_domain"])]
    pub block_network: bool,

    /// Allow outbound traffic only to this CIDR range (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub allow_cidr: Vec<String>,

    /// Allow outbound traffic only to this domain (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    pub allow_domain: Vec<String>,

    /// A name, unique among your running sandboxes at the provider.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Tag (repeatable): K is a letter or digit, then letters, digits, `.`, `_`, `-`,
    /// `/`; keys under `sandkit.` are reserved.
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag, allow_hyphen_values = true)]
    pub tags: Vec<(String, String)>,

    /// Region to place the sandbox in.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Port to expose through a tunnel (repeatable).
    #[arg(long = "port", value_name = "PORT", allow_negative_numbers = true)]
    pub ports: Vec<u16>,

    /// Provider-specific option; V is JSON, or a string when it does not parse as JSON
    /// (repeatable).
    #[arg(long = "provider-option", value_name = "K=V", value_parser = parse_provider_option)]
    pub provider_options: Vec<(String, serde_json::Value)>,
}

impl SpecArgs {
    /// The spec these flags describe, not yet validated.
    pub fn to_spec(&self) -> Result<SandboxSpec, CliError> {
        let mut spec = match &self.spec {
            Some(path) => read_spec(path)?,
            None => SandboxSpec::new(),
        };
        if let Some(reference) = &self.image {
            spec = spec.image(reference);
        }
        if let Some(id) = &self.snapshot {
            spec = spec.image_source(ImageSource::Snapshot { id: id.clone() });
        }
        for (name, value) in &self.env {
            spec = spec.env(name, value);
        }
        for (name, value) in &self.secrets {
            spec.secrets.insert(name.clone(), value.clone());
        }
        if let Some(workdir) = &self.workdir {
            spec = spec.workdir(workdir);
        }
        spec.cpu = self.cpu.or(spec.cpu);
        spec.memory_mib = self.memory_mib.or(spec.memory_mib);
        spec.gpu = self.gpu.or(spec.gpu);
        spec.lifetime_secs = self.lifetime_secs.or(spec.lifetime_secs);
        spec.idle_timeout_secs = self.idle_timeout_secs.or(spec.idle_timeout_secs);
        spec.lease_secs = self.lease_secs.or(spec.lease_secs);
        if self.block_network {
            spec = spec.network(NetworkPolicy::BlockAll);
        } else if !self.allow_cidr.is_empty() || !self.allow_domain.is_empty() {
            spec = spec.network(NetworkPolicy::AllowList {
                cidrs: self.allow_cidr.clone(),
                domains: self.allow_domain.clone(),
            });
        }
        if let Some(name) = &self.name {
            spec = spec.name(name);
        }
        for (key, value) in &self.tags {
            spec = spec.tag(key, value);
        }
        if let Some(region) = &self.region {
            spec = spec.region(region);
        }
        spec.ports.extend(&self.ports);
        for (key, value) in &self.provider_options {
            spec = spec.provider_option(key, value.clone());
        }
        Ok(spec)
    }
}

fn read_spec(path: &PathBuf) -> Result<SandboxSpec, CliError> {
    // A file that cannot be read is a bad flag value, not a failed operation.
    let text = std::fs::read_to_string(path)
        .map_err(|error| CliError::usage(format!("--spec `{}`: {error}", path.display())))?;
    serde_json::from_str(&text).map_err(|error| {
        CliError::usage(format!(
            "--spec `{}` is not a valid SandboxSpec: {error}",
            path.display()
        ))
    })
}

/// Reads `--config`: inline JSON, or `@FILE`. Absent means the provider's defaults.
pub fn parse_config(value: Option<&str>) -> Result<serde_json::Value, CliError> {
    let Some(value) = value else {
        return Ok(serde_json::Value::Null);
    };
    let (text, origin) = match value.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|error| CliError::usage(format!("--config file `{path}`: {error}")))?,
            format!("--config file `{path}`"),
        ),
        None => (value.to_owned(), "--config".to_owned()),
    };
    serde_json::from_str(&text)
        .map_err(|error| CliError::usage(format!("{origin} is not valid JSON: {error}")))
}

/// `K=V`, split at the first `=`.
pub fn parse_key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected K=V with a non-empty K, got `{value}`")),
    }
}

/// `K=V` where K is an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`, the rule
/// of [`sandkit::spec::is_env_name`]).
pub fn parse_env(value: &str) -> Result<(String, String), String> {
    let (name, value) = parse_key_value(value)?;
    check_env_name(&name)?;
    Ok((name, value))
}

fn check_env_name(name: &str) -> Result<(), String> {
    if sandkit::spec::is_env_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a variable name: a letter or `_`, then letters, digits and `_`",
            name.escape_debug()
        ))
    }
}

/// `K=V` where K is a tag key ([`sandkit::spec::is_tag_key`]).
pub fn parse_tag(value: &str) -> Result<(String, String), String> {
    let (key, value) = parse_key_value(value)?;
    sandkit::spec::validate_tag_key("tags", &key)
        .and_then(|()| sandkit::spec::validate_tag_value("tags", &key, &value))
        .map_err(|error| match error {
            sandkit::Error::InvalidSpec { reason, .. } => reason,
            other => other.to_string(),
        })?;
    Ok((key, value))
}

/// A string that must not be empty (or only blanks): owners, run ids.
pub fn parse_non_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// `K=V`, or `K` to take the value from this process's environment.
fn parse_secret(value: &str) -> Result<(String, SecretString), String> {
    // Never an error once there is a `=`: clap would repeat the whole value, secret and
    // all, in its message. A bad name is refused by spec validation, which names
    // `secrets.<K>` and never the value.
    match value.split_once('=') {
        Some((key, secret)) => Ok((key.to_owned(), SecretString::new(secret.to_owned()))),
        None => match std::env::var(value) {
            Ok(secret) => Ok((value.to_owned(), SecretString::new(secret))),
            Err(_) => Err(format!(
                "`{value}` is not set in the environment; pass K=V or export {value}"
            )),
        },
    }
}

/// `KIND` or `KIND:N`, e.g. `H100` or `a100-80gb:2`.
pub fn parse_gpu(value: &str) -> Result<GpuRequest, String> {
    let (kind, count) = match value.split_once(':') {
        Some((kind, count)) => {
            let count = count
                .parse::<u32>()
                .map_err(|_| format!("GPU count `{count}` is not a whole number"))?;
            (kind, count)
        }
        None => (value, 1),
    };
    let kind = kind.parse::<GpuKind>().map_err(|error| error.to_string())?;
    Ok(GpuRequest { kind, count })
}

/// `K=V` where V is JSON, or a plain string when it is not JSON.
fn parse_provider_option(value: &str) -> Result<(String, serde_json::Value), String> {
    let (key, raw) = parse_key_value(value)?;
    let value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw));
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_env("A B=x").unwrap_err().contains("A B"));
        assert!(parse_env("1A=x").is_err());
        assert_eq!(parse_env("_A1=x").unwrap(), ("_A1".into(), "x".into()));
        assert!(parse_tag("a b=1").unwrap_err().contains("a b"));
        assert!(parse_tag("team=evals").is_ok());
        assert!(parse_non_empty("").is_err());
        assert!(parse_non_empty(" ").is_err());
    }

    #[test]
    fn gpus_take_an_optional_count() {
        let gpu = parse_gpu("h100").unwrap();
        assert_eq!((gpu.kind, gpu.count), (GpuKind::H100, 1));
        let gpu = parse_gpu("A100-80GB:2").unwrap();
        assert_eq!((gpu.kind, gpu.count), (GpuKind::A100_80GB, 2));
        assert!(parse_gpu("H100:many").unwrap_err().contains("many"));
        assert!(parse_gpu("H1000").unwrap_err().contains("gpu.kind"));
    }

    #[test]
    fn secrets_come_from_the_flag_or_the_environment() {
        let (name, value) = parse_secret("TOKEN=abc").unwrap();
        assert_eq!((name.as_str(), value.expose()), ("TOKEN", "abc"));
        // PATH is set in every test environment.
        let (_, value) = parse_secret("PATH").unwrap();
        assert!(!value.expose().is_empty());
        // A bad name is left to spec validation, so no error message repeats the value.
        let (name, _) = parse_secret("A B=hunter2").unwrap();
        let spec = SpecArgs {
            secrets: vec![(name, SecretString::new("hunter2"))],
            ..SpecArgs::default()
        }
        .to_spec()
        .unwrap();
        let error = spec.validate().unwrap_err().to_string();
        assert!(
            error.contains("secrets.A B") && !error.contains("hunter2"),
            "{error}"
        );
        let error = parse_secret("SANDKIT_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(error.contains("not set"), "{error}");
    }

    #[test]
    fn flags_build_the_spec() {
        let args = SpecArgs {
            image: Some("alpine:3.21".into()),
            env: vec![("A".into(), "1".into())],
            cpu: Some(0.5),
            block_network: true,
            tags: vec![("team".into(), "evals".into())],
            provider_options: vec![("x".into(), serde_json::json!(3))],
            ..SpecArgs::default()
        };
        let spec = args.to_spec().unwrap();
        assert_eq!(spec.env["A"], "1");
        assert_eq!(spec.cpu, Some(0.5));
        assert_eq!(spec.network, Some(NetworkPolicy::BlockAll));
        assert_eq!(spec.tags["team"], "evals");
        assert_eq!(spec.provider_options["x"], 3);
        spec.validate().unwrap();
    }

    #[test]
    fn config_is_inline_json_or_a_file() {
        assert_eq!(parse_config(None).unwrap(), serde_json::Value::Null);
        assert_eq!(
            parse_config(Some(r#"{"a": 1}"#)).unwrap(),
            serde_json::json!({"a": 1})
        );
        let error = parse_config(Some("{nope")).unwrap_err().to_string();
        assert!(error.contains("--config"), "{error}");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), r#"{"b": 2}"#).unwrap();
        let arg = format!("@{}", file.path().display());
        assert_eq!(
            parse_config(Some(&arg)).unwrap(),
            serde_json::json!({"b": 2})
        );
    }
}
