//! [`LocalProcessProvider`]: the [`SandboxProvider`] implementation.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use sandkit_agent::protocol::{Request, SpawnRequest};
use sandkit_core::ownership::unix_now;
use sandkit_core::{
    Arch, AttachFrom, BillingModel, ByteStream, Capabilities, CommandInfo, DirEntry, EgressDefault,
    Error, ExecProcess, ExecRequest, FileErrorKind, FileEvents, FileKind, FileStat, IdleCost,
    ListFilter, Os, OutputStream, PauseSupport, ProviderFactory, Requirements, ResourceUsage,
    Result, SandboxId, SandboxInfo, SandboxProvider, SandboxSpec, SandboxState, Snapshot,
    TimeoutEnforcement, Transport,
};
use tokio_util::io::ReaderStream;

use crate::NAME;

use crate::config::{Isolation, LocalProcessConfig};
use crate::error::internal;

use crate::files::Trust;
use crate::launch::{self, Layout};
use crate::lifecycle::{Found, write_snapshot};
use crate::state::{Phase, Record, Store};

/// Streamed files and archives move in chunks of this size, a few at a time.
const STREAM_CHUNK_BYTES: usize = 256 * 1024;

/// The embedded default provider: each sandbox is a private directory and a small agent
/// (its init) that starts its commands, in bubblewrap's namespaces when available.
///
/// State lives on disk under the configured state directory, so another process (another
/// provider on the same directory) can find, use and terminate a sandbox by id.
#[derive(Debug, Clone)]
pub struct LocalProcessProvider {
    pub(crate) store: Store,
    pub(crate) bwrap: Option<PathBuf>,
    pub(crate) pasta: Option<PathBuf>,
    pub(crate) agent: PathBuf,
    pub(crate) images: crate::image::ImageCache,
    /// Lease connections of the sandboxes this provider created with a lease: held open
    /// while this process lives, closed by the kernel when it dies.
    pub(crate) leases: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, std::os::unix::net::UnixStream>>,
    >,
    pub(crate) default_lifetime_secs: u64,
    warn_unisolated: bool,
    pub(crate) capabilities: Capabilities,
}

/// Whether sandboxes can be isolated with bubblewrap here: `bwrap` is on `PATH` and can
/// create namespaces. Checked once per process.
pub fn bubblewrap_available() -> bool {
    launch::bubblewrap(None).is_some()
}

/// The capabilities of a provider using bubblewrap (or not), with `pasta` (or not).
fn capabilities(bubblewrap: bool, pasta: bool, default_lifetime_secs: u64) -> Capabilities {
    // Another user needs a namespace with a range of users, which only root can make.
    let users = bubblewrap && crate::users::available();
    Capabilities {
        transport: Transport::Local,
        isolation: if bubblewrap {
            sandkit_core::Isolation::Namespaces
        } else {
            sandkit_core::Isolation::None
        },
        fs_snapshot: true,
        pause: PauseSupport::Yes,
        pause_keeps_memory: true,
        capacity_query: false,
        max_concurrent: None,
        max_lifetime_secs: None,
        default_lifetime_secs: Some(default_lifetime_secs),
        idle_timeout: false,
        // The agent ends a sandbox once its creator's lease connection has been closed
        // for the lease's seconds.
        client_lease: true,
        os: Os::host(),
        arch: Arch::host(),
        cpu_limit: false,
        memory_limit: false,
        network_block_all: bubblewrap,
        egress_default: if bubblewrap && !pasta {
            EgressDefault::DenyAll
        } else {
            EgressDefault::AllowAll
        },
        idle_cost: IdleCost::Zero,
        billing: BillingModel::None,
        entrypoint: true,
        entrypoint_output: true,
        entrypoint_stdin: true,
        exec_stdin: true,
        // The agent kills a command whose timeout runs out, inside the sandbox.
        exec_timeout: TimeoutEnforcement::Server,
        exec_separate_stderr: true,
        exec_run_as_user: users,
        // The agent signals a command's process group.
        exec_signal: true,
        // The agent opens terminals in the sandbox's own devpts.
        exec_pty: true,
        // The agent measures its descendants in /proc.
        resource_usage: true,
        // The agent watches with inotify, inside the sandbox.
        file_watch: true,
        // The agent keeps detached commands and their latest output.
        exec_detached: true,
        files: true,
        container_paths: bubblewrap,
        read_only_base: bubblewrap,
        // An image becomes the sandbox's root, which only a mount namespace can give.
        image_registry: bubblewrap,
        batch_transfer: true,
        secrets: true,
        tags: true,
        list_by_tags: true,
        lookup_by_name: true,
        ..Capabilities::default()
    }
}

