//! The raw side of the benchmarks: the Engine API calls with nothing around them, on a
//! container configured like a sandbox (same image, main process, hardening). Included
//! by `bench.rs` and `exec_bench.rs` with `#[path]`.

use std::collections::HashMap;

use anyhow::Result;
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::StreamExt;
use sandkit_provider_local_docker::DEFAULT_CAPABILITIES;

/// What a raw exec gave.
pub struct RawOutput {
    /// The exit code (-1 when the engine gave none).
    pub code: i64,
    /// Bytes written to stdout.
    pub bytes: u64,
    /// The first 4 KiB of stdout.
    #[allow(
        dead_code,
        reason = "bench.rs looks at the code and the byte count only"
    )]
    pub head: Vec<u8>,
}

/// Engine calls on containers labelled with `run_id`, named `<prefix>-<random>`.
#[derive(Clone)]
pub struct Raw {
    pub docker: Docker,
    pub image: String,
    pub run_id: String,
    pub prefix: &'static str,
}

impl Raw {
    /// Creates and starts a container like a sandbox; its id.
    pub async fn create(&self) -> Result<String> {
        let name = format!(
            "{}-{}",
            self.prefix,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let labels = HashMap::from([
            ("sandkit.run-id".to_owned(), self.run_id.clone()),
            ("sandkit.bench".to_owned(), "raw".to_owned()),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: Some(vec!["sleep".into(), "600".into()]),
            labels: Some(labels),
            working_dir: Some("/".into()),
            host_config: Some(HostConfig {
                init: Some(true),
                pids_limit: Some(512),
                security_opt: Some(vec!["no-new-privileges".into()]),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(DEFAULT_CAPABILITIES.map(str::to_owned).to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = self.docker.create_container(Some(options), body).await?.id;
        self.docker.start_container(&id, None).await?;
        Ok(id)
    }

    /// Removes a container and its volumes.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        self.docker.remove_container(id, Some(options)).await?;
        Ok(())
    }

    /// create_exec + start_exec (attached) + inspect_exec.
    pub async fn exec(&self, id: &str, argv: &[&str]) -> Result<RawOutput> {
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(argv.iter().map(|a| (*a).to_owned()).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        let started = self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await?;
        let (mut bytes, mut head) = (0u64, Vec::new());
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(frame) = output.next().await {
                if let bollard::container::LogOutput::StdOut { message } = frame? {
                    bytes += message.len() as u64;
                    let room = 4096usize.saturating_sub(head.len());
                    head.extend_from_slice(&message[..room.min(message.len())]);
                }
            }
        }
        let inspect = self.docker.inspect_exec(&exec.id).await?;
        let code = inspect.exit_code.unwrap_or(-1);
        Ok(RawOutput { code, bytes, head })
    }
}
