//! A running command: its end arrives from the agent on the connection that started it,
//! and a kill goes back on the same connection. The agent enforces timeouts inside the
//! sandbox, so a timeout holds even when this process is gone.

use std::time::Duration;

use async_trait::async_trait;
use sandkit_agent::protocol::{self, Reply, Request};
use std::os::fd::OwnedFd;

use sandkit_core::{Error, ExecControl, ExitStatus, PtySize, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

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
pub(crate) struct LocalExec {
    connection: UnixStream,
    outcome: Option<Outcome>,
    timeout: Option<Duration>,
    /// The master side of the command's terminal, when it has one.
    terminal: Option<OwnedFd>,
}

impl LocalExec {
    /// Watches the command started on `connection`.
    pub fn new(
        connection: std::os::unix::net::UnixStream,
        timeout: Option<Duration>,
        terminal: Option<OwnedFd>,
    ) -> Result<Self> {
        let setup = |connection: std::os::unix::net::UnixStream| {
            connection.set_nonblocking(true)?;
            UnixStream::from_std(connection)
        };
        let connection =
            setup(connection).map_err(|e| crate::error::internal("watching a command", e))?;
        Ok(Self {
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
impl ExecControl for LocalExec {
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
            Some(master) => crate::terminal::resize(master, size),
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
