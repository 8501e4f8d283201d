//! The messages between a host and the agent, and their framing: a little-endian `u32`
//! length, then that many bytes of JSON. Descriptors ride along with a frame as
//! `SCM_RIGHTS` ancillary data.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. A peer with another version is refused with
/// an error naming both.
pub const PROTOCOL_VERSION: u32 = 5;

/// The largest frame either side accepts (argv and environment fit well below it).
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Descriptors that travel with a `spawn` request: stdin, stdout, stderr (none with a
/// pseudo-terminal).
pub const SPAWN_FDS: usize = 3;

/// A message from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The first message on every connection.
    Hello {
        /// The host's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Starts a command; three descriptors (stdin, stdout, stderr) come with it (an
    /// entrypoint may come with none: it then writes where the agent does).
    Spawn(SpawnRequest),
    /// Signals the command started on this connection: its process group and every
    /// descendant.
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// Holds a lease on the sandbox for as long as this connection stays open (the
    /// kernel closes it when the holder dies). When the last lease closes and none is
    /// taken again within `grace_secs`, the agent ends the sandbox.
    Lease {
        /// Seconds to wait for a new lease before ending the sandbox.
        grace_secs: u64,
    },
    /// Streams a detached command's output into the two descriptors that come with it
    /// (stdout, stderr), each from its byte offset (or from the oldest byte kept, when
    /// that is later), then reports its end; answers `spawned` first. A `signal` on
    /// this connection then goes to that command. (New in version 3.)
    Attach {
        /// The command's id, from `spawned`.
        command: u64,
        /// First byte of standard output to send.
        stdout_from: u64,
        /// First byte of standard error to send.
        stderr_from: u64,
    },
    /// Lists the detached commands, running or ended. (New in version 3.)
    Commands,
    /// Asks what the sandbox's processes use.
    Usage,
    /// Watches a directory (a path as the sandbox sees it): answers `watching`, then a
    /// `file-event` per change, until the host closes the connection.
    Watch {
        /// The directory.
        path: String,
        /// Its subdirectories too, and those created later.
        recursive: bool,
    },
    /// Streams a regular file (a path as the sandbox sees it, symlinks followed) into
    /// the one descriptor that comes with it: answers `file-opened` (or the error about
    /// the path), writes the contents and closes the descriptor, then answers `done`, or
    /// the error that cut the copy short. (New in version 4, as are the other file
    /// requests.)
    ReadFile {
        /// The file.
        path: String,
    },
    /// Creates or replaces a regular file (mode 0644; missing parent directories made
    /// 0755) from the one descriptor that comes with it, whole or not at all: answers
    /// `file-opened` (or the error about the path), fills a new file beside the path to
    /// the descriptor's end, then waits for `commit`, which renames it over the path (a
    /// symlink there is replaced, not written through, as tar does) and answers `done`.
    /// A connection that ends without `commit` leaves nothing.
    WriteFile {
        /// The file.
        path: String,
    },
    /// Puts a `write-file`'s contents in place, once its descriptor has ended.
    Commit,
    /// A path's metadata, not following a final symlink: answers `path-info`.
    Stat {
        /// The path.
        path: String,
    },
    /// A directory's entries, each with its metadata (not following symlinks): answers
    /// `entries` (as many as it takes, none for an empty directory), then `done`.
    ListDir {
        /// The directory (a symlink to one is followed).
        path: String,
    },
    /// Creates a directory and its missing parents (mode 0755); an existing directory
    /// is fine. Answers `done`.
    MakeDir {
        /// The directory.
        path: String,
    },
    /// Removes a file, a symlink (not its target) or an empty directory, or, when
    /// `recursive`, a directory and everything in it. Answers `done`.
    Remove {
        /// The path.
        path: String,
        /// Whether a directory goes with its contents.
        recursive: bool,
    },
    /// Writes the one descriptor that comes with it, to its end, into the entrypoint's
    /// stdin (a `spawn` with `keep_stdin`) from byte `offset` on: bytes before what was
    /// written already are skipped, so a retried write is not applied twice; an offset
    /// past it is refused. `eof` closes the stdin after. Answers `done`. (New in
    /// version 5.)
    MainStdin {
        /// Where the data starts in the stdin's bytes.
        offset: u64,
        /// Whether the stdin ends after it.
        eof: bool,
    },
    /// Stops every process of the sandbox.
    Pause,
    /// Continues every process of the sandbox.
    Resume,
    /// Kills every process of the sandbox and ends the agent.
    Shutdown,
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Program and arguments; the program is looked up in `PATH` of `env` when it has no
    /// slash.
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited from the agent), except that a
    /// named user with a home directory in `/etc/passwd` gets it as `HOME` when this
    /// sets none.
    pub env: Vec<(String, String)>,
    /// Working directory, a path inside the sandbox.
    pub cwd: String,
    /// Kill the command's tree after this long and report `timed_out`.
    pub timeout_ms: Option<u64>,
    /// The sandbox's entrypoint: the sandbox ends when it does.
    pub main: bool,
    /// Who it runs as: a name or number from the sandbox's `/etc/passwd`; `None` is the
    /// sandbox's default user. (New in version 2: a version 1 agent would have ignored
    /// it and run the command as the default user.)
    #[serde(default)]
    pub user: Option<String>,
    /// Run on a new pseudo-terminal of this size instead of the three descriptors: the
    /// request then carries none, and `spawned` carries the terminal's master side.
    #[serde(default)]
    pub pty: Option<TerminalSize>,
    /// Start from the agent's own environment (a container's, as its engine set it),
    /// with `env` on top, instead of `env` alone. `HOME` is then the user's home from
    /// `/etc/passwd` unless `env` sets it. (New in version 3.)
    #[serde(default)]
    pub inherit_env: bool,
    /// Start it detached: the agent makes its pipes (the request carries no
    /// descriptors) and keeps the latest output for whoever attaches, and the command
    /// runs on when this connection closes. (New in version 3.)
    #[serde(default)]
    pub detached: bool,
    /// For the entrypoint (`main`): its stdin is a pipe the agent makes and keeps the
    /// write end of, for `main-stdin` requests; the request then carries two
    /// descriptors, stdout and stderr. (New in version 5.)
    #[serde(default)]
    pub keep_stdin: bool,
}

