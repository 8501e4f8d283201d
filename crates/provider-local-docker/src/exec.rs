//! Commands through the engine's exec API, attached: stdout and stderr arrive as separate
//! frames of one connection, stdin is that connection's write half.
//!
//! The engine cannot kill an exec (there is no such endpoint), so timeouts and kills are
//! done here: the exec's process id, as the engine reports it, is a process of this host
//! when the engine is local, and the whole tree under it is killed through `/proc`
//! (every process of its session, and every descendant). Engines whose processes this
//! host cannot see (remote, or in a VM) get no exec timeouts: the capability says so.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerStateStatusEnum;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sandkit_core::{Error, ExecControl, ExecProcess, ExecRequest, ExitStatus, Result, StdinWriter};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Engine;
use crate::error::{self, Subject};
use crate::sandbox::Meta;

mod host;

pub(crate) use host::oom_kills;
#[cfg(test)]
use host::process_table;
use host::{kill_process_tree, signal_process_tree};

/// How the engine starts its message when it could not start a command.
const START_FAILURE_PREFIX: &[u8] = b"OCI runtime exec failed";

/// How a command ended, kept so that `wait` can be asked more than once.
#[derive(Debug, Clone)]
enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration),
    CannotStart(String),
    ProgramNotFound,
    OutOfMemory(String),
    SandboxGone,
    Failed(String),
}

impl Outcome {
    fn into_result(self, program: &str, sandbox: &str) -> Result<ExitStatus> {
        match self {
            Self::Exited(status) => Ok(status),
            Self::TimedOut(timeout) => Err(Error::CommandTimeout {
                timeout,
                stdout: Bytes::new(),
                stderr: Bytes::new(),
            }),
            Self::CannotStart(reason) => Err(Error::ExecFailed {
                program: program.to_owned(),
                reason,
            }),
            Self::ProgramNotFound => Err(Error::ProgramNotFound {
                program: program.to_owned(),
            }),
            Self::OutOfMemory(message) => Err(Error::ResourceLimitExceeded { message }),
            Self::SandboxGone => Err(Error::sandbox_not_found(sandbox)),
            Self::Failed(message) => Err(error::other(message)),
        }
    }
}

/// What the readers, the control and the timeout share about one exec.
struct Shared {
    engine: Engine,
    exec_id: String,
    meta: Meta,
    /// Set once sandkit itself killed the command (a kill or the timeout).
    killed: AtomicBool,
    /// Set when the timeout is killing the command, so its end reads as a timeout.
    timed_out: Option<Duration>,
    timing_out: AtomicBool,
    outcome: watch::Sender<Option<Outcome>>,
    /// The cgroup's out-of-memory kill count when the command started.
    oom_before: Option<u64>,
    demux: Mutex<Demux>,
    /// Where the end of the output is handled: streams may be polled from anywhere.
    runtime: tokio::runtime::Handle,
}

impl Shared {
    /// Publishes the outcome unless one is already known (the first one wins: a timeout
    /// stays a timeout however the stream ends afterwards).
    fn settle(&self, outcome: Outcome) {
        self.outcome.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(outcome);
            true
        });
    }

    fn demux(&self) -> std::sync::MutexGuard<'_, Demux> {
        self.demux
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Kills the command's process tree. Returns whether it was still running (a
    /// command that already ended is fine).
    async fn kill_tree(&self) -> Result<bool> {
        self.killed.store(true, Ordering::SeqCst);
        self.signal_tree(None).await
    }

    /// Sends `signal` (SIGKILL in rounds with `None`) to the command's process tree.
    /// Returns whether it was still running.
    async fn signal_tree(&self, signal: Option<nix::sys::signal::Signal>) -> Result<bool> {
        if !self.engine.shares_processes {
            return Err(Error::unsupported(
                crate::provider::PROVIDER_NAME,
                "killing commands on an engine whose processes this host cannot see",
            ));
        }
        // The process id appears once the runtime started the process; a kill that
        // races the start waits for it briefly.
        let mut pid = 0;
        for _ in 0..100 {
            let inspect = match self.engine.docker.inspect_exec(&self.exec_id).await {
                Ok(inspect) => inspect,
                Err(e) if error::is_not_found(&e) => return Ok(false),
                Err(e) => return Err(error::map(e, Subject::Exec(&self.meta.container_id))),
            };
            if inspect.running == Some(false) && inspect.exit_code.is_some() {
                return Ok(false);
            }
            pid = inspect.pid.unwrap_or(0);
            if pid > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Ok(pid) = i32::try_from(pid) else {
            return Ok(false);
        };
        if pid <= 0 {
            return Err(error::other(format!(
                "command {} did not report a process id to kill",
                self.exec_id
            )));
        }
        let container_id = self.meta.container_id.clone();
        tokio::task::spawn_blocking(move || match signal {
            None => kill_process_tree(pid, &container_id),
            Some(signal) => signal_process_tree(pid, &container_id, signal),
        })
        .await
        .map_err(|e| error::other(format!("killing a command: {e}")))?
        .map_err(|e| error::other(format!("killing the process tree of pid {pid}: {e}")))?;
        Ok(true)
    }
}

