//! Configuration: where Modal is, which credentials, which app and environment.
//!
//! Resolution follows Modal's own clients: an explicit value in [`ModalConfig`] wins, then the
//! `MODAL_*` environment variables, then the active profile of `~/.modal.toml` (or the file
//! named by `MODAL_CONFIG_PATH`), then defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandkit_core::{Error, Result, SecretString};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::NAME;

/// Modal's public control plane.
pub const DEFAULT_SERVER_URL: &str = "https://api.modal.com";
/// The app sandboxes are created in when the configuration names none.
pub const DEFAULT_APP_NAME: &str = "sandkit";
/// The image used when a spec names none.
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";

/// How long `create` waits for scheduling by default: Modal's Python client (1.6.4) waits
/// 21 minutes (`_SANDBOX_SCHEDULING_TIMEOUT` in `modal/sandbox/_impl_v1.py`).
pub const DEFAULT_SCHEDULE_TIMEOUT_SECS: u64 = 21 * 60;
/// How long a first router call is retried by default: Modal's Python client (1.6.4)
/// retries connecting to a task's router for up to 310 s (`total_timeout` of
/// `_connect_channel` in `modal/sandbox/_task_command_router_client.py`).
pub const DEFAULT_ROUTER_CONNECT_TIMEOUT_SECS: u64 = 310;
/// The lifetime of a filesystem snapshot by default: Modal's Python client (1.6.4) sends
/// 30 days (the `ttl` default of `Sandbox.snapshot_filesystem`).
pub const DEFAULT_SNAPSHOT_TTL_SECS: i64 = 30 * 24 * 3600;
/// The longest wait a configuration may ask for: a week.
const MAX_WAIT_SECS: u64 = 7 * 24 * 3600;

/// Configuration of the `modal` provider. Every field is optional: `{}` reads credentials
/// from the environment or `~/.modal.toml` like Modal's own clients do.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModalConfig {
    /// Token id (`ak-…`). Default: `MODAL_TOKEN_ID`, then the profile's `token_id`.
    pub token_id: Option<String>,
    /// Token secret (`as-…`), never printed. Default: `MODAL_TOKEN_SECRET`, then the
    /// profile's `token_secret`.
    pub token_secret: Option<SecretString>,
    /// Profile of the config file. Default: `MODAL_PROFILE`, then the table with
    /// `active = true`, then `default`.
    pub profile: Option<String>,
    /// Config file. Default: `MODAL_CONFIG_PATH`, then `~/.modal.toml`.
    pub config_path: Option<PathBuf>,
    /// Control-plane URL (`https://…`, or `http://…` for a local fake). Default:
    /// `MODAL_SERVER_URL`, then the profile's `server_url`, then `https://api.modal.com`.
    pub server_url: Option<String>,
    /// Modal environment. Default: `MODAL_ENVIRONMENT`, then the profile's `environment`,
    /// then the workspace's default environment.
    pub environment: Option<String>,
    /// App that owns the sandboxes (created when missing). Default: `sandkit`.
    pub app_name: Option<String>,
    /// Image for specs that name none. Default: `debian:bookworm-slim`.
    pub default_image: Option<String>,
    /// Image builder version. Default: `MODAL_IMAGE_BUILDER_VERSION`, then the profile's
    /// `image_builder_version`, then the environment's setting from the server.
    pub image_builder_version: Option<String>,
    /// How long `create` waits for the sandbox to be scheduled, in seconds: it polls
    /// `SandboxGetTaskId` until a task appears and keeps polling through transient errors
    /// until then. Default: 1260 (21 minutes, as Modal's Python client waits). At least 1,
    /// at most 604800 (a week).
    pub schedule_timeout_secs: Option<u64>,
    /// How long a sandbox's first command-router call (and the connection it opens) is
    /// retried on connection errors and `UNAVAILABLE`, in seconds: a task can take a while
    /// to start on its worker after it is scheduled. Default: 310 (as Modal's Python client
    /// retries connecting to the router). At least 1, at most 604800 (a week).
    pub router_connect_timeout_secs: Option<u64>,
    /// How long Modal keeps a filesystem snapshot's image, in seconds, sent as
    /// `TaskSnapshotFilesystem.ttl_seconds`; `-1` keeps it indefinitely. Default: 2592000
    /// (30 days, as Modal's Python client sends).
    pub snapshot_ttl_secs: Option<i64>,
    /// Regions offered for placement. Default: the regions of Modal's region-selection
    /// guide (`us`, `us-east`, `eu-west`, ...); the server validates the choice.
    pub regions: Option<Vec<String>>,
    /// Cap on the total time spent honouring server-directed retry delays of one call, in
    /// seconds; 0 disables them. Default: `MODAL_MAX_THROTTLE_WAIT`, else no cap.
    pub max_throttle_wait_secs: Option<u64>,
    /// Which of Modal's sandbox APIs new sandboxes are made with. Default: `auto`.
    pub protocol: Option<Protocol>,
    /// A PEM file of certificate authorities to trust for the control plane and the
    /// command routers, besides the public roots: for a server with a private CA, such as
    /// `modal-fake emulate --tls-ca-file`.
    pub ca_file: Option<PathBuf>,
}

