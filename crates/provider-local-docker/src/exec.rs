//! Commands through the engine's exec API, attached: stdout and stderr arrive as separate
//! frames of one connection, stdin is that connection's write half.
//!
//! The engine cannot kill an exec (there is no such endpoint), so timeouts and kills are
//! done here: the exec's process id, as the engine reports it, is a process of this host
//! when the engine is local, and the whole tree under it is killed through `/proc`
//! (every process of its session, and every descendant). Engines whose processes this
//! host cannot see (remote, or in a VM) get no exec timeouts: the capability says so.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerStateStatusEnum;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use sandkit_core::{
    ByteStream, Error, ExecControl, ExecProcess, ExecRequest, ExitStatus, Result, StdinWriter,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::client::Engine;
use crate::error::{self, Subject};
use crate::sandbox::Meta;

/// Chunks buffered per output stream before the reader must catch up.
const STREAM_BUFFER_CHUNKS: usize = 64;
/// How the engine starts its message when it could not start a command.
const START_FAILURE_PREFIX: &[u8] = b"OCI runtime exec failed";

/// How a command ended, kept so that `wait` can be asked more than once.
#[derive(Debug, Clone)]
enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration),
    CannotStart(String),
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
            Self::OutOfMemory(message) => Err(Error::ResourceLimitExceeded { message }),
            Self::SandboxGone => Err(Error::sandbox_not_found(sandbox)),
            Self::Failed(message) => Err(error::other(message)),
        }
    }
}

/// What the pump, the control and kills share about one exec.
struct Shared {
    engine: Engine,
    exec_id: String,
    meta: Meta,
    /// Set once sandkit itself killed the command (a kill or the timeout).
    killed: AtomicBool,
    outcome: watch::Sender<Option<Outcome>>,
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

    /// Kills the command's process tree. A command that already ended is fine.
    async fn kill_tree(&self) -> Result<()> {
        self.killed.store(true, Ordering::SeqCst);
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
                Err(e) if error::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(error::map(e, Subject::Exec(&self.meta.container_id))),
            };
            if inspect.running == Some(false) && inspect.exit_code.is_some() {
                return Ok(());
            }
            pid = inspect.pid.unwrap_or(0);
            if pid > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Ok(pid) = i32::try_from(pid) else {
            return Ok(());
        };
        if pid <= 0 {
            return Err(error::other(format!(
                "command {} did not report a process id to kill",
                self.exec_id
            )));
        }
        let container_id = self.meta.container_id.clone();
        tokio::task::spawn_blocking(move || kill_process_tree(pid, &container_id))
            .await
            .map_err(|e| error::other(format!("killing a command: {e}")))?
            .map_err(|e| error::other(format!("killing the process tree of pid {pid}: {e}")))
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
        outcome: outcome_tx,
    });
    let (stdout_tx, stdout_rx) = mpsc::channel(STREAM_BUFFER_CHUNKS);
    let (stderr_tx, stderr_rx) = mpsc::channel(STREAM_BUFFER_CHUNKS);
    let pump = Pump {
        shared: Arc::clone(&shared),
        stdout: stdout_tx,
        stderr: stderr_tx,
        deadline: request.timeout.map(|t| (started_at + t, t)),
        oom_before,
    };
    tokio::spawn(pump.run(output));

    let stdin: Option<StdinWriter> = request.stdin.then_some(input);
    let control = DockerExec {
        shared,
        outcome: outcome_rx,
        program: request.argv.first().cloned().unwrap_or_default(),
    };
    Ok(ExecProcess::new(
        &request,
        receiver_stream(stdout_rx),
        receiver_stream(stderr_rx),
        stdin,
        Box::new(control),
    ))
}

fn receiver_stream(mut receiver: mpsc::Receiver<Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
}

type OutputStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>,
>;

type Frame = std::result::Result<LogOutput, bollard::errors::Error>;

/// Most bytes merged into one chunk.
const BATCH_MAX_BYTES: usize = 1 << 20;

/// Appends the frames of the same stream that are already read (the engine sends small
/// frames; one chunk per frame would cost a task wake-up each). Returns the chunk and
/// the first frame that did not fit, if one was read.
fn batch(output: &mut OutputStream, first: Bytes, stdout: bool) -> (Bytes, Option<Option<Frame>>) {
    let mut merged: Option<BytesMut> = None;
    let mut size = first.len();
    while size < BATCH_MAX_BYTES {
        let Some(next) = output.next().now_or_never() else {
            break;
        };
        let more = match next {
            Some(Ok(LogOutput::StdOut { message })) if stdout => message,
            Some(Ok(LogOutput::StdErr { message })) if !stdout => message,
            other => {
                let chunk = merged.map_or(first, BytesMut::freeze);
                return (chunk, Some(other));
            }
        };
        size += more.len();
        merged
            .get_or_insert_with(|| BytesMut::from(&first[..]))
            .extend_from_slice(&more);
    }
    (merged.map_or(first, BytesMut::freeze), None)
}

