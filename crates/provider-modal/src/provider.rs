//! The `modal` provider: sandkit's trait over Modal's control plane and command routers.
//! The trait methods are here; what they are made of lives by concern: `mapping` (spec to
//! definition), `images` (images and snapshots), `objects` (app, secret, volumes), `listing`
//! (listing, paging, states, `info`), `router_access`, and `calls`, through which every
//! control-plane call goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use sandkit_core::ownership::{TAG_CREATED_AT, unix_now};
use sandkit_core::registry::ProviderFactory;
use sandkit_core::{
    ByteStream, Capabilities, DirEntry, Error, ExecProcess, ExecRequest, FileStat, ListFilter,
    Requirements, Result, SandboxId, SandboxInfo, SandboxProvider, SandboxSpec, SandboxState,
    Snapshot, Tunnel,
};
use sandkit_modal_proto::client as pb;
use sandkit_modal_proto::client::generic_result::GenericStatus;
use sandkit_modal_proto::task_command_router::TaskExecStdioFileDescriptor;
use tokio::sync::OnceCell;
use tonic::Code;

use crate::NAME;
use crate::calls::V2;
use crate::capabilities::capabilities;
use crate::client::{ControlPlane, Transport};
use crate::config::{ModalConfig, Settings};
use crate::exec::{self, Control, Start};
use crate::family::Family;
use crate::known::{KnownSandboxes, Placement};
use crate::listing::{is_finished, state_of_result};
use crate::mapping::workdir;
use crate::router_access::Task;

/// How long `terminate` waits for Modal to report the sandbox finished.
const TERMINATE_WAIT: Duration = Duration::from_secs(30);
/// Long-poll of one `SandboxWait` while `terminate` waits, in seconds.
const TERMINATE_POLL_SECS: f32 = 10.0;
/// Long-poll of `SandboxGetTunnels`, in seconds.
const TUNNELS_POLL_SECS: f32 = 50.0;

/// Sandboxes on Modal, through Modal's own gRPC protocol.
pub struct ModalProvider {
    pub(crate) settings: Settings,
    pub(crate) control_plane: Arc<ControlPlane>,
    capabilities: Capabilities,
    pub(crate) app_id: OnceCell<String>,
    pub(crate) builder_version: OnceCell<String>,
    /// What this instance knows about sandboxes beyond what Modal reports.
    pub(crate) known: KnownSandboxes,
}

impl std::fmt::Debug for ModalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModalProvider")
            .field("server_url", &self.settings.server_url)
            .field("environment", &self.settings.environment)
            .field("app_name", &self.settings.app_name)
            .finish_non_exhaustive()
    }
}

/// How errors name a sandbox.
pub(crate) fn subject(id: &str) -> String {
    format!("sandbox `{id}`")
}

impl ModalProvider {
    /// Builds a provider from resolved settings. Connects lazily: nothing is sent until the
    /// first operation.
    fn new(settings: Settings, regions: Option<Vec<String>>) -> Result<Self> {
        let control_plane = Transport::new(settings.ca_file.as_deref())
            .and_then(|transport| {
                ControlPlane::new(
                    &settings.server_url,
                    &settings.token_id,
                    &settings.token_secret,
                    transport,
                    settings.max_throttle_wait,
                    settings.router_connect_timeout,
                )
            })
            .map_err(|reason| Error::InvalidConfig {
                provider: NAME.to_owned(),
                reason,
            })?;
        let mut capabilities = capabilities();
        if let Some(regions) = regions {
            capabilities.regions = regions;
        }
        Ok(Self {
            settings,
            control_plane: Arc::new(control_plane),
            capabilities,
            app_id: OnceCell::new(),
            builder_version: OnceCell::new(),
            known: KnownSandboxes::default(),
        })
    }

    /// Waits after `SandboxCreate` until commands can run (a V2 sandbox's router came
    /// with it), then writes the initial files.
    async fn finish_create(&self, id: &SandboxId, spec: &SandboxSpec) -> Result<()> {
        if self.known.get(id.as_str()).router.is_some() {
            return self.write_initial_files(id, spec).await;
        }
        match self
            .wait_for_task(id.as_str(), self.settings.schedule_timeout)
            .await?
        {
            Task::Running(_) => {}
            Task::Finished(result) => {
                let state = state_of_result(&result);
                return Err(Error::CreationFailed {
                    message: format!(
                        "{} ended before it could run commands ({})",
                        subject(id.as_str()),
                        state.map_or_else(|| "no result".to_owned(), |s| s.to_string())
                    ),
                });
            }
        }
        self.write_initial_files(id, spec).await
    }

    /// Terminates a sandbox whose creation failed; a failure to is only logged, since the
    /// creation's own error is the one to report.
    pub(crate) async fn terminate_quietly(&self, id: &SandboxId) {
        if let Err(cleanup) = self.terminate(id).await {
            tracing::warn!(sandbox = %id, error = %cleanup, "terminating a sandbox whose creation failed");
        }
    }

    async fn write_initial_files(&self, id: &SandboxId, spec: &SandboxSpec) -> Result<()> {
        for file in &spec.files {
            self.write_file(id, &file.path, Bytes::from(file.contents.clone()))
                .await?;
        }
        Ok(())
    }
}

