//! [`LocalDockerProvider`]: the [`SandboxProvider`] trait over the Docker Engine.
//!
//! A sandbox is one container, labelled with the spec's tags and this provider's own
//! labels (see [`crate::sandbox`]). The main process is what enforces the lifetime, so
//! it holds even when the creating process dies:
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
    NetworkPolicy, Os, PauseSupport, Result, SandboxId, SandboxInfo, SandboxProvider, SandboxSpec,
    Snapshot, TimeoutEnforcement, Transport, Tunnel,
};

use crate::client::Engine;
use crate::config::LocalDockerConfig;
use crate::error::{self, Subject};
use crate::files::Files;
use crate::image;
use crate::sandbox::{
    self, LABEL_BUILT_IMAGE, LABEL_FROM_SNAPSHOT, LABEL_GPU, LABEL_LIFETIME_SECS, LABEL_NAMED,
    LABEL_SANDBOX, LABEL_SET, LABEL_SNAPSHOT_OF, LABEL_TAG_KEYS, Leftovers, Meta,
    SNAPSHOT_REPOSITORY,
};

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
        Ok(Self {
            engine,
            config,
            capabilities,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The engine's address.
    pub fn host(&self) -> &str {
        &self.engine.host
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
            leftovers: Leftovers::of(inspect),
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

    /// Runs `operation` on the sandbox's files; a sandbox that vanished is forgotten.
    async fn with_files<T>(
        &self,
        id: &SandboxId,
        operation: impl AsyncFnOnce(Files<'_>) -> Result<T>,
    ) -> Result<T> {
        let meta = self.meta(id).await?;
        let result = operation(Files {
            engine: &self.engine,
            meta: &meta,
        })
        .await;
        if matches!(result, Err(Error::NotFound { .. })) {
            self.forget(id.as_str());
        }
        result
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
        let info = sandbox::info_from(&inspect);
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

    /// Ids of this provider's containers matching `tags` (all states with `all`).
    async fn container_ids(
        &self,
        tags: &BTreeMap<String, String>,
        all: bool,
    ) -> Result<Vec<String>> {
        let mut labels = vec![format!("{LABEL_SANDBOX}={LABEL_SET}")];
        labels.extend(tags.iter().map(|(key, value)| format!("{key}={value}")));
        let filters = HashMap::from([("label".to_owned(), labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        let containers = self
            .engine
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| error::map(e, Subject::Engine))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
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

    fn check_spec(&self, spec: &SandboxSpec) -> Result<()> {
        let unsupported = |feature: &str| Err(Error::unsupported(PROVIDER_NAME, feature));
        if spec.idle_timeout_secs.is_some() {
            return unsupported("idle timeouts");
        }
        if spec.region.is_some() {
            return unsupported("regions");
        }
        if let Some(NetworkPolicy::AllowList { cidrs, domains }) = &spec.network
            && !(cidrs.is_empty() && domains.is_empty())
        {
            return unsupported("network allowlists");
        }
        if let Some(gpu) = &spec.gpu
            && !self.capabilities.offers_gpu(gpu.kind, gpu.count)
        {
            return unsupported(&format!("{} x {}", gpu.count, gpu.kind));
        }
        if let Some(memory) = spec.memory_mib
            && memory < MIN_MEMORY_MIB
        {
            return Err(Error::invalid_spec(
                "memory_mib",
                format!("the Docker Engine needs at least {MIN_MEMORY_MIB} MiB"),
            ));
        }
        if blocks_network(spec) && !spec.ports.is_empty() {
            return Err(Error::invalid_spec(
                "ports",
                "ports cannot be exposed from a sandbox whose network is blocked",
            ));
        }
        for (index, file) in spec.files.iter().enumerate() {
            if sandbox::absolute("/", &file.path) == "/" {
                return Err(Error::invalid_spec(
                    format!("files[{index}].path"),
                    "must name a file",
                ));
            }
        }
        Ok(())
    }

    /// The container the spec describes.
    fn container_body(
        &self,
        spec: &SandboxSpec,
        image: &image::ReadyImage,
        workdir: &str,
    ) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = spec
            .tags
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let keys: Vec<&str> = spec.tags.keys().map(String::as_str).collect();
        labels.insert(LABEL_SANDBOX.to_owned(), LABEL_SET.to_owned());
        labels.insert(LABEL_TAG_KEYS.to_owned(), keys.join(","));
        // Blank values override what a snapshot image would otherwise hand down.
        let set_or_blank = |present: bool| if present { LABEL_SET } else { "" }.to_owned();
        labels.insert(LABEL_NAMED.to_owned(), set_or_blank(spec.name.is_some()));
        labels.insert(
            LABEL_LIFETIME_SECS.to_owned(),
            spec.lifetime_secs
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
        labels.insert(
            LABEL_GPU.to_owned(),
            spec.gpu
                .map(|gpu| format!("{}:{}", gpu.kind, gpu.count))
                .unwrap_or_default(),
        );
        labels.insert(
            LABEL_BUILT_IMAGE.to_owned(),
            image.built_tag.clone().unwrap_or_default(),
        );
        let from_snapshot = match &spec.image {
            Some(ImageSource::Snapshot { id }) => id.clone(),
            _ => String::new(),
        };
        labels.insert(LABEL_FROM_SNAPSHOT.to_owned(), from_snapshot);

        let lifetime = spec.lifetime_secs.map(|secs| secs.to_string());
        let entrypoint = match (spec.entrypoint.is_empty(), lifetime) {
            (true, lifetime) => vec![
                "sleep".to_owned(),
                lifetime.unwrap_or_else(|| FOREVER_SECS.to_string()),
            ],
            (false, Some(lifetime)) => ["timeout", "-s", "KILL", &lifetime]
                .into_iter()
                .map(str::to_owned)
                .chain(spec.entrypoint.iter().cloned())
                .collect(),
            (false, None) => spec.entrypoint.clone(),
        };
        let env: Vec<String> = spec
            .env
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .chain(
                spec.secrets
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value.expose())),
            )
            .collect();
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|port| format!("{port}/tcp"))
            .collect();
        let port_bindings = ports
            .iter()
            .map(|port| {
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                };
                (port.clone(), Some(vec![binding]))
            })
            .collect();
        let host_config = HostConfig {
            auto_remove: Some(false),
            init: Some(self.config.init),
            nano_cpus: spec.cpu.map(|cores| (cores * 1e9).round() as i64),
            memory: spec.memory_mib.map(|mib| mib as i64 * MIB),
            // No swap beyond the limit, or the limit would not bound anything.
            memory_swap: spec.memory_mib.map(|mib| mib as i64 * MIB),
            pids_limit: Some(i64::from(self.config.pids_limit)),
            network_mode: blocks_network(spec).then(|| "none".to_owned()),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(self.config.capabilities.clone()),
            runtime: self.config.runtime.clone(),
            device_requests: spec.gpu.map(|gpu| {
                vec![DeviceRequest {
                    driver: Some("nvidia".to_owned()),
                    count: Some(i64::from(gpu.count)),
                    capabilities: Some(vec![vec!["gpu".to_owned()]]),
                    ..Default::default()
                }]
            }),
            mounts: (!spec.volumes.is_empty()).then(|| {
                spec.volumes
                    .iter()
                    .map(|volume| Mount {
                        typ: Some(MountType::VOLUME),
                        source: Some(volume.name.clone()),
                        target: Some(volume.mount_path.clone()),
                        read_only: Some(volume.read_only),
                        ..Default::default()
                    })
                    .collect()
            }),
            port_bindings: (!ports.is_empty()).then_some(port_bindings),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(image.reference.clone()),
            entrypoint: Some(entrypoint),
            env: (!env.is_empty()).then_some(env),
            working_dir: Some(workdir.to_owned()),
            labels: Some(labels),
            exposed_ports: (!ports.is_empty()).then_some(ports),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    /// Creates, fills and starts the container; on failure removes what it made.
    async fn create_container(
        &self,
        spec: &SandboxSpec,
        image: &image::ReadyImage,
    ) -> Result<SandboxInfo> {
        let workdir = spec
            .workdir
            .clone()
            .or_else(|| image.working_dir.clone())
            .map_or_else(|| "/".to_owned(), |w| sandbox::absolute("/", &w));
        let name = spec.name.clone().unwrap_or_else(|| {
            format!(
                "sandkit-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        });
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .engine
            .docker
            .create_container(Some(options), self.container_body(spec, image, &workdir))
            .await
            .map_err(
                |e| match error::map(e, Subject::NewSandbox(spec.name.as_deref())) {
                    Error::CreationFailed { message } => Error::CreationFailed {
                        message: format!("creating the container: {message}"),
                    },
                    other => other,
                },
            )?;
        let id = created.id;
        let result = self.fill_and_start(&id, spec, &workdir).await;
        if result.is_err() {
            let _ = self.remove_container(&id).await;
            self.forget(&id);
        }
        result
    }

    async fn fill_and_start(
        &self,
        id: &str,
        spec: &SandboxSpec,
        workdir: &str,
    ) -> Result<SandboxInfo> {
        let meta = Meta {
            container_id: id.to_owned(),
            workdir: workdir.to_owned(),
            memory_limited: spec.memory_mib.is_some(),
            leftovers: Leftovers::default(),
        };
        // Written before the start, so the entrypoint already sees them.
        let files = Files {
            engine: &self.engine,
            meta: &meta,
        };
        for file in &spec.files {
            files
                .write(&file.path, Bytes::from(file.contents.clone()))
                .await
                .map_err(|e| Error::CreationFailed {
                    message: format!("writing initial file `{}`: {e}", file.path),
                })?;
        }
        self.engine
            .docker
            .start_container(id, None)
            .await
            .map_err(|e| Error::CreationFailed {
                message: format!(
                    "starting the container: {}{}",
                    error::map(e, Subject::Sandbox(id)),
                    if spec.entrypoint.is_empty() {
                        " (sandboxes without an entrypoint run `sleep`; the image must have it)"
                    } else {
                        ""
                    }
                ),
            })?;
        let inspect = self.inspect_ours(id).await?;
        let info = sandbox::info_from(&inspect);
        if !info.state.is_finished() {
            self.remember(&inspect);
            return Ok(info);
        }
        if spec.entrypoint.is_empty() {
            return Err(Error::CreationFailed {
                message: format!(
                    "the sandbox ended at once ({}); sandboxes without an entrypoint run `sleep <lifetime>`, which the image must have",
                    info.state
                ),
            });
        }
        // An entrypoint that ended at once: the sandbox is already over.
        Ok(info)
    }

    /// Makes image `SNAPSHOT_REPOSITORY:tag` from the filesystem of `container`, with
    /// `config` as its configuration, such that no field of the image holds the
    /// container's environment (its secrets).
    ///
    /// `docker commit` cannot do that: whatever config it is given, the engine stores
    /// the container's own configuration, environment and all, as the image's
    /// `ContainerConfig`, and a second commit on top keeps the first image as a parent.
    /// So the filesystem is exported and imported as a base image with no history, a
    /// helper container that never starts is created from it with `config`, and that
    /// container is committed: `Config` and `ContainerConfig` are both `config`. The base
    /// stays only as the untagged parent, holding nothing but the filesystem; deleting
    /// the snapshot deletes it too. With `pause`, the container is paused while its
    /// filesystem is read.
    async fn commit_without_secrets(
        &self,
        container: &str,
        tag: &str,
        pause: bool,
        config: ContainerConfig,
    ) -> Result<()> {
        let docker = &self.engine.docker;
        let sandbox_error = |e| error::map(e, Subject::Sandbox(container));
        let base = format!("{SNAPSHOT_REPOSITORY}:{tag}-base");
        if pause {
            docker
                .pause_container(container)
                .await
                .map_err(sandbox_error)?;
        }
        let imported = self.import_filesystem(container, tag).await;
        if pause && let Err(e) = docker.unpause_container(container).await {
            tracing::warn!(container, error = %e, "could not unpause after a snapshot");
        }
        if let Err(error) = imported {
            self.remove_image_quietly(&base, true).await;
            return Err(error);
        }

        let helper_body = ContainerCreateBody {
            image: Some(base.clone()),
            user: config.user.clone(),
            env: config.env.clone(),
            // The engine wants a command even for a container that never starts.
            cmd: match (&config.cmd, &config.entrypoint) {
                (None, None) => Some(vec!["true".to_owned()]),
                (cmd, _) => cmd.clone(),
            },
            entrypoint: config.entrypoint.clone(),
            working_dir: config.working_dir.clone(),
            exposed_ports: config.exposed_ports.clone(),
            volumes: config.volumes.clone(),
            stop_signal: config.stop_signal.clone(),
            shell: config.shell.clone(),
            labels: config.labels.clone(),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let helper_name = format!("sandkit-snapshot-{tag}");
        let options = CreateContainerOptionsBuilder::default()
            .name(&helper_name)
            .build();
        let helper = match docker.create_container(Some(options), helper_body).await {
            Ok(created) => created.id,
            Err(e) => {
                self.remove_image_quietly(&base, true).await;
                return Err(sandbox_error(e));
            }
        };
        let options = CommitContainerOptionsBuilder::default()
            .container(&helper)
            .repo(SNAPSHOT_REPOSITORY)
            .tag(tag)
            .comment(&format!("sandkit snapshot of {container}"))
            .pause(false)
            .build();
        let committed = docker.commit_container(options, config).await;
        let _ = self.remove_container(&helper).await;
        // Untags the base; the image stays as the snapshot's parent.
        self.remove_image_quietly(&base, false).await;
        committed.map(|_| ()).map_err(sandbox_error)
    }

    /// Streams the filesystem of `container` into the image `SNAPSHOT_REPOSITORY:tag-base`
    /// (`docker export | docker import`): one layer, no history, an empty configuration.
    async fn import_filesystem(&self, container: &str, tag: &str) -> Result<()> {
        let docker = &self.engine.docker;
        let export = docker
            .export_container(container)
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(SNAPSHOT_REPOSITORY)
            .tag(&format!("{tag}-base"))
            .message(&format!("sandkit snapshot filesystem of {container}"))
            .build();
        let mut progress =
            docker.create_image(Some(options), Some(bollard::body_try_stream(export)), None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| error::map(e, Subject::Sandbox(container)))?;
        }
        Ok(())
    }

    /// Labels of a snapshot of a container with `labels`: sandkit's ownership tags (so a
    /// leak check finds the image), the source, and blanks over every internal label
    /// (the engine copies the container's labels onto the image).
    fn snapshot_labels(
        id: &str,
        labels: Option<&HashMap<String, String>>,
    ) -> HashMap<String, String> {
        let mut snapshot: HashMap<String, String> = labels
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.starts_with(RESERVED_TAG_PREFIX))
            .map(|(key, _)| (key.clone(), String::new()))
            .collect();
        for (key, value) in labels.into_iter().flatten() {
            if key.starts_with(RESERVED_TAG_PREFIX) && !key.starts_with("sandkit.docker.") {
                snapshot.insert(key.clone(), value.clone());
            }
        }
        snapshot.insert(LABEL_SNAPSHOT_OF.to_owned(), id.to_owned());
        snapshot
    }
}

/// Whether the spec asks for no network at all (an empty allowlist allows nothing).
fn blocks_network(spec: &SandboxSpec) -> bool {
    match &spec.network {
        Some(NetworkPolicy::BlockAll) => true,
        Some(NetworkPolicy::AllowList { cidrs, domains }) => cidrs.is_empty() && domains.is_empty(),
        Some(NetworkPolicy::AllowAll) | None => false,
    }
}

/// What the provider can do with `config`, on `engine` when connected. Anything not
/// named here (capabilities core adds later) is off until this provider implements it.
#[allow(clippy::needless_update)]
fn capabilities(config: &LocalDockerConfig, engine: Option<&Engine>) -> Capabilities {
    let gpus = engine.is_some_and(Engine::has_nvidia_runtime);
    let isolation = match config.runtime.as_deref() {
        Some("runsc") => Isolation::UserSpaceKernel,
        Some("kata" | "kata-runtime" | "io.containerd.kata.v2") => Isolation::MicroVm,
        _ => Isolation::Container,
    };
    Capabilities {
        transport: Transport::Local,
        isolation,
        fs_snapshot: true,
        pause: PauseSupport::Yes,
        pause_keeps_memory: true,
        capacity_query: true,
        max_concurrent: None,
        max_lifetime_secs: Some(FOREVER_SECS),
        default_lifetime_secs: config.default_lifetime_secs,
        idle_timeout: false,
        os: vec![Os::Linux],
        arch: Arch::host(),
        regions: Vec::new(),
        cpu_limit: true,
        memory_limit: true,
        max_cpu: engine.map(|e| f64::from(e.ncpu)).filter(|n| *n > 0.0),
        max_memory_mib: engine
            .map(|e| e.mem_total_bytes / (1024 * 1024))
            .filter(|n| *n > 0),
        gpu_kinds: if gpus {
            config.gpu_kinds.clone()
        } else {
            Vec::new()
        },
        max_gpu_count: if gpus { config.gpu_count } else { 0 },
        network_block_all: true,
        network_cidr_allowlist: false,
        network_domain_allowlist: false,
        egress_default: EgressDefault::AllowAll,
        idle_cost: IdleCost::Zero,
        billing: BillingModel::None,
        price_sheet: None,
        image_registry: true,
        image_dockerfile: true,
        entrypoint: true,
        exec_stdin: true,
        exec_pty: false,
        exec_run_as_user: true,
        // Timeouts kill through this host's /proc; an engine elsewhere offers none.
        exec_timeout: if engine.is_none_or(|e| e.shares_processes) {
            TimeoutEnforcement::Client
        } else {
            TimeoutEnforcement::None
        },
        exec_separate_stderr: true,
        files: true,
        container_paths: true,
        // The container's root filesystem is its own, writable copy.
        read_only_base: false,
        batch_transfer: true,
        tunnels: true,
        volumes: true,
        secrets: true,
        tags: true,
        list_by_tags: true,
        lookup_by_name: true,
        ..Capabilities::default()
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
        if request.pty {
            return Err(Error::unsupported(PROVIDER_NAME, "pseudo-terminals"));
        }
        if request.timeout.is_some() && self.capabilities.exec_timeout == TimeoutEnforcement::None {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "exec timeouts on an engine whose processes this host cannot see",
            ));
        }
        let meta = self.meta(id).await?;
        crate::exec::start(&self.engine, &meta, request)
            .await
            .inspect_err(|e| {
                if matches!(e, Error::NotFound { .. }) {
                    self.forget(id.as_str());
                }
            })
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.with_files(id, async |files| files.read(path).await)
            .await
    }

    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        self.with_files(id, async |files| files.write(path, contents).await)
            .await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        self.with_files(id, async |files| files.stat(path).await)
            .await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        self.with_files(id, async |files| files.list(path).await)
            .await
    }

    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        self.with_files(id, async |files| files.make_dir(path).await)
            .await
    }

    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        self.with_files(id, async |files| files.remove(path, recursive).await)
            .await
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
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
        self.with_files(id, async |files| files.upload_archive(path, tar).await)
            .await
    }

    async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.with_files(id, async |files| files.download_archive(path).await)
            .await
    }

    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.with_files(id, async |files| files.read_stream(path).await)
            .await
    }

    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        contents: ByteStream,
    ) -> Result<()> {
        self.with_files(id, async |files| files.write_stream(path, contents).await)
            .await
    }

    async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.with_files(id, async |files| files.download_archive_stream(path).await)
            .await
    }

    async fn upload_archive_stream(
        &self,
        id: &SandboxId,
        path: &str,
        tar: ByteStream,
    ) -> Result<()> {
        self.with_files(id, async |files| {
            files.upload_archive_stream(path, tar).await
        })
        .await
    }

    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        let meta = self.meta(id).await?;
        let container = meta.container_id.as_str();
        let inspect = self
            .engine
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| error::map(e, Subject::Sandbox(container)))?;
        let config = inspect.config.clone().unwrap_or_default();
        // Only the image's own environment goes into the snapshot: the spec's env and
        // secrets stay out.
        let image_env = match inspect.image.as_deref() {
            Some(image) => self
                .engine
                .docker
                .inspect_image(image)
                .await
                .ok()
                .and_then(|i| i.config?.env)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut labels = Self::snapshot_labels(container, config.labels.as_ref());
        labels.retain(|_, value| !value.is_empty());
        let snapshot_config = ContainerConfig {
            user: config.user.clone(),
            env: Some(image_env),
            cmd: config.cmd.clone(),
            entrypoint: config.entrypoint.clone(),
            working_dir: config.working_dir.clone(),
            exposed_ports: config.exposed_ports.clone(),
            volumes: config.volumes.clone(),
            stop_signal: config.stop_signal.clone(),
            shell: config.shell.clone(),
            labels: Some(labels),
            ..Default::default()
        };
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let paused = inspect
            .state
            .as_ref()
            .is_some_and(|state| state.running == Some(true) && state.paused != Some(true));
        self.commit_without_secrets(container, &tag, paused, snapshot_config)
            .await?;
        Ok(Snapshot {
            id: format!("{SNAPSHOT_REPOSITORY}:{tag}"),
            source: SandboxId(container.to_owned()),
        })
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
            Ok(()) => Ok(()),
            Err(e) => match error::map(e, Subject::Sandbox(&meta.container_id)) {
                // "already paused": pausing is idempotent.
                Error::Provider { .. } => Ok(()),
                other => Err(other),
            },
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
            Ok(()) => Ok(()),
            Err(e) if error::is_conflict(&e) => {
                // "is not paused" is fine; "is not running" is a finished sandbox.
                let running = self.inspect_info(&meta.container_id).await?;
                if running.state.is_finished() {
                    Err(Error::sandbox_not_found(id))
                } else {
                    Ok(())
                }
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
        let ports = inspect
            .network_settings
            .and_then(|settings| settings.ports)
            .unwrap_or_default();
        let mut tunnels: Vec<Tunnel> = ports
            .into_iter()
            .filter_map(|(port, bindings)| {
                let port: u16 = port.strip_suffix("/tcp")?.parse().ok()?;
                let binding = bindings?.into_iter().next()?;
                let host = binding.host_ip.filter(|h| !h.is_empty())?;
                let host_port = binding.host_port.filter(|p| !p.is_empty())?;
                Some(Tunnel {
                    port,
                    url: format!("{host}:{host_port}"),
                })
            })
            .collect();
        tunnels.sort_by_key(|tunnel| tunnel.port);
        Ok(tunnels)
    }

    async fn capacity(&self) -> Result<Capacity> {
        let ids = self.container_ids(&BTreeMap::new(), false).await?;
        let infos = self.infos(ids).await?;
        let used_cpu: f64 = infos.iter().filter_map(|info| info.cpu).sum();
        let used_memory_mib: u64 = infos.iter().filter_map(|info| info.memory_mib).sum();
        Ok(Capacity {
            available_sandboxes: None,
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
        let info = sandbox::info_from(&inspect);
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