/// A detached command, as [`Request::Commands`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSummary {
    /// Its id.
    pub command: u64,
    /// What was started.
    pub argv: Vec<String>,
    /// Its pid as the sandbox sees it.
    pub pid: i32,
    /// Its exit code, once it exited.
    pub code: Option<i32>,
    /// The signal that ended it, once it was killed.
    pub signal: Option<i32>,
    /// Whether it is still running.
    pub running: bool,
    /// Bytes it wrote to standard output so far.
    pub stdout_bytes: u64,
    /// Bytes it wrote to standard error so far.
    pub stderr_bytes: u64,
}

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// A message from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Reply {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The agent's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// The command started. With a pseudo-terminal, its master side comes with it.
    Spawned {
        /// Its pid as the sandbox sees it.
        pid: i32,
        /// A detached command's id, by which it is attached to later.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<u64>,
    },
    /// Answer to [`Request::Commands`].
    Commands {
        /// Every detached command still remembered, oldest first.
        commands: Vec<CommandSummary>,
    },
    /// The command ended.
    Exited {
        /// Its exit code, when it exited.
        code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
        /// Whether the agent killed it because its timeout ran out.
        timed_out: bool,
    },
    /// Answer to [`Request::Usage`]: the agent's descendants (every command and what
    /// they started; the agent itself not counted).
    Usage {
        /// Cpu time, user and system, of every command so far, in milliseconds.
        cpu_millis: u64,
        /// Resident memory of the live commands, in bytes.
        memory_bytes: u64,
        /// The most resident memory seen at once (sampled every second), in bytes.
        peak_memory_bytes: u64,
        /// How many processes are alive.
        processes: u32,
    },
    /// The watch is in place: events follow.
    Watching,
    /// A change under a watched directory.
    FileEvent {
        /// What happened.
        kind: WatchEventKind,
        /// The path, relative to the watched directory.
        path: String,
        /// A rename's old path.
        from: Option<String>,
        /// Whether it is a directory.
        is_dir: bool,
    },
    /// A file to read or write is open (answer to `read-file` and `write-file`).
    FileOpened {
        /// Its size in bytes (0 for one being written).
        size: u64,
    },
    /// Answer to `stat`.
    PathInfo(PathInfo),
    /// Some of a directory's entries (answer to `list-dir`, until `done`).
    Entries {
        /// The entries, in no particular order.
        entries: Vec<DirEntryInfo>,
    },
    /// A `pause`, `resume`, `signal` or `shutdown` was carried out, or a file request
    /// finished.
    Done,
    /// The request failed.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// What happened, in words.
        message: String,
    },
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// A path's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// What it is.
    pub kind: PathKind,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    /// Its last modification, in seconds since the Unix epoch, when after it.
    pub modified_secs: Option<u64>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntryInfo {
    /// Its name (bytes that are not UTF-8 replaced).
    pub name: String,
    /// What it is.
    pub kind: PathKind,
    /// Its size in bytes.
    pub size: u64,
}

/// What happened to a watched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchEventKind {
    /// Created, or moved in.
    Created,
    /// Written.
    Modified,
    /// Deleted, or moved out.
    Deleted,
    /// Renamed within the watch.
    Renamed,
}