/// A tunnel as sandkit reports it: `https://host[:port]`, or `host:port` when Modal gives
/// only an unencrypted address.
fn tunnel_from(tunnel: pb::TunnelData) -> Option<Tunnel> {
    let port = u16::try_from(tunnel.container_port).ok()?;
    let url = match (tunnel.unencrypted_host, tunnel.unencrypted_port) {
        (Some(host), Some(port)) if tunnel.host.is_empty() => format!("{host}:{port}"),
        _ if tunnel.port == 443 || tunnel.port == 0 => format!("https://{}", tunnel.host),
        _ => format!("https://{}:{}", tunnel.host, tunnel.port),
    };
    Some(Tunnel { port, url })
}

#[async_trait]
impl SandboxProvider for ModalProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        spec.validate_with_ownership_tags()?;
        self.check_provider_options(&spec.provider_options)?;
        // The `Checked` layer's rule, again, so a provider called without layers cannot
        // send Modal what it would refuse or silently ignore.
        Requirements::from_spec(spec).enforce(NAME, &self.capabilities)?;
        let family = self.family_for(spec)?;
        let app_id = self.app_id().await?;
        let (image_id, image_workdir) = self.image(&app_id, spec).await?;
        let volume_mounts = self.volume_mounts(spec).await?;
        let (id, lifetime_secs) = self
            .submit(family, app_id, spec, image_id, volume_mounts)
            .await?;
        let workdir = workdir(spec, image_workdir);
        self.known.remember(id.as_str(), |known| {
            known.workdir = Some(workdir.clone());
            known.placement = Some(Placement::of(spec));
        });
        // From here on a failure must not leave the sandbox running.
        if let Err(error) = self.finish_create(&id, spec).await {
            self.terminate_quietly(&id).await;
            return Err(error);
        }
        let created_at_unix_secs = spec
            .tags
            .get(TAG_CREATED_AT)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(unix_now);
        Ok(SandboxInfo {
            id,
            provider: NAME.to_owned(),
            name: spec.name.clone(),
            state: SandboxState::Running,
            tags: spec.tags.clone(),
            created_at_unix_secs,
            expires_at_unix_secs: Some(created_at_unix_secs + lifetime_secs),
            workdir,
            cpu: spec.cpu,
            memory_mib: spec.memory_mib,
            gpu: spec.gpu,
            region: spec.region.clone(),
            notes: Vec::new(),
        })
    }

    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
        self.describe(id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        let entries = self
            .list_all(&filter.tags, filter.include_finished, |_| false)
            .await?;
        Ok(entries
            .into_iter()
            .map(|entry| self.info_from(entry))
            .filter(|info| filter.matches(info))
            .collect())
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        request.validate()?;
        if request.pty {
            return Err(Error::unsupported(NAME, "pseudo-terminals"));
        }
        if request.user.is_some() {
            return Err(Error::unsupported(NAME, "running commands as another user"));
        }
        let router = self.router(id).await?;
        // The working directory goes with every command, so commands start in the
        // directory `info` reports whatever the server's default is.
        let known_workdir = self.known.get(id.as_str()).workdir;
        let workdir = match (&request.cwd, known_workdir) {
            (Some(cwd), _) if cwd.starts_with('/') => Some(cwd.clone()),
            (Some(cwd), base) => Some(format!(
                "{}/{cwd}",
                base.as_deref().unwrap_or("/").trim_end_matches('/')
            )),
            (None, base) => base,
        };
        let start = Start {
            argv: request.argv.clone(),
            workdir,
            env: request.env.clone(),
            timeout: request.timeout,
        };
        let exec = match exec::start(router, start).await {
            Ok(exec) => exec,
            Err(status) => return Err(self.exec_start_failure(id, &request, &status).await),
        };
        let stdin = if request.stdin {
            Some(exec.stdin())
        } else {
            exec.close_stdin();
            None
        };
        Ok(ExecProcess::new(
            &request,
            exec.output(TaskExecStdioFileDescriptor::Stdout),
            exec.output(TaskExecStdioFileDescriptor::Stderr),
            stdin,
            Box::new(Control::new(exec)),
        ))
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.with_files(id, |files| async move { files.read(path).await })
            .await
    }

    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        self.with_files(id, |files| async move { files.write(path, contents).await })
            .await
    }

    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.with_files(id, |files| async move { files.read_stream(path).await })
            .await
    }

    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        contents: ByteStream,
    ) -> Result<()> {
        self.with_files(id, |files| async move {
            files.write_stream(path, contents).await
        })
        .await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        self.with_files(id, |files| async move { files.stat(path).await })
            .await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        self.with_files(id, |files| async move { files.list(path).await })
            .await
    }

    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        self.with_files(id, |files| async move { files.make_dir(path).await })
            .await
    }

    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        self.with_files(
            id,
            |files| async move { files.remove(path, recursive).await },
        )
        .await
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        if Family::of(id.as_str()).is_none() {
            return Ok(());
        }
        self.known.forget(id.as_str());
        let what = subject(id.as_str());
        let request = pb::SandboxTerminateRequest {
            sandbox_id: id.0.clone(),
        };
        match self.sandbox_call(id.as_str(), request).await {
            Ok(response) if is_finished(response.existing_result.as_ref()) => return Ok(()),
            Ok(_) => {}
            Err(error) if error.code() == Code::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        // Termination is asynchronous at Modal; wait until it is reported, so the sandbox
        // is really gone when this returns.
        let deadline = Instant::now() + TERMINATE_WAIT;
        while Instant::now() < deadline {
            let request = pb::SandboxWaitRequest {
                sandbox_id: id.0.clone(),
                timeout: TERMINATE_POLL_SECS,
            };
            match self.sandbox_call(id.as_str(), request).await {
                Ok(response) if is_finished(response.result.as_ref()) => return Ok(()),
                Ok(_) => {}
                Err(error) if error.code() == Code::NotFound => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Timeout {
            operation: format!("terminating {what}"),
            timeout: TERMINATE_WAIT,
        })
    }

    async fn entrypoint_output(
        &self,
        id: &SandboxId,
        stream: sandkit_core::OutputStream,
        offset: u64,
    ) -> Result<ByteStream> {
        self.entrypoint_stream(id, stream, offset).await
    }

    async fn write_entrypoint_stdin(
        &self,
        id: &SandboxId,
        offset: u64,
        data: Bytes,
        eof: bool,
    ) -> Result<()> {
        self.entrypoint_stdin(id, offset, data, eof).await
    }

    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        self.snapshot_filesystem(id).await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.delete_image(snapshot_id).await
    }

    async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
        if Family::of(id.as_str()).is_none() {
            return Err(Error::sandbox_not_found(id));
        }
        let request = pb::SandboxGetTunnelsRequest {
            sandbox_id: id.0.clone(),
            timeout: TUNNELS_POLL_SECS,
        };
        let response = self.sandbox_call(id.as_str(), request).await?;
        if response
            .result
            .as_ref()
            .is_some_and(|result| result.status == GenericStatus::Timeout as i32)
        {
            return Err(Error::Timeout {
                operation: format!("waiting for the tunnels of {}", subject(id.as_str())),
                timeout: Duration::from_secs_f32(TUNNELS_POLL_SECS),
            });
        }
        let mut tunnels: Vec<Tunnel> = response
            .tunnels
            .into_iter()
            .filter_map(tunnel_from)
            .collect();
        tunnels.sort_by_key(|tunnel| tunnel.port);
        Ok(tunnels)
    }

    async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
        let request = pb::SandboxGetFromNameRequest {
            sandbox_name: name.to_owned(),
            environment_name: self.settings.environment.clone(),
            app_name: self.settings.app_name.clone(),
            include_terminated: false,
        };
        let what = format!("sandbox named `{name}`");
        // V2's lookup sees V2 sandboxes; a V1 one is found by V1's, as Modal's Python
        // client falls back.
        let found = if self.lists_v2() {
            match self.control_plane.call(V2(request.clone()), &what).await {
                Err(error) if error.code() == Code::NotFound => None,
                other => Some(other),
            }
        } else {
            None
        };
        let found = match found {
            Some(found) => found,
            None => self.control_plane.call(request, &what).await,
        };
        let response = match found {
            Ok(response) => response,
            Err(error) if error.code() == Code::NotFound => {
                return Err(Error::NotFound {
                    what: format!("{what} in app `{}`", self.settings.app_name),
                });
            }
            Err(error) => return Err(error.into()),
        };
        let mut info = self.info(&SandboxId(response.sandbox_id)).await?;
        info.name.get_or_insert_with(|| name.to_owned());
        Ok(info)
    }
}