/// Starts `request` in the sandbox described by `meta`.
pub(crate) async fn start(
    engine: &Engine,
    meta: &Meta,
    request: ExecRequest,
) -> Result<ExecProcess> {
    let sandbox = meta.container_id.as_str();
    let env: Vec<String> = request
        .env
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let options = CreateExecOptions {
        attach_stdin: Some(request.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: (!env.is_empty()).then_some(env),
        cmd: Some(request.argv.clone()),
        user: request.user.clone(),
        working_dir: request.cwd.as_deref().map(|cwd| meta.absolute(cwd)),
        ..Default::default()
    };
    let oom_before = meta
        .memory_limited
        .then(|| oom_kills(engine, meta))
        .flatten();
    let created = engine
        .docker
        .create_exec(sandbox, options)
        .await
        .map_err(|e| error::map(e, Subject::Exec(sandbox)))?;
    let started_at = Instant::now();
    let started = engine
        .docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| error::map(e, Subject::Exec(sandbox)))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(error::other("the engine started the command detached"));
    };

    let (outcome_tx, outcome_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        exec_id: created.id,
        meta: meta.clone(),
        killed: AtomicBool::new(false),
        timed_out: request.timeout,
        timing_out: AtomicBool::new(false),
        outcome: outcome_tx,
        oom_before,
        demux: Mutex::new(Demux::new(output)),
        runtime: tokio::runtime::Handle::current(),
    });
    if let Some(timeout) = request.timeout {
        tokio::spawn(enforce_timeout(
            Arc::clone(&shared),
            started_at + timeout,
            timeout,
        ));
    }
    let stdin: Option<StdinWriter> = request.stdin.then_some(input);
    let control = DockerExec {
        shared: Arc::clone(&shared),
        outcome: outcome_rx,
        program: request.argv.first().cloned().unwrap_or_default(),
    };
    Ok(ExecProcess::new(
        &request,
        Box::pin(OutputHalf {
            shared: Arc::clone(&shared),
            which: STDOUT,
        }),
        Box::pin(OutputHalf {
            shared,
            which: STDERR,
        }),
        stdin,
        Box::new(control),
    ))
}

/// Kills the command when its time is up, unless it ended first.
async fn enforce_timeout(shared: Arc<Shared>, deadline: Instant, timeout: Duration) {
    let mut outcome = shared.outcome.subscribe();
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => {}
        _ = outcome.wait_for(Option::is_some) => return,
    }
    // Before the kill: the output ends as soon as the processes die.
    shared.timing_out.store(true, Ordering::SeqCst);
    match shared.kill_tree().await {
        Ok(true) => shared.settle(Outcome::TimedOut(timeout)),
        // It ended on its own just in time: the readers settle how.
        Ok(false) => shared.timing_out.store(false, Ordering::SeqCst),
        Err(error) => {
            tracing::warn!(%error, exec = %shared.exec_id, "could not kill a timed-out command");
            shared.settle(Outcome::TimedOut(timeout));
        }
    }
}

type OutputStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>,
>;

