//! The embedded binary, installed where a sandbox can run it, and [`Agent`]: requests
//! to one sandbox's agent over its socket, one connection each.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandkit_agent::protocol::{self, ErrorKind, PROTOCOL_VERSION, Reply, Request, SpawnRequest};
use sandkit_core::{Error, FileErrorKind, ResourceUsage, Result};

use crate::internal;

/// The agent, built statically for this target by `build.rs`.
static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sandkit-agent"));
/// A hash of [`AGENT`], so each build installs its own copy beside older ones.
const AGENT_ID: &str = include_str!(concat!(env!("OUT_DIR"), "/sandkit-agent.id"));

/// How long a request to an agent may take before the agent counts as unresponsive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the embedded agent as `<dir>/sandkit-agent-<hash>` (once per build) and
/// returns its path. `provider` names who failed, if it fails.
pub fn install(provider: &str, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("sandkit-agent-{}", AGENT_ID.trim()));
    if std::fs::metadata(&path).is_ok_and(|meta| meta.len() == AGENT.len() as u64) {
        return Ok(path);
    }
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(&temporary)
        })
        .and_then(|mut file| file.write_all(AGENT))
        .and_then(|()| std::fs::rename(&temporary, &path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        internal(
            provider,
            format!("installing the agent at {}", path.display()),
            e,
        )
    })?;
    Ok(path)
}

/// `/dev/null`, for a command without standard input.
pub fn dev_null(provider: &str) -> Result<OwnedFd> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| internal(provider, "opening /dev/null", e))
}

/// The agent's answer to a spawn.
pub(crate) struct Spawned {
    /// Where the command's end will be reported.
    pub connection: UnixStream,
    /// Descriptors that came with the answer (a terminal's master side).
    pub fds: Vec<OwnedFd>,
    /// A detached command's id.
    pub command: Option<u64>,
}

/// One sandbox's agent, reached at its socket. Cheap to clone; every request opens a
/// connection of its own, so requests never wait for each other.
#[derive(Debug, Clone)]
pub struct Agent {
    provider: &'static str,
    socket: PathBuf,
    /// The process that must be listening (this host's pid of the sandbox's init).
    peer: Option<i32>,
}

impl Agent {
    /// The agent listening at `socket`, for the provider named `provider` (errors name
    /// it).
    pub fn new(provider: &'static str, socket: impl Into<PathBuf>) -> Self {
        Self {
            provider,
            socket: socket.into(),
            peer: None,
        }
    }

    /// Only talks to the agent if process `pid` (of this host) listens at the socket.
    /// For a socket in a directory the sandbox can write: a process in it could put a
    /// link to another sandbox's socket there, or listen itself.
    pub fn served_by(mut self, pid: i32) -> Self {
        self.peer = Some(pid);
        self
    }