impl ProviderFactory for ModalProvider {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str =
        "Modal Sandboxes (gVisor, GPUs, snapshots) through Modal's gRPC API";
    type Config = ModalConfig;

    fn static_capabilities() -> Capabilities {
        capabilities()
    }

    async fn from_config(config: ModalConfig) -> Result<Self> {
        let settings = config.resolve()?;
        Self::new(settings, config.regions.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_are_https_unless_only_plain_addresses_are_given() {
        let tunnel = |host: &str, port, unencrypted: Option<(&str, u32)>| pb::TunnelData {
            host: host.to_owned(),
            port,
            container_port: 8080,
            unencrypted_host: unencrypted.map(|(host, _)| host.to_owned()),
            unencrypted_port: unencrypted.map(|(_, port)| port),
        };
        let url = |data| tunnel_from(data).unwrap().url;
        assert_eq!(
            url(tunnel("a.modal.host", 443, None)),
            "https://a.modal.host"
        );
        assert_eq!(url(tunnel("a.modal.host", 0, None)), "https://a.modal.host");
        assert_eq!(
            url(tunnel("a.modal.host", 8443, None)),
            "https://a.modal.host:8443"
        );
        assert_eq!(
            url(tunnel("", 0, Some(("r.modal.host", 31_000)))),
            "r.modal.host:31000"
        );
        let mut big = tunnel("a", 443, None);
        big.container_port = 70_000;
        assert!(tunnel_from(big).is_none());
    }
}