/// Moves frames from the engine's connection into the two streams, enforces the
/// timeout, and settles the outcome when the command ends.
struct Pump {
    shared: Arc<Shared>,
    stdout: mpsc::Sender<Result<Bytes>>,
    stderr: mpsc::Sender<Result<Bytes>>,
    deadline: Option<(Instant, Duration)>,
    oom_before: Option<u64>,
}

impl Pump {
    async fn run(self, mut output: OutputStream) {
        let mut failure = BytesMut::new();
        let mut seen_stdout = false;
        let mut stream_error = None;
        let mut armed = self.deadline.is_some();
        let deadline = self.deadline.map_or_else(Instant::now, |(at, _)| at);
        let timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(timeout);
        // A frame read ahead while batching, waiting its turn.
        let mut pending: Option<Option<Frame>> = None;
        loop {
            let frame = match pending.take() {
                Some(frame) => frame,
                None => tokio::select! {
                    frame = output.next() => frame,
                    () = &mut timeout, if armed => {
                        armed = false;
                        self.time_out().await;
                        continue;
                    }
                },
            };
            let (sender, message) = match frame {
                None => break,
                Some(Err(e)) => {
                    stream_error = Some(e);
                    break;
                }
                // The engine reports a command it could not start on stdout, as the
                // first and only frame; hold such a frame back until the exit code
                // says whether it was the engine or the command speaking.
                Some(Ok(LogOutput::StdOut { message }))
                    if !seen_stdout && message.starts_with(START_FAILURE_PREFIX) =>
                {
                    seen_stdout = true;
                    failure.extend_from_slice(&message);
                    continue;
                }
                Some(Ok(LogOutput::StdOut { message })) => {
                    seen_stdout = true;
                    if !failure.is_empty() {
                        // More output: the held frame was the command's own.
                        let held = failure.split().freeze();
                        let _ = self.stdout.send(Ok(held)).await;
                    }
                    let (message, next) = batch(&mut output, message, true);
                    pending = next;
                    (&self.stdout, message)
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    let (message, next) = batch(&mut output, message, false);
                    pending = next;
                    (&self.stderr, message)
                }
                // Unframed bytes on a non-TTY exec are the engine's own words: the
                // command could not be started.
                Some(Ok(LogOutput::Console { message })) => {
                    failure.extend_from_slice(&message);
                    continue;
                }
                Some(Ok(LogOutput::StdIn { .. })) => continue,
            };
            // A reader that dropped its stream no longer wants the bytes (the send
            // fails at once); keep draining so the command is never blocked on us.
            let send = sender.send(Ok(message));
            tokio::pin!(send);
            loop {
                tokio::select! {
                    _ = &mut send => break,
                    () = &mut timeout, if armed => {
                        armed = false;
                        self.time_out().await;
                    }
                }
            }
        }
        drop(output);
        let outcome = self.finish(failure.freeze(), stream_error).await;
        self.shared.settle(outcome);
        // Dropping the senders ends both streams.
    }

    async fn time_out(&self) {
        let Some((_, timeout)) = self.deadline else {
            return;
        };
        if let Err(error) = self.shared.kill_tree().await {
            tracing::warn!(%error, exec = %self.shared.exec_id, "could not kill a timed-out command");
        }
        self.shared.settle(Outcome::TimedOut(timeout));
    }