const STDOUT: usize = 0;
const STDERR: usize = 1;
/// The third waker slot: `wait` driving the connection when nobody reads.
const DRIVER: usize = 2;
/// Bytes queued for one stream before whoever reads the connection waits for that
/// stream's reader (the transport's buffers then fill and the command blocks).
const QUEUE_LIMIT_BYTES: usize = 8 << 20;

/// The wakers of whoever waits on the connection: the two streams and `wait`. The
/// connection itself is polled with a waker that wakes them all, since it remembers only
/// one and any of them may be the one to read next.
#[derive(Default)]
struct WakerSet {
    slots: Mutex<[Option<Waker>; 3]>,
}

impl WakerSet {
    fn slots(&self) -> std::sync::MutexGuard<'_, [Option<Waker>; 3]> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self, slot: usize, waker: &Waker) {
        let mut slots = self.slots();
        if !slots[slot].as_ref().is_some_and(|w| w.will_wake(waker)) {
            slots[slot] = Some(waker.clone());
        }
    }

    fn wake(&self, slot: usize) {
        let waker = self.slots()[slot].take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl std::task::Wake for WakerSet {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let taken = std::mem::take(&mut *self.slots());
        for waker in taken.into_iter().flatten() {
            waker.wake();
        }
    }
}

/// The engine's connection, shared by the two output streams and `wait`. Whoever polls
/// reads the next frame: its own are handed over directly, the other stream's are
/// queued for it. No task sits in between, so streaming costs no extra hand-over.
struct Demux {
    /// `None` once the connection ended.
    output: Option<OutputStream>,
    queues: [VecDeque<Bytes>; 2],
    queued_bytes: [usize; 2],
    dropped: [bool; 2],
    wakers: Arc<WakerSet>,
    /// Wakes every waiter; the connection is polled with it.
    fanout: Waker,
    /// A first stdout frame in the engine's "could not start" words, held until the exit
    /// code tells whether it was the engine or the command speaking.
    held: BytesMut,
    seen_stdout: bool,
    stream_error: Option<bollard::errors::Error>,
    /// Set by `finish`: whether the held bytes are the command's own output.
    release_held: Option<bool>,
    finishing: bool,
}

impl Demux {
    fn new(output: OutputStream) -> Self {
        let wakers = Arc::new(WakerSet::default());
        Self {
            fanout: Waker::from(Arc::clone(&wakers)),
            wakers,
            output: Some(output),
            queues: [VecDeque::new(), VecDeque::new()],
            queued_bytes: [0, 0],
            dropped: [false, false],
            held: BytesMut::new(),
            seen_stdout: false,
            stream_error: None,
            release_held: None,
            finishing: false,
        }
    }

    fn wake(&self, slot: usize) {
        self.wakers.wake(slot);
    }

    fn wake_all(&self) {
        self.fanout.wake_by_ref();
    }

    /// Whether reading more would overfill a queue someone still reads.
    fn blocked(&self) -> bool {
        (0..2).any(|i| !self.dropped[i] && self.queued_bytes[i] >= QUEUE_LIMIT_BYTES)
    }