/// Runs blocking filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| internal("running a blocking task", std::io::Error::other(e)))?
}

impl LocalProcessProvider {
    /// Builds a provider, creating the state directory. `isolation: bubblewrap` fails
    /// with [`Error::InvalidConfig`] when bubblewrap is missing or cannot run here.
    pub fn new(config: LocalProcessConfig) -> Result<Self> {
        if config.default_lifetime_secs == 0 {
            return Err(Error::InvalidConfig {
                provider: NAME.into(),
                reason: "`default_lifetime_secs` must be at least 1".into(),
            });
        }
        let bwrap_path = config.bwrap_path.as_deref();
        let bwrap = match config.isolation {
            Isolation::None => None,
            Isolation::Auto => launch::bubblewrap(bwrap_path),
            Isolation::Bubblewrap => {
                Some(
                    launch::bubblewrap(bwrap_path).ok_or_else(|| Error::InvalidConfig {
                        provider: NAME.into(),
                        reason: format!(
                            "`isolation: bubblewrap` needs `{}`, able to create namespaces",
                            bwrap_path.map_or("bwrap".into(), |p| p.display().to_string())
                        ),
                    })?,
                )
            }
        };
        let pasta = bwrap
            .as_ref()
            .and(launch::pasta(config.pasta_path.as_deref()));
        let store = Store::open(&config.resolved_state_dir())?;
        let agent = sandkit_agent_host::install(NAME, &store.dir().join("bin"))?;
        let images = crate::image::ImageCache::new(store.dir().join("images"));
        Ok(Self {
            images,
            leases: Default::default(),
            store,
            capabilities: capabilities(
                bwrap.is_some(),
                pasta.is_some(),
                config.default_lifetime_secs,
            ),
            bwrap,
            pasta,
            agent,
            default_lifetime_secs: config.default_lifetime_secs,
            warn_unisolated: config.warn_unisolated,
        })
    }

    /// The state directory (absolute).
    pub fn state_dir(&self) -> &Path {
        self.store.dir()
    }

    /// [`Self::info_of`], with an ended entrypoint's exit code as the sandbox's result.
    fn info_of_found(found: &Found) -> SandboxInfo {
        match found {
            Found::Live(record, _) => Self::info_of(record),
            Found::Ended {
                record, exit_code, ..
            } => SandboxInfo {
                state: SandboxState::Terminated {
                    exit_code: Some(*exit_code),
                },
                ..Self::info_of(record)
            },
        }
    }

    fn info_of(record: &Record) -> SandboxInfo {
        let state = match (record.phase, record.paused) {
            (Phase::Provisioning, _) => SandboxState::Provisioning,
            (Phase::Running, true) => SandboxState::Paused,
            (Phase::Running, false) => SandboxState::Running,
        };
        SandboxInfo {
            id: SandboxId(record.id.clone()),
            provider: NAME.to_owned(),
            name: record.name.clone(),
            state,
            tags: record.tags.clone(),
            created_at_unix_secs: record.created_at_unix_secs,
            expires_at_unix_secs: Some(record.expires_at_unix_secs),
            workdir: record.workdir.display().to_string(),
            cpu: None,
            memory_mib: None,
            gpu: None,
            region: None,
            notes: Vec::new(),
        }
    }

    /// Says once per process, on standard error, that commands run unisolated.
    fn warn_if_unisolated(&self, record: &Record) {
        static WARNED: OnceLock<()> = OnceLock::new();
        if record.bubblewrap() || !self.warn_unisolated {
            return;
        }
        WARNED.get_or_init(|| {
            let user = std::env::var("USER").unwrap_or_else(|_| "the current user".into());
            tracing::warn!("local-process runs commands without isolation");
            eprintln!(
                "sandkit: warning: local-process runs commands WITHOUT isolation, as {user}; \
                 install bubblewrap (`apt-get install bubblewrap`) to isolate them \
                 (set `warn_unisolated: false` to silence this)"
            );
        });
    }
}