    /// Where the agent listens.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub(crate) fn provider(&self) -> &'static str {
        self.provider
    }

    pub(crate) fn internal(&self, context: impl std::fmt::Display, e: std::io::Error) -> Error {
        internal(self.provider, context, e)
    }

    /// Whether an agent answers at the socket (a connection and the version handshake).
    pub async fn ready(&self) -> bool {
        let agent = self.clone();
        tokio::task::spawn_blocking(move || agent.handshake().is_ok())
            .await
            .unwrap_or(false)
    }

    /// Sends `request` (one without descriptors) and returns the answer.
    pub async fn request(&self, request: Request) -> Result<Reply> {
        self.blocking(move |agent| {
            let stream = agent.open(&request, &[])?;
            let (reply, _) = protocol::receive::<Reply>(&stream).map_err(|e| agent.failed(&e))?;
            Ok(reply)
        })
        .await
    }

    /// Sends `request` and expects `done`.
    pub async fn command(&self, request: Request) -> Result<()> {
        match self.request(request).await? {
            Reply::Done => Ok(()),
            Reply::Error { message, .. } => Err(self.internal(
                "a request to the sandbox's agent",
                std::io::Error::other(message),
            )),
            other => Err(self.unexpected(&other)),
        }
    }

    /// What the sandbox's processes use: the agent measures its descendants (every
    /// command and what they started), and samples the peak every second.
    pub async fn usage(&self) -> Result<ResourceUsage> {
        match self.request(Request::Usage).await? {
            Reply::Usage {
                cpu_millis,
                memory_bytes,
                peak_memory_bytes,
                processes,
            } => Ok(ResourceUsage {
                cpu_secs: cpu_millis as f64 / 1000.0,
                memory_bytes,
                peak_memory_bytes,
                processes,
            }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Takes a lease on the sandbox: it holds while the returned connection stays open
    /// (the kernel closes it when this process dies); once the last lease closes and
    /// none comes within `grace_secs`, the agent ends the sandbox.
    pub async fn lease(&self, grace_secs: u64) -> Result<UnixStream> {
        self.blocking(move |agent| {
            let stream = agent.open(&Request::Lease { grace_secs }, &[])?;
            protocol::receive::<Reply>(&stream).map_err(|e| agent.failed(&e))?;
            Ok(stream)
        })
        .await
    }

    /// Starts a command with the given standard streams (none for a terminal); returns
    /// the connection on which its end will be reported, and the descriptors that came
    /// with the answer (a terminal's master side).
    pub async fn spawn(
        &self,
        spawn: SpawnRequest,
        stdio: Vec<OwnedFd>,
    ) -> Result<(UnixStream, Vec<OwnedFd>)> {
        let spawned = self.spawned(spawn, stdio).await?;
        Ok((spawned.connection, spawned.fds))
    }

    /// [`Agent::spawn`], with the whole answer.
    pub(crate) async fn spawned(
        &self,
        spawn: SpawnRequest,
        stdio: Vec<OwnedFd>,
    ) -> Result<Spawned> {
        self.blocking(move |agent| {
            let program = spawn.argv.first().cloned().unwrap_or_default();
            let cwd = spawn.cwd.clone();
            let fds: Vec<_> = stdio.iter().map(AsFd::as_fd).collect();
            let stream = agent.open(&Request::Spawn(spawn), &fds)?;
            drop(stdio);
            match protocol::receive::<Reply>(&stream).map_err(|e| agent.failed(&e))? {
                // The end of a command may be far off: whoever waits for it on this
                // connection makes it long-lived (`Agent::long_lived`).
                (Reply::Spawned { command, .. }, fds) => Ok(Spawned {
                    connection: stream,
                    fds,
                    command,
                }),
                (Reply::Error { kind, message }, _) => {
                    Err(spawn_error(&program, &cwd, kind, message))
                }
                (other, _) => Err(agent.unexpected(&other)),
            }
        })
        .await
    }

    /// A connection on which the hello was sent (its answer is not read yet).
    fn connect(&self) -> Result<UnixStream> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| self.unavailable(&e))?;
        if let Some(expected) = self.peer {
            let peer =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                    .map(|cred| cred.pid())
                    .map_err(|e| self.unavailable(&e.into()))?;
            if peer != expected {
                return Err(Error::Unavailable {
                    message: format!(
                        "{} is served by process {peer}, not by the sandbox's agent (process {expected})",
                        self.socket.display()
                    ),
                });
            }
        }
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(|e| self.internal("configuring the agent connection", e))?;
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
        };
        protocol::send(&stream, &hello, &[]).map_err(|e| self.failed(&e))?;
        Ok(stream)
    }

    /// A connection on which `request` (with `fds`) was sent right behind the hello,
    /// without waiting for the hello's answer (one round trip less), which is read here.
    pub(crate) fn open(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<UnixStream> {
        let stream = self.connect()?;
        protocol::send(&stream, request, fds).map_err(|e| self.failed(&e))?;
        self.hello_answer(&stream)?;
        Ok(stream)
    }

    /// Whether an agent answers at the socket (a connection and the version handshake).
    fn handshake(&self) -> Result<()> {
        let stream = self.connect()?;
        self.hello_answer(&stream)
    }

    fn hello_answer(&self, stream: &UnixStream) -> Result<()> {
        match protocol::receive::<Reply>(stream)
            .map_err(|e| self.failed(&e))?
            .0
        {
            Reply::Hello { .. } => Ok(()),
            Reply::Error { message, .. } => Err(Error::provider(
                self.provider,
                std::io::Error::other(message),
            )),
            other => Err(self.unexpected(&other)),
        }
    }

    /// `stream` (its request answered) for an async caller that may wait long for the
    /// next frame: no read timeout, non-blocking, registered with the runtime.
    pub(crate) fn long_lived(
        &self,
        stream: UnixStream,
        doing: &str,
    ) -> Result<tokio::net::UnixStream> {
        stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_nonblocking(true))
            .and_then(|()| tokio::net::UnixStream::from_std(stream))
            .map_err(|e| self.internal(doing, e))
    }

    /// Runs blocking socket work off the async threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Agent) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let agent = self.clone();
        tokio::task::spawn_blocking(move || work(&agent))
            .await
            .map_err(|e| self.internal("running a blocking task", std::io::Error::other(e)))?
    }

    fn unavailable(&self, error: &std::io::Error) -> Error {
        Error::Unavailable {
            message: format!(
                "the sandbox's agent does not answer at {}: {error}",
                self.socket.display()
            ),
        }
    }

    pub(crate) fn failed(&self, error: &protocol::FrameError) -> Error {
        Error::Unavailable {
            message: format!("the sandbox's agent failed: {error}"),
        }
    }

    pub(crate) fn unexpected(&self, reply: &Reply) -> Error {
        Error::provider(
            self.provider,
            std::io::Error::other(format!("unexpected answer from the agent: {reply:?}")),
        )
    }
}

fn spawn_error(program: &str, cwd: &str, kind: ErrorKind, message: String) -> Error {
    let reason = match kind {
        ErrorKind::NoWorkingDirectory => return Error::file(cwd, FileErrorKind::NotFound),
        // What is missing is the program (or its script's interpreter).
        ErrorKind::NotFound => {
            return Error::ProgramNotFound {
                program: program.to_owned(),
            };
        }
        ErrorKind::UnknownUser => return Error::invalid_spec("user", message),
        ErrorKind::PermissionDenied => "permission denied: not executable".to_owned(),
        ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => message,
    };
    Error::ExecFailed {
        program: program.to_owned(),
        reason,
    }
}
