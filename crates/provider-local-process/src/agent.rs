//! The host's side of the in-box agent: the embedded binary, installed once per state
//! directory, and the requests sent to a sandbox's agent over its socket.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sandkit_agent::protocol::{self, ErrorKind, PROTOCOL_VERSION, Reply, Request, SpawnRequest};
use sandkit_core::{Error, FileErrorKind, Result};

use crate::error::internal;

/// The agent, built statically for this target by `build.rs`.
static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sandkit-agent"));
/// A hash of [`AGENT`], so each build installs its own copy beside older ones.
const AGENT_ID: &str = include_str!(concat!(env!("OUT_DIR"), "/sandkit-agent.id"));

/// How long a request to an agent may take before the agent counts as unresponsive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the embedded agent under `<state_dir>/bin` (once) and returns its path.
pub(crate) fn install(state_dir: &Path) -> Result<PathBuf> {
    let path = state_dir
        .join("bin")
        .join(format!("sandkit-agent-{}", AGENT_ID.trim()));
    if std::fs::metadata(&path).is_ok_and(|meta| meta.len() == AGENT.len() as u64) {
        return Ok(path);
    }
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&temporary)
        .and_then(|mut file| file.write_all(AGENT))
        .and_then(|()| std::fs::rename(&temporary, &path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        internal(format!("installing the agent at {}", path.display()), e)
    })?;
    Ok(path)
}

/// A connection to a sandbox's agent, after the version handshake.
pub(crate) fn connect(socket: &Path) -> Result<UnixStream> {
    let stream = UnixStream::connect(socket).map_err(|e| unavailable(socket, &e))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| internal("configuring the agent connection", e))?;
    protocol::send(
        &stream,
        &Request::Hello {
            version: PROTOCOL_VERSION,
        },
        &[],
    )
    .map_err(|e| agent_failed(&e))?;
    match protocol::receive::<Reply>(&stream)
        .map_err(|e| agent_failed(&e))?
        .0
    {
        Reply::Hello { .. } => Ok(stream),
        Reply::Error { message, .. } => {
            Err(Error::provider(crate::NAME, std::io::Error::other(message)))
        }
        other => Err(unexpected(&other)),
    }
}

/// Sends a request without descriptors and reads its answer.
pub(crate) fn request(socket: &Path, request: &Request) -> Result<Reply> {
    let stream = connect(socket)?;
    protocol::send(&stream, request, &[]).map_err(|e| agent_failed(&e))?;
    let (reply, _) = protocol::receive::<Reply>(&stream).map_err(|e| agent_failed(&e))?;
    Ok(reply)
}

/// Starts a command with the given standard streams (none for a terminal); returns the
/// connection on which its end will be reported, and the descriptors that came with the
/// answer (a terminal's master side).
pub(crate) fn spawn(
    socket: &Path,
    spawn: SpawnRequest,
    stdio: &[BorrowedFd<'_>],
) -> Result<(UnixStream, Vec<OwnedFd>)> {
    let program = spawn.argv.first().cloned().unwrap_or_default();
    let stream = connect(socket)?;
    protocol::send(&stream, &Request::Spawn(spawn), stdio).map_err(|e| agent_failed(&e))?;
    match protocol::receive::<Reply>(&stream).map_err(|e| agent_failed(&e))? {
        (Reply::Spawned { .. }, fds) => {
            // The end of a command may be far off: no read timeout from here on.
            stream
                .set_read_timeout(None)
                .map_err(|e| internal("configuring the agent connection", e))?;
            Ok((stream, fds))
        }
        (Reply::Error { kind, message }, _) => Err(spawn_error(&program, kind, message)),
        (other, _) => Err(unexpected(&other)),
    }
}

/// Starts watching `path` (as the sandbox sees it; `shown` as the caller named it);
/// returns the connection the events will come on.
pub(crate) fn watch(socket: &Path, path: &str, recursive: bool, shown: &str) -> Result<UnixStream> {
    let stream = connect(socket)?;
    let request = Request::Watch {
        path: path.to_owned(),
        recursive,
    };
    protocol::send(&stream, &request, &[]).map_err(|e| agent_failed(&e))?;
    match protocol::receive::<Reply>(&stream)
        .map_err(|e| agent_failed(&e))?
        .0
    {
        Reply::Watching => Ok(stream),
        Reply::Error { kind, message } => {
            let kind = match kind {
                ErrorKind::NotFound => FileErrorKind::NotFound,
                ErrorKind::NotADirectory => FileErrorKind::NotADirectory,
                _ => FileErrorKind::Other(message),
            };
            Err(Error::file(shown, kind))
        }
        other => Err(unexpected(&other)),
    }
}

fn spawn_error(program: &str, kind: ErrorKind, message: String) -> Error {
    let reason = match kind {
        // The working directory was checked before: what is missing is the program (or
        // its script's interpreter).
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

fn unavailable(socket: &Path, error: &std::io::Error) -> Error {
    Error::Unavailable {
        message: format!(
            "the sandbox's agent does not answer at {}: {error}",
            socket.display()
        ),
    }
}

fn agent_failed(error: &protocol::FrameError) -> Error {
    Error::Unavailable {
        message: format!("the sandbox's agent failed: {error}"),
    }
}

fn unexpected(reply: &Reply) -> Error {
    Error::provider(
        crate::NAME,
        std::io::Error::other(format!("unexpected answer from the agent: {reply:?}")),
    )
}

/// `/dev/null`, for a command without standard input.
pub(crate) fn dev_null() -> Result<std::fs::File> {
    std::fs::File::open("/dev/null").map_err(|e| internal("opening /dev/null", e))
}

/// Borrows three descriptors as a spawn request's standard streams.
pub(crate) fn stdio<'a>(
    stdin: &'a impl AsFd,
    stdout: &'a impl AsFd,
    stderr: &'a impl AsFd,
) -> [BorrowedFd<'a>; 3] {
    [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]
}
