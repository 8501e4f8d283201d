//! A command through the agent: the host makes its pipes (or the agent its terminal),
//! its end arrives on the connection that started it, and a kill or a signal goes back
//! on the same connection. The agent enforces timeouts inside the sandbox, so a timeout
//! holds even when this process is gone.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use sandkit_agent::protocol::{self, Reply, Request, SpawnRequest, TerminalSize};
use sandkit_core::{
    ByteStream, Error, ExecControl, ExecProcess, ExecRequest, ExitStatus, PtySize, Result,
    StdinWriter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc};

use crate::Agent;

/// How much of a command's output one chunk of its stream carries at most.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// The first read's buffer: most commands write little, and a buffer of
/// [`READ_CHUNK_BYTES`] per stream per command would be a fresh mapping each time.
/// Each read that fills its buffer doubles the next one's, up to that size.
const FIRST_CHUNK_BYTES: usize = 4 * 1024;
/// The size asked for an output pipe (Linux's default is 64 KiB; unprivileged users may
/// have 1 MiB).
const PIPE_BYTES: usize = 1 << 20;
/// Output read from a command's pipe but not yet by the caller, per stream, before the
/// command's writes block (as the Engine path queues).
const QUEUE_LIMIT_BYTES: usize = 8 << 20;

/// What to ask the agent to start for `request`, in `cwd` with the whole environment
/// `env` (see [`SpawnRequest::inherit_env`] for adding to the agent's own instead).
pub fn spawn_request(
    request: &ExecRequest,
    cwd: String,
    env: Vec<(String, String)>,
) -> SpawnRequest {
    SpawnRequest {
        argv: request.argv.clone(),
        env,
        cwd,
        timeout_ms: request
            .timeout
            .map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64),
        main: false,
        user: request.user.clone(),
        pty: None,
        inherit_env: false,
        detached: false,
        keep_stdin: false,
    }
}

impl Agent {
    /// Starts `spawn` (whose `pty` this sets from `request`) with the standard streams
    /// `request` asks for: pipes made here, or a terminal the agent opens in the
    /// sandbox. What went wrong before the start is the error (`ProgramNotFound` for a
    /// missing program, `InvalidSpec { field: "user" }` for an unknown user).
    pub async fn exec(&self, spawn: SpawnRequest, request: &ExecRequest) -> Result<ExecProcess> {
        self.exec_with(spawn, request, |control| control).await
    }