    /// Reads one frame. `Ready(Some((stream, bytes)))` is output for a stream,
    /// `Ready(None)` means "nothing for anyone, go on" (a frame held or ignored, or the
    /// end reached).
    fn read_frame(&mut self, shared: &Arc<Shared>) -> Poll<Option<(usize, Bytes)>> {
        let Some(output) = self.output.as_mut() else {
            return Poll::Ready(None);
        };
        let mut cx = Context::from_waker(&self.fanout);
        let frame = match output.poll_next_unpin(&mut cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        Poll::Ready(match frame {
            Some(Ok(LogOutput::StdOut { message }))
                if !self.seen_stdout && message.starts_with(START_FAILURE_PREFIX) =>
            {
                self.seen_stdout = true;
                self.held.extend_from_slice(&message);
                None
            }
            Some(Ok(LogOutput::StdOut { message })) => {
                self.seen_stdout = true;
                if self.held.is_empty() {
                    Some((STDOUT, message))
                } else {
                    // More output: the held frame was the command's own.
                    let mut joined = self.held.split();
                    joined.extend_from_slice(&message);
                    Some((STDOUT, joined.freeze()))
                }
            }
            Some(Ok(LogOutput::StdErr { message })) => Some((STDERR, message)),
            // Unframed bytes on a non-TTY exec are the engine's own words.
            Some(Ok(LogOutput::Console { message })) => {
                self.held.extend_from_slice(&message);
                None
            }
            Some(Ok(LogOutput::StdIn { .. })) => None,
            Some(Err(e)) => {
                self.stream_error = Some(e);
                self.end(shared);
                None
            }
            None => {
                self.end(shared);
                None
            }
        })
    }

    /// The connection ended: settle the outcome in the background.
    fn end(&mut self, shared: &Arc<Shared>) {
        self.output = None;
        if !self.finishing {
            self.finishing = true;
            let held = Bytes::copy_from_slice(&self.held);
            let stream_error = self.stream_error.take();
            shared
                .runtime
                .spawn(finish(Arc::clone(shared), held, stream_error));
        }
        self.wake_all();
    }

    /// Queues `bytes` for stream `which` (dropped when nobody reads it any more).
    fn queue(&mut self, which: usize, bytes: Bytes) {
        if self.dropped[which] {
            return;
        }
        self.queued_bytes[which] += bytes.len();
        self.queues[which].push_back(bytes);
        self.wake(which);
    }

    fn poll_stream(
        &mut self,
        which: usize,
        cx: &mut Context<'_>,
        shared: &Arc<Shared>,
    ) -> Poll<Option<Result<Bytes>>> {
        self.wakers.register(which, cx.waker());
        loop {
            if let Some(chunk) = self.queues[which].pop_front() {
                self.queued_bytes[which] -= chunk.len();
                // Whoever waited for room may go on.
                self.wake(1 - which);
                self.wake(DRIVER);
                return Poll::Ready(Some(Ok(chunk)));
            }
            if self.output.is_none() {
                if which == STDOUT && !self.held.is_empty() {
                    match self.release_held {
                        None => return Poll::Pending,
                        Some(true) => return Poll::Ready(Some(Ok(self.held.split().freeze()))),
                        Some(false) => self.held.clear(),
                    }
                }
                return Poll::Ready(None);
            }
            if self.blocked() {
                return Poll::Pending;
            }
            match self.read_frame(shared) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some((stream, bytes))) if stream == which => {
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Poll::Ready(Some((stream, bytes))) => self.queue(stream, bytes),
                Poll::Ready(None) => {}
            }
        }
    }

    /// Reads the connection to its end for `wait`, queueing output for the streams.
    fn poll_drive(&mut self, cx: &mut Context<'_>, shared: &Arc<Shared>) -> Poll<()> {
        self.wakers.register(DRIVER, cx.waker());
        loop {
            if self.output.is_none() {
                return Poll::Ready(());
            }
            if self.blocked() {
                return Poll::Pending;
            }
            match self.read_frame(shared) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some((stream, bytes))) => self.queue(stream, bytes),
                Poll::Ready(None) => {}
            }
        }
    }
}

/// One output stream of a command.
struct OutputHalf {
    shared: Arc<Shared>,
    which: usize,
}

impl futures::Stream for OutputHalf {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &self.shared;
        shared.demux().poll_stream(self.which, cx, shared)
    }
}

impl Drop for OutputHalf {
    fn drop(&mut self) {
        let mut demux = self.shared.demux();
        demux.dropped[self.which] = true;
        demux.queues[self.which].clear();
        demux.queued_bytes[self.which] = 0;
        demux.wake_all();
    }
}

/// Reads the exit code once the output ended, and settles the outcome.
async fn finish(shared: Arc<Shared>, held: Bytes, stream_error: Option<bollard::errors::Error>) {
    let outcome = outcome_of(&shared, &held, stream_error).await;
    let cannot_start = matches!(outcome, Outcome::CannotStart(_));
    shared.settle(outcome);
    let mut demux = shared.demux();
    demux.release_held = Some(!cannot_start);
    demux.wake(STDOUT);
}

