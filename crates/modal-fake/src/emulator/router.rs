//! `modal.task_command_router.TaskCommandRouter`: execs (with the fs-tools execs answered
//! by the emulator itself) and filesystem snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use sandkit_core::{Error as CoreError, ExecRequest};
use sandkit_modal_proto::client::secret_source::Source;
use sandkit_modal_proto::task_command_router::{
    self as tcr, TaskExecStderrConfig, TaskExecStdioFileDescriptor, TaskExecStdoutConfig,
    task_command_router_server::TaskCommandRouter, task_exec_stdin_write_stream_request::Payload,
};
use tokio::sync::{Mutex as AsyncMutex, oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

use super::exec::{ExecExit, ExecSession, OutputPipe, StdinPipe, StdinSink};
use super::fs_tools::{self, FS_TOOLS_PATH};
use super::{Emulator, ImageSource, SandboxRecord, status_of};
use crate::ids;

type StreamOf<T> = tonic::codegen::BoxStream<T>;

/// How long a start waits for a program that cannot start to say so.
const START_WINDOW: std::time::Duration = std::time::Duration::from_millis(1000);

/// Signal reported for a command killed at its timeout (SIGKILL).
const SIGKILL: i32 = 9;

impl Emulator {
    /// The environment of an exec: inline `env`, then secret sources, then secret ids.
    fn exec_env(
        &self,
        request: &tcr::TaskExecStartRequest,
    ) -> Result<BTreeMap<String, String>, Status> {
        let state = self.state();
        let secret = |secret_id: &str| {
            state
                .secrets
                .get(secret_id)
                .cloned()
                .ok_or_else(|| Status::not_found(format!("Secret `{secret_id}` not found")))
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for secret_id in &request.secret_ids {
            env.extend(secret(secret_id)?);
        }
        for source in &request.secret_sources {
            match &source.source {
                Some(Source::SecretId(secret_id)) => env.extend(secret(secret_id)?),
                Some(Source::Env(map)) => env.extend(map.contents.clone()),
                None => {}
            }
        }
        env.extend(request.env.clone());
        Ok(env)
    }

    fn exec_session(&self, task_id: &str, exec_id: &str) -> Result<Arc<ExecSession>, Status> {
        let state = self.state();
        state
            .execs
            .get(exec_id)
            .filter(|session| session.task_id == task_id)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("Exec `{exec_id}` not found in task `{task_id}`"))
            })
    }

    /// Starts a real command at the backend.
    /// `stdin` is the session's stdin, locked by the caller so no write can arrive before
    /// the process's pipe is in place.
    async fn start_process(
        &self,
        record: &Arc<SandboxRecord>,
        request: &tcr::TaskExecStartRequest,
        session: &Arc<ExecSession>,
        stdin: &mut StdinPipe,
    ) -> Result<(), Status> {
        let mut exec = ExecRequest::new(request.command_args.clone()).stdin();
        exec.cwd = request
            .workdir
            .as_deref()
            .filter(|dir| !dir.is_empty())
            .map(|dir| record.backend_path(dir));
        exec.env = self.exec_env(request)?;
        exec.timeout = request
            .timeout_secs
            .filter(|secs| *secs > 0)
            .map(|secs| std::time::Duration::from_secs(u64::from(secs)));
        exec.pty = request.pty_info.as_ref().is_some_and(|pty| pty.enabled);
        let mut process = self
            .backend()
            .exec(&record.backend_id, exec)
            .await
            .map_err(|error| match error {
                // The program could not start (missing, not executable, or its working
                // directory is missing or not a directory): say so as an argument error, as
                // Modal's worker refuses such an exec.
                CoreError::ExecFailed { .. } | CoreError::FileOperation { .. } => {
                    Status::invalid_argument(error.to_string())
                }
                CoreError::ProgramNotFound { program } => {
                    Status::invalid_argument(missing_program_message(&program))
                }
                other => status_of(other),
            })?;
        let stdout = std::mem::replace(&mut process.stdout, Box::pin(futures::stream::empty()));
        let stderr = std::mem::replace(&mut process.stderr, Box::pin(futures::stream::empty()));
        if let Some(writer) = process.stdin.take() {
            stdin.set_sink(StdinSink::Process(Some(writer)));
        }
        let keep_stdout = request.stdout_config == TaskExecStdoutConfig::Pipe as i32;
        let merge = request.stderr_config == TaskExecStderrConfig::Stdout as i32;
        let keep_stderr = request.stderr_config == TaskExecStderrConfig::Pipe as i32;
        let stdout_pipe = Arc::clone(&session.stdout);
        let stdout_task =
            tokio::spawn(async move { stdout_pipe.fill_from(stdout, keep_stdout).await });
        let stderr_pipe = if merge {
            // Merged stderr goes to stdout; the stdout pipe closes when stdout ends.
            Arc::new(OutputPipe::default())
        } else {
            Arc::clone(&session.stderr)
        };
        let merged_into = merge.then(|| Arc::clone(&session.stdout));
        let stderr_task = tokio::spawn(async move {
            match merged_into {
                Some(stdout) => {
                    let mut stderr = stderr;
                    while let Some(Ok(chunk)) = stderr.next().await {
                        stdout.push(&chunk);
                    }
                }
                None => stderr_pipe.fill_from(stderr, keep_stderr).await,
            }
        });
        let exit = session.exit.clone();
        let stderr_of_session = Arc::clone(&session.stderr);
        let session_for_kill = Arc::clone(session);
        tokio::spawn(async move {
            let status = loop {
                tokio::select! {
                    status = process.wait() => break status,
                    () = session_for_kill.kill.notified() => {
                        if let Err(error) = process.kill().await {
                            tracing::debug!(%error, "kill failed");
                        }
                    }
                }
            };
            let _ = stdout_task.await;
            let _ = stderr_task.await;
            if merge {
                stderr_of_session.close();
            }
            let outcome = match status {
                Ok(status) => match status.signal {
                    Some(signal) => ExecExit::Signal(signal),
                    None => ExecExit::Code(status.code),
                },
                Err(CoreError::CommandTimeout { .. }) => ExecExit::Signal(SIGKILL),
                Err(error @ CoreError::ExecFailed { .. }) => {
                    ExecExit::CannotStart(error.to_string())
                }
                Err(CoreError::ProgramNotFound { program }) => {
                    ExecExit::CannotStart(missing_program_message(&program))
                }
                Err(error) => ExecExit::Lost(status_of(error)),
            };
            exit.send_replace(Some(outcome));
        });
        // Some backends (Docker) learn that a program cannot start only when its exec
        // ends. Modal refuses such an exec at start, so give it a moment to fail.
        let mut exit = session.exit.subscribe();
        let mut stdout = session.stdout.subscribe();
        let mut stderr = session.stderr.subscribe();
        let window = tokio::time::sleep(START_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                _ = exit.wait_for(Option::is_some) => break,
                Ok(()) = stdout.changed() => if session.stdout.has_data() { break },
                Ok(()) = stderr.changed() => if session.stderr.has_data() { break },
                () = &mut window => break,
            }
        }
        if let Some(ExecExit::CannotStart(reason)) = session.exit.borrow().clone() {
            return Err(Status::invalid_argument(reason));
        }
        Ok(())
    }

    /// Answers an fs-tools exec with the backend's file operations.
    fn start_fs_tools(
        &self,
        record: &Arc<SandboxRecord>,
        command: fs_tools::Command,
        stdin_done: Option<oneshot::Receiver<Bytes>>,
        session: &Arc<ExecSession>,
    ) {
        let backend = Arc::clone(self.backend());
        let record = Arc::clone(record);
        let session = Arc::clone(session);
        tokio::spawn(async move {
            let input = match stdin_done {
                Some(done) => {
                    let mut finished = record.result.subscribe();
                    tokio::select! {
                        input = done => input.unwrap_or_default(),
                        _ = finished.wait_for(Option::is_some) => {
                            session.stdout.close();
                            session.stderr.close();
                            session.exit.send_replace(Some(ExecExit::Lost(Status::not_found("the sandbox terminated"))));
                            return;
                        }
                    }
                }
                None => Bytes::new(),
            };
            let outcome = fs_tools::run(&backend, &record, &command, input).await;
            let exit = match outcome {
                Ok(outcome) => {
                    session.stdout.push(&outcome.stdout);
                    session.stderr.push(&outcome.stderr);
                    ExecExit::Code(outcome.exit_code)
                }
                Err(error) => ExecExit::Lost(status_of(error)),
            };
            session.stdout.close();
            session.stderr.close();
            session.exit.send_replace(Some(exit));
        });
    }
}

