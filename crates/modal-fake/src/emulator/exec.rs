//! Exec sessions: the buffered stdout/stderr of a command (readable again from any offset,
//! as `TaskExecStdioRead` resumes), its stdin with byte-offset bookkeeping, and its exit.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use sandkit_core::{ByteStream, StdinWriter};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{oneshot, watch};
use tonic::Status;

/// Largest chunk of output sent in one stdio message.
const STDIO_CHUNK_BYTES: usize = 64 * 1024;

/// How a command ended.
#[derive(Debug, Clone)]
pub enum ExecExit {
    /// Exited with a code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
    /// The program could not be started (missing, not executable, bad working directory).
    CannotStart(String),
    /// The command's fate is unknown (its sandbox vanished); reported as this status.
    Lost(Status),
}

/// One output stream of a command, kept whole so any offset can be read again.
#[derive(Debug)]
pub struct OutputPipe {
    state: Mutex<OutputState>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct OutputState {
    bytes: Vec<u8>,
    done: bool,
}

impl Default for OutputPipe {
    fn default() -> Self {
        Self {
            state: Mutex::new(OutputState::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl OutputPipe {
    fn with_state<T>(&self, f: impl FnOnce(&mut OutputState) -> T) -> T {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Appends output.
    pub fn push(&self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        self.with_state(|state| state.bytes.extend_from_slice(chunk));
        self.changed.send_modify(|version| *version += 1);
    }

    /// Whether any output arrived.
    pub fn has_data(&self) -> bool {
        self.with_state(|state| !state.bytes.is_empty())
    }

    /// Wakes on every change of the output.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Marks the end of the output.
    pub fn close(&self) {
        self.with_state(|state| state.done = true);
        self.changed.send_modify(|version| *version += 1);
    }

    /// Copies a whole stream into the pipe, then closes it.
    pub async fn fill_from(&self, mut stream: ByteStream, keep: bool) {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) if keep => self.push(&chunk),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "output stream failed");
                    break;
                }
            }
        }
        self.close();
    }

