//! Detached commands through the agent: started with no descriptors (the agent keeps
//! their output), listed, and attached to with two pipes of the host's that the agent
//! fills from an offset.

use std::os::fd::OwnedFd;

use sandkit_agent::protocol::{self, CommandSummary, ErrorKind, Reply, Request, SpawnRequest};
use sandkit_core::{AttachFrom, CommandInfo, Error, ExecProcess, ExecRequest, ExitStatus, Result};

use crate::Agent;

impl Agent {
    /// Starts `spawn` detached; the connection closes and the command runs on.
    pub async fn start_detached(&self, mut spawn: SpawnRequest) -> Result<CommandInfo> {
        spawn.detached = true;
        let argv = spawn.argv.clone();
        // The connection closes here; the command runs on.
        let id = self
            .spawned(spawn, Vec::new())
            .await?
            .command
            .ok_or_else(|| {
                self.internal(
                    "starting a detached command",
                    std::io::Error::other("the agent gave no command id"),
                )
            })?;
        Ok(CommandInfo {
            id: id.to_string(),
            argv,
            exit: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
        })
    }

    /// The detached commands, oldest first.
    pub async fn commands(&self) -> Result<Vec<CommandInfo>> {
        match self.request(Request::Commands).await? {
            Reply::Commands { commands } => Ok(commands.into_iter().map(info).collect()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Attaches to detached command `command` (an id from [`Agent::start_detached`]).
    pub async fn attach(&self, command: &str, from: AttachFrom) -> Result<ExecProcess> {
        let not_found = || Error::NotFound {
            what: format!("detached command `{command}`"),
        };
        let id: u64 = command.parse().map_err(|_| not_found())?;
        let (stdout, stdout_w) = self.output_pipe()?;
        let (stderr, stderr_w) = self.output_pipe()?;
        let connection = self
            .blocking(move |agent| {
                let request = Request::Attach {
                    command: id,
                    stdout_from: from.stdout,
                    stderr_from: from.stderr,
                };
                let pipes: [OwnedFd; 2] = [stdout_w, stderr_w];
                let fds: Vec<_> = pipes.iter().map(std::os::fd::AsFd::as_fd).collect();
                let stream = agent.open(&request, &fds)?;
                drop(pipes);
                match protocol::receive::<Reply>(&stream)
                    .map_err(|e| agent.failed(&e))?
                    .0
                {
                    Reply::Spawned { .. } => {
                        stream
                            .set_read_timeout(None)
                            .map_err(|e| agent.internal("configuring the agent connection", e))?;
                        Ok(Ok(stream))
                    }
                    Reply::Error {
                        kind: ErrorKind::NotFound,
                        ..
                    } => Ok(Err(())),
                    other => Err(agent.unexpected(&other)),
                }
            })
            .await?
            .map_err(|()| not_found())?;
        let request = ExecRequest::new([command]);
        let control = crate::exec::AgentExec::new(self, connection, None, None)?;
        Ok(ExecProcess::new(
            &request,
            stdout,
            stderr,
            None,
            Box::new(control),
        ))
    }
}

fn info(summary: CommandSummary) -> CommandInfo {
    let exit = match (summary.running, summary.code, summary.signal) {
        (true, _, _) => None,
        (false, Some(code), _) => Some(ExitStatus::code(code)),
        (false, None, Some(signal)) => Some(ExitStatus::signal(signal)),
        (false, None, None) => Some(ExitStatus::code(-1)),
    };
    CommandInfo {
        id: summary.command.to_string(),
        argv: summary.argv,
        exit,
        stdout_bytes: summary.stdout_bytes,
        stderr_bytes: summary.stderr_bytes,
    }
}