fn exit_status(exit: &ExecExit) -> Result<Option<ExitStatusOneof>, Status> {
    match exit {
        ExecExit::Code(code) => Ok(Some(ExitStatusOneof::Code(*code))),
        ExecExit::Signal(signal) => Ok(Some(ExitStatusOneof::Signal(*signal))),
        ExecExit::CannotStart(reason) => Err(Status::failed_precondition(reason.clone())),
        ExecExit::Lost(status) => Err(status.clone()),
    }
}

/// Both responses carry the same oneof; this is the shared view.
enum ExitStatusOneof {
    Code(i32),
    Signal(i32),
}

#[tonic::async_trait]
impl TaskCommandRouter for Emulator {
    async fn sandbox_stdin_write_v2(
        &self,
        request: Request<tcr::SandboxStdinWriteV2Request>,
    ) -> Result<Response<tcr::SandboxStdinWriteV2Response>, Status> {
        let record = self.entrypoint_stdin_v2(&request)?;
        let request = request.into_inner();
        self.backend()
            .write_entrypoint_stdin(
                &record.backend_id,
                request.offset,
                bytes::Bytes::from(request.data),
                request.eof,
            )
            .await
            .map_err(super::status_of)?;
        Ok(Response::new(tcr::SandboxStdinWriteV2Response {}))
    }

