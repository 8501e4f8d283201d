//! [`LocalDockerProvider`]: the [`SandboxProvider`] trait over the Docker Engine.
//!
//! A sandbox is one container, labelled with the spec's tags and this provider's own
//! labels (see [`crate::sandbox`]). The main process is what enforces the lifetime, so
//! it holds even when the creating process dies:
//! - on sandkit's agent (the default, see [`crate::agent`]), the agent is the init and
//!   ends the container at its expiry or when its entrypoint ends; otherwise:
//! - with no entrypoint, it is `sleep <lifetime>` (the image needs `sleep`, as every
//!   image with coreutils or busybox has);
//! - with an entrypoint and a lifetime, it is `timeout -s KILL <lifetime> <entrypoint>`
//!   (the image needs `timeout`).
//!
//! With `init` (the default) the engine's `docker-init` runs as process 1 above it and
//! reaps orphaned processes.
//!
//! When the main process ends the container stops and stays until `terminate` (or
//! `reap`, which lists finished sandboxes too) removes it; `info` and `list` (with
//! `include_finished`) report it as terminated meanwhile. The engine's `AutoRemove`
//! would remove it by itself, but the engine also removes such containers, running ones
//! included, when it restarts, and sandboxes must survive a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, DeviceRequest, HostConfig,
    Mount, MountType, PortBinding,
};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::ownership::RESERVED_TAG_PREFIX;
use sandkit_core::registry::ProviderFactory;
use sandkit_core::{
    Arch, BillingModel, ByteStream, Capabilities, Capacity, DirEntry, EgressDefault, Error,
    ExecProcess, ExecRequest, FileStat, IdleCost, ImageSource, Isolation, ListFilter,
    NetworkPolicy, Os, PauseSupport, Requirements, Result, SandboxId, SandboxInfo, SandboxProvider,
    SandboxSpec, SandboxState, Snapshot, TimeoutEnforcement, Transport, Tunnel,
};

use crate::client::Engine;
use crate::config::LocalDockerConfig;
use crate::error::{self, Subject};
use crate::files::Files;
use crate::image;
use crate::sandbox::{
    self, LABEL_AGENT_DIR, LABEL_BUILT_IMAGE, LABEL_FROM_SNAPSHOT, LABEL_GPU, LABEL_IMAGE_USER,
    LABEL_LIFETIME_SECS, LABEL_NAMED, LABEL_SANDBOX, LABEL_SET, LABEL_SNAPSHOT_OF, LABEL_TAG_KEYS,
    Leftovers, Meta, SNAPSHOT_REPOSITORY,
};

mod container;
mod lease;
mod on_agent;
mod snapshot;

use container::capabilities;

/// The registry name.
pub const PROVIDER_NAME: &str = "local-docker";

/// Longest `sleep` every implementation accepts: the "no lifetime" main process.
const FOREVER_SECS: u64 = i32::MAX as u64;
/// The engine refuses memory limits below this.
const MIN_MEMORY_MIB: u64 = 6;
const MIB: i64 = 1024 * 1024;
/// How many containers `list` and `capacity` inspect at once.
const INSPECT_CONCURRENCY: usize = 8;

/// Sandboxes as containers of the local Docker Engine.
pub struct LocalDockerProvider {
    engine: Engine,
    config: LocalDockerConfig,
    capabilities: Capabilities,
    /// Sandboxes this instance has seen, by container id: spares an inspect per exec and
    /// file operation. Only ever holds containers carrying this provider's label.
    known: Mutex<HashMap<String, Meta>>,
    /// The renewal tasks of the leased sandboxes this instance created.
    leases: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Whether sandboxes run on sandkit's agent.
    agent: crate::agent::AgentMode,
}

impl std::fmt::Debug for LocalDockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDockerProvider")
            .field("host", &self.engine.host)
            .field("api_version", &self.engine.api_version)
            .finish_non_exhaustive()
    }
}

