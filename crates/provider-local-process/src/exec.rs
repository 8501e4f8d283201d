//! A running command: a background task waits for it, enforces its timeout by killing the
//! whole tree, and forgets its process group once it has ended.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use async_trait::async_trait;
use sandkit_core::{Error, ExecControl, ExitStatus, Result};
use tokio::process::Child;
use tokio::sync::oneshot;

use crate::NAME;
use crate::process::{self, Group};
use crate::state::Store;

/// How a command ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    /// Waiting failed; the tree was killed.
    Lost,
}

/// The [`ExecControl`] of a local command.
pub(crate) struct LocalExec {
    done: Option<oneshot::Receiver<Outcome>>,
    outcome: Option<Outcome>,
    kill: Option<oneshot::Sender<()>>,
    timeout: Option<Duration>,
}

impl LocalExec {
    /// Watches `child`, the leader of `group`, in a background task.
    pub fn start(
        mut child: Child,
        group: Group,
        timeout: Option<Duration>,
        store: Store,
        id: String,
    ) -> Self {
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(async move {
            let expired = async {
                match timeout {
                    Some(timeout) => tokio::time::sleep(timeout).await,
                    None => std::future::pending().await,
                }
            };
            // Dropping the handle detaches the command; only an explicit kill kills it.
            let killed = async {
                if kill_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let outcome = tokio::select! {
                status = child.wait() => match status {
                    Ok(status) => Outcome::Exited(exit_status(status)),
                    Err(error) => {
                        tracing::warn!(%error, "waiting for a command failed");
                        Outcome::Lost
                    }
                },
                () = expired => {
                    process::kill_tree(&[group]).await;
                    let _ = child.wait().await;
                    Outcome::TimedOut
                }
                () = killed => {
                    process::kill_tree(&[group]).await;
                    match child.wait().await {
                        Ok(status) => Outcome::Exited(exit_status(status)),
                        Err(_) => Outcome::Lost,
                    }
                }
            };
            // Background processes end with the command, as they do under bubblewrap
            // when its pid namespace goes away.
            process::kill_tree(&[group]).await;
            let _ = done_tx.send(outcome);
            let forget = tokio::task::spawn_blocking(move || store.forget_group(&id, group));
            if let Ok(Err(error)) = forget.await {
                tracing::debug!(%error, "could not forget a finished process group");
            }
        });
        Self {
            done: Some(done_rx),
            outcome: None,
            kill: Some(kill_tx),
            timeout,
        }
    }

    async fn finish(&mut self) -> Outcome {
        if let Some(outcome) = self.outcome {
            return outcome;
        }
        let outcome = match self.done.take() {
            Some(done) => done.await.unwrap_or(Outcome::Lost),
            None => Outcome::Lost,
        };
        self.outcome = Some(outcome);
        outcome
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::code(code),
        (None, Some(signal)) => ExitStatus::signal(signal),
        (None, None) => ExitStatus::code(-1),
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
            Outcome::Lost => Err(Error::provider(
                NAME,
                std::io::Error::other("lost track of the command"),
            )),
        }
    }

    async fn kill(&mut self) -> Result<()> {
        if let Some(kill) = self.kill.take() {
            // The task may have finished already: killing a finished command is fine.
            let _ = kill.send(());
        }
        self.finish().await;
        Ok(())
    }
}