    async fn sandbox_stdio_read_v2(
        &self,
        request: Request<tcr::SandboxStdioReadV2Request>,
    ) -> Result<Response<StreamOf<tcr::SandboxStdioReadV2Response>>, Status> {
        let output = self.entrypoint_output_v2(&request)?;
        Ok(Response::new(super::entrypoint::stdio_v2(
            output,
            request.get_ref(),
        )))
    }

    async fn sandbox_wait_until_ready(
        &self,
        request: Request<tcr::SandboxWaitUntilReadyTcrRequest>,
    ) -> Result<Response<tcr::SandboxWaitUntilReadyTcrResponse>, Status> {
        let task_id = request.get_ref().task_id.clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let record = self.running_sandbox_of_task(&task_id)?;
        Ok(Response::new(tcr::SandboxWaitUntilReadyTcrResponse {
            ready_at: record.created_at,
        }))
    }

    async fn task_exec_poll(
        &self,
        request: Request<tcr::TaskExecPollRequest>,
    ) -> Result<Response<tcr::TaskExecPollResponse>, Status> {
        let tcr::TaskExecPollRequest { task_id, exec_id } = request.get_ref().clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let session = self.exec_session(&task_id, &exec_id)?;
        let exit = session.exit.borrow().clone();
        let exit_status = match exit {
            Some(exit) => exit_status(&exit)?,
            None => None,
        };
        Ok(Response::new(tcr::TaskExecPollResponse {
            exit_status: exit_status.map(|status| match status {
                ExitStatusOneof::Code(code) => tcr::task_exec_poll_response::ExitStatus::Code(code),
                ExitStatusOneof::Signal(signal) => {
                    tcr::task_exec_poll_response::ExitStatus::Signal(signal)
                }
            }),
        }))
    }

