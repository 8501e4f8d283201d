//! Commands through the task command router: start, output streams resumed by byte offset,
//! stdin by offset-addressed writes, and wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sandkit_core::{ByteStream, Error, ExecControl, ExitStatus, Result, StdinWriter};
use sandkit_modal_proto::client::{SecretSource, StringMap, secret_source};
use sandkit_modal_proto::task_command_router::{
    TaskExecStartRequest, TaskExecStderrConfig, TaskExecStdinStatusRequest,
    TaskExecStdinWriteRequest, TaskExecStdinWriteStreamEnd, TaskExecStdinWriteStreamRequest,
    TaskExecStdinWriteStreamStart, TaskExecStdioFileDescriptor, TaskExecStdioReadRequest,
    TaskExecStdoutConfig, TaskExecWaitRequest, task_exec_stdin_write_stream_request::Payload,
    task_exec_wait_response,
};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::NAME;
use crate::client::Router;
use crate::error::from_status;
use crate::retry::{RetryPolicy, TRANSIENT_CODES};
use crate::router_access::names_missing_program;

/// Reopening a broken output stream: attempts in a row without progress.
const STDIO_MAX_RETRIES: u32 = 10;
/// Reopening a broken output stream: first delay, doubled after each failed attempt.
const STDIO_INITIAL_BACKOFF: Duration = Duration::from_millis(10);
/// Stdin chunks per stream message, as Modal's clients send them.
const STDIN_CHUNK_BYTES: usize = 256 * 1024;
/// Bytes of a streamed stdin kept after sending, to resume a broken stream: 16 chunks.
pub(crate) const STDIN_RETAIN_BYTES: usize = 16 * STDIN_CHUNK_BYTES;
/// Resumes of one stdin stream before giving up.
const STDIN_MAX_RESUMES: u32 = 9;
/// Deadline of one `TaskExecWait` call; the wait loops until the exec ends.
const WAIT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// After a command's timeout, how long to wait for the server's kill to be reported.
const TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// Every command carries its exec id in this environment variable, and so do its children;
/// that is how `kill` finds the command's whole process tree, since Modal's
/// router has no call to signal a command.
pub const EXEC_ID_ENV: &str = "SANDKIT_EXEC_ID";

/// Kills every process whose environment holds `SANDKIT_EXEC_ID=$1`, and every
/// descendant of one whatever its environment (a child started with `env -i`), but not
/// itself: all are stopped first, so none forks while they are killed, and passes repeat
/// until none is left. Needs `sh`, `tr`, `grep` and `sed`, which Modal's images have.
pub const KILL_SCRIPT: &str = r#"marker="SANDKIT_EXEC_ID=$1"
pass=0
while [ "$pass" -lt 10 ]; do
  targets=" "
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    if tr '\000' '\n' < "$dir/environ" 2>/dev/null | grep -qxF "$marker"; then
      targets="$targets$pid "
    fi
  done
  grew=1
  while [ -n "$grew" ]; do
    grew=
    for dir in /proc/[0-9]*; do
      pid=${dir#/proc/}
      case "$targets" in *" $pid "*) continue ;; esac
      ppid=$(sed -n 's/^PPid:[[:space:]]*//p' "$dir/status" 2>/dev/null)
      case "$targets" in *" $ppid "*) targets="$targets$pid " grew=1 ;; esac
    done
  done
  [ "$targets" = " " ] && exit 0
  kill -STOP $targets 2>/dev/null
  kill -KILL $targets 2>/dev/null
  pass=$((pass + 1))
done
exit 1
"#;

/// The argv of the command that kills exec `exec_id` (see [`KILL_SCRIPT`]).
pub fn kill_argv(exec_id: &str) -> Vec<String> {
    vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        KILL_SCRIPT.to_owned(),
        "sandkit-kill".to_owned(),
        exec_id.to_owned(),
    ]
}

