//! An entrypoint's output, kept in two files the host creates and the entrypoint writes
//! through descriptors handed to it (so the sandbox never names the files), read back
//! by following them, resumably, until the entrypoint has ended.

use std::fs::File;
use std::future::Future;
use std::io::{self, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use std::io::Write;
use std::os::fd::AsFd;

use bytes::{Bytes, BytesMut};
use rustix::fs::{Mode, OFlags};
use sandkit_agent::protocol::{self, ErrorKind, Reply, Request};
use sandkit_core::{ByteStream, Error, OutputStream};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::Agent;

/// How often a reader at the end of the output looks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);
/// Largest chunk handed on at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// The file in a sandbox's host directory holding the entrypoint's `stream`.
pub fn output_file(stream: OutputStream) -> &'static str {
    match stream {
        OutputStream::Stdout => "entrypoint.out",
        OutputStream::Stderr => "entrypoint.err",
    }
}

/// Creates the two output files in `dir` (a directory only the host writes names in)
/// and returns descriptors for the entrypoint's stdout and stderr.
pub fn create_outputs(dir: &Path) -> io::Result<[OwnedFd; 2]> {
    let create = |stream| -> io::Result<OwnedFd> {
        let file = rustix::fs::open(
            dir.join(output_file(stream)),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::APPEND | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok(file)
    };
    Ok([create(OutputStream::Stdout)?, create(OutputStream::Stderr)?])
}

/// The entrypoint's `stream` in `dir` from byte `offset` on, following what is appended
/// until `ended` says the entrypoint is over and everything was read. A name that is not
/// a regular file (a symlink planted in its place, say) is refused, never followed.
pub fn follow_output<F, Fut>(
    provider: &str,
    dir: &Path,
    stream: OutputStream,
    offset: u64,
    ended: F,
) -> Result<ByteStream, Error>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let name = output_file(stream);
    let failed = |error: io::Error| {
        Error::provider(
            provider,
            io::Error::new(
                error.kind(),
                format!("reading the entrypoint's {stream} ({name}): {error}"),
            ),
        )
    };
    let fd = rustix::fs::open(
        dir.join(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| failed(errno.into()))?;
    let stat = rustix::fs::fstat(&fd).map_err(|errno| failed(errno.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(failed(io::Error::other("not a regular file")));
    }
    let file = tokio::fs::File::from_std(File::from(fd));
    let provider = provider.to_owned();
    let state = Follow {
        file,
        offset,
        seeked: false,
        ended,
        draining: false,
        provider,
        stream,
    };
    Ok(Box::pin(futures::stream::unfold(
        Some(state),
        |state| async move {
            let mut state = state?;
            match state.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        },
    )))
}

impl Agent {
    /// Writes `data` into the entrypoint's stdin (one spawned with `keep_stdin`) from byte
    /// `offset` on, closing it after when `eof`. Bytes before what was written already are
    /// skipped by the agent, so a retried write is not applied twice.
    pub async fn write_main_stdin(&self, offset: u64, data: Bytes, eof: bool) -> Result<(), Error> {
        self.blocking(move |agent| {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| agent.internal("creating a pipe", e.into()))?;
            let stream = agent.open(&Request::MainStdin { offset, eof }, &[read.as_fd()])?;
            drop(read);
            let mut write = File::from(write);
            // A refusal closes the agent's end first; its answer says why.
            let _ = write.write_all(&data);
            drop(write);
            match protocol::receive::<Reply>(&stream)
                .map_err(|e| agent.failed(&e))?
                .0
            {
                Reply::Done => Ok(()),
                Reply::Error {
                    kind: ErrorKind::BadRequest,
                    message,
                } => Err(Error::InvalidSpec {
                    field: "stdin".to_owned(),
                    reason: message,
                }),
                Reply::Error { message, .. } => Err(Error::provider(
                    agent.provider(),
                    io::Error::other(format!("writing the entrypoint's stdin: {message}")),
                )),
                other => Err(agent.unexpected(&other)),
            }
        })
        .await
    }
}

struct Follow<F> {
    file: tokio::fs::File,
    offset: u64,
    seeked: bool,
    ended: F,
    /// The entrypoint has ended: what is left is read, then the stream ends.
    draining: bool,
    provider: String,
    stream: OutputStream,
}

impl<F, Fut> Follow<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        let failed = |error: io::Error, stream: OutputStream, provider: &str| {
            Error::provider(
                provider,
                io::Error::new(
                    error.kind(),
                    format!("reading the entrypoint's {stream}: {error}"),
                ),
            )
        };
        if !self.seeked {
            self.file
                .seek(SeekFrom::Start(self.offset))
                .await
                .map_err(|error| failed(error, self.stream, &self.provider))?;
            self.seeked = true;
        }
        let mut buffer = BytesMut::zeroed(CHUNK_BYTES);
        loop {
            match self.file.read(&mut buffer).await {
                Ok(0) if self.draining => return Ok(None),
                Ok(0) => {
                    // Asked after an empty read, so a last write before the end is read
                    // on the pass that follows.
                    if (self.ended)().await {
                        self.draining = true;
                    } else {
                        tokio::time::sleep(FOLLOW_INTERVAL).await;
                    }
                }
                Ok(read) => {
                    buffer.truncate(read);
                    return Ok(Some(buffer.freeze()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(FOLLOW_INTERVAL).await;
                }
                Err(error) => return Err(failed(error, self.stream, &self.provider)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    async fn all(mut stream: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn output_is_followed_until_the_end_and_resumes_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let [stdout, _stderr] = create_outputs(dir.path()).unwrap();
        let mut writer = File::from(stdout);
        writer.write_all(b"first\n").unwrap();
        let ended = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ended);
        let stream = follow_output("test", dir.path(), OutputStream::Stdout, 0, move || {
            let flag = Arc::clone(&flag);
            async move { flag.load(Ordering::SeqCst) }
        })
        .unwrap();
        let reader = tokio::spawn(all(stream));
        tokio::time::sleep(Duration::from_millis(120)).await;
        writer.write_all(b"second\n").unwrap();
        ended.store(true, Ordering::SeqCst);
        assert_eq!(reader.await.unwrap(), b"first\nsecond\n");
        let tail = follow_output("test", dir.path(), OutputStream::Stdout, 3, || async {
            true
        })
        .unwrap();
        assert_eq!(all(tail).await, b"st\nsecond\n");
        let stderr = follow_output("test", dir.path(), OutputStream::Stderr, 0, || async {
            true
        })
        .unwrap();
        assert!(all(stderr).await.is_empty());
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_the_output_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("entrypoint.out")).unwrap();
        let refused = follow_output("test", dir.path(), OutputStream::Stdout, 0, || async {
            true
        });
        assert!(refused.is_err());
        // Creating over a planted name fails too, rather than writing through it.
        assert!(create_outputs(dir.path()).is_err());
    }
}