/// Which of Modal's sandbox APIs `create` uses. Sandboxes of either kind are found,
/// listed, run in and terminated whatever this says: the id tells which API serves one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// As Modal's Python client (1.6.4) chooses: V2 unless the sandbox asks for a GPU,
    /// which Modal serves on V1 only.
    #[default]
    Auto,
    /// `SandboxCreate`, then polling `SandboxGetTaskId` for the task; listing and lookup
    /// by name use V1 calls only.
    V1,
    /// `SandboxCreateV2`, whose answer carries the task and its router access. A sandbox
    /// with a GPU is refused, as Modal refuses it.
    V2,
}

/// The configuration after resolution: everything the client needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub server_url: String,
    pub token_id: String,
    pub token_secret: SecretString,
    pub environment: String,
    pub app_name: String,
    pub default_image: String,
    pub image_builder_version: Option<String>,
    pub schedule_timeout: Duration,
    pub router_connect_timeout: Duration,
    pub snapshot_ttl_secs: i64,
    pub max_throttle_wait: Option<Duration>,
    pub protocol: Protocol,
    pub ca_file: Option<PathBuf>,
}

/// One `[profile]` table of `~/.modal.toml`.
#[derive(Debug, Default, Deserialize)]
struct Profile {
    token_id: Option<String>,
    token_secret: Option<SecretString>,
    server_url: Option<String>,
    environment: Option<String>,
    image_builder_version: Option<String>,
    #[serde(default)]
    active: bool,
}

/// Where settings come from besides the config struct; a seam for tests.
pub(crate) trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn home(&self) -> Option<PathBuf>;
}

/// The process environment.
pub(crate) struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
    fn home(&self) -> Option<PathBuf> {
        std::env::var_os("HOME").map(PathBuf::from)
    }
}

impl ModalConfig {
    /// Resolves against the process environment and the config file.
    pub(crate) fn resolve(&self) -> Result<Settings> {
        self.resolve_with(&ProcessEnvironment)
    }