/// What to start.
pub(crate) struct Start {
    pub argv: Vec<String>,
    pub workdir: Option<String>,
    pub env: std::collections::BTreeMap<String, String>,
    /// Server-enforced limit; the server kills the command after it.
    pub timeout: Option<Duration>,
}

/// A started command: its id and router.
#[derive(Clone)]
pub(crate) struct Exec {
    pub router: Arc<Router>,
    pub exec_id: String,
    /// `argv[0]`, to name in a start failure reported late.
    pub program: String,
    pub started: Instant,
    pub timeout: Option<Duration>,
}

/// Starts `start` with both output streams piped.
pub(crate) async fn start(router: Arc<Router>, start: Start) -> std::result::Result<Exec, Status> {
    let exec_id = uuid::Uuid::new_v4().to_string();
    let program = start.argv.first().cloned().unwrap_or_default();
    // The server counts whole seconds; round up so a command never gets less than asked.
    let timeout_secs = start.timeout.map(|timeout| {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
    });
    // The caller's environment goes inline in `secret_sources`, as Modal's Python client
    // sends it: values there are treated as secrets, and a caller's may hold some. The
    // exec id, which is no secret and must stay readable in recordings, goes in `env`.
    let secret_sources = if start.env.is_empty() {
        Vec::new()
    } else {
        vec![SecretSource {
            source: Some(secret_source::Source::Env(StringMap {
                contents: start.env.into_iter().collect(),
            })),
        }]
    };
    let request = TaskExecStartRequest {
        task_id: router.task_id().to_owned(),
        exec_id: exec_id.clone(),
        command_args: start.argv,
        stdout_config: TaskExecStdoutConfig::Pipe as i32,
        stderr_config: TaskExecStderrConfig::Pipe as i32,
        timeout_secs,
        workdir: start.workdir,
        env: HashMap::from([(EXEC_ID_ENV.to_owned(), exec_id.clone())]),
        secret_sources,
        ..Default::default()
    };
    let started = Instant::now();
    router
        .unary(request, None, |mut stub, request| async move {
            stub.task_exec_start(request).await
        })
        .await?;
    Ok(Exec {
        router,
        exec_id,
        program,
        started,
        timeout: start.timeout,
    })
}

impl Exec {
    /// One output stream, read in a background task and resumed by offset after transient
    /// failures, so no byte is lost or repeated. Reading stops when the stream is dropped.
    pub fn output(&self, descriptor: TaskExecStdioFileDescriptor) -> ByteStream {
        let (sender, receiver) = mpsc::channel::<Result<Bytes>>(16);
        let exec = self.clone();
        tokio::spawn(async move { exec.pump_output(descriptor, sender).await });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
    }