    /// The output from `offset` on, in chunks, ending when the command's output ends.
    pub fn read_from(self: Arc<Self>, offset: u64) -> impl Stream<Item = Bytes> + Send + 'static {
        let receiver = self.changed.subscribe();
        futures::stream::unfold(
            (self, offset as usize, receiver),
            |(pipe, offset, mut receiver)| async move {
                loop {
                    receiver.borrow_and_update();
                    let (chunk, done) = pipe.with_state(|state| {
                        let end = state
                            .bytes
                            .len()
                            .min(offset.saturating_add(STDIO_CHUNK_BYTES));
                        let chunk = (offset < end)
                            .then(|| Bytes::copy_from_slice(&state.bytes[offset..end]));
                        (chunk, state.done)
                    });
                    if let Some(chunk) = chunk {
                        let next = offset + chunk.len();
                        return Some((chunk, (pipe, next, receiver)));
                    }
                    if done || receiver.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
    }
}

/// One exec: its output, its stdin and its exit.
pub struct ExecSession {
    /// The task it runs in.
    pub task_id: String,
    /// Standard output.
    pub stdout: Arc<OutputPipe>,
    /// Standard error.
    pub stderr: Arc<OutputPipe>,
    /// Standard input.
    pub stdin: tokio::sync::Mutex<StdinPipe>,
    /// Set once the command ended.
    pub exit: watch::Sender<Option<ExecExit>>,
    /// Notified to kill the command's process tree.
    pub kill: tokio::sync::Notify,
}

/// Where a command's stdin goes.
pub enum StdinSink {
    /// The process's stdin pipe (`None` once closed).
    Process(Option<StdinWriter>),
    /// Collected and handed over at EOF (the emulator's own fs-tools).
    Collect {
        /// Bytes so far.
        buffer: Vec<u8>,
        /// Receives the whole input at EOF.
        done: Option<oneshot::Sender<Bytes>>,
    },
    /// Discarded.
    Discard,
}

/// Stdin of a command, with Modal's offset semantics: a write at an offset already written
/// is a retry and only its new tail is applied.
pub struct StdinPipe {
    sink: StdinSink,
    written: u64,
    closed: bool,
}

impl StdinPipe {
    /// A stdin writing into `sink`.
    pub fn new(sink: StdinSink) -> Self {
        Self {
            sink,
            written: 0,
            closed: false,
        }
    }

    /// Points the stdin at `sink`, once the command started.
    pub fn set_sink(&mut self, sink: StdinSink) {
        self.sink = sink;
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether EOF was received.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Applies `data` written at `offset`, then EOF when `eof`.
    pub async fn write_at(&mut self, offset: u64, data: &[u8], eof: bool) -> Result<(), Status> {
        let end = offset + data.len() as u64;
        if self.closed {
            // A retry of what was already applied (including the EOF) is fine.
            if end <= self.written {
                return Ok(());
            }
            return Err(Status::failed_precondition(
                "stdin of this exec is already closed",
            ));
        }
        if offset > self.written {
            return Err(Status::failed_precondition(format!(
                "stdin offset {offset} is past the {} bytes written so far",
                self.written
            )));
        }
        let skip = (self.written - offset) as usize;
        if skip < data.len() {
            let fresh = &data[skip..];
            match &mut self.sink {
                StdinSink::Process(Some(writer)) => {
                    if let Err(error) = writer.write_all(fresh).await {
                        return Err(Status::failed_precondition(format!(
                            "cannot write stdin: the command has exited ({error})"
                        )));
                    }
                }
                StdinSink::Process(None) => {
                    return Err(Status::failed_precondition("stdin of this exec is closed"));
                }
                StdinSink::Collect { buffer, .. } => buffer.extend_from_slice(fresh),
                StdinSink::Discard => {}
            }
            self.written = end;
        }
        if eof {
            self.close().await;
        }
        Ok(())
    }

    /// Sends EOF.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        match &mut self.sink {
            StdinSink::Process(writer) => {
                if let Some(mut writer) = writer.take() {
                    // The command may have exited already: nothing left to tell it.
                    let _ = writer.shutdown().await;
                }
            }
            StdinSink::Collect { buffer, done } => {
                if let Some(done) = done.take() {
                    let _ = done.send(Bytes::from(std::mem::take(buffer)));
                }
            }
            StdinSink::Discard => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_reads_resume_at_any_offset() {
        let pipe = Arc::new(OutputPipe::default());
        pipe.push(b"hello ");
        let reader = tokio::spawn(Arc::clone(&pipe).read_from(3).collect::<Vec<Bytes>>());
        pipe.push(b"world");
        pipe.close();
        let chunks = reader.await.unwrap();
        assert_eq!(chunks.concat(), b"lo world");
        let all: Vec<Bytes> = Arc::clone(&pipe).read_from(0).collect().await;
        assert_eq!(all.concat(), b"hello world");
        let past_end: Vec<Bytes> = pipe.read_from(100).collect().await;
        assert!(past_end.is_empty());
    }

    #[tokio::test]
    async fn stdin_writes_are_idempotent_by_offset() {
        let (done_tx, done_rx) = oneshot::channel();
        let mut stdin = StdinPipe::new(StdinSink::Collect {
            buffer: Vec::new(),
            done: Some(done_tx),
        });
        stdin.write_at(0, b"abc", false).await.unwrap();
        // A retry of the same write changes nothing; an overlapping one adds its tail.
        stdin.write_at(0, b"abc", false).await.unwrap();
        stdin.write_at(1, b"bcde", false).await.unwrap();
        assert_eq!(stdin.written(), 5);
        let gap = stdin.write_at(9, b"x", false).await.unwrap_err();
        assert_eq!(gap.code(), tonic::Code::FailedPrecondition);
        stdin.write_at(5, b"", true).await.unwrap();
        assert!(stdin.is_closed());
        assert_eq!(done_rx.await.unwrap(), Bytes::from_static(b"abcde"));
        // A retried EOF is fine; new data after EOF is not.
        stdin.write_at(5, b"", true).await.unwrap();
        assert!(stdin.write_at(5, b"z", false).await.is_err());
    }
}