/// Kinds of failure the host maps onto its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The program, or a path, does not exist.
    NotFound,
    /// The working directory does not exist or is not a directory (new in version 3).
    NoWorkingDirectory,
    /// The program is not executable, the directory not enterable, or the file
    /// operation not permitted (a kernel filesystem's files are never read or written).
    PermissionDenied,
    /// The program, or a file to read or write, is a directory.
    IsADirectory,
    /// A watched path, or a path's parent, is not a directory.
    NotADirectory,
    /// Something is already at the path (a file where a directory should be made).
    /// (New in version 4, as is `directory-not-empty`.)
    AlreadyExists,
    /// A directory to remove without its contents is not empty.
    DirectoryNotEmpty,
    /// The peer speaks another protocol version.
    Version,
    /// The user the command should run as does not exist in the sandbox, or the sandbox
    /// cannot run commands as another user.
    UnknownUser,
    /// The request made no sense (wrong descriptors, empty argv, ...).
    BadRequest,
    /// Anything else.
    Other,
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before a frame began.
    Closed,
    /// The frame was larger than [`MAX_FRAME_BYTES`] or not valid JSON for the message.
    Malformed(String),
    /// The socket failed.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection was closed"),
            Self::Malformed(why) => write!(f, "malformed frame: {why}"),
            Self::Io(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<rustix::io::Errno> for FrameError {
    fn from(errno: rustix::io::Errno) -> Self {
        Self::Io(errno.into())
    }
}

/// Encodes `message` as one frame.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Decodes a frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Writes one frame to a (blocking) socket, with `fds` attached to its first byte.
pub fn send<T: Serialize>(
    socket: impl AsFd,
    message: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), FrameError> {
    let frame = encode(message);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(SPAWN_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(FrameError::Malformed("too many descriptors".into()));
    }
    let mut sent = 0;
    while sent < frame.len() {
        let written = if sent == 0 {
            sendmsg(
                &socket,
                &[IoSlice::new(&frame)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
        } else {
            sendmsg(
                &socket,
                &[IoSlice::new(&frame[sent..])],
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
        };
        match written {
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// Reads one frame from a (blocking) socket, with any descriptors that came with it.
pub fn receive<T: DeserializeOwned>(socket: impl AsFd) -> Result<(T, Vec<OwnedFd>), FrameError> {
    let mut fds = Vec::new();
    let mut header = [0u8; 4];
    read_exact(&socket, &mut header, &mut fds, true)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::Malformed(format!(
            "a frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}"
        )));
    }
    let mut body = vec![0u8; len];
    read_exact(&socket, &mut body, &mut fds, false)?;
    Ok((decode(&body)?, fds))
}

fn read_exact(
    socket: &impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    at_frame_start: bool,
) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(SPAWN_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf[filled..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => received,
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received_fds) = message {
                fds.extend(received_fds);
            }
        }
        if received.bytes == 0 {
            return Err(if at_frame_start && filled == 0 {
                FrameError::Closed
            } else {
                FrameError::Malformed("the connection closed inside a frame".into())
            });
        }
        filled += received.bytes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn frames_round_trip_with_descriptors() {
        let (host, agent) = UnixStream::pair().unwrap();
        let (read_end, write_end) = rustix::pipe::pipe().unwrap();
        let request = Request::Spawn(SpawnRequest {
            argv: vec!["true".into()],
            env: vec![("A".into(), "b".into())],
            cwd: "/".into(),
            timeout_ms: Some(5),
            main: false,
            user: Some("1000".into()),
            pty: None,
            inherit_env: false,
            detached: false,
            keep_stdin: false,
        });
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send(
            &host,
            &request,
            &[devnull.as_fd(), write_end.as_fd(), write_end.as_fd()],
        )
        .unwrap();
        let (got, fds): (Request, _) = receive(&agent).unwrap();
        assert_eq!(got, request);
        assert_eq!(fds.len(), 3);
        drop(read_end);
    }

    #[test]
    fn oversized_and_garbled_frames_are_malformed() {
        use std::io::Write;
        let (mut host, agent) = UnixStream::pair().unwrap();
        host.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(
            receive::<Request>(&agent),
            Err(FrameError::Malformed(_))
        ));
        let (mut host, agent) = UnixStream::pair().unwrap();
        host.write_all(&3u32.to_le_bytes()).unwrap();
        host.write_all(b"{x}").unwrap();
        assert!(matches!(
            receive::<Request>(&agent),
            Err(FrameError::Malformed(_))
        ));
        drop(host);
        assert!(matches!(
            receive::<Request>(&agent),
            Err(FrameError::Io(_)) | Err(FrameError::Closed)
        ));
    }
}
