//! The connection to the Docker Engine: address, negotiated API version, and what the
//! engine reports about itself.

use std::time::Duration;

use bollard::Docker;
use sandkit_core::{Error, Result};

use crate::config::LocalDockerConfig;
use crate::error::{self, START_ENGINE_HINT, Subject};

/// A connected engine. `bollard` opens a fresh connection per request on a Unix socket
/// (it keeps no idle connections), so an engine restart needs no reconnect logic here:
/// the next request simply connects again.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    /// The client.
    pub docker: Docker,
    /// The address it talks to.
    pub host: String,
    /// The API version both sides speak.
    pub api_version: String,
    /// The engine's version.
    pub server_version: String,
    /// OCI runtimes the engine knows (`runc`, `runsc`, `nvidia`, ...).
    pub runtimes: Vec<String>,
    /// Cpu cores of the engine's host.
    pub ncpu: u32,
    /// Memory of the engine's host, in bytes.
    pub mem_total_bytes: u64,
    /// Whether containers keep running while the engine restarts.
    pub live_restore: bool,
    /// Whether the engine's processes are this host's processes (a local Linux engine),
    /// so a command's process tree can be found in `/proc` and killed.
    pub shares_processes: bool,
}

impl Engine {
    /// Connects to the engine `config` names, negotiates the API version and reads the
    /// engine's facts. Fails with [`Error::Unavailable`] when no engine answers.
    pub async fn connect(config: &LocalDockerConfig) -> Result<Self> {
        let host = config.resolved_host();
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| unreachable_engine(&host, error::map(e, Subject::Engine)))?
            .with_timeout(Duration::from_secs(config.request_timeout_secs.max(1)));
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable_engine(&host, error::map(e, Subject::Engine)))?;
        let info = docker
            .info()
            .await
            .map_err(|e| unreachable_engine(&host, error::map(e, Subject::Engine)))?;
        let version = docker
            .version()
            .await
            .map_err(|e| error::map(e, Subject::Engine))?;
        let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        runtimes.sort();
        let local_socket = host.starts_with("unix://");
        let same_host = info.name.as_deref().is_some_and(|name| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|ours| ours.into_string().ok())
                .is_some_and(|ours| ours == name)
        });
        let engine = Self {
            api_version: docker.client_version().to_string(),
            server_version: version.version.unwrap_or_default(),
            runtimes,
            ncpu: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            mem_total_bytes: info
                .mem_total
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            live_restore: info.live_restore_enabled.unwrap_or(false),
            shares_processes: cfg!(target_os = "linux")
                && local_socket
                && same_host
                && std::path::Path::new("/proc/self/stat").exists(),
            docker,
            host,
        };
        if let Some(runtime) = &config.runtime
            && !engine.runtimes.contains(runtime)
        {
            return Err(Error::InvalidConfig {
                provider: crate::provider::PROVIDER_NAME.to_owned(),
                reason: format!(
                    "runtime: the engine does not know `{runtime}`; it has {}",
                    engine.runtimes.join(", ")
                ),
            });
        }
        if !engine.live_restore {
            tracing::warn!(
                host = %engine.host,
                "the Docker Engine runs without live-restore: sandboxes stop when dockerd restarts"
            );
        }
        tracing::debug!(
            host = %engine.host,
            api_version = %engine.api_version,
            server_version = %engine.server_version,
            "connected to the Docker Engine"
        );
        Ok(engine)
    }

    /// Whether the engine has the NVIDIA runtime, i.e. can hand GPUs to containers.
    pub fn has_nvidia_runtime(&self) -> bool {
        self.runtimes.iter().any(|runtime| runtime == "nvidia")
    }
}

/// Adds the address and the hint to start an engine to a connection failure.
fn unreachable_engine(host: &str, error: Error) -> Error {
    match error {
        Error::Unavailable { message } if !message.contains(START_ENGINE_HINT) => {
            Error::Unavailable {
                message: format!("Docker Engine at {host}: {message}; {START_ENGINE_HINT}"),
            }
        }
        Error::Unavailable { message } => Error::Unavailable {
            message: format!("Docker Engine at {host}: {message}"),
        },
        other => other,
    }
}
