//! sandkit's agent as each container's init (see `sandkit-agent-host`): the host's
//! static binary bind-mounted read-only into the container, a socket in a host directory
//! bind-mounted beside it. Commands, signals, terminals, file watching, usage and leases
//! go through it; the Engine API stays for create, files, pause, snapshot and remove.
//!
//! The agent needs an engine on this host (a bind mount of a host path, descriptors
//! passed over a Unix socket) and a runtime whose containers share this kernel. Without
//! them, or with `agent: false`, the provider runs commands through the Engine exec API
//! instead, and says why in [`AgentMode::Off`].

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, Mount, MountType};
use sandkit_agent_host::Agent;
use sandkit_core::{Error, Result};

use crate::client::Engine;
use crate::config::LocalDockerConfig;
use crate::provider::PROVIDER_NAME;

/// Where a container sees the agent.
pub(crate) const AGENT_IN_CONTAINER: &str = "/.sandkit/agent";
/// Where a container sees its socket's directory.
const RUN_IN_CONTAINER: &str = "/.sandkit/run";
const SOCKET: &str = "agent.sock";
/// How long a started container's agent may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether sandboxes run on the agent.
#[derive(Debug, Clone)]
pub(crate) enum AgentMode {
    /// They do: the installed binary, and the directory their sockets go in.
    On { binary: PathBuf, sockets: PathBuf },
    /// They do not, and why.
    Off(String),
}

impl AgentMode {
    /// Decides for `config` on `engine`, installing the binary when the agent is used.
    pub fn new(config: &LocalDockerConfig, engine: &Engine) -> Result<Self> {
        if let Some(why) = unusable(config, Some(engine)) {
            return Ok(Self::Off(why));
        }
        let dir = config.agent_dir.clone().unwrap_or_else(default_dir);
        let sockets = dir.join("sandboxes");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sockets)
            .map_err(|e| config_error(&sockets, &e))?;
        let binary = sandkit_agent_host::install(PROVIDER_NAME, &dir.join("bin"))?;
        Ok(Self::On { binary, sockets })
    }

    /// Why sandboxes do not run on the agent, if they do not.
    pub fn fallback(&self) -> Option<&str> {
        match self {
            Self::On { .. } => None,
            Self::Off(why) => Some(why),
        }
    }

    /// Whether `dir` (from a container's label, which anyone with the engine can set)
    /// is a socket directory this mode made: only then is it connected to or removed.
    pub fn owns(&self, dir: &Path) -> bool {
        let Self::On { sockets, .. } = self else {
            return false;
        };
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        dir.parent() == Some(sockets.as_path())
            && name.len() == 32
            && name.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// The agent of the container `inspect` describes, when it runs on one of ours.
    pub fn agent_of(&self, inspect: &ContainerInspectResponse) -> Option<Agent> {
        let dir = crate::sandbox::Leftovers::of(inspect).agent_dir?;
        let pid = inspect.state.as_ref()?.pid.filter(|pid| *pid > 0)?;
        let pid = i32::try_from(pid).ok()?;
        self.owns(&dir).then(|| agent_at(&dir).served_by(pid))
    }
}

/// Why sandboxes cannot run on the agent with `config` on `engine` (`None` when not
/// connected: the configuration alone decides).
pub(crate) fn unusable(config: &LocalDockerConfig, engine: Option<&Engine>) -> Option<String> {
    if !config.agent {
        return Some("`agent: false` in the configuration".to_owned());
    }
    if let Some(runtime) = config.runtime.as_deref().filter(|r| *r != "runc") {
        return Some(format!(
            "runtime `{runtime}`: descriptors cannot be passed into its containers"
        ));
    }
    if engine.is_some_and(|e| !e.shares_processes) {
        return Some(
            "the engine is not on this host: its containers cannot bind-mount the agent".to_owned(),
        );
    }
    None
}

/// `$XDG_RUNTIME_DIR/sandkit/local-docker`, else `/run/sandkit/local-docker` for root,
/// else one under the temporary directory for this user.
fn default_dir() -> PathBuf {
    let uid = nix::unistd::getuid();
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("sandkit/local-docker"),
        None if uid.is_root() => PathBuf::from("/run/sandkit/local-docker"),
        None => std::env::temp_dir().join(format!("sandkit-{uid}/local-docker")),
    }
}

fn config_error(path: &Path, error: &std::io::Error) -> Error {
    Error::InvalidConfig {
        provider: PROVIDER_NAME.to_owned(),
        reason: format!("agent_dir: cannot create {}: {error}", path.display()),
    }
}

/// A new sandbox's socket directory (mode 0700: only this user, and the container's
/// root, reach the socket in it).
pub(crate) fn socket_dir(sockets: &Path) -> Result<PathBuf> {
    let dir = sockets.join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| crate::error::other(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

/// The agent of the sandbox whose socket directory is `dir` (whoever listens there).
fn agent_at(dir: &Path) -> Agent {
    Agent::new(PROVIDER_NAME, dir.join(SOCKET))
}

/// The bind mounts of the agent and its socket directory.
pub(crate) fn mounts(binary: &Path, dir: &Path) -> [Mount; 2] {
    let bind = |source: &Path, target: &str, read_only: bool| Mount {
        typ: Some(MountType::BIND),
        source: Some(source.display().to_string()),
        target: Some(target.to_owned()),
        read_only: Some(read_only),
        ..Default::default()
    };
    [
        bind(binary, AGENT_IN_CONTAINER, true),
        bind(dir, RUN_IN_CONTAINER, false),
    ]
}

/// The container's entrypoint: the agent, ending the sandbox at `expires_at` (Unix
/// seconds), running commands that name no user as `default_user` (the image's).
pub(crate) fn entrypoint(expires_at: Option<u64>, default_user: Option<&str>) -> Vec<String> {
    let mut args = vec![
        AGENT_IN_CONTAINER.to_owned(),
        "--listen".to_owned(),
        format!("{RUN_IN_CONTAINER}/{SOCKET}"),
        "--container-users".to_owned(),
    ];
    if let Some(user) = default_user {
        args.extend(["--default-user".to_owned(), user.to_owned()]);
    }
    if let Some(at) = expires_at {
        args.extend(["--expires-at".to_owned(), at.to_string()]);
    }
    args
}

/// Waits until a started container's agent answers.
pub(crate) async fn wait_ready(agent: &Agent) -> Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    while !agent.ready().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::CreationFailed {
                message: format!(
                    "the sandbox's agent did not listen at {} within {READY_TIMEOUT:?}",
                    agent.socket().display()
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    Ok(())
}
