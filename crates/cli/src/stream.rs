//! Driving a running command from the terminal: its output streamed live, our stdin
//! forwarded, and Ctrl-C turned into a kill instead of an abandoned process.

use std::sync::Arc;

use futures::StreamExt;
use sandkit::{ByteStream, ExecProcess, ExitStatus, SandboxId, SandboxProvider, SandboxSpec};
use sandkit::{SandboxInfo, StdinWriter};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::CliError;

/// SIGINT and SIGTERM, caught instead of killing us, so that we can clean up first.
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    /// Starts catching SIGINT and SIGTERM (for the rest of the process's life).
    pub fn catch() -> Result<Self, CliError> {
        let install = |kind| {
            signal(kind).map_err(|error| {
                CliError::Failed(format!("cannot install a signal handler: {error}"))
            })
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal and returns its number.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => 2,
            _ = self.terminate.recv() => 15,
        }
    }
}

/// Creates a sandbox. A signal during creation lets the creation finish and then
/// terminates the new sandbox, so an interrupted `run` or `create` leaves nothing behind.
pub async fn create_interruptible(
    provider: &Arc<dyn SandboxProvider>,
    spec: &SandboxSpec,
    interrupts: &mut Interrupts,
) -> Result<SandboxInfo, CliError> {
    let create = provider.create(spec);
    tokio::pin!(create);
    tokio::select! {
        created = &mut create => Ok(created?),
        signal = interrupts.recv() => {
            let cleanup = match create.await {
                Ok(info) => Some(match provider.terminate(&info.id).await {
                    Ok(()) => format!("sandbox {} terminated", info.id),
                    Err(error) => format!("sandbox {} could not be terminated: {error}", info.id),
                }),
                Err(_) => None,
            };
            Err(CliError::Interrupted { signal, cleanup })
        }
    }
}

/// With [`Sink::Collect`], at most this many bytes of each of stdout and stderr are kept;
/// the rest is read (so the command never blocks) and counted, not kept.
pub const COLLECT_LIMIT_BYTES: usize = 16 << 20;

/// Where a command's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Straight to our stdout and stderr, chunk by chunk.
    Terminal,
    /// Kept in memory (for `--json`), up to [`COLLECT_LIMIT_BYTES`] per stream.
    Collect,
}

/// One output stream as collected.
#[derive(Debug, Default)]
pub struct Collected {
    /// The first [`COLLECT_LIMIT_BYTES`] bytes (empty unless the sink was
    /// [`Sink::Collect`]).
    pub kept: Vec<u8>,
    /// How many bytes the stream carried in all.
    pub total_bytes: u64,
}

impl Collected {
    /// Whether bytes were dropped because of [`COLLECT_LIMIT_BYTES`].
    pub fn truncated(&self) -> bool {
        self.total_bytes > self.kept.len() as u64
    }
}

/// How a driven command ended.
#[derive(Debug)]
pub enum Outcome {
    /// It exited; collected output is empty unless the sink was [`Sink::Collect`].
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Collected standard output.
        stdout: Collected,
        /// Collected standard error.
        stderr: Collected,
    },
    /// A signal arrived; the command was killed.
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}

/// Streams the command's output to `sink`, forwards our stdin when the command has a
/// stdin pipe, and waits. A signal kills the command and returns
/// [`Outcome::Interrupted`].
pub async fn drive(
    process: &mut ExecProcess,
    sink: Sink,
    interrupts: &mut Interrupts,
) -> Result<Outcome, CliError> {
    let stdout = std::mem::replace(&mut process.stdout, Box::pin(futures::stream::empty()));
    let stderr = std::mem::replace(&mut process.stderr, Box::pin(futures::stream::empty()));
    let stdin_task = process
        .stdin
        .take()
        .map(|writer| tokio::spawn(forward_stdin(writer)));

    let finished = {
        let process = &mut *process;
        async move {
            let (stdout, stderr) = tokio::join!(
                pump(stdout, sink, tokio::io::stdout()),
                pump(stderr, sink, tokio::io::stderr())
            );
            let status = process.wait().await;
            (stdout, stderr, status)
        }
    };
    let (stdout, stderr, status) = tokio::select! {
        ended = finished => ended,
        signal = interrupts.recv() => {
            if let Some(task) = &stdin_task {
                task.abort();
            }
            process.kill().await?;
            return Ok(Outcome::Interrupted { signal });
        }
    };
    if let Some(task) = stdin_task {
        task.abort();
    }
    let status = status?;
    let stdout = stdout?;
    let stderr = stderr?;
    Ok(Outcome::Exited {
        status,
        stdout,
        stderr,
    })
}

/// Copies our stdin into the command's, then closes it so the command sees EOF.
async fn forward_stdin(mut writer: StdinWriter) {
    let mut stdin = tokio::io::stdin();
    // The command may exit without reading everything; a broken pipe is its choice.
    let _ = tokio::io::copy(&mut stdin, &mut writer).await;
    let _ = writer.shutdown().await;
}

/// Reads a stream to its end, writing or keeping each chunk (up to
/// [`COLLECT_LIMIT_BYTES`]). Once our own output is closed (`sandkit run ... | head -1`)
/// the rest is read and dropped, so the command is never blocked on a full pipe.
async fn pump(
    mut stream: ByteStream,
    sink: Sink,
    mut terminal: impl AsyncWrite + Unpin,
) -> Result<Collected, CliError> {
    let mut collected = Collected::default();
    let mut terminal_open = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        collected.total_bytes += chunk.len() as u64;
        match sink {
            Sink::Collect => {
                let room = COLLECT_LIMIT_BYTES.saturating_sub(collected.kept.len());
                collected
                    .kept
                    .extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            Sink::Terminal if terminal_open => {
                let written = async {
                    terminal.write_all(&chunk).await?;
                    terminal.flush().await
                };
                terminal_open = written.await.is_ok();
            }
            Sink::Terminal => {}
        }
    }
    Ok(collected)
}

/// Terminates `id`, warning (not failing) when that does not work: the command's own
/// result matters more, and the warning names the sandbox to clean up by hand.
pub async fn terminate_or_warn(provider: &dyn SandboxProvider, id: &SandboxId) {
    if let Err(error) = provider.terminate(id).await {
        crate::output::warn(format_args!(
            "could not terminate sandbox {id}: {error}; remove it with `sandkit rm {id}`"
        ));
    }
}