    pub(crate) fn resolve_with(&self, env: &dyn Environment) -> Result<Settings> {
        let profile = self.load_profile(env)?;
        let token_id = self
            .token_id
            .clone()
            .or_else(|| env.var("MODAL_TOKEN_ID"))
            .or(profile.token_id);
        let token_secret = self
            .token_secret
            .clone()
            .or_else(|| env.var("MODAL_TOKEN_SECRET").map(SecretString::new))
            .or(profile.token_secret);
        let (token_id, token_secret) = match (token_id, token_secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.expose().is_empty() => {
                (id, secret)
            }
            (id, secret) => {
                let mut missing = Vec::new();
                if id.is_none_or(|id| id.is_empty()) {
                    missing.push("token id (MODAL_TOKEN_ID or `token_id` in ~/.modal.toml)");
                }
                if secret.is_none_or(|secret| secret.expose().is_empty()) {
                    missing.push(
                        "token secret (MODAL_TOKEN_SECRET or `token_secret` in ~/.modal.toml)",
                    );
                }
                return Err(Error::AuthenticationFailed {
                    message: format!("Modal credentials are missing: {}", missing.join(", ")),
                });
            }
        };
        let server_url = self
            .server_url
            .clone()
            .or_else(|| env.var("MODAL_SERVER_URL"))
            .or(profile.server_url)
            .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
        // Python's clients accept a comma-separated list of fallbacks; the first is the
        // primary and the one we use.
        let server_url = server_url
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches('/')
            .to_owned();
        if !(server_url.starts_with("http://") || server_url.starts_with("https://")) {
            return Err(invalid(format!(
                "server_url `{server_url}` must start with http:// or https://"
            )));
        }
        let max_throttle_wait = match self.max_throttle_wait_secs {
            Some(secs) => Some(secs),
            None => match env.var("MODAL_MAX_THROTTLE_WAIT") {
                Some(value) => Some(value.trim().parse::<u64>().map_err(|_| {
                    invalid(format!(
                        "MODAL_MAX_THROTTLE_WAIT must be whole seconds, got `{value}`"
                    ))
                })?),
                None => None,
            },
        };
        Ok(Settings {
            server_url,
            token_id,
            token_secret,
            environment: self
                .environment
                .clone()
                .or_else(|| env.var("MODAL_ENVIRONMENT"))
                .or(profile.environment)
                .unwrap_or_default(),
            app_name: self
                .app_name
                .clone()
                .unwrap_or_else(|| DEFAULT_APP_NAME.to_owned()),
            default_image: self
                .default_image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
            image_builder_version: self
                .image_builder_version
                .clone()
                .or_else(|| env.var("MODAL_IMAGE_BUILDER_VERSION"))
                .or(profile.image_builder_version),
            schedule_timeout: wait_secs(
                "schedule_timeout_secs",
                self.schedule_timeout_secs,
                DEFAULT_SCHEDULE_TIMEOUT_SECS,
            )?,
            router_connect_timeout: wait_secs(
                "router_connect_timeout_secs",
                self.router_connect_timeout_secs,
                DEFAULT_ROUTER_CONNECT_TIMEOUT_SECS,
            )?,
            snapshot_ttl_secs: snapshot_ttl(self.snapshot_ttl_secs)?,
            max_throttle_wait: max_throttle_wait.map(Duration::from_secs),
            protocol: self.protocol.unwrap_or_default(),
            ca_file: self.ca_file.clone(),
        })
    }

    /// The selected profile of the config file; an absent file is an empty profile.
    fn load_profile(&self, env: &dyn Environment) -> Result<Profile> {
        let path = self
            .config_path
            .clone()
            .or_else(|| env.var("MODAL_CONFIG_PATH").map(PathBuf::from))
            .or_else(|| env.home().map(|home| home.join(".modal.toml")));
        let Some(path) = path else {
            return Ok(Profile::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Profile::default());
            }
            Err(error) => {
                return Err(invalid(format!("cannot read {}: {error}", path.display())));
            }
        };
        let mut profiles: BTreeMap<String, Profile> =
            toml::from_str(&text).map_err(|error| config_file_error(&path, &error))?;
        let wanted = self.profile.clone().or_else(|| env.var("MODAL_PROFILE"));
        let name = match wanted {
            Some(name) => {
                if !profiles.contains_key(&name) {
                    return Err(invalid(format!(
                        "profile `{name}` is not in {}",
                        path.display()
                    )));
                }
                name
            }
            None => profiles
                .iter()
                .find(|(_, profile)| profile.active)
                .map(|(name, _)| name.clone())
                .unwrap_or_else(|| "default".to_owned()),
        };
        Ok(profiles.remove(&name).unwrap_or_default())
    }
}