    async fn pump_output(
        self,
        descriptor: TaskExecStdioFileDescriptor,
        sender: mpsc::Sender<Result<Bytes>>,
    ) {
        let mut offset = 0u64;
        let mut failures = 0u32;
        let mut backoff = STDIO_INITIAL_BACKOFF;
        let mut access = self.router.access().await;
        let mut refreshed = false;
        loop {
            let request = TaskExecStdioReadRequest {
                task_id: self.router.task_id().to_owned(),
                exec_id: self.exec_id.clone(),
                offset,
                file_descriptor: descriptor as i32,
            };
            let failure = match access
                .stub
                .clone()
                .task_exec_stdio_read(access.request(request))
                .await
            {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(message)) if message.data.is_empty() => {}
                            Ok(Some(message)) => {
                                offset += message.data.len() as u64;
                                failures = 0;
                                backoff = STDIO_INITIAL_BACKOFF;
                                refreshed = false;
                                if sender.send(Ok(Bytes::from(message.data))).await.is_err() {
                                    return;
                                }
                            }
                            // A stream that ends with OK has delivered everything.
                            Ok(None) => return,
                            Err(status) => break status,
                        }
                    }
                }
                Err(status) => status,
            };
            if failure.code() == Code::Unauthenticated && !refreshed {
                refreshed = true;
                match self.router.refresh(&access).await {
                    Ok(fresh) => {
                        access = fresh;
                        continue;
                    }
                    Err(status) => {
                        let _ = sender.send(Err(self.stream_error(&status))).await;
                        return;
                    }
                }
            }
            if TRANSIENT_CODES.contains(&failure.code()) && failures < STDIO_MAX_RETRIES {
                failures += 1;
                tracing::debug!(code = ?failure.code(), offset, "resuming exec output stream");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                continue;
            }
            let _ = sender.send(Err(self.stream_error(&failure))).await;
            return;
        }
    }

    fn stream_error(&self, status: &Status) -> Error {
        from_status(status, &format!("output of command `{}`", self.exec_id))
    }

    /// Standard input: a pipe whose bytes are forwarded with offset-addressed writes, so a
    /// retried write is never applied twice. Shutting the writer down sends EOF.
    pub fn stdin(&self) -> StdinWriter {
        let (writer, mut reader) = tokio::io::duplex(STDIN_CHUNK_BYTES);
        let exec = self.clone();
        tokio::spawn(async move {
            let mut offset = 0u64;
            let mut buffer = BytesMut::with_capacity(STDIN_CHUNK_BYTES);
            loop {
                buffer.clear();
                let eof = match reader.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => true,
                    Ok(_) => false,
                };
                let data = buffer.split().freeze();
                let length = data.len() as u64;
                if let Err(status) = exec.write_stdin(offset, data, eof).await {
                    // FAILED_PRECONDITION: the command has exited; its input is moot.
                    if status.code() != Code::FailedPrecondition {
                        tracing::debug!(code = ?status.code(), "writing command stdin failed");
                    }
                    // Dropping the reader makes further writes fail with a broken pipe.
                    return;
                }
                offset += length;
                if eof {
                    return;
                }
            }
        });
        Box::pin(writer)
    }

    /// Closes stdin so a command that reads it sees EOF at once.
    pub fn close_stdin(&self) {
        let exec = self.clone();
        tokio::spawn(async move {
            let _ = exec.write_stdin(0, Bytes::new(), true).await;
        });
    }

    async fn write_stdin(
        &self,
        offset: u64,
        data: Bytes,
        eof: bool,
    ) -> std::result::Result<(), Status> {
        let request = TaskExecStdinWriteRequest {
            task_id: self.router.task_id().to_owned(),
            exec_id: self.exec_id.clone(),
            offset,
            data: data.to_vec(),
            eof,
        };
        self.router
            .unary(request, None, |mut stub, request| async move {
                stub.task_exec_stdin_write(request).await
            })
            .await
            .map(drop)
    }

    /// Streams `input` into stdin in messages of at most 256 KiB, then closes it (`end`),
    /// pulling from `input` only as the router takes data, so memory stays bounded. After a
    /// transient failure the stream resumes at the server's byte count, which must fall
    /// within the last `retain` bytes sent (kept for that; `usize::MAX` keeps everything,
    /// which costs nothing when `input` is one buffer). FAILED_PRECONDITION / ABORTED mean
    /// the command exited early. When `input` fails, stdin is left open (no `end`).
    pub async fn write_stdin_from(
        &self,
        input: ByteStream,
        retain: usize,
    ) -> std::result::Result<(), StdinFailure> {
        let source = Arc::new(tokio::sync::Mutex::new(StdinSource::new(input, retain)));
        let mut offset = 0u64;
        let mut resumes = 0u32;
        let mut refreshed = false;
        let mut access = self.router.access().await;
        loop {
            let attempt = {
                let mut source = source.lock().await;
                source.attempt += 1;
                source.attempt
            };
            let start = TaskExecStdinWriteStreamStart {
                task_id: self.router.task_id().to_owned(),
                exec_id: self.exec_id.clone(),
                offset,
            };
            let result = access
                .stub
                .clone()
                .task_exec_stdin_write_stream(access.request(stdin_messages(
                    Arc::clone(&source),
                    attempt,
                    start,
                )))
                .await;
            if let Some(error) = source.lock().await.failure.take() {
                return Err(StdinFailure::Input(error));
            }
            let status = match result {
                Ok(_) => return Ok(()),
                Err(status) => status,
            };
            if status.code() == Code::Unauthenticated && !refreshed {
                refreshed = true;
                access = self
                    .router
                    .refresh(&access)
                    .await
                    .map_err(StdinFailure::Status)?;
            } else if !TRANSIENT_CODES.contains(&status.code()) || resumes >= STDIN_MAX_RESUMES {
                return Err(StdinFailure::Status(status));
            } else {
                resumes += 1;
            }
            let progress = self
                .router
                .unary(
                    TaskExecStdinStatusRequest {
                        task_id: self.router.task_id().to_owned(),
                        exec_id: self.exec_id.clone(),
                    },
                    None,
                    |mut stub, request| async move { stub.task_exec_stdin_status(request).await },
                )
                .await
                .map_err(StdinFailure::Status)?;
            if progress.closed {
                return Ok(());
            }
            offset = progress.num_bytes_written;
            if !source.lock().await.rewind(offset) {
                return Err(StdinFailure::Status(Status::unavailable(format!(
                    "the stdin stream broke and the server's count ({offset} bytes) is \
                     outside the bytes still kept for resuming"
                ))));
            }
            tracing::debug!(code = ?status.code(), offset, "resuming exec stdin stream");
        }
    }

    /// Waits for the command to end. Transient failures are retried every second until
    /// the command's deadline; a command the server killed at its timeout is
    /// [`Error::CommandTimeout`].
    pub async fn wait(&self) -> Result<ExitStatus> {
        let once = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::router(None)
        };
        let deadline = self
            .timeout
            .map(|timeout| self.started + timeout + TIMEOUT_GRACE);
        loop {
            let call_timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.timed_out());
                    }
                    left.min(WAIT_CALL_TIMEOUT)
                }
                None => WAIT_CALL_TIMEOUT,
            };
            let request = TaskExecWaitRequest {
                task_id: self.router.task_id().to_owned(),
                exec_id: self.exec_id.clone(),
            };
            let result = self
                .router
                .unary_with(
                    &once,
                    request,
                    Some(call_timeout),
                    |mut stub, request| async move { stub.task_exec_wait(request).await },
                )
                .await;
            match result {
                Ok(response) => {
                    let status = match response.exit_status {
                        Some(task_exec_wait_response::ExitStatus::Code(code)) => {
                            ExitStatus::code(code)
                        }
                        Some(task_exec_wait_response::ExitStatus::Signal(signal)) => {
                            ExitStatus::signal(signal)
                        }
                        None => {
                            return Err(Error::provider(
                                NAME,
                                "the router reported an exit without a status",
                            ));
                        }
                    };
                    if self
                        .timeout
                        .is_some_and(|timeout| self.started.elapsed() >= timeout)
                    {
                        return Err(self.timed_out());
                    }
                    return Ok(status);
                }
                Err(status) if TRANSIENT_CODES.contains(&status.code()) => {
                    if status.code() != Code::DeadlineExceeded {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                // A worker may learn only at the end that the program could not start
                // (a slow runtime): the same words as a refused start, the same error.
                Err(status)
                    if matches!(
                        status.code(),
                        Code::FailedPrecondition | Code::InvalidArgument
                    ) && names_missing_program(status.message()) =>
                {
                    return Err(Error::ProgramNotFound {
                        program: self.program.clone(),
                    });
                }
                Err(status) => {
                    return Err(from_status(&status, &format!("command `{}`", self.exec_id)));
                }
            }
        }
    }

    fn timed_out(&self) -> Error {
        Error::CommandTimeout {
            timeout: self.timeout.unwrap_or_default(),
            stdout: Bytes::new(),
            stderr: Bytes::new(),
        }
    }

    /// Runs to completion, collecting both streams (used for fs-tools).
    pub async fn collect(&self) -> Result<(ExitStatus, Bytes, Bytes)> {
        let stdout = gather(self.output(TaskExecStdioFileDescriptor::Stdout));
        let stderr = gather(self.output(TaskExecStdioFileDescriptor::Stderr));
        let (stdout, stderr, status) = tokio::join!(stdout, stderr, self.wait());
        Ok((status?, stdout?, stderr?))
    }
}