#[async_trait]
impl SandboxProvider for LocalProcessProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        spec.validate_with_ownership_tags()?;
        self.check_provider_options(&spec.provider_options)?;
        // The `Checked` layer's rule, again: called without layers, a sandbox must still
        // not get less isolation (say, the host's network) than its spec asks for.
        Requirements::from_spec(spec).enforce(NAME, &self.capabilities)?;
        let id = format!("lp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let record = self.new_record(&id, spec)?;
        self.warn_if_unisolated(&record);

        // The name check and the directory appear together under the lock.
        let store = self.store.clone();
        let first = record.clone();
        let prepared = blocking(move || {
            let _lock = store.lock()?;
            if let Some(name) = &first.name {
                let now = unix_now();
                for other in store.ids()? {
                    let Ok(Some(other)) = store.read(&other) else {
                        continue;
                    };
                    let live = now < other.expires_at_unix_secs
                        && store.entrypoint_exit(&other.id).is_none()
                        && other.init.is_none_or(|init| init.is_alive());
                    if other.name.as_ref() == Some(name) && live {
                        return Err(Error::AlreadyExists {
                            what: format!("sandbox named `{name}` ({})", other.id),
                        });
                    }
                }
            }
            let dir = store.sandbox_dir(&first.id).unwrap_or_default();
            std::fs::create_dir_all(&dir)
                .map_err(|e| internal(format!("creating {}", dir.display()), e))?;
            store.write(&first)
        })
        .await;
        if let Err(error) = prepared {
            if !matches!(error, Error::AlreadyExists { .. }) {
                let _ = self.destroy(&id).await;
            }
            return Err(error);
        }

        let provisioned = match (self.provision(record, spec).await, spec.lease_secs) {
            (Ok(record), Some(grace_secs)) => {
                self.take_lease(&record, grace_secs).await.map(|()| record)
            }
            (provisioned, _) => provisioned,
        };
        match provisioned {
            Ok(record) => Ok(Self::info_of(&record)),
            Err(error) => {
                if let Err(cleanup) = self.destroy(&id).await {
                    tracing::warn!(%cleanup, %id, "cleaning up a failed sandbox");
                }
                Err(error)
            }
        }
    }

    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
        Ok(Self::info_of_found(&self.find(id).await?))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        let store = self.store.clone();
        let ids = blocking(move || store.ids()).await?;
        let mut found = Vec::new();
        for id in ids {
            // Sandboxes that vanish or expire while listing are simply not listed; ended
            // ones only when the filter asks for finished sandboxes.
            if let Ok(sandbox) = self.find(&SandboxId(id)).await {
                let info = Self::info_of_found(&sandbox);
                if filter.matches(&info) {
                    found.push(info);
                }
            }
        }
        Ok(found)
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        let (layout, spawn) = self.spawn_for(id, &request).await?;
        layout.agent().exec(spawn, &request).await
    }

    async fn start_detached(&self, id: &SandboxId, request: ExecRequest) -> Result<CommandInfo> {
        let (layout, spawn) = self.spawn_for(id, &request).await?;
        layout.agent().start_detached(spawn).await
    }

    async fn commands(&self, id: &SandboxId) -> Result<Vec<CommandInfo>> {
        let (_, layout) = self.live(id).await?;
        layout.agent().commands().await
    }

    async fn attach(&self, id: &SandboxId, command: &str, from: AttachFrom) -> Result<ExecProcess> {
        let (_, layout) = self.live(id).await?;
        layout.agent().attach(command, from).await
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        let fs = self.files_of(id, "read_file").await?;
        let path = path.to_owned();
        blocking(move || fs.read(&path)).await
    }

    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        let fs = self.files_of(id, "write_file").await?;
        let path = path.to_owned();
        blocking(move || fs.write(&path, &contents)).await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        let fs = self.files_of(id, "stat").await?;
        let path = path.to_owned();
        blocking(move || fs.stat(&path)).await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        let fs = self.files_of(id, "list_dir").await?;
        let path = path.to_owned();
        blocking(move || fs.list(&path)).await
    }

    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        let fs = self.files_of(id, "make_dir").await?;
        let path = path.to_owned();
        blocking(move || fs.make_dir(&path)).await
    }

    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        let fs = self.files_of(id, "remove").await?;
        let path = path.to_owned();
        blocking(move || fs.remove(&path, recursive)).await
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        self.destroy(id.as_str()).await
    }

    async fn write_entrypoint_stdin(
        &self,
        id: &SandboxId,
        offset: u64,
        data: Bytes,
        eof: bool,
    ) -> Result<()> {
        match self.find(id).await? {
            Found::Live(_, layout) => layout.agent().write_main_stdin(offset, data, eof).await,
            Found::Ended { exit_code, .. } => Err(Error::invalid_state(
                id,
                SandboxState::Terminated {
                    exit_code: Some(exit_code),
                },
                "write_entrypoint_stdin",
            )),
        }
    }

    async fn entrypoint_output(
        &self,
        id: &SandboxId,
        stream: OutputStream,
        offset: u64,
    ) -> Result<ByteStream> {
        let (record, layout) = match self.find(id).await? {
            Found::Live(record, layout) | Found::Ended { record, layout, .. } => (record, layout),
        };
        let store = self.store.clone();
        let key = record.id.clone();
        let init = record.init;
        let expires_at = record.expires_at_unix_secs;
        // Over once the entrypoint has ended, or the sandbox has (terminated, expired, or
        // its init gone).
        let ended = move || {
            let over = store.entrypoint_exit(&key).is_some()
                || store.sandbox_dir(&key).is_none()
                || unix_now() >= expires_at
                || !init.is_some_and(|init| init.is_alive());
            async move { over }
        };
        sandkit_agent_host::entrypoint::follow_output(NAME, &layout.dir, stream, offset, ended)
    }

    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let fs = self.files_of(id, "read_file_stream").await?;
        let shown = path.to_owned();
        let (file, _) = blocking(move || fs.open_read(&shown)).await?;
        let shown = path.to_owned();
        let reader = tokio::fs::File::from_std(file);
        Ok(ReaderStream::with_capacity(reader, STREAM_CHUNK_BYTES)
            .map(move |chunk| chunk.map_err(|e| crate::error::file(&shown, &e)))
            .boxed())
    }

    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        mut contents: ByteStream,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let fs = self.files_of(id, "write_file_stream").await?;
        let shown = path.to_owned();
        let file = blocking(move || fs.open_write(&shown)).await?;
        let mut out = tokio::fs::File::from_std(file);
        while let Some(chunk) = contents.next().await {
            out.write_all(&chunk?)
                .await
                .map_err(|e| crate::error::file(path, &e))?;
        }
        out.flush().await.map_err(|e| crate::error::file(path, &e))
    }

    async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let fs = self.files_of(id, "download_archive_stream").await?;
        let shown = path.to_owned();
        let source = blocking(move || fs.open_archive(&shown)).await?;
        let (mut writer, stream) = sandkit_core::stream::chunk_channel(4, STREAM_CHUNK_BYTES);
        tokio::task::spawn_blocking(move || {
            if let Err(error) = source.write_to(&mut writer) {
                writer.fail(error);
            }
        });
        Ok(stream)
    }

    async fn upload_archive_stream(
        &self,
        id: &SandboxId,
        path: &str,
        tar: ByteStream,
    ) -> Result<()> {
        let fs = self.files_of(id, "upload_archive_stream").await?;
        let path = path.to_owned();
        let reader = tokio_util::io::StreamReader::new(
            tar.map(|chunk| chunk.map_err(std::io::Error::other)),
        );
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        blocking(move || fs.unpack_archive(&path, bridge, Trust::Upload)).await
    }

    async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
        let fs = self.files_of(id, "upload_archive").await?;
        let path = path.to_owned();
        blocking(move || fs.unpack_archive(&path, &tar[..], Trust::Upload)).await
    }

    async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        let fs = self.files_of(id, "download_archive").await?;
        let path = path.to_owned();
        blocking(move || fs.pack_archive(&path)).await
    }

    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        let (record, layout) = self.live(id).await?;
        let snapshot_id = format!("lps-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let archive = self.store.snapshot_path(&snapshot_id).ok_or_else(|| {
            internal("naming a snapshot", std::io::ErrorKind::InvalidInput.into())
        })?;
        let base = record.image.clone();
        blocking(move || {
            write_snapshot(&layout.layer, &archive)?;
            if let Some(base) = base {
                let json = serde_json::to_vec(&base)
                    .map_err(|e| internal("recording a snapshot's base image", e.into()))?;
                crate::state::write_atomically(
                    &crate::lifecycle::snapshot_base_path(&archive),
                    &json,
                    0o644,
                )?;
            }
            Ok(())
        })
        .await?;
        Ok(Snapshot {
            id: snapshot_id,
            source: id.clone(),
        })
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let Some(archive) = self.store.snapshot_path(snapshot_id) else {
            return Ok(());
        };
        let _ = std::fs::remove_file(crate::lifecycle::snapshot_base_path(&archive));
        match std::fs::remove_file(&archive) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(internal(format!("deleting snapshot {snapshot_id}"), e))
            }
            _ => Ok(()),
        }
    }

    async fn pause(&self, id: &SandboxId) -> Result<()> {
        self.pause_or_resume(id, true).await
    }

    async fn resume(&self, id: &SandboxId) -> Result<()> {
        self.pause_or_resume(id, false).await
    }

    async fn watch(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<FileEvents> {
        self.watch_dir(id, path, recursive).await
    }

    /// Measured by the agent over its descendants (every command, the processes they
    /// started); the peak is sampled every second.
    async fn resource_usage(&self, id: &SandboxId) -> Result<ResourceUsage> {
        let (_, layout) = self.live(id).await?;
        layout.agent().usage().await
    }

    async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
        self.list(&ListFilter::all())
            .await?
            .into_iter()
            .find(|info| info.name.as_deref() == Some(name))
            .ok_or_else(|| Error::NotFound {
                what: format!("sandbox named `{name}`"),
            })
    }
}

