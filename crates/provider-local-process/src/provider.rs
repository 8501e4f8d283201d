//! [`LocalProcessProvider`]: the [`SandboxProvider`] implementation.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use nix::sys::signal::Signal;
use sandkit_core::ownership::unix_now;
use sandkit_core::{
    Arch, BillingModel, ByteStream, Capabilities, DirEntry, EgressDefault, Error, ExecProcess,
    ExecRequest, FileErrorKind, FileStat, IdleCost, ImageSource, ListFilter, NetworkPolicy, Os,
    PauseSupport, ProviderFactory, Requirements, Result, SandboxId, SandboxInfo, SandboxProvider,
    SandboxSpec, SandboxState, Snapshot, StdinWriter, TimeoutEnforcement, Transport,
};
use tokio_util::io::ReaderStream;

use crate::NAME;
use crate::config::{Isolation, LocalProcessConfig};
use crate::error::{internal, paused};
use crate::exec::LocalExec;
use crate::files::{self, Confined};
use crate::launch::{self, Layout};
use crate::process::{self, Group};
use crate::state::{Phase, Record, Store};

/// Output is read in chunks of this size: large enough for fast bulk output.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The embedded default provider: sandboxes are private directories and the process trees
/// started in them, isolated with bubblewrap when it is available.
///
/// State lives on disk under the configured state directory, so another process (another
/// provider on the same directory) can find, use and terminate a sandbox by id.
#[derive(Debug, Clone)]
pub struct LocalProcessProvider {
    store: Store,
    bwrap: Option<&'static Path>,
    default_lifetime_secs: u64,
    capabilities: Capabilities,
}

/// Whether sandboxes can be isolated with bubblewrap here: `bwrap` is on `PATH` and can
/// create namespaces. Checked once per process.
pub fn bubblewrap_available() -> bool {
    launch::bubblewrap().is_some()
}