/// Collects an output stream.
pub(crate) async fn gather(mut stream: ByteStream) -> Result<Bytes> {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk?);
    }
    Ok(buffer.freeze())
}

/// Why streaming stdin failed.
pub(crate) enum StdinFailure {
    /// The caller's input failed; stdin was left open.
    Input(Error),
    /// The router refused or broke the stream (FAILED_PRECONDITION / ABORTED: the command
    /// exited before reading everything).
    Status(Status),
}

/// What the input offers next.
enum Piece {
    Data(Bytes),
    End,
    /// The input failed: end the request stream without `end`.
    Stop,
}

/// The caller's input for stdin, cut into messages, with the last bytes sent kept so a
/// broken stream can be replayed from the server's count.
struct StdinSource {
    input: ByteStream,
    /// Taken from the input, not yet sent.
    pending: Bytes,
    /// The input ended (`Some(true)`) or failed (`Some(false)`).
    finished: Option<bool>,
    failure: Option<Error>,
    /// Sent chunks still kept: they cover `kept_from..sent`.
    kept: VecDeque<Bytes>,
    kept_bytes: usize,
    kept_from: u64,
    sent: u64,
    retain: usize,
    /// Kept bytes to send again, after a rewind.
    replay: VecDeque<Bytes>,
    /// The request stream that may take pieces; older ones end.
    attempt: u64,
}