    async fn task_exec_start(
        &self,
        request: Request<tcr::TaskExecStartRequest>,
    ) -> Result<Response<tcr::TaskExecStartResponse>, Status> {
        let task_id = request.get_ref().task_id.clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let request = request.into_inner();
        let record = self.running_sandbox_of_task(&task_id)?;
        if request.exec_id.is_empty() {
            return Err(Status::invalid_argument("exec_id must not be empty"));
        }
        if request.command_args.is_empty() {
            return Err(Status::invalid_argument("command_args must name a program"));
        }
        if !request.container_id.is_empty() {
            return Err(Status::unimplemented(
                "modal-fake has no sidecar containers",
            ));
        }
        let fs_command = (request.command_args.len() == 2
            && request.command_args[0] == FS_TOOLS_PATH)
            .then(|| fs_tools::Command::parse(&request.command_args[1]))
            .flatten();
        let (sink, stdin_done) = match &fs_command {
            Some(command) if command.reads_stdin() => {
                let (done_tx, done_rx) = oneshot::channel();
                (
                    StdinSink::Collect {
                        buffer: Vec::new(),
                        done: Some(done_tx),
                    },
                    Some(done_rx),
                )
            }
            _ => (StdinSink::Discard, None),
        };
        let session = Arc::new(ExecSession {
            task_id: task_id.clone(),
            stdout: Arc::new(OutputPipe::default()),
            stderr: Arc::new(OutputPipe::default()),
            stdin: AsyncMutex::new(StdinPipe::new(sink)),
            exit: watch::channel(None).0,
            kill: tokio::sync::Notify::new(),
        });
        let mut stdin = session.stdin.lock().await;
        {
            let mut state = self.state();
            if state.execs.contains_key(&request.exec_id) {
                // A retry of a start that already happened: exec ids are idempotency keys.
                return Ok(Response::new(tcr::TaskExecStartResponse {}));
            }
            state
                .execs
                .insert(request.exec_id.clone(), Arc::clone(&session));
        }
        let started = match fs_command {
            Some(command) => {
                self.start_fs_tools(&record, command, stdin_done, &session);
                Ok(())
            }
            None => {
                self.start_process(&record, &request, &session, &mut stdin)
                    .await
            }
        };
        drop(stdin);
        if let Err(status) = started {
            self.state().execs.remove(&request.exec_id);
            return Err(status);
        }
        record.touch();
        record
            .running_execs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut exit = session.exit.subscribe();
        tokio::spawn(async move {
            let _ = exit.wait_for(Option::is_some).await;
            record
                .running_execs
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            record.touch();
        });
        Ok(Response::new(tcr::TaskExecStartResponse {}))
    }

    async fn task_exec_stdin_status(
        &self,
        request: Request<tcr::TaskExecStdinStatusRequest>,
    ) -> Result<Response<tcr::TaskExecStdinStatusResponse>, Status> {
        let tcr::TaskExecStdinStatusRequest { task_id, exec_id } = request.get_ref().clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let session = self.exec_session(&task_id, &exec_id)?;
        let stdin = session.stdin.lock().await;
        Ok(Response::new(tcr::TaskExecStdinStatusResponse {
            num_bytes_written: stdin.written(),
            closed: stdin.is_closed(),
        }))
    }

    async fn task_exec_stdin_write(
        &self,
        request: Request<tcr::TaskExecStdinWriteRequest>,
    ) -> Result<Response<tcr::TaskExecStdinWriteResponse>, Status> {
        let task_id = request.get_ref().task_id.clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let request = request.into_inner();
        let session = self.exec_session(&task_id, &request.exec_id)?;
        if let Ok(record) = self.sandbox_of_task(&task_id) {
            record.touch();
        }
        session
            .stdin
            .lock()
            .await
            .write_at(request.offset, &request.data, request.eof)
            .await?;
        Ok(Response::new(tcr::TaskExecStdinWriteResponse {}))
    }

    async fn task_exec_stdin_write_stream(
        &self,
        request: Request<Streaming<tcr::TaskExecStdinWriteStreamRequest>>,
    ) -> Result<Response<tcr::TaskExecStdinWriteStreamResponse>, Status> {
        let metadata = request.metadata().clone();
        let mut stream = request.into_inner();
        let start = match stream.message().await? {
            Some(tcr::TaskExecStdinWriteStreamRequest {
                payload: Some(Payload::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a stdin stream must be `start`",
                ));
            }
        };
        self.check_router_token(&metadata, &start.task_id)?;
        let session = self.exec_session(&start.task_id, &start.exec_id)?;
        let mut stdin = session.stdin.lock().await;
        if start.offset > stdin.written() {
            return Err(Status::failed_precondition(format!(
                "stdin offset {} is past the {} bytes written so far",
                start.offset,
                stdin.written()
            )));
        }
        let mut offset = start.offset;
        while let Some(message) = stream.message().await? {
            match message.payload {
                Some(Payload::Data(data)) => {
                    stdin.write_at(offset, &data, false).await?;
                    offset += data.len() as u64;
                }
                Some(Payload::End(_)) => {
                    stdin.write_at(offset, &[], true).await?;
                    break;
                }
                Some(Payload::Start(_)) => {
                    return Err(Status::invalid_argument("`start` may only come first"));
                }
                None => {}
            }
        }
        Ok(Response::new(tcr::TaskExecStdinWriteStreamResponse {}))
    }

