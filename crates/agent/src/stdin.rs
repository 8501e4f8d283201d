//! The entrypoint's standard input: a pipe whose write end the agent keeps, written by
//! `main-stdin` requests at byte offsets (so a retried write is not applied twice), and
//! closed by the one that says `eof`.

use std::fs::File;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use sandkit_agent::protocol::{ErrorKind, Reply};

use crate::error;

/// Bytes copied at a time.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct State {
    /// Whether the entrypoint was started reading from here.
    started: bool,
    /// The write end, until `eof`.
    writer: Option<File>,
    /// Bytes written so far.
    written: u64,
}

/// The entrypoint's stdin, for the agent's lifetime.
#[derive(Default)]
pub(crate) struct MainStdin(Mutex<State>);

impl MainStdin {
    /// A new pipe for the entrypoint's stdin: its read end, which the entrypoint gets;
    /// the write end stays here.
    pub fn open(&self) -> std::io::Result<OwnedFd> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *state = State {
            started: true,
            writer: Some(File::from(write)),
            written: 0,
        };
        Ok(read)
    }

    /// Copies `source` (the request's descriptor, to its end) into the entrypoint's
    /// stdin from byte `offset` on. With `eof`, the write end is taken out and handed
    /// back, for the caller to close after it answered.
    pub fn write(&self, offset: u64, eof: bool, fds: Vec<OwnedFd>) -> (Reply, Option<File>) {
        let mut closing = None;
        let reply = self.write_locked(offset, eof, fds, &mut closing);
        (reply, closing)
    }

    fn write_locked(
        &self,
        offset: u64,
        eof: bool,
        fds: Vec<OwnedFd>,
        closing: &mut Option<File>,
    ) -> Reply {
        let Ok([source]) = <[OwnedFd; 1]>::try_from(fds) else {
            return error(ErrorKind::BadRequest, "main-stdin needs one descriptor");
        };
        let mut source = File::from(source);
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !state.started {
            return error(
                ErrorKind::BadRequest,
                "the entrypoint was not started reading its stdin from the agent",
            );
        }
        if offset > state.written {
            return error(
                ErrorKind::BadRequest,
                format!(
                    "offset {offset} is past the {} bytes written",
                    state.written
                ),
            );
        }
        // What was written before `offset` is a retry of an earlier write: skipped.
        let mut skip = state.written - offset;
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            let read = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => return error(ErrorKind::Other, format!("reading the data: {e}")),
            };
            let dropped = usize::try_from(skip).unwrap_or(usize::MAX).min(read);
            skip -= dropped as u64;
            let fresh = &buffer[dropped..read];
            if fresh.is_empty() {
                continue;
            }
            let Some(writer) = state.writer.as_mut() else {
                return error(ErrorKind::BadRequest, "the entrypoint's stdin is closed");
            };
            if let Err(e) = writer.write_all(fresh) {
                return error(
                    ErrorKind::Other,
                    format!("the entrypoint does not read its stdin: {e}"),
                );
            }
            state.written += fresh.len() as u64;
        }
        if eof {
            *closing = state.writer.take();
        }
        Reply::Done
    }
}