/// A wait given in whole seconds: at least 1 (a zero wait would give up before the first
/// answer) and at most [`MAX_WAIT_SECS`] (so deadlines never overflow the clock).
fn wait_secs(field: &str, value: Option<u64>, default: u64) -> Result<Duration> {
    match value.unwrap_or(default) {
        secs @ 1..=MAX_WAIT_SECS => Ok(Duration::from_secs(secs)),
        secs => Err(invalid(format!(
            "{field} must be between 1 and {MAX_WAIT_SECS} seconds, got {secs}"
        ))),
    }
}

/// A snapshot lifetime: positive seconds, or `-1` (Modal's "never expires").
fn snapshot_ttl(value: Option<i64>) -> Result<i64> {
    match value.unwrap_or(DEFAULT_SNAPSHOT_TTL_SECS) {
        secs if secs > 0 || secs == -1 => Ok(secs),
        secs => Err(invalid(format!(
            "snapshot_ttl_secs must be a positive number of seconds or -1 (never expires), \
             got {secs}"
        ))),
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidConfig {
        provider: NAME.to_owned(),
        reason,
    }
}

/// A parse error of the config file. toml's message quotes the offending line, which could
/// be a token secret, so only its position and a description of the expected shape are kept.
fn config_file_error(path: &Path, error: &toml::de::Error) -> Error {
    let line = error
        .span()
        .and_then(|span| std::fs::read_to_string(path).ok().map(|text| (span, text)))
        .map(|(span, text)| text[..span.start.min(text.len())].lines().count().max(1));
    Error::ConfigFile {
        path: path.display().to_string(),
        line,
        reason: "not a Modal config: expected `[profile]` tables with token_id, token_secret, \
                 server_url, environment and active"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct FakeEnv {
        vars: HashMap<&'static str, String>,
        home: Option<PathBuf>,
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn home(&self) -> Option<PathBuf> {
            self.home.clone()
        }
    }

    fn env(vars: &[(&'static str, &str)], home: Option<&Path>) -> FakeEnv {
        FakeEnv {
            vars: vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            home: home.map(Path::to_path_buf),
        }
    }

    const TOML: &str = r#"
[default]
token_id = "ak-default"
token_secret = "as-default-secret"

[work]
token_id = "ak-work"
token_secret = "as-work-secret"
server_url = "http://127.0.0.1:9999"
environment = "dev"
active = true
"#;

    #[test]
    fn the_active_profile_is_used_and_env_vars_win() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".modal.toml"), TOML).unwrap();
        let settings = ModalConfig::default()
            .resolve_with(&env(&[], Some(home.path())))
            .unwrap();
        assert_eq!(settings.token_id, "ak-work");
        assert_eq!(settings.token_secret.expose(), "as-work-secret");
        assert_eq!(settings.server_url, "http://127.0.0.1:9999");
        assert_eq!(settings.environment, "dev");
        assert_eq!(settings.app_name, "sandkit");

        let settings = ModalConfig::default()
            .resolve_with(&env(
                &[
                    ("MODAL_PROFILE", "default"),
                    ("MODAL_TOKEN_ID", "ak-env"),
                    ("MODAL_ENVIRONMENT", "prod"),
                ],
                Some(home.path()),
            ))
            .unwrap();
        assert_eq!(settings.token_id, "ak-env");
        assert_eq!(settings.token_secret.expose(), "as-default-secret");
        assert_eq!(settings.server_url, DEFAULT_SERVER_URL);
        assert_eq!(settings.environment, "prod");
    }

    #[test]
    fn config_path_and_explicit_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.toml");
        std::fs::write(&path, TOML).unwrap();
        let config = ModalConfig {
            app_name: Some("evals".into()),
            token_secret: Some(SecretString::new("as-explicit")),
            ..Default::default()
        };
        let settings = config
            .resolve_with(&env(&[("MODAL_CONFIG_PATH", path.to_str().unwrap())], None))
            .unwrap();
        assert_eq!(settings.token_id, "ak-work");
        assert_eq!(settings.token_secret.expose(), "as-explicit");
        assert_eq!(settings.app_name, "evals");
    }

    #[test]
    fn missing_credentials_name_what_is_missing() {
        let error = ModalConfig::default()
            .resolve_with(&env(&[("MODAL_TOKEN_ID", "ak-1")], None))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, Error::AuthenticationFailed { .. }),
            "{error:?}"
        );
        assert!(message.contains("MODAL_TOKEN_SECRET"), "{message}");
        assert!(!message.contains("MODAL_TOKEN_ID"), "{message}");
    }

    #[test]
    fn an_unknown_profile_is_a_config_error() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".modal.toml"), TOML).unwrap();
        let error = ModalConfig::default()
            .resolve_with(&env(&[("MODAL_PROFILE", "nope")], Some(home.path())))
            .unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }

    #[test]
    fn a_broken_file_never_echoes_its_contents() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".modal.toml"),
            "[default]\ntoken_secret = as-unquoted-secret\n",
        )
        .unwrap();
        let error = ModalConfig::default()
            .resolve_with(&env(&[], Some(home.path())))
            .unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("as-unquoted-secret"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    fn credentials() -> ModalConfig {
        ModalConfig {
            token_id: Some("ak-1".into()),
            token_secret: Some(SecretString::new("as-1")),
            ..Default::default()
        }
    }

    #[test]
    fn waits_and_snapshot_ttl_default_to_modal_pythons() {
        let settings = credentials().resolve_with(&env(&[], None)).unwrap();
        assert_eq!(settings.schedule_timeout, Duration::from_secs(1260));
        assert_eq!(settings.router_connect_timeout, Duration::from_secs(310));
        assert_eq!(settings.snapshot_ttl_secs, 2_592_000);
        let settings = ModalConfig {
            schedule_timeout_secs: Some(5),
            router_connect_timeout_secs: Some(7),
            snapshot_ttl_secs: Some(-1),
            ..credentials()
        }
        .resolve_with(&env(&[], None))
        .unwrap();
        assert_eq!(settings.schedule_timeout, Duration::from_secs(5));
        assert_eq!(settings.router_connect_timeout, Duration::from_secs(7));
        assert_eq!(settings.snapshot_ttl_secs, -1);
    }

    #[test]
    fn bad_waits_and_ttls_are_config_errors_naming_the_field() {
        let cases = [
            (
                ModalConfig {
                    schedule_timeout_secs: Some(0),
                    ..credentials()
                },
                "schedule_timeout_secs",
            ),
            (
                ModalConfig {
                    router_connect_timeout_secs: Some(0),
                    ..credentials()
                },
                "router_connect_timeout_secs",
            ),
            (
                ModalConfig {
                    router_connect_timeout_secs: Some(u64::MAX),
                    ..credentials()
                },
                "router_connect_timeout_secs",
            ),
            (
                ModalConfig {
                    snapshot_ttl_secs: Some(0),
                    ..credentials()
                },
                "snapshot_ttl_secs",
            ),
            (
                ModalConfig {
                    snapshot_ttl_secs: Some(-2),
                    ..credentials()
                },
                "snapshot_ttl_secs",
            ),
        ];
        for (config, field) in cases {
            let error = config.resolve_with(&env(&[], None)).unwrap_err();
            assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
            assert!(error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let settings = ModalConfig {
            token_id: Some("ak-1".into()),
            token_secret: Some(SecretString::new("as-very-secret")),
            ..Default::default()
        }
        .resolve_with(&env(&[], None))
        .unwrap();
        assert!(!format!("{settings:?}").contains("as-very-secret"));
    }
}