impl StdinSource {
    fn new(input: ByteStream, retain: usize) -> Self {
        Self {
            input,
            pending: Bytes::new(),
            finished: None,
            failure: None,
            kept: VecDeque::new(),
            kept_bytes: 0,
            kept_from: 0,
            sent: 0,
            retain: retain.max(STDIN_CHUNK_BYTES),
            replay: VecDeque::new(),
            attempt: 0,
        }
    }

    async fn next(&mut self) -> Piece {
        if let Some(chunk) = self.replay.pop_front() {
            return Piece::Data(chunk);
        }
        while self.pending.is_empty() {
            match self.finished {
                Some(true) => return Piece::End,
                Some(false) => return Piece::Stop,
                None => {}
            }
            match self.input.next().await {
                Some(Ok(bytes)) => self.pending = bytes,
                Some(Err(error)) => {
                    self.failure = Some(error);
                    self.finished = Some(false);
                }
                None => self.finished = Some(true),
            }
        }
        let chunk = self
            .pending
            .split_to(self.pending.len().min(STDIN_CHUNK_BYTES));
        self.sent += chunk.len() as u64;
        self.kept_bytes += chunk.len();
        self.kept.push_back(chunk.clone());
        while self.kept_bytes > self.retain
            && let Some(oldest) = self.kept.pop_front()
        {
            self.kept_bytes -= oldest.len();
            self.kept_from += oldest.len() as u64;
        }
        Piece::Data(chunk)
    }

    /// Sends again from `offset` on; `false` when those bytes are no longer kept.
    fn rewind(&mut self, offset: u64) -> bool {
        if offset < self.kept_from || offset > self.sent {
            return false;
        }
        self.replay.clear();
        let mut skip = offset - self.kept_from;
        for chunk in &self.kept {
            let length = chunk.len() as u64;
            if skip >= length {
                skip -= length;
            } else {
                self.replay.push_back(chunk.slice(skip as usize..));
                skip = 0;
            }
        }
        true
    }
}