async fn outcome_of(
    shared: &Arc<Shared>,
    held: &[u8],
    stream_error: Option<bollard::errors::Error>,
) -> Outcome {
    let container = shared.meta.container_id.as_str();
    let mut polls = 0u32;
    let code = loop {
        match shared.engine.docker.inspect_exec(&shared.exec_id).await {
            Ok(inspect) if inspect.running != Some(true) => {
                break inspect.exit_code.unwrap_or(-1);
            }
            Ok(_) => {}
            Err(e) if error::is_not_found(&e) => return Outcome::SandboxGone,
            Err(e) => {
                return Outcome::Failed(error::map(e, Subject::Exec(container)).to_string());
            }
        }
        polls += 1;
        // The output can end a moment before the exit is recorded. A sandbox killed
        // behind our back never records it: check the container now and then.
        if polls % 20 == 0 && sandbox_gone(shared).await {
            return Outcome::SandboxGone;
        }
        tokio::time::sleep(Duration::from_millis(if polls < 10 { 5 } else { 50 })).await;
    };
    let code = i32::try_from(code).unwrap_or(-1);
    let killed = shared.killed.load(Ordering::SeqCst);
    if killed
        && shared.timing_out.load(Ordering::SeqCst)
        && let Some(timeout) = shared.timed_out
    {
        return Outcome::TimedOut(timeout);
    }
    if (code == 126 || code == 127 || code == 137) && !killed && sandbox_gone(shared).await {
        // A sandbox removed under a command shows as a kill or a failed start.
        return Outcome::SandboxGone;
    }
    if !held.is_empty() && (code == 126 || code == 127) {
        let reason = start_failure_reason(String::from_utf8_lossy(held).trim());
        if names_missing_program(&reason) {
            return Outcome::ProgramNotFound;
        }
        return Outcome::CannotStart(reason);
    }
    if let Some(e) = stream_error
        && code == -1
    {
        return Outcome::Failed(error::map(e, Subject::Exec(container)).to_string());
    }
    if killed {
        return Outcome::Exited(ExitStatus::signal(9));
    }
    if code == 137 && shared.meta.memory_limited && out_of_memory(shared).await {
        return Outcome::OutOfMemory(
            "the command was killed: the sandbox ran out of memory".to_owned(),
        );
    }
    Outcome::Exited(ExitStatus::code(code))
}

/// Whether the sandbox is gone or going. The engine marks a container it is killing as
/// stopped a moment after its processes died, so a running one is asked again.
async fn sandbox_gone(shared: &Shared) -> bool {
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = match shared
            .engine
            .docker
            .inspect_container(&shared.meta.container_id, None)
            .await
        {
            Ok(inspect) => inspect.state,
            Err(_) => return true,
        };
        let running = state.as_ref().and_then(|s| s.running) == Some(true);
        let removing = state
            .as_ref()
            .and_then(|s| s.status)
            .is_some_and(|status| status == ContainerStateStatusEnum::REMOVING);
        if !running || removing {
            return true;
        }
    }
    false
}

/// Whether the kernel killed a process of this sandbox for memory since the exec
/// started: from the cgroup's counter when it can be read here, else from the engine's
/// out-of-memory flag.
async fn out_of_memory(shared: &Shared) -> bool {
    if let (Some(before), Some(after)) =
        (shared.oom_before, oom_kills(&shared.engine, &shared.meta))
    {
        return after > before;
    }
    shared
        .engine
        .docker
        .inspect_container(&shared.meta.container_id, None)
        .await
        .ok()
        .and_then(|inspect| inspect.state?.oom_killed)
        .unwrap_or(false)
}

/// The engine's message without the runtime's boilerplate, e.g. `"nope": executable
/// file not found in $PATH` or `chdir to cwd ("/x") set in config.json failed: no such
/// file or directory`.
fn start_failure_reason(message: &str) -> String {
    let mut reason = message.trim();
    for prefix in [
        "OCI runtime exec failed: ",
        "exec failed: ",
        "unable to start container process: ",
    ] {
        reason = reason.strip_prefix(prefix).unwrap_or(reason);
    }
    // Older runtimes: "container_linux.go:380: starting container process caused: ...".
    if let Some((_, rest)) = reason.split_once("starting container process caused: ") {
        reason = rest;
    }
    reason = reason.strip_prefix("exec: ").unwrap_or(reason);
    reason.trim_end_matches(": unknown").to_owned()
}