    /// [`Agent::exec`], with the command's control passed through `wrap` (which may,
    /// say, read a `SIGKILL` as the sandbox having run out of memory).
    pub async fn exec_with(
        &self,
        mut spawn: SpawnRequest,
        request: &ExecRequest,
        wrap: impl FnOnce(Box<dyn ExecControl>) -> Box<dyn ExecControl>,
    ) -> Result<ExecProcess> {
        let pipes = if request.pty {
            let size = request.pty_size.unwrap_or_default();
            spawn.pty = Some(TerminalSize {
                rows: size.rows,
                cols: size.cols,
            });
            None
        } else {
            let (stdout, stdout_w) = self.output_pipe()?;
            let (stderr, stderr_w) = self.output_pipe()?;
            let (stdin, stdin_r) = if request.stdin {
                let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| self.internal("creating a pipe", e.into()))?;
                let sender = tokio::net::unix::pipe::Sender::from_owned_fd(write)
                    .map_err(|e| self.internal("watching a pipe", e))?;
                (Some(Box::pin(sender) as StdinWriter), read)
            } else {
                (None, crate::dev_null(self.provider())?)
            };
            Some(((stdout, stderr, stdin), vec![stdin_r, stdout_w, stderr_w]))
        };
        let (pipes, stdio) = match pipes {
            Some((pipes, stdio)) => (Some(pipes), stdio),
            None => (None, Vec::new()),
        };
        let (connection, mut fds) = self.spawn(spawn, stdio).await?;
        let (stdout, stderr, stdin, terminal) = match pipes {
            Some((stdout, stderr, stdin)) => (stdout, stderr, stdin, None),
            None => {
                let master = fds.pop().ok_or_else(|| {
                    self.internal(
                        "starting a command on a terminal",
                        std::io::Error::other("the agent sent no terminal"),
                    )
                })?;
                let (output, input, resize) = crate::terminal::streams(self, master)?;
                let nothing: ByteStream = Box::pin(futures::stream::empty());
                (output, nothing, Some(input), Some(resize))
            }
        };
        let control = AgentExec::new(self, connection, request.timeout, terminal)?;
        Ok(ExecProcess::new(
            request,
            stdout,
            stderr,
            stdin,
            wrap(Box::new(control)),
        ))
    }

    /// A pipe whose read end becomes an output stream here.
    pub(crate) fn output_pipe(&self) -> Result<(ByteStream, OwnedFd)> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| self.internal("creating a pipe", e.into()))?;
        // A larger pipe means fewer wake-ups per byte; the system's limit may refuse it,
        // and the default then serves.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_BYTES);
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
            .map_err(|e| self.internal("watching a pipe", e))?;
        Ok((self.output_stream(receiver), write))
    }

    /// A command's output as a stream of chunks. A task drains the pipe as output
    /// comes, into a queue of at most [`QUEUE_LIMIT_BYTES`]: a caller that reads one
    /// stream to its end before the other does not stall a command that writes to both,
    /// and only a full queue blocks the command (backpressure, not unbounded memory).
    pub(crate) fn output_stream<R>(&self, reader: R) -> ByteStream
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        let provider = self.provider();
        let budget = Arc::new(Semaphore::new(QUEUE_LIMIT_BYTES));
        let (chunks_tx, chunks_rx) = mpsc::unbounded_channel();
        let drained = budget.clone();
        tokio::spawn(async move {
            let mut reader = std::pin::pin!(reader);
            let mut size = FIRST_CHUNK_BYTES;
            loop {
                let mut buffer = BytesMut::with_capacity(size);
                let chunk = match reader.read_buf(&mut buffer).await {
                    Ok(0) => return,
                    Ok(read) => {
                        if read >= size {
                            size = (size * 2).min(READ_CHUNK_BYTES);
                        }
                        Ok(buffer.freeze())
                    }
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                let bytes = chunk.as_ref().map_or(0, |c| c.len()) as u32;
                tokio::select! {
                    permit = drained.acquire_many(bytes) => match permit {
                        Ok(permit) => permit.forget(),
                        Err(_) => return,
                    },
                    // Nobody reads any more: dropping the pipe ends the writer's output.
                    () = chunks_tx.closed() => return,
                }
                if chunks_tx.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        futures::stream::unfold(
            (chunks_rx, budget),
            move |(mut chunks_rx, budget)| async move {
                let chunk = chunks_rx.recv().await?;
                let chunk = chunk
                    .inspect(|c| budget.add_permits(c.len()))
                    .map_err(|e| crate::internal(provider, "reading command output", e));
                Some((chunk, (chunks_rx, budget)))
            },
        )
        .boxed()
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    /// The agent went away before reporting: the sandbox ended, and its end killed
    /// every process in it with SIGKILL.
    Lost,
}

/// The next frame from the agent on `connection`; `None` once it ends or breaks.
pub(crate) async fn next_reply(connection: &mut UnixStream) -> Option<Reply> {
    let mut header = [0u8; 4];
    connection.read_exact(&mut header).await.ok()?;
    let len = u32::from_le_bytes(header) as usize;
    if len > protocol::MAX_FRAME_BYTES {
        return None;
    }
    let mut body = vec![0u8; len];
    connection.read_exact(&mut body).await.ok()?;
    protocol::decode(&body).ok()
}

/// The [`ExecControl`] of a command started through the agent.
pub(crate) struct AgentExec {
    provider: &'static str,
    connection: UnixStream,
    outcome: Option<Outcome>,
    timeout: Option<Duration>,
    /// The master side of the command's terminal, when it has one.
    terminal: Option<OwnedFd>,
}

impl AgentExec {
    /// Watches the command started on `connection`.
    pub(crate) fn new(
        agent: &Agent,
        connection: std::os::unix::net::UnixStream,
        timeout: Option<Duration>,
        terminal: Option<OwnedFd>,
    ) -> Result<Self> {
        let connection = agent.long_lived(connection, "watching a command")?;
        Ok(Self {
            provider: agent.provider(),
            connection,
            outcome: None,
            timeout,
            terminal,
        })
    }

    async fn next_reply(&mut self) -> Option<Reply> {
        next_reply(&mut self.connection).await
    }

    async fn finish(&mut self) -> Outcome {
        if let Some(outcome) = self.outcome {
            return outcome;
        }
        let outcome = loop {
            match self.next_reply().await {
                Some(Reply::Exited {
                    timed_out: true, ..
                }) => break Outcome::TimedOut,
                Some(Reply::Exited { code, signal, .. }) => {
                    break Outcome::Exited(match (code, signal) {
                        (Some(code), _) => ExitStatus::code(code),
                        (None, Some(signal)) => ExitStatus::signal(signal),
                        (None, None) => ExitStatus::code(-1),
                    });
                }
                // Answers to signals, or anything else, are not the end.
                Some(_) => continue,
                None => break Outcome::Lost,
            }
        };
        self.outcome = Some(outcome);
        outcome
    }
}

#[async_trait]
impl ExecControl for AgentExec {
    async fn wait(&mut self) -> Result<ExitStatus> {
        match self.finish().await {
            Outcome::Exited(status) => Ok(status),
            Outcome::TimedOut => Err(Error::CommandTimeout {
                timeout: self.timeout.unwrap_or_default(),
                stdout: Default::default(),
                stderr: Default::default(),
            }),
            Outcome::Lost => Ok(ExitStatus::signal(9)),
        }
    }

    async fn kill(&mut self) -> Result<()> {
        if self.outcome.is_none() {
            let frame = protocol::encode(&Request::Signal { signal: 9 });
            // A connection the agent already closed means the command is over.
            let _ = self.connection.write_all(&frame).await;
        }
        self.finish().await;
        Ok(())
    }

    async fn resize(&mut self, size: PtySize) -> Result<()> {
        match &self.terminal {
            Some(master) => crate::terminal::resize(self.provider, master, size),
            None => Err(Error::invalid_spec("pty", "the command has no terminal")),
        }
    }

    /// The agent signals the command's process group and every descendant.
    async fn signal(&mut self, signal: i32) -> Result<()> {
        if self.outcome.is_none() {
            let frame = protocol::encode(&Request::Signal { signal });
            // A connection the agent already closed means the command is over.
            let _ = self.connection.write_all(&frame).await;
        }
        Ok(())
    }
}