/// The messages of one stdin stream attempt: `start`, data from `source`, then `end`.
fn stdin_messages(
    source: Arc<tokio::sync::Mutex<StdinSource>>,
    attempt: u64,
    start: TaskExecStdinWriteStreamStart,
) -> impl futures::Stream<Item = TaskExecStdinWriteStreamRequest> + Send + 'static {
    let start = TaskExecStdinWriteStreamRequest {
        payload: Some(Payload::Start(start)),
    };
    let rest = futures::stream::unfold(Some(source), move |source| async move {
        let source = source?;
        let piece = {
            let mut guard = source.lock().await;
            if guard.attempt != attempt {
                return None;
            }
            guard.next().await
        };
        let (payload, more) = match piece {
            Piece::Data(chunk) => (Payload::Data(chunk.to_vec()), Some(source)),
            Piece::End => (Payload::End(TaskExecStdinWriteStreamEnd {}), None),
            Piece::Stop => return None,
        };
        let message = TaskExecStdinWriteStreamRequest {
            payload: Some(payload),
        };
        Some((message, more))
    });
    futures::stream::once(std::future::ready(start)).chain(rest)
}

/// The control half of an [`sandkit_core::ExecProcess`].
pub(crate) struct Control {
    exec: Exec,
    finished: Option<ExitStatus>,
}

impl Control {
    pub fn new(exec: Exec) -> Self {
        Self {
            exec,
            finished: None,
        }
    }
}

#[async_trait]
impl ExecControl for Control {
    async fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.finished {
            return Ok(status);
        }
        let status = self.exec.wait().await?;
        self.finished = Some(status);
        Ok(status)
    }

    /// Modal's router offers no call to signal a command, so a second command kills every
    /// process carrying this command's exec id in its environment (see [`KILL_SCRIPT`]).
    async fn kill(&mut self) -> Result<()> {
        if self.finished.is_some() {
            return Ok(());
        }
        let start = Start {
            argv: kill_argv(&self.exec.exec_id),
            workdir: None,
            env: Default::default(),
            timeout: Some(Duration::from_secs(60)),
        };
        let killer = self::start(Arc::clone(&self.exec.router), start)
            .await
            .map_err(|status| from_status(&status, "the command that kills a command"))?;
        let (status, _, stderr) = killer.collect().await?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::provider(
                NAME,
                format!(
                    "killing command `{}` failed ({status}): {}",
                    self.exec.exec_id,
                    String::from_utf8_lossy(&stderr).trim()
                ),
            ))
        }
    }

    /// The router has no call for it (`exec_signal` is declared false).
    async fn signal(&mut self, _signal: i32) -> Result<()> {
        Err(Error::unsupported(NAME, "signalling a running command"))
    }

    /// No command here has a pseudo-terminal (`exec_pty` is declared false).
    async fn resize(&mut self, _size: sandkit_core::PtySize) -> Result<()> {
        Err(Error::unsupported(NAME, "resizing a pseudo-terminal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(bytes: usize, retain: usize) -> StdinSource {
        let input: ByteStream =
            Box::pin(futures::stream::iter([Ok(Bytes::from(vec![7u8; bytes]))]));
        StdinSource::new(input, retain)
    }

    #[tokio::test]
    async fn stdin_is_cut_into_messages_and_rewinds_only_within_what_is_kept() {
        let mut source = source(5 * STDIN_CHUNK_BYTES + 10, 2 * STDIN_CHUNK_BYTES);
        let mut lengths = Vec::new();
        loop {
            match source.next().await {
                Piece::Data(chunk) => lengths.push(chunk.len()),
                Piece::End => break,
                Piece::Stop => panic!("the input did not fail"),
            }
        }
        assert_eq!(
            lengths,
            [STDIN_CHUNK_BYTES; 5]
                .into_iter()
                .chain([10])
                .collect::<Vec<_>>()
        );
        // The last 2 chunks' worth is kept: the last message and the one before it.
        assert!(!source.rewind(0));
        assert!(!source.rewind(source.sent + 1));
        let offset = source.sent - 20;
        assert!(source.rewind(offset));
        let mut replayed = 0;
        while let Piece::Data(chunk) = source.next().await {
            replayed += chunk.len();
        }
        assert_eq!(replayed, 20);
        assert!(matches!(source.next().await, Piece::End));
    }
}