/// The capabilities of a provider using bubblewrap (or not).
fn capabilities(bubblewrap: bool, default_lifetime_secs: u64) -> Capabilities {
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
        os: Os::host(),
        arch: Arch::host(),
        cpu_limit: false,
        memory_limit: false,
        network_block_all: bubblewrap,
        egress_default: EgressDefault::AllowAll,
        idle_cost: IdleCost::Zero,
        billing: BillingModel::None,
        entrypoint: true,
        exec_stdin: true,
        exec_timeout: TimeoutEnforcement::Client,
        exec_separate_stderr: true,
        files: true,
        batch_transfer: true,
        secrets: true,
        tags: true,
        list_by_tags: true,
        lookup_by_name: true,
        ..Capabilities::default()
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
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
        let bwrap = match config.isolation {
            Isolation::None => None,
            Isolation::Auto => launch::bubblewrap(),
            Isolation::Bubblewrap => Some(launch::bubblewrap().ok_or_else(|| {
                Error::InvalidConfig {
                    provider: NAME.into(),
                    reason:
                        "`isolation: bubblewrap` needs `bwrap` on PATH, able to create namespaces"
                            .into(),
                }
            })?),
        };
        let store = Store::open(&config.resolved_state_dir())?;
        Ok(Self {
            store,
            bwrap,
            default_lifetime_secs: config.default_lifetime_secs,
            capabilities: capabilities(bwrap.is_some(), config.default_lifetime_secs),
        })
    }

    /// The state directory (absolute).
    pub fn state_dir(&self) -> &Path {
        self.store.dir()
    }

    fn layout(&self, id: &str) -> Option<Layout> {
        self.store.sandbox_dir(id).map(Layout::new)
    }

    /// The record of a live sandbox. A sandbox past its lifetime, or whose entrypoint has
    /// ended, is removed here (its supervisor may not have run yet) and is not found.
    async fn live(&self, id: &SandboxId) -> Result<(Record, Layout)> {
        let store = self.store.clone();
        let key = id.0.clone();
        let record = blocking(move || store.read(&key)).await?;
        let (Some(record), Some(layout)) = (record, self.layout(id.as_str())) else {
            return Err(Error::sandbox_not_found(id));
        };
        if self.is_over(&record) {
            self.destroy(id.as_str()).await?;
            return Err(Error::sandbox_not_found(id));
        }
        Ok((record, layout))
    }

    fn is_over(&self, record: &Record) -> bool {
        unix_now() >= record.expires_at_unix_secs
            || self.store.entrypoint_exit(&record.id).is_some()
    }

    /// The live sandbox's files.
    async fn confined(&self, id: &SandboxId) -> Result<Confined> {
        let (record, layout) = self.live(id).await?;
        Ok(Confined::new(layout.root, record.workdir))
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
        }
    }

    /// Changes the record of `id` under the lock.
    async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Record) -> Result<()> + Send + 'static,
    ) -> Result<Record> {
        let store = self.store.clone();
        let id = id.to_owned();
        blocking(move || {
            let _lock = store.lock()?;
            let mut record = store
                .read(&id)?
                .ok_or_else(|| Error::sandbox_not_found(&id))?;
            change(&mut record)?;
            store.write(&record)?;
            Ok(record)
        })
        .await
    }

    /// Ends a sandbox: hides its directory, kills every process, removes the directory.
    /// Unknown ids are fine.
    async fn destroy(&self, id: &str) -> Result<()> {
        let store = self.store.clone();
        let key = id.to_owned();
        let detached = blocking(move || {
            let _lock = store.lock()?;
            let record = store.read(&key).ok().flatten();
            Ok(store.detach(&key)?.map(|trash| (trash, record)))
        })
        .await?;
        let Some((trash, record)) = detached else {
            return Ok(());
        };
        let groups = record.map(|record| record.all_groups()).unwrap_or_default();
        process::kill_sandbox(id, &groups).await;
        blocking(move || match std::fs::remove_dir_all(&trash) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(internal(format!("removing {}", trash.display()), e))
            }
            _ => Ok(()),
        })
        .await
    }

    /// Everything after the directory exists: secrets, snapshot, files, supervisor,
    /// entrypoint. Failure leaves cleanup to the caller.
    async fn provision(&self, record: Record, spec: &SandboxSpec) -> Result<Record> {
        let layout = self
            .layout(&record.id)
            .ok_or_else(|| Error::sandbox_not_found(&record.id))?;
        if !spec.secrets.is_empty() {
            self.store.write_secrets(&record.id, &spec.secrets)?;
        }
        if let Some(ImageSource::Snapshot { id }) = &spec.image {
            let archive = self
                .store
                .snapshot_path(id)
                .filter(|path| path.is_file())
                .ok_or_else(|| Error::NotFound {
                    what: format!("snapshot `{id}`"),
                })?;
            let root = layout.root.clone();
            blocking(move || files::restore_snapshot(&archive, &root)).await?;
        }
        let workdir = record.workdir.clone();
        std::fs::create_dir_all(&workdir)
            .map_err(|e| internal(format!("creating {}", workdir.display()), e))?;
        if !spec.files.is_empty() {
            let confined = Confined::new(layout.root.clone(), workdir.clone());
            let initial = spec.files.clone();
            blocking(move || {
                initial
                    .iter()
                    .try_for_each(|file| confined.write(&file.path, &file.contents))
            })
            .await?;
        }
        let entrypoint = if record.entrypoint.is_empty() {
            None
        } else {
            let env = launch::environment(
                &record,
                &layout,
                self.store.read_secrets(&record.id)?,
                &BTreeMap::new(),
            );
            launch::check_program(&record, &layout, &record.entrypoint[0], &workdir, &env)
                .map_err(|error| Error::CreationFailed {
                    message: format!("entrypoint: {error}"),
                })?;
            let line = launch::command_line(
                &record,
                &layout,
                self.bwrap,
                &record.entrypoint,
                &workdir,
                false,
            );
            Some((line, env))
        };
        // Spawned under the lock, and each recorded at once, so a failure (or a
        // concurrent terminate) finds every process to kill.
        let store = &self.store;
        let _lock = store.lock()?;
        let mut current = store
            .read(&record.id)?
            .ok_or_else(|| Error::sandbox_not_found(&record.id))?;
        let supervisor = launch::spawn_supervisor(
            store.dir(),
            &layout,
            &record.id,
            record.expires_at_unix_secs,
        )?;
        current.supervisor = Some(supervisor);
        if let Err(error) = store.write(&current) {
            process::signal_tree(&[supervisor], Signal::SIGKILL);
            return Err(error);
        }
        if let Some((line, env)) = entrypoint {
            let group = launch::spawn_entrypoint(&line, &layout, &workdir, &env)?;
            current.groups.push(group);
            if let Err(error) = store.write(&current) {
                process::signal_tree(&[group], Signal::SIGKILL);
                return Err(error);
            }
        }
        current.phase = Phase::Running;
        store.write(&current)?;
        Ok(current)
    }
}