impl LocalProcessProvider {
    /// What to ask the agent to start for `request` in sandbox `id`, after the checks
    /// every command gets (a live, running, unpaused sandbox; a cwd that is a
    /// directory; a user only where users are mapped).
    async fn spawn_for(
        &self,
        id: &SandboxId,
        request: &ExecRequest,
    ) -> Result<(Layout, SpawnRequest)> {
        request.validate()?;
        Requirements::from_exec(request).enforce(NAME, &self.capabilities)?;
        let (record, layout) = self.live(id).await?;
        if record.phase != Phase::Running {
            return Err(Error::Unavailable {
                message: format!("sandbox `{id}` is still being created"),
            });
        }
        if record.paused {
            return Err(Error::invalid_state(id, SandboxState::Paused, "exec"));
        }
        if request.user.is_some() && !record.users() {
            // A sandbox made when sandkit did not run as root maps one user only.
            return Err(Error::Unsupported {
                provider: NAME.into(),
                feature: format!("running a command as another user in sandbox `{id}`"),
            });
        }
        self.warn_if_unisolated(&record);
        let cwd = match &request.cwd {
            None => record.workdir.clone(),
            Some(cwd) => {
                let fs = {
                    let (record, layout) = (record.clone(), layout.clone());
                    blocking(move || crate::lifecycle::sandbox_fs(&record, &layout)).await?
                };
                let relative = fs.relative(cwd)?;
                let shown = cwd.clone();
                match blocking(move || fs.kind_following(&shown)).await? {
                    FileKind::Directory => {}
                    _ => return Err(Error::file(cwd, FileErrorKind::NotADirectory)),
                }
                layout.seen_root(&record).join(relative)
            }
        };
        let secrets = self.store.read_secrets(id.as_str())?;
        let env = launch::environment(
            &record,
            &layout,
            secrets,
            &request.env,
            request.user.as_deref(),
        );
        let spawn = sandkit_agent_host::spawn_request(
            request,
            cwd.display().to_string(),
            env.into_iter().collect(),
        );
        Ok((layout, spawn))
    }