impl LocalDockerProvider {
    /// Connects to the engine named by `config` (negotiating the API version).
    pub async fn connect(config: LocalDockerConfig) -> Result<Self> {
        let engine = Engine::connect(&config).await?;
        let capabilities = capabilities(&config, Some(&engine));
        let agent = crate::agent::AgentMode::new(&config, &engine)?;
        if let Some(why) = agent.fallback() {
            tracing::info!(
                reason = why,
                "local-docker runs commands through the Engine exec API, not sandkit's agent"
            );
        }
        Ok(Self {
            engine,
            config,
            capabilities,
            agent,
            leases: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The engine's address.
    pub fn host(&self) -> &str {
        &self.engine.host
    }

    /// Why commands go through the Engine exec API instead of sandkit's agent in each
    /// container (no terminals, file watching or usage then); `None` when they do not.
    pub fn agent_fallback(&self) -> Option<&str> {
        self.agent.fallback()
    }

    /// The engine API version both sides speak.
    pub fn api_version(&self) -> &str {
        &self.engine.api_version
    }

    /// What the provider knows about sandbox `id`, inspecting it when it has not seen it.
    async fn meta(&self, id: &SandboxId) -> Result<Meta> {
        if !sandbox::is_sandbox_id(id.as_str()) {
            return Err(Error::sandbox_not_found(id));
        }
        if let Some(meta) = self.known_meta(id.as_str()) {
            return Ok(meta);
        }
        let inspect = self
            .engine
            .docker
            .inspect_container(id.as_str(), None)
            .await
            .map_err(|e| error::map(e, Subject::Sandbox(id.as_str())))?;
        if !sandbox::is_ours(inspect.config.as_ref().and_then(|c| c.labels.as_ref())) {
            return Err(Error::sandbox_not_found(id));
        }
        Ok(self.remember(&inspect))
    }

    fn known_meta(&self, id: &str) -> Option<Meta> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn remember(&self, inspect: &bollard::models::ContainerInspectResponse) -> Meta {
        let meta = Meta {
            container_id: inspect.id.clone().unwrap_or_default(),
            workdir: sandbox::workdir_of(inspect),
            memory_limited: inspect
                .host_config
                .as_ref()
                .and_then(|h| h.memory)
                .is_some_and(|m| m > 0),
            paused: inspect.state.as_ref().and_then(|s| s.paused) == Some(true),
            leftovers: Leftovers::of(inspect),
            agent: self.agent.agent_of(inspect),
        };
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(meta.container_id.clone(), meta.clone());
        meta
    }

    fn forget(&self, id: &str) {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Records whether a remembered sandbox is paused.
    fn set_paused(&self, id: &str, paused: bool) {
        if let Some(meta) = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(id)
        {
            meta.paused = paused;
        }
    }

    /// What the provider knows about sandbox `id`, which must not be paused for
    /// `operation` (the trait method): one remembered as paused is inspected again, as
    /// someone may have resumed it since.
    async fn unpaused_meta(&self, id: &SandboxId, operation: &str) -> Result<Meta> {
        let meta = match self.known_meta(id.as_str()) {
            Some(meta) if !meta.paused => meta,
            _ => self.remember(&self.inspect_ours(id.as_str()).await?),
        };
        if meta.paused {
            return Err(Error::invalid_state(id, SandboxState::Paused, operation));
        }
        Ok(meta)
    }

    /// Runs `files_operation` for the trait method `operation` on the sandbox's files; a
    /// sandbox that vanished is forgotten, one found paused is remembered so.
    async fn with_files<T>(
        &self,
        id: &SandboxId,
        operation: &str,
        files_operation: impl AsyncFnOnce(Files<'_>) -> Result<T>,
    ) -> Result<T> {
        let meta = self.unpaused_meta(id, operation).await?;
        let mut result = files_operation(Files {
            engine: &self.engine,
            meta: &meta,
        })
        .await;
        if meta.agent.is_some() {
            result = self.unless_gone(&meta, result).await;
        }
        match &mut result {
            Err(Error::NotFound { .. }) => self.forget(id.as_str()),
            // A command it runs (`rm` for `remove`) met the paused sandbox.
            Err(Error::InvalidState {
                operation: attempted,
                ..
            }) => {
                self.set_paused(&meta.container_id, true);
                operation.clone_into(attempted);
            }
            _ => {}
        }
        result
    }

    /// The error for a pause or resume the engine refused, from the
    /// sandbox's state asked afresh: finished is `NotFound`, `refusing` (paused for a
    /// pause, running for a resume) is `InvalidState`, anything else the engine's error.
    async fn refused(
        &self,
        id: &SandboxId,
        operation: &str,
        refusing: SandboxState,
        conflict: bollard::errors::Error,
    ) -> Error {
        let info = match self.inspect_info(id.as_str()).await {
            Ok(info) => info,
            Err(error) => return error,
        };
        self.set_paused(id.as_str(), info.state == SandboxState::Paused);
        if info.state.is_finished() {
            Error::sandbox_not_found(id)
        } else if info.state == refusing {
            Error::invalid_state(id, info.state, operation)
        } else {
            error::map(conflict, Subject::Sandbox(id.as_str()))
        }
    }

    /// How many sandboxes (running or paused, anyone's) the engine holds now.
    async fn live_sandboxes(&self) -> Result<u32> {
        let ids = self.container_ids(&BTreeMap::new(), false).await?;
        Ok(u32::try_from(ids.len()).unwrap_or(u32::MAX))
    }

    /// Inspects a container; `NotFound` unless it is ours.
    async fn inspect_ours(&self, id: &str) -> Result<ContainerInspectResponse> {
        if !sandbox::is_sandbox_id(id) {
            return Err(Error::sandbox_not_found(id));
        }
        let inspect = self
            .engine
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| error::map(e, Subject::Sandbox(id)))?;
        if !sandbox::is_ours(inspect.config.as_ref().and_then(|c| c.labels.as_ref())) {
            return Err(Error::sandbox_not_found(id));
        }
        Ok(inspect)
    }

    /// The info of a sandbox, finished ones included.
    async fn inspect_info(&self, id: &str) -> Result<SandboxInfo> {
        let inspect = self.inspect_ours(id).await?;
        let info = self.info_of(&inspect);
        if info.state.is_finished() {
            self.forget(id);
        } else {
            self.remember(&inspect);
        }
        Ok(info)
    }

    /// Removes a container of ours and the images that go with it.
    async fn discard(&self, container_id: &str, leftovers: &Leftovers) -> Result<()> {
        self.remove_container(container_id).await?;
        self.forget(container_id);
        if let Some(dir) = leftovers
            .agent_dir
            .as_deref()
            .filter(|d| self.agent.owns(d))
        {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(tag) = &leftovers.built_image {
            self.remove_image_quietly(tag, false).await;
        }
        // A restored sandbox's image whose snapshot was deleted is left untagged: it
        // goes with its last container.
        if let Some(image_id) = &leftovers.snapshot_image
            && let Ok(image) = self.engine.docker.inspect_image(image_id).await
            && image.repo_tags.as_ref().is_none_or(Vec::is_empty)
        {
            self.remove_image_quietly(image_id, false).await;
        }
        Ok(())
    }

    /// Infos of the given containers, skipping those that vanish meanwhile.
    async fn infos(&self, ids: Vec<String>) -> Result<Vec<SandboxInfo>> {
        let results: Vec<Result<SandboxInfo>> = futures::stream::iter(ids)
            .map(|id| async move { self.inspect_info(&id).await })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        let mut infos = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(info) => infos.push(info),
                Err(Error::NotFound { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        infos.sort_by_key(|info| (info.created_at_unix_secs, info.id.clone()));
        Ok(infos)
    }

    /// Removes an image, ignoring one that is gone or still used by another container.
    async fn remove_image_quietly(&self, reference: &str, force: bool) {
        let options = RemoveImageOptionsBuilder::default().force(force).build();
        match self
            .engine
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => {}
            Err(e) if error::is_not_found(&e) || error::is_conflict(&e) => {}
            Err(e) => tracing::warn!(image = reference, error = %e, "could not remove an image"),
        }
    }

    /// Removes the container (killing it), ignoring one that is already gone.
    async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.engine.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // Gone, or someone else is already removing it.
            Err(e) if error::is_not_found(&e) || error::is_conflict(&e) => Ok(()),
            Err(e) => Err(error::map(e, Subject::Sandbox(id))),
        }
    }
}

#[async_trait]
impl SandboxProvider for LocalDockerProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        spec.validate_with_ownership_tags()?;
        self.check_spec(spec)?;
        // Counted, then created: creates racing each other may pass the limit by a few.
        if let Some(max_sandboxes) = self.config.max_sandboxes
            && self.live_sandboxes().await? >= max_sandboxes
        {
            return Err(Error::ResourceLimitExceeded {
                message: format!(
                    "the engine holds `max_sandboxes` ({max_sandboxes}) sandboxes already"
                ),
            });
        }
        let source = spec.image.clone().unwrap_or_else(|| ImageSource::Registry {
            reference: self.config.default_image.clone(),
        });
        let image = image::prepare(&self.engine, &source, &spec.tags).await?;
        let result = self.create_container(spec, &image).await;
        if result.is_err()
            && let Some(tag) = &image.built_tag
        {
            self.remove_image_quietly(tag, false).await;
        }
        let info = result?;
        if let Some(lease_secs) = spec.lease_secs {
            match self
                .known_meta(info.id.as_str())
                .and_then(|meta| meta.agent)
            {
                Some(agent) => {
                    self.hold_lease(info.id.as_str(), &agent, lease_secs)
                        .await?
                }
                None => self.renew_lease(info.id.as_str(), lease_secs),
            }
        }
        tracing::debug!(sandbox = %info.id, "created");
        Ok(info)
    }

    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
        self.inspect_info(id.as_str()).await.inspect_err(|e| {
            if matches!(e, Error::NotFound { .. }) {
                self.forget(id.as_str());
            }
        })
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        let ids = self
            .container_ids(&filter.tags, filter.include_finished)
            .await?;
        let mut infos = self.infos(ids).await?;
        infos.retain(|info| filter.matches(info));
        Ok(infos)
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        request.validate()?;
        if request.timeout.is_some() && self.capabilities.exec_timeout == TimeoutEnforcement::None {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "exec timeouts on an engine whose processes this host cannot see",
            ));
        }
        let meta = self.unpaused_meta(id, "exec").await?;
        if let Some(agent) = &meta.agent {
            return self.exec_on_agent(agent, &meta, request).await;
        }
        if request.pty {
            return Err(Error::unsupported(PROVIDER_NAME, "pseudo-terminals"));
        }
        crate::exec::start(&self.engine, &meta, request)
            .await
            .inspect_err(|e| match e {
                Error::NotFound { .. } => self.forget(id.as_str()),
                Error::InvalidState { .. } => self.set_paused(&meta.container_id, true),
                _ => {}
            })
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.with_files(id, "read_file", async |files| files.read(path).await)
            .await
    }

    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        self.with_files(id, "write_file", async |files| {
            files.write(path, contents).await
        })
        .await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        self.with_files(id, "stat", async |files| files.stat(path).await)
            .await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        self.with_files(id, "list_dir", async |files| files.list(path).await)
            .await
    }

    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        self.with_files(id, "make_dir", async |files| files.make_dir(path).await)
            .await
    }

    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        self.with_files(id, "remove", async |files| {
            files.remove(path, recursive).await
        })
        .await
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        if let Some(renewal) = self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id.as_str())
        {
            renewal.abort();
        }
        // An id of another shape was never one of ours: nothing to end.
        if !sandbox::is_sandbox_id(id.as_str()) {
            return Ok(());
        }
        // A sandbox this instance knows is ours: no need to ask the engine first.
        if let Some(meta) = self.known_meta(id.as_str()) {
            self.discard(&meta.container_id, &meta.leftovers).await?;
            tracing::debug!(sandbox = %id, "terminated");
            return Ok(());
        }
        let inspect = match self
            .engine
            .docker
            .inspect_container(id.as_str(), None)
            .await
        {
            Ok(inspect) => inspect,
            Err(e) if error::is_not_found(&e) => {
                self.forget(id.as_str());
                return Ok(());
            }
            Err(e) => return Err(error::map(e, Subject::Sandbox(id.as_str()))),
        };
        // Someone else's container is an unknown sandbox: nothing to do.
        if !sandbox::is_ours(inspect.config.as_ref().and_then(|c| c.labels.as_ref())) {
            return Ok(());
        }
        let container_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        self.discard(&container_id, &Leftovers::of(&inspect))
            .await?;
        self.forget(id.as_str());
        tracing::debug!(sandbox = %id, "terminated");
        Ok(())
    }

    async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
        self.with_files(id, "upload_archive", async |files| {
            files.upload_archive(path, tar).await
        })
        .await
    }

    async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.with_files(id, "download_archive", async |files| {
            files.download_archive(path).await
        })
        .await
    }

    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.with_files(id, "read_file_stream", async |files| {
            files.read_stream(path).await
        })
        .await
    }

    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        contents: ByteStream,
    ) -> Result<()> {
        self.with_files(id, "write_file_stream", async |files| {
            files.write_stream(path, contents).await
        })
        .await
    }

    async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.with_files(id, "download_archive_stream", async |files| {
            files.download_archive_stream(path).await
        })
        .await
    }

    async fn upload_archive_stream(
        &self,
        id: &SandboxId,
        path: &str,
        tar: ByteStream,
    ) -> Result<()> {
        self.with_files(id, "upload_archive_stream", async |files| {
            files.upload_archive_stream(path, tar).await
        })
        .await
    }

    /// Through the agent, which keeps their latest output.
    async fn start_detached(
        &self,
        id: &SandboxId,
        request: ExecRequest,
    ) -> Result<sandkit_core::CommandInfo> {
        self.start_detached_on_agent(id, request).await
    }

    async fn commands(&self, id: &SandboxId) -> Result<Vec<sandkit_core::CommandInfo>> {
        self.commands_on_agent(id).await
    }

    async fn attach(
        &self,
        id: &SandboxId,
        command: &str,
        from: sandkit_core::AttachFrom,
    ) -> Result<ExecProcess> {
        self.attach_on_agent(id, command, from).await
    }

    /// Through the agent (inotify inside the container).
    async fn watch(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<sandkit_core::FileEvents> {
        self.watch_on_agent(id, path, recursive).await
    }

    /// Measured by the agent over the container's processes; the peak is sampled every
    /// second.
    async fn resource_usage(&self, id: &SandboxId) -> Result<sandkit_core::ResourceUsage> {
        self.usage_on_agent(id).await
    }

    async fn entrypoint_output(
        &self,
        id: &SandboxId,
        stream: sandkit_core::OutputStream,
        offset: u64,
    ) -> Result<ByteStream> {
        self.entrypoint_output_on_agent(id, stream, offset).await
    }

    async fn write_entrypoint_stdin(
        &self,
        id: &SandboxId,
        at: u64,
        data: Bytes,
        eof: bool,
    ) -> Result<()> {
        self.entrypoint_stdin_on_agent(id, at, data, eof).await
    }

    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        self.take_snapshot(id).await
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        match image::snapshot_image(&self.engine, snapshot_id).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(other) => return Err(other),
        }
        // Forced: a sandbox restored from it keeps the image (untagged) until it ends.
        self.remove_image_quietly(snapshot_id, true).await;
        Ok(())
    }

    async fn pause(&self, id: &SandboxId) -> Result<()> {
        let meta = self.meta(id).await?;
        match self.engine.docker.pause_container(&meta.container_id).await {
            Ok(()) => {
                self.set_paused(&meta.container_id, true);
                Ok(())
            }
            // "is already paused", or "is not running" for a finished sandbox.
            Err(e) if error::is_state_refusal(&e) => {
                Err(self.refused(id, "pause", SandboxState::Paused, e).await)
            }
            Err(e) => Err(error::map(e, Subject::Sandbox(&meta.container_id))),
        }
    }

    async fn resume(&self, id: &SandboxId) -> Result<()> {
        let meta = self.meta(id).await?;
        match self
            .engine
            .docker
            .unpause_container(&meta.container_id)
            .await
        {
            Ok(()) => {
                self.set_paused(&meta.container_id, false);
                Ok(())
            }
            // "is not paused", said of a running sandbox and of a finished one alike.
            Err(e) if error::is_state_refusal(&e) => {
                Err(self.refused(id, "resume", SandboxState::Running, e).await)
            }
            Err(e) => Err(error::map(e, Subject::Sandbox(&meta.container_id))),
        }
    }

    async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
        let meta = self.meta(id).await?;
        let inspect = self
            .engine
            .docker
            .inspect_container(&meta.container_id, None)
            .await
            .map_err(|e| error::map(e, Subject::Sandbox(&meta.container_id)))?;
        Ok(container::tunnels_of(inspect))
    }

    async fn capacity(&self) -> Result<Capacity> {
        // Without a limit there is no count of sandboxes that still fit to report.
        let Some(max_sandboxes) = self.config.max_sandboxes else {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "capacity queries without `max_sandboxes`",
            ));
        };
        let ids = self.container_ids(&BTreeMap::new(), false).await?;
        let live = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let infos = self.infos(ids).await?;
        let used_cpu: f64 = infos.iter().filter_map(|info| info.cpu).sum();
        let used_memory_mib: u64 = infos.iter().filter_map(|info| info.memory_mib).sum();
        Ok(Capacity {
            available_sandboxes: Some(max_sandboxes.saturating_sub(live)),
            available_cpu: Some((f64::from(self.engine.ncpu) - used_cpu).max(0.0)),
            available_memory_mib: Some(
                (self.engine.mem_total_bytes / (1024 * 1024)).saturating_sub(used_memory_mib),
            ),
        })
    }

    async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
        let not_found = || Error::NotFound {
            what: format!("sandbox named `{name}`"),
        };
        if !sandbox::is_container_name(name) {
            return Err(not_found());
        }
        // The engine also resolves id prefixes; only an exact name counts.
        let inspect = match self.engine.docker.inspect_container(name, None).await {
            Ok(inspect) => inspect,
            Err(e) if error::is_not_found(&e) => return Err(not_found()),
            Err(e) => return Err(error::map(e, Subject::Engine)),
        };
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        let named = labels.and_then(|l| l.get(LABEL_NAMED)).map(String::as_str) == Some(LABEL_SET);
        if !sandbox::is_ours(labels)
            || !named
            || inspect.name.as_deref().map(|n| n.trim_start_matches('/')) != Some(name)
        {
            return Err(not_found());
        }
        let info = self.info_of(&inspect);
        if info.state.is_finished() {
            return Err(not_found());
        }
        self.remember(&inspect);
        Ok(info)
    }
}

impl ProviderFactory for LocalDockerProvider {
    const NAME: &'static str = PROVIDER_NAME;
    const SUMMARY: &'static str =
        "containers of the local Docker Engine (bollard): snapshots, pause, limits, no-network";
    type Config = LocalDockerConfig;

    fn static_capabilities() -> Capabilities {
        capabilities(&LocalDockerConfig::default(), None)
    }

    async fn from_config(config: Self::Config) -> Result<Self> {
        Self::connect(config).await
    }
}

sandkit_core::register_provider!(LocalDockerProvider);