/// The sandbox's working directory for a spec: the root, or the spec's absolute workdir
/// taken inside the root.
fn workdir_in(root: &Path, workdir: Option<&str>) -> Result<PathBuf> {
    let Some(workdir) = workdir else {
        return Ok(root.to_path_buf());
    };
    let relative = Path::new(workdir);
    if relative.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid_spec("workdir", "must not contain `..`"));
    }
    Ok(root.join(relative.strip_prefix("/").unwrap_or(relative)))
}

fn exec_failed(program: &str, error: &std::io::Error) -> Error {
    Error::ExecFailed {
        program: program.to_owned(),
        reason: error.to_string(),
    }
}

fn output_stream<R>(reader: R) -> ByteStream
where
    R: tokio::io::AsyncRead + Send + 'static,
{
    ReaderStream::with_capacity(reader, READ_CHUNK_BYTES)
        .map(|chunk| chunk.map_err(|e| internal("reading command output", e)))
        .boxed()
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
        if let Some(unmet) = Requirements::from_spec(spec)
            .check(&self.capabilities)
            .first()
        {
            return Err(Error::unsupported(
                NAME,
                format!("{} ({})", unmet.rule, unmet.reason),
            ));
        }
        let network_blocked = match &spec.network {
            Some(NetworkPolicy::BlockAll) => true,
            Some(NetworkPolicy::AllowList { .. }) => {
                // `check` above rejects non-empty allowlists; an empty one allows nothing.
                true
            }
            Some(NetworkPolicy::AllowAll) | None => false,
        };
        let id = format!("lp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let layout = self
            .layout(&id)
            .ok_or_else(|| Error::sandbox_not_found(&id))?;
        let now = unix_now();
        let lifetime_secs = spec.lifetime_secs.unwrap_or(self.default_lifetime_secs);
        let record = Record {
            id: id.clone(),
            name: spec.name.clone(),
            tags: spec.tags.clone(),
            created_at_unix_secs: now,
            expires_at_unix_secs: now.saturating_add(lifetime_secs),
            workdir: workdir_in(&layout.root, spec.workdir.as_deref())?,
            bubblewrap: self.bwrap.is_some(),
            network_blocked,
            env: spec.env.clone(),
            entrypoint: spec.entrypoint.clone(),
            phase: Phase::Provisioning,
            paused: false,
            groups: Vec::new(),
            supervisor: None,
        };

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
                        && store.entrypoint_exit(&other.id).is_none();
                    if other.name.as_ref() == Some(name) && live {
                        return Err(Error::AlreadyExists {
                            what: format!("sandbox named `{name}` ({})", other.id),
                        });
                    }
                }
            }
            let layout = Layout::new(store.sandbox_dir(&first.id).unwrap_or_default());
            for dir in [&layout.dir, &layout.root, &layout.tmp] {
                std::fs::create_dir_all(dir)
                    .map_err(|e| internal(format!("creating {}", dir.display()), e))?;
            }
            store.write(&first)
        })
        .await;
        if let Err(error) = prepared {
            if !matches!(error, Error::AlreadyExists { .. }) {
                let _ = self.destroy(&id).await;
            }
            return Err(error);
        }

        match self.provision(record, spec).await {
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
        let (record, _) = self.live(id).await?;
        Ok(Self::info_of(&record))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        let store = self.store.clone();
        let ids = blocking(move || store.ids()).await?;
        let mut found = Vec::new();
        for id in ids {
            // Sandboxes that vanish or expire while listing are simply not listed.
            if let Ok((record, _)) = self.live(&SandboxId(id)).await {
                let info = Self::info_of(&record);
                if filter.matches(&info) {
                    found.push(info);
                }
            }
        }
        Ok(found)
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        request.validate()?;
        if request.pty {
            return Err(Error::unsupported(NAME, "pseudo-terminals"));
        }
        if request.user.is_some() {
            return Err(Error::unsupported(NAME, "running commands as another user"));
        }
        let (record, layout) = self.live(id).await?;
        if record.phase != Phase::Running {
            return Err(Error::Unavailable {
                message: format!("sandbox `{id}` is still being created"),
            });
        }
        if record.paused {
            return Err(paused(id));
        }
        let confined = Confined::new(layout.root.clone(), record.workdir.clone());
        let cwd = match &request.cwd {
            None => record.workdir.clone(),
            Some(cwd) => {
                let host = confined.resolve(cwd, true)?;
                match std::fs::metadata(&host) {
                    Ok(meta) if meta.is_dir() => host,
                    Ok(_) => return Err(Error::file(cwd, FileErrorKind::NotADirectory)),
                    Err(e) => return Err(crate::error::file(cwd, &e)),
                }
            }
        };
        let secrets = self.store.read_secrets(id.as_str())?;
        let env = launch::environment(&record, &layout, secrets, &request.env);
        let program = &request.argv[0];
        launch::check_program(&record, &layout, program, &cwd, &env)?;
        let line = launch::command_line(&record, &layout, self.bwrap, &request.argv, &cwd, true);
        let mut command = launch::command(&line, &cwd, &env);
        command
            .stdin(if request.stdin {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());

        // Spawn and record under the lock, so a concurrent terminate or pause either sees
        // the new group or refuses the exec first. This runs on the calling (runtime)
        // thread, never a short-lived blocking thread: bubblewrap's --die-with-parent
        // follows the thread that spawned it.
        let (mut child, group) = {
            let _lock = self.store.lock()?;
            let mut current = self
                .store
                .read(id.as_str())?
                .ok_or_else(|| Error::sandbox_not_found(id))?;
            if current.paused {
                return Err(paused(id));
            }
            let child = command.spawn().map_err(|e| exec_failed(program, &e))?;
            let Some(pid) = child.id() else {
                return Err(exec_failed(
                    program,
                    &std::io::Error::other("exited at once"),
                ));
            };
            let group = Group::of_leader(pid as i32);
            current.groups = process::live_groups(&current.groups);
            current.groups.push(group);
            if let Err(error) = self.store.write(&current) {
                process::signal_tree(&[group], Signal::SIGKILL);
                return Err(error);
            }
            (child, group)
        };
        let stdout = child.stdout.take().map(output_stream);
        let stderr = child.stderr.take().map(output_stream);
        let stdin = child
            .stdin
            .take()
            .map(|stdin| Box::pin(stdin) as StdinWriter);
        let control = LocalExec::start(
            child,
            group,
            request.timeout,
            self.store.clone(),
            id.0.clone(),
        );
        let empty = || futures::stream::empty().boxed();
        Ok(ExecProcess::new(
            &request,
            stdout.unwrap_or_else(empty),
            stderr.unwrap_or_else(empty),
            stdin,
            Box::new(control),
        ))
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.read(&path)).await
    }

    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.write(&path, &contents)).await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.stat(&path)).await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.list(&path)).await
    }

    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.make_dir(&path)).await
    }

    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.remove(&path, recursive)).await
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        self.destroy(id.as_str()).await
    }

    async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.unpack_archive(&path, &tar)).await
    }

    async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        let confined = self.confined(id).await?;
        let path = path.to_owned();
        blocking(move || confined.pack_archive(&path)).await
    }

    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        let confined = self.confined(id).await?;
        let snapshot_id = format!("lps-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let archive = self.store.snapshot_path(&snapshot_id).ok_or_else(|| {
            internal("naming a snapshot", std::io::ErrorKind::InvalidInput.into())
        })?;
        blocking(move || files::write_snapshot(confined.root(), &archive)).await?;
        Ok(Snapshot {
            id: snapshot_id,
            source: id.clone(),
        })
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let Some(archive) = self.store.snapshot_path(snapshot_id) else {
            return Ok(());
        };
        match std::fs::remove_file(&archive) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(internal(format!("deleting snapshot {snapshot_id}"), e))
            }
            _ => Ok(()),
        }
    }

    async fn pause(&self, id: &SandboxId) -> Result<()> {
        self.live(id).await?;
        // Stopped under the lock, so no exec starts half-way through.
        self.update(id.as_str(), |record| {
            record.paused = true;
            process::stop_tree(&record.groups);
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn resume(&self, id: &SandboxId) -> Result<()> {
        self.live(id).await?;
        self.update(id.as_str(), |record| {
            record.paused = false;
            process::signal_tree(&record.groups, Signal::SIGCONT);
            Ok(())
        })
        .await?;
        Ok(())
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

impl ProviderFactory for LocalProcessProvider {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str =
        "Local process trees in private directories, isolated with bubblewrap where installed";
    type Config = LocalProcessConfig;

    fn static_capabilities() -> Capabilities {
        let defaults = LocalProcessConfig::default();
        capabilities(bubblewrap_available(), defaults.default_lifetime_secs)
    }

    async fn from_config(config: Self::Config) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::new(config))
            .await
            .map_err(|e| internal("building the provider", std::io::Error::other(e)))?
    }
}
