//! Reaching a sandbox's command router: waiting for its task, opening the router once and
//! caching it, and telling a failed router operation from a sandbox that has ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sandkit_core::{Error, ExecRequest, Result, SandboxId};
use sandkit_modal_proto::client as pb;
use tonic::{Code, Status};

use crate::client::{AccessSource, Router};
use crate::error::from_status;
use crate::family::Family;
use crate::files::Files;
use crate::listing::is_finished;
use crate::provider::{ModalProvider, subject};

/// Interval between `SandboxGetTaskId` polls while a sandbox is scheduled.
const TASK_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Failures of `SandboxGetTaskId` that say nothing about the sandbox, so the wait for
/// scheduling goes on through them (Modal's Python client: UNAVAILABLE, DEADLINE_EXCEEDED,
/// internal errors and lost connections).
const SCHEDULING_TRANSIENT: [Code; 4] = [
    Code::Unavailable,
    Code::DeadlineExceeded,
    Code::Internal,
    Code::Unknown,
];

/// Where a sandbox's task stands.
pub(crate) enum Task {
    Running(String),
    Finished(pb::GenericResult),
}

impl ModalProvider {
    /// Where the sandbox's task stands, polling until it is scheduled or `timeout` passes.
    /// Transient failures of the poll (after the call's own retries) are polled through
    /// until then too, as Modal's Python client does while it waits for scheduling.
    pub(crate) async fn wait_for_task(&self, id: &str, timeout: Duration) -> Result<Task> {
        let deadline = Instant::now() + timeout;
        loop {
            let request = pb::SandboxGetTaskIdRequest {
                sandbox_id: id.to_owned(),
                ..Default::default()
            };
            let last_error = match self.sandbox_call(id, request).await {
                Ok(response) => {
                    if let Some(task_id) = response.task_id.filter(|task_id| !task_id.is_empty()) {
                        return Ok(Task::Running(task_id));
                    }
                    if let Some(result) = response.task_result {
                        return Ok(Task::Finished(result));
                    }
                    None
                }
                Err(error) if SCHEDULING_TRANSIENT.contains(&error.code()) => {
                    Some(Error::from(error))
                }
                Err(error) => return Err(error.into()),
            };
            let now = Instant::now();
            if now >= deadline {
                let operation = match last_error {
                    Some(error) => format!(
                        "waiting for {} to be scheduled (last poll failed: {error})",
                        subject(id)
                    ),
                    None => format!("waiting for {} to be scheduled", subject(id)),
                };
                return Err(Error::Timeout { operation, timeout });
            }
            tokio::time::sleep(TASK_POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// The command router of a running sandbox, opened once and cached.
    pub(crate) async fn router(&self, id: &SandboxId) -> Result<Arc<Router>> {
        let Some(family) = Family::of(id.as_str()) else {
            return Err(Error::sandbox_not_found(id));
        };
        if let Some(router) = self.known.get(id.as_str()).router {
            return Ok(router);
        }
        let task_id = match self
            .wait_for_task(id.as_str(), self.settings.schedule_timeout)
            .await?
        {
            Task::Running(task_id) => task_id,
            Task::Finished(_) => return Err(Error::sandbox_not_found(id)),
        };
        let source = match family {
            Family::V1 => AccessSource::Task,
            Family::V2 => AccessSource::Sandbox {
                sandbox_id: id.0.clone(),
                token: None,
            },
        };
        let router = Arc::new(
            self.control_plane
                .router(&task_id, source, None)
                .await
                .map_err(|status| from_status(&status, &subject(id.as_str())))?,
        );
        self.known.remember(id.as_str(), |known| {
            known.router = Some(Arc::clone(&router))
        });
        Ok(router)
    }

    /// The sandbox's result when it has finished; `None` while it runs. Unknown ids are
    /// [`Error::NotFound`].
    pub(crate) async fn poll(&self, id: &str) -> Result<Option<pb::GenericResult>> {
        let request = pb::SandboxWaitRequest {
            sandbox_id: id.to_owned(),
            timeout: 0.0,
        };
        let response = self.sandbox_call(id, request).await?;
        Ok(response.result.filter(|result| is_finished(Some(result))))
    }

    /// Whether the sandbox has ended or never existed; asked after a failure, so an
    /// operation on a vanished sandbox reports it as not found.
    pub(crate) async fn gone(&self, id: &SandboxId) -> bool {
        let gone = matches!(
            self.poll(id.as_str()).await,
            Ok(Some(_)) | Err(Error::NotFound { .. })
        );
        if gone {
            self.known.forget(id.as_str());
        }
        gone
    }

    /// `error` from an operation through the router, or not found when the sandbox ended.
    pub(crate) async fn router_failure(&self, id: &SandboxId, error: Error) -> Error {
        if self.gone(id).await {
            Error::sandbox_not_found(id)
        } else {
            error
        }
    }

    /// Why a command did not start: the sandbox is gone, or the program could not run.
    pub(crate) async fn exec_start_failure(
        &self,
        id: &SandboxId,
        request: &ExecRequest,
        status: &Status,
    ) -> Error {
        if self.gone(id).await {
            return Error::sandbox_not_found(id);
        }
        let program = request.argv.first().cloned().unwrap_or_default();
        match status.code() {
            Code::NotFound
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::PermissionDenied => {
                if names_missing_program(status.message()) {
                    Error::ProgramNotFound { program }
                } else {
                    Error::ExecFailed {
                        program,
                        reason: status.message().to_owned(),
                    }
                }
            }
            _ => from_status(status, &subject(id.as_str())),
        }
    }

    /// The directory commands start in and relative paths resolve against.
    pub(crate) fn workdir(&self, id: &SandboxId) -> String {
        self.known
            .get(id.as_str())
            .workdir
            .unwrap_or_else(|| "/".to_owned())
    }

    /// Runs a file operation, mapping a vanished sandbox to not found.
    pub(crate) async fn with_files<T, F, Fut>(&self, id: &SandboxId, operation: F) -> Result<T>
    where
        F: FnOnce(Files) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let files = Files {
            router: self.router(id).await?,
            workdir: self.workdir(id),
        };
        match operation(files).await {
            Ok(value) => Ok(value),
            // A file error is the file's; anything else may be the sandbox ending.
            Err(error @ (Error::FileOperation { .. } | Error::InvalidSpec { .. })) => Err(error),
            Err(error) => Err(self.router_failure(id, error).await),
        }
    }
}

/// Whether a refused exec's message says its program does not exist. Modal's worker
/// reports the container runtime's words, as runc and gVisor's runsc write them: `exec:
/// "nope": executable file not found in $PATH`, or `stat /no/such: no such file or
/// directory` for a path. A missing working directory (`chdir ...`) is not a missing
/// program, nor is a message without the runtime's `exec: "` prefix.
pub(crate) fn names_missing_program(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("exec: \"")
        && !message.contains("chdir")
        && (message.contains("executable file not found")
            || message.ends_with("no such file or directory"))
}

#[cfg(test)]
mod tests {
    use super::names_missing_program;

    #[test]
    fn a_missing_program_is_told_from_other_start_failures() {
        assert!(names_missing_program(
            "exec: \"nope\": executable file not found in $PATH"
        ));
        assert!(names_missing_program(
            "exec: \"/no/such\": stat /no/such: no such file or directory"
        ));
        assert!(!names_missing_program(
            "chdir to cwd (\"/x\") set in config.json failed: no such file or directory"
        ));
        assert!(!names_missing_program(
            "exec: \"./data\": permission denied"
        ));
        assert!(!names_missing_program(
            "working directory /x: no such file or directory"
        ));
    }
}