    /// Takes the sandbox's lease and keeps its connection for as long as this provider
    /// (and so this process) lives.
    async fn take_lease(&self, record: &Record, grace_secs: u64) -> Result<()> {
        let layout = self
            .layout(&record.id)
            .ok_or_else(|| Error::sandbox_not_found(&record.id))?;
        let lease = layout.agent().lease(grace_secs).await?;
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.id.clone(), lease);
        Ok(())
    }

    async fn pause_or_resume(&self, id: &SandboxId, pause: bool) -> Result<()> {
        let (record, layout) = self.live(id).await?;
        let (request, operation) = match (pause, record.paused) {
            (true, false) => (Request::Pause, "pause"),
            (false, true) => (Request::Resume, "resume"),
            (true, true) => {
                return Err(Error::invalid_state(id, SandboxState::Paused, "pause"));
            }
            (false, false) => {
                return Err(Error::invalid_state(
                    id,
                    Self::info_of(&record).state,
                    "resume",
                ));
            }
        };
        layout
            .agent()
            .command(request)
            .await
            .map_err(|e| internal(format!("{operation} of {id}"), std::io::Error::other(e)))?;
        self.update(id.as_str(), move |record| {
            record.paused = pause;
            Ok(())
        })
        .await?;
        Ok(())
    }
}

impl ProviderFactory for LocalProcessProvider {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str = "Local sandboxes in bubblewrap's namespaces (plain processes without it), with an in-box agent";
    type Config = LocalProcessConfig;

    fn static_capabilities() -> Capabilities {
        let defaults = LocalProcessConfig::default();
        let bwrap = bubblewrap_available();
        capabilities(
            bwrap,
            bwrap && launch::pasta(None).is_some(),
            defaults.default_lifetime_secs,
        )
    }

    async fn from_config(config: Self::Config) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::new(config))
            .await
            .map_err(|e| internal("building the provider", std::io::Error::other(e)))?
    }
}