    async fn task_exec_stdio_read(
        &self,
        request: Request<tcr::TaskExecStdioReadRequest>,
    ) -> Result<Response<StreamOf<tcr::TaskExecStdioReadResponse>>, Status> {
        let task_id = request.get_ref().task_id.clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let request = request.into_inner();
        let session = self.exec_session(&task_id, &request.exec_id)?;
        let pipe = match TaskExecStdioFileDescriptor::try_from(request.file_descriptor) {
            Ok(TaskExecStdioFileDescriptor::Stdout) => Arc::clone(&session.stdout),
            Ok(TaskExecStdioFileDescriptor::Stderr) => Arc::clone(&session.stderr),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown file descriptor {}",
                    request.file_descriptor
                )));
            }
        };
        let stream = pipe.read_from(request.offset).map(|data| {
            Ok(tcr::TaskExecStdioReadResponse {
                data: data.to_vec(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn task_exec_wait(
        &self,
        request: Request<tcr::TaskExecWaitRequest>,
    ) -> Result<Response<tcr::TaskExecWaitResponse>, Status> {
        let tcr::TaskExecWaitRequest { task_id, exec_id } = request.get_ref().clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let session = self.exec_session(&task_id, &exec_id)?;
        let mut receiver = session.exit.subscribe();
        let exit = receiver
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Status::not_found("the exec vanished"))?
            .clone();
        let exit_status = match exit {
            Some(exit) => exit_status(&exit)?,
            None => None,
        };
        Ok(Response::new(tcr::TaskExecWaitResponse {
            exit_status: exit_status.map(|status| match status {
                ExitStatusOneof::Code(code) => tcr::task_exec_wait_response::ExitStatus::Code(code),
                ExitStatusOneof::Signal(signal) => {
                    tcr::task_exec_wait_response::ExitStatus::Signal(signal)
                }
            }),
        }))
    }

    async fn task_snapshot_filesystem(
        &self,
        request: Request<tcr::TaskSnapshotFilesystemRequest>,
    ) -> Result<Response<tcr::TaskSnapshotFilesystemResponse>, Status> {
        let task_id = request.get_ref().task_id.clone();
        self.check_router_token(request.metadata(), &task_id)?;
        let request = request.into_inner();
        if !request.container_id.is_empty() {
            return Err(Status::unimplemented(
                "modal-fake has no sidecar containers",
            ));
        }
        if request.ttl_seconds.is_some_and(|ttl| ttl == 0 || ttl < -1) {
            return Err(Status::invalid_argument(
                "ttl_seconds must be positive, or -1 for no expiry",
            ));
        }
        if let Some(image_id) = self.state().fs_snapshots.get(&request.snapshot_id) {
            return Ok(Response::new(tcr::TaskSnapshotFilesystemResponse {
                image_id: image_id.clone(),
            }));
        }
        let record = self.running_sandbox_of_task(&task_id)?;
        let snapshot = self
            .backend()
            .snapshot(&record.backend_id)
            .await
            .map_err(status_of)?;
        let image_id = ids::mint("im");
        let mut state = self.state();
        if let Some(existing) = state.fs_snapshots.get(&request.snapshot_id) {
            // A concurrent retry won the race; keep its image, drop ours.
            let existing = existing.clone();
            let backend = Arc::clone(self.backend());
            tokio::spawn(async move {
                let _ = backend.delete_snapshot(&snapshot.id).await;
            });
            return Ok(Response::new(tcr::TaskSnapshotFilesystemResponse {
                image_id: existing,
            }));
        }
        state.images.insert(
            image_id.clone(),
            ImageSource::Snapshot {
                backend_id: snapshot.id.clone(),
                workdir: Some(record.workdir.clone()),
            },
        );
        state.backend_snapshots.push(snapshot.id);
        state
            .fs_snapshots
            .insert(request.snapshot_id, image_id.clone());
        Ok(Response::new(tcr::TaskSnapshotFilesystemResponse {
            image_id,
        }))
    }
}

/// What Modal's worker says of a program that does not exist: the container runtime's
/// words (runc and gVisor's runsc both write them so).
fn missing_program_message(program: &str) -> String {
    if program.contains('/') {
        format!("exec: \"{program}\": stat {program}: no such file or directory")
    } else {
        format!("exec: \"{program}\": executable file not found in $PATH")
    }
}