    /// Reads the exit code once the output ended.
    async fn finish(
        &self,
        failure: Bytes,
        stream_error: Option<bollard::errors::Error>,
    ) -> Outcome {
        let shared = &self.shared;
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
            if polls % 20 == 0 {
                match shared
                    .engine
                    .docker
                    .inspect_container(container, None)
                    .await
                {
                    Ok(inspect) if inspect.state.as_ref().and_then(|s| s.running) == Some(true) => {
                    }
                    Ok(_) => return Outcome::SandboxGone,
                    Err(e) if error::is_not_found(&e) => return Outcome::SandboxGone,
                    Err(e) => {
                        return Outcome::Failed(
                            error::map(e, Subject::Exec(container)).to_string(),
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(if polls < 10 { 5 } else { 50 })).await;
        };
        let code = i32::try_from(code).unwrap_or(-1);
        if (code == 126 || code == 127 || code == 137)
            && !shared.killed.load(Ordering::SeqCst)
            && self.sandbox_gone().await
        {
            // A sandbox removed under a command shows as a kill or a failed start.
            return Outcome::SandboxGone;
        }
        if !failure.is_empty() && (code == 126 || code == 127) {
            let reason = String::from_utf8_lossy(&failure).trim().to_owned();
            return Outcome::CannotStart(start_failure_reason(&reason));
        }
        if !failure.is_empty() {
            // Unframed bytes without a failure: deliver them rather than lose them.
            let _ = self.stdout.send(Ok(failure)).await;
        }
        if let Some(e) = stream_error
            && code == -1
        {
            return Outcome::Failed(error::map(e, Subject::Exec(container)).to_string());
        }
        if shared.killed.load(Ordering::SeqCst) {
            return Outcome::Exited(ExitStatus::signal(9));
        }
        if code == 137 && shared.meta.memory_limited && self.out_of_memory().await {
            return Outcome::OutOfMemory(
                "the command was killed: the sandbox ran out of memory".to_owned(),
            );
        }
        Outcome::Exited(ExitStatus::code(code))
    }

    /// Whether the sandbox is gone or going. The engine marks a container it is killing
    /// as stopped a moment after its processes died, so a running one is asked again.
    async fn sandbox_gone(&self) -> bool {
        let shared = &self.shared;
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
    /// started: from the cgroup's counter when it can be read here, else from the
    /// engine's out-of-memory flag.
    async fn out_of_memory(&self) -> bool {
        let shared = &self.shared;
        if let (Some(before), Some(after)) =
            (self.oom_before, oom_kills(&shared.engine, &shared.meta))
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

/// The control handed to callers.
struct DockerExec {
    shared: Arc<Shared>,
    outcome: watch::Receiver<Option<Outcome>>,
    program: String,
}

#[async_trait]
impl ExecControl for DockerExec {
    async fn wait(&mut self) -> Result<ExitStatus> {
        let outcome = self
            .outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| error::other("the command's output pump ended without a result"))?
            .clone();
        outcome
            .unwrap_or(Outcome::Failed("no outcome".to_owned()))
            .into_result(&self.program, &self.shared.meta.container_id)
    }

    async fn kill(&mut self) -> Result<()> {
        if self.outcome.borrow().is_some() {
            return Ok(());
        }
        self.shared.kill_tree().await?;
        self.shared.settle(Outcome::Exited(ExitStatus::signal(9)));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The host side: process trees and out-of-memory counters in /proc and /sys.
// ---------------------------------------------------------------------------------------

/// `pid ppid pgrp session` of every process on this host.
fn process_table() -> std::io::Result<Vec<[i32; 4]>> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end while we read; skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp session ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok());
        if let (Some(ppid), Some(pgrp), Some(session)) = (number(1), number(2), number(3)) {
            table.push([pid, ppid, pgrp, session]);
        }
    }
    Ok(table)
}

/// Whether host process `pid` belongs to the container (its cgroup names the id).
fn in_container(pid: i32, container_id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|cgroups| cgroups.contains(container_id))
}

/// SIGKILLs host process `root`, every process in its session and process group, and
/// every descendant of those, in rounds until none is left: a process that forks while
/// the tree is being killed is caught by the next round. Only processes of the container
/// are touched. A process that left the session and was re-parented away escapes, as it
/// would from any process-tree kill.
fn kill_process_tree(root: i32, container_id: &str) -> std::io::Result<()> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    if !in_container(root, container_id) {
        // Gone already, or the id was reused by a process that is not ours.
        return Ok(());
    }
    for _ in 0..50 {
        let table = process_table()?;
        let mut victims: HashSet<i32> = table
            .iter()
            .filter(|[pid, _, pgrp, session]| *pid == root || *pgrp == root || *session == root)
            .map(|[pid, ..]| *pid)
            .collect();
        let children: HashMap<i32, Vec<i32>> =
            table
                .iter()
                .fold(HashMap::new(), |mut map, [pid, ppid, ..]| {
                    map.entry(*ppid).or_default().push(*pid);
                    map
                });
        let mut queue: Vec<i32> = victims.iter().copied().collect();
        while let Some(pid) = queue.pop() {
            for child in children.get(&pid).into_iter().flatten() {
                if victims.insert(*child) {
                    queue.push(*child);
                }
            }
        }
        victims.retain(|pid| in_container(*pid, container_id));
        if victims.is_empty() {
            return Ok(());
        }
        for pid in &victims {
            // ESRCH: it ended on its own meanwhile.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(std::io::Error::other(
        "processes kept appearing after 50 rounds of killing",
    ))
}

/// The sandbox's out-of-memory kill counter, when this host can read it.
fn oom_kills(engine: &Engine, meta: &Meta) -> Option<u64> {
    if !engine.shares_processes {
        return None;
    }
    let file = oom_counter_file(&meta.container_id)?;
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Where the memory cgroup of a container keeps its `oom_kill` counter: cgroup v2's
/// `memory.events`, or v1's `memory.oom_control`, under the usual driver layouts.
fn oom_counter_file(container_id: &str) -> Option<PathBuf> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/docker/{container_id}/memory.oom_control"),
        format!(
            "/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/memory.oom_control"
        ),
        format!("/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.events"),
        format!("/sys/fs/cgroup/docker/{container_id}/memory.events"),
    ];
    candidates
        .into_iter()
        .map(PathBuf::from)
        .find(|path| Path::new(path).exists())
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
    fn the_process_table_has_this_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let table = process_table().unwrap();
        assert!(table.iter().any(|[pid, ..]| *pid == me));
    }
}