/// Whether the runtime's reason (see [`start_failure_reason`]) says that the program
/// does not exist: `"nope": executable file not found in $PATH` for a name looked up on
/// `PATH`, `"/x/y": stat /x/y: no such file or directory` for a path. The engine gives
/// every failed start the same exit code, so its words are all there is to tell by. A
/// missing working directory (`chdir to cwd ...`) is not a missing program.
fn names_missing_program(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    !reason.contains("chdir")
        && (reason.contains("not found in $path") || reason.ends_with("no such file or directory"))
}

/// The control handed to callers.
struct DockerExec {
    shared: Arc<Shared>,
    outcome: watch::Receiver<Option<Outcome>>,
    program: String,
}

#[async_trait]
impl ExecControl for DockerExec {
    async fn wait(&mut self) -> Result<ExitStatus> {
        // Nobody may be reading the output: read the connection to its end meanwhile,
        // queueing what the streams have not taken yet.
        let shared = Arc::clone(&self.shared);
        let drive = futures::future::poll_fn(|cx| shared.demux().poll_drive(cx, &shared));
        let mut receiver = self.outcome.clone();
        let settled = async move { receiver.wait_for(Option::is_some).await.map(|o| o.clone()) };
        let outcome = tokio::select! {
            outcome = settled => outcome,
            () = drive => {
                let mut receiver = self.outcome.clone();
                receiver.wait_for(Option::is_some).await.map(|o| o.clone())
            }
        }
        .map_err(|_| error::other("the command ended without a result"))?;
        outcome
            .unwrap_or(Outcome::Failed("no outcome".to_owned()))
            .into_result(&self.program, &self.shared.meta.container_id)
    }

    async fn kill(&mut self) -> Result<()> {
        if self.outcome.borrow().is_some() {
            return Ok(());
        }
        if self.shared.kill_tree().await? {
            self.shared.settle(Outcome::Exited(ExitStatus::signal(9)));
        }
        Ok(())
    }

    /// Through the host's `/proc`, as kills are (the engine API can only signal a
    /// container's main process).
    async fn signal(&mut self, signal: i32) -> Result<()> {
        let signal = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| Error::invalid_spec("signal", format!("no signal {signal} here")))?;
        if self.outcome.borrow().is_none() {
            self.shared.signal_tree(Some(signal)).await?;
        }
        Ok(())
    }

    /// Commands run without a terminal here (`exec_pty` is declared false).
    async fn resize(&mut self, _size: sandkit_core::PtySize) -> Result<()> {
        Err(Error::unsupported(
            crate::provider::PROVIDER_NAME,
            "resizing a pseudo-terminal",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_lose_the_runtime_boilerplate() {
        let message = "OCI runtime exec failed: exec failed: container_linux.go:380: starting container process caused: exec: \"nope\": executable file not found in $PATH: unknown";
        assert_eq!(
            start_failure_reason(message),
            "\"nope\": executable file not found in $PATH"
        );
        let message = "OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd (\"/x\") set in config.json failed: no such file or directory: unknown\r\n";
        assert_eq!(
            start_failure_reason(message),
            "chdir to cwd (\"/x\") set in config.json failed: no such file or directory"
        );
        assert_eq!(start_failure_reason("something else"), "something else");
    }

    #[test]
    fn only_a_missing_program_is_program_not_found() {
        let reason = |message: &str| start_failure_reason(message);
        for missing in [
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown",
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/no/such\": stat /no/such: no such file or directory: unknown",
        ] {
            assert!(names_missing_program(&reason(missing)), "{missing}");
        }
        for other in [
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/etc/hostname\": permission denied: unknown",
            "OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd (\"/nonexist\") set in config.json failed: no such file or directory: unknown",
        ] {
            assert!(!names_missing_program(&reason(other)), "{other}");
        }
    }

    #[test]
    fn the_process_table_has_this_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let table = process_table().unwrap();
        assert!(table.iter().any(|[pid, ..]| *pid == me));
    }
}
