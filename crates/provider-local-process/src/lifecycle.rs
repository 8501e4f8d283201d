//! Creating, finding and ending sandboxes: the record under the lock, the supervisor and
//! agent, the network, the entrypoint, and removal that kills everything at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::process::Signal;
use sandkit_agent::protocol::{Request, SpawnRequest};
use sandkit_core::ownership::unix_now;
use sandkit_core::{
    Error, ImageSource, NetworkPolicy, Result, SandboxId, SandboxSpec, SandboxState,
};

use crate::error::internal;
use crate::files::{SandboxFs, Trust};
use crate::launch::{self, DEFAULT_WORKDIR, Layout};
use crate::provider::{LocalProcessProvider, blocking};
use crate::state::{ImageRef, Isolated, Network, Phase, Record};

/// A sandbox as [`LocalProcessProvider::find`] finds it.
pub(crate) enum Found {
    Live(Record, Layout),
    /// Its entrypoint has ended with `exit_code`; nothing runs in it any more.
    Ended {
        record: Record,
        layout: Layout,
        exit_code: i32,
    },
}

impl LocalProcessProvider {
    pub(crate) fn layout(&self, id: &str) -> Option<Layout> {
        self.store.sandbox_dir(id).map(Layout::new)
    }

    /// The record of a live sandbox. A sandbox whose entrypoint has ended is not found
    /// here (see [`LocalProcessProvider::find`]).
    pub(crate) async fn live(&self, id: &SandboxId) -> Result<(Record, Layout)> {
        match self.find(id).await? {
            Found::Live(record, layout) => Ok((record, layout)),
            Found::Ended { .. } => Err(Error::sandbox_not_found(id)),
        }
    }

    /// A sandbox, live or ended with its entrypoint. An ended one is kept, with its exit
    /// code and output, until it is terminated or its lifetime runs out. A sandbox past
    /// its lifetime, or whose init is gone without an entrypoint's end, is removed here
    /// and is not found.
    pub(crate) async fn find(&self, id: &SandboxId) -> Result<Found> {
        let store = self.store.clone();
        let key = id.0.clone();
        let record = blocking(move || store.read(&key)).await?;
        let (Some(record), Some(layout)) = (record, self.layout(id.as_str())) else {
            return Err(Error::sandbox_not_found(id));
        };
        if unix_now() >= record.expires_at_unix_secs {
            self.destroy(id.as_str()).await?;
            return Err(Error::sandbox_not_found(id));
        }
        if let Some(exit_code) = self.store.entrypoint_exit(&record.id) {
            return Ok(Found::Ended {
                record,
                layout,
                exit_code,
            });
        }
        let init_gone =
            record.phase == Phase::Running && !record.init.is_some_and(|init| init.is_alive());
        if init_gone {
            self.destroy(id.as_str()).await?;
            return Err(Error::sandbox_not_found(id));
        }
        Ok(Found::Live(record, layout))
    }

    /// The files of a live sandbox, through a handle of its root, for `operation` (the
    /// trait method): a paused sandbox refuses it, as on every provider, although its
    /// files here could be reached.
    pub(crate) async fn files_of(&self, id: &SandboxId, operation: &str) -> Result<SandboxFs> {
        let (record, layout) = self.live(id).await?;
        if record.paused {
            return Err(Error::invalid_state(id, SandboxState::Paused, operation));
        }
        blocking(move || sandbox_fs(&record, &layout)).await
    }

    /// Changes the record of `id` under the lock.
    pub(crate) async fn update(
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

    /// Ends a sandbox: hides its directory, kills its init (under bubblewrap the kernel
    /// then kills every process of its pid namespace), its network helper, and removes the
    /// directory. Costs the same however many other sandboxes exist. Unknown ids are fine.
    pub(crate) async fn destroy(&self, id: &str) -> Result<()> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
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
        if let Some(record) = record {
            if let Some(init) = record.init {
                if !record.bubblewrap() {
                    // Without a pid namespace, the agent ends its own processes (its
                    // orphans included); the host kills whatever it still sees.
                    let agent = Layout::new(trash.clone()).agent();
                    let _ = agent.request(Request::Shutdown).await;
                }
                init.kill_tree().await;
            }
            if let Some(helper) = record.network_helper {
                helper.signal(Signal::TERM);
            }
            if let Some(supervisor) = record.supervisor {
                supervisor.kill_tree().await;
            }
        }
        blocking(move || {
            // An image sandbox's overlay, when one was mounted.
            let _ =
                rustix::mount::unmount(trash.join("rootfs"), rustix::mount::UnmountFlags::DETACH);
            match std::fs::remove_dir_all(&trash) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(internal(format!("removing {}", trash.display()), e))
                }
                _ => Ok(()),
            }
        })
        .await
    }

    /// The record of a new sandbox for `spec`.
    pub(crate) fn new_record(&self, id: &str, spec: &SandboxSpec) -> Result<Record> {
        let layout = self
            .layout(id)
            .ok_or_else(|| Error::sandbox_not_found(id))?;
        let network = match (&spec.network, &self.bwrap, &self.pasta) {
            (_, None, _) => Network::Host,
            (Some(NetworkPolicy::BlockAll | NetworkPolicy::AllowList { .. }), _, _) => {
                Network::Blocked
            }
            (_, Some(_), Some(_)) => Network::Outbound,
            (Some(NetworkPolicy::AllowAll), Some(_), None) => {
                return Err(Error::unsupported(
                    crate::NAME,
                    "outbound network (it needs `pasta`, from Debian's `passt` package)",
                ));
            }
            // Declared: without pasta the default is loopback only, never the host's.
            (None, Some(_), None) => Network::Blocked,
        };
        let workdir = match (&self.bwrap, spec.workdir.as_deref()) {
            (Some(_), Some(workdir)) => normalized(workdir)?,
            (Some(_), None) => PathBuf::from(DEFAULT_WORKDIR),
            (None, workdir) => {
                let inside = normalized(workdir.unwrap_or("/"))?;
                match inside.strip_prefix("/") {
                    Ok(below) if !below.as_os_str().is_empty() => layout.layer.join(below),
                    _ => layout.layer.clone(),
                }
            }
        };
        let now = unix_now();
        let lifetime_secs = spec.lifetime_secs.unwrap_or(self.default_lifetime_secs);
        Ok(Record {
            id: id.to_owned(),
            name: spec.name.clone(),
            tags: spec.tags.clone(),
            created_at_unix_secs: now,
            expires_at_unix_secs: now.saturating_add(lifetime_secs),
            workdir,
            isolation: match &self.bwrap {
                Some(bwrap) => Isolated::Bubblewrap {
                    bwrap: bwrap.clone(),
                    users: self.capabilities.exec_run_as_user,
                },
                None => Isolated::None,
            },
            network,
            image: None,
            env: spec.env.clone(),
            entrypoint: spec.entrypoint.clone(),
            phase: Phase::Provisioning,
            paused: false,
            init: None,
            supervisor: None,
            network_helper: None,
        })
    }

    /// Everything after the directory exists: secrets, snapshot, the running sandbox,
    /// network, files, entrypoint. Failure leaves cleanup to the caller.
    pub(crate) async fn provision(&self, mut record: Record, spec: &SandboxSpec) -> Result<Record> {
        let layout = self
            .layout(&record.id)
            .ok_or_else(|| Error::sandbox_not_found(&record.id))?;
        if !spec.secrets.is_empty() {
            self.store.write_secrets(&record.id, &spec.secrets)?;
        }
        match &spec.image {
            Some(ImageSource::Snapshot { id }) => {
                let archive = self
                    .store
                    .snapshot_path(id)
                    .filter(|path| path.is_file())
                    .ok_or_else(|| Error::NotFound {
                        what: format!("snapshot `{id}`"),
                    })?;
                // A snapshot of an image sandbox is its layer: it goes back onto the
                // same base.
                if let Some(base) = read_snapshot_base(&archive)? {
                    record = self
                        .with_image(record, &base.reference, Some(&base.digest), spec)
                        .await?;
                }
                let layer = layout.layer.clone();
                blocking(move || restore_snapshot(&archive, &layer)).await?;
            }
            Some(ImageSource::Registry { reference }) => {
                record = self.with_image(record, reference, None, spec).await?;
            }
            Some(ImageSource::Dockerfile { .. }) | None => {}
        }
        let (prepared, layout_for_prepare) = (record.clone(), layout.clone());
        blocking(move || launch::prepare(&prepared, &layout_for_prepare)).await?;
        if let Some(image) = record.image.clone() {
            let layout = layout.clone();
            blocking(move || mount_image(&image.rootfs, &layout)).await?;
        }

        // Started and recorded under the lock, so a concurrent terminate finds what to
        // kill.
        let store = self.store.clone();
        let (state_dir, agent_path) = (self.store.dir().to_path_buf(), self.agent.clone());
        let (starting, start_layout) = (record.clone(), layout.clone());
        record = blocking(move || {
            let _lock = store.lock()?;
            let mut current = store
                .read(&starting.id)?
                .ok_or_else(|| Error::sandbox_not_found(&starting.id))?;
            let started = launch::start(&state_dir, &starting, &start_layout, &agent_path)?;
            current.supervisor = Some(started.supervisor);
            current.init = Some(started.init);
            store.write(&current)?;
            Ok(current)
        })
        .await?;
        if record.network == Network::Outbound
            && let (Some(pasta), Some(init)) = (self.pasta.clone(), record.init)
        {
            let network_layout = layout.clone();
            let helper =
                blocking(move || launch::start_network(&pasta, &network_layout, &init)).await?;
            record = self
                .update(&record.id, move |current| {
                    current.network_helper = Some(helper);
                    Ok(())
                })
                .await?;
        }
        if !spec.files.is_empty() {
            let fs = {
                let (record, layout) = (record.clone(), layout.clone());
                blocking(move || sandbox_fs(&record, &layout)).await?
            };
            let initial = spec.files.clone();
            blocking(move || {
                initial
                    .iter()
                    .try_for_each(|file| fs.write(&file.path, &file.contents))
            })
            .await?;
        }
        // Every sandbox has the output files, so a reader of a sandbox without an
        // entrypoint gets its (empty) output as for one with.
        let outputs = sandkit_agent_host::entrypoint::create_outputs(&layout.dir)
            .map_err(|e| internal("creating the entrypoint's output files", e))?;
        if !record.entrypoint.is_empty() {
            self.start_entrypoint(&record, &layout, outputs).await?;
        }
        self.update(&record.id, |current| {
            current.phase = Phase::Running;
            Ok(())
        })
        .await
    }

    /// Pulls (or finds) the image and records it: its environment under the spec's, its
    /// working directory unless the spec names one.
    async fn with_image(
        &self,
        record: Record,
        reference: &str,
        digest: Option<&str>,
        spec: &SandboxSpec,
    ) -> Result<Record> {
        let image = self.images.ensure(reference).await?;
        if let Some(digest) = digest
            && image.digest != digest
        {
            return Err(Error::NotFound {
                what: format!(
                    "image `{reference}` at {digest} (the registry now has {})",
                    image.digest
                ),
            });
        }
        let workdir = match (&spec.workdir, &image.config.working_dir) {
            (None, Some(dir)) if dir.starts_with('/') => Some(normalized(dir)?),
            _ => None,
        };
        let image_env: BTreeMap<String, String> = image.config.env.iter().cloned().collect();
        let reference = reference.to_owned();
        self.update(&record.id, move |current| {
            let mut env = image_env;
            env.extend(std::mem::take(&mut current.env));
            current.env = env;
            if let Some(workdir) = workdir {
                current.workdir = workdir;
            }
            current.image = Some(ImageRef {
                reference,
                digest: image.digest,
                rootfs: image.rootfs,
            });
            Ok(())
        })
        .await
    }

    async fn start_entrypoint(
        &self,
        record: &Record,
        layout: &Layout,
        [stdout, stderr]: [std::os::fd::OwnedFd; 2],
    ) -> Result<()> {
        let env = launch::environment(
            record,
            layout,
            self.store.read_secrets(&record.id)?,
            &BTreeMap::new(),
            None,
        );
        let request = SpawnRequest {
            argv: record.entrypoint.clone(),
            env: env.into_iter().collect(),
            cwd: record.workdir.display().to_string(),
            timeout_ms: None,
            main: true,
            user: None,
            pty: None,
            inherit_env: false,
            detached: false,
            keep_stdin: true,
        };
        // Its stdin is a pipe the agent keeps, for `write_entrypoint_stdin`.
        let stdio = [stdout, stderr];
        layout
            .agent()
            .spawn(request, stdio.into())
            .await
            .map_err(|error| Error::CreationFailed {
                message: format!("entrypoint: {error}"),
            })?;
        Ok(())
    }
}

/// The files of a sandbox: its root as its init sees it (under bubblewrap, through
/// `/proc/PID/root` of a `/proc/PID` handle checked against the recorded start time),
/// or its layer directory without.
pub(crate) fn sandbox_fs(record: &Record, layout: &Layout) -> Result<SandboxFs> {
    let gone = || Error::sandbox_not_found(&record.id);
    let root = if record.bubblewrap() {
        let init = record.init.ok_or_else(gone)?;
        let proc_dir = init.open_proc_dir().map_err(|_| gone())?;
        rustix::fs::openat(
            &proc_dir,
            "root",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| gone())?
    } else {
        rustix::fs::open(
            &layout.layer,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| gone())?
    };
    Ok(SandboxFs::new(
        root,
        layout.seen_root(record),
        record.workdir.clone(),
    ))
}

/// An absolute in-sandbox path, without `.` and `..`.
fn normalized(path: &str) -> Result<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return Err(Error::invalid_spec("workdir", "must be an absolute path"));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Error::invalid_spec("workdir", "must not contain `..`"));
    }
    Ok(path.components().collect())
}

/// Archives a sandbox's writable layer into `archive` (written beside it, then renamed).
pub(crate) fn write_snapshot(layer: &Path, archive: &Path) -> Result<()> {
    let temporary = archive.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let dir = rustix::fs::open(
            layer,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let out = std::fs::File::create(&temporary)?;
        crate::files::pack_dir(
            std::os::fd::AsFd::as_fd(&dir),
            std::io::BufWriter::new(&out),
        )?;
        out.sync_all()?;
        std::fs::rename(&temporary, archive)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        internal(format!("writing snapshot {}", archive.display()), e)
    })
}

/// Unpacks a snapshot into a new sandbox's (empty) layer.
fn restore_snapshot(archive: &Path, layer: &Path) -> Result<()> {
    std::fs::create_dir_all(layer)
        .map_err(|e| internal(format!("creating {}", layer.display()), e))?;
    let root = rustix::fs::open(
        layer,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| internal(format!("opening {}", layer.display()), e.into()))?;
    let fs = SandboxFs::new(root, PathBuf::from("/"), PathBuf::from("/"));
    let file = std::fs::File::open(archive)
        .map_err(|e| internal(format!("opening {}", archive.display()), e))?;
    fs.unpack_archive("/", std::io::BufReader::new(file), Trust::Snapshot)
}

/// Where a snapshot records the image it was taken on, beside its archive.
pub(crate) fn snapshot_base_path(archive: &Path) -> PathBuf {
    archive.with_extension("json")
}

fn read_snapshot_base(archive: &Path) -> Result<Option<ImageRef>> {
    match std::fs::read(snapshot_base_path(archive)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| internal("reading a snapshot's base image", e.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(internal("reading a snapshot's base image", e)),
    }
}

/// The image's root filesystem, read-only, under the sandbox's layer: an overlay where
/// the kernel lets this process mount one (as root), a copy of the image otherwise.
fn mount_image(rootfs: &Path, layout: &Layout) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs.display(),
            layout.layer.display(),
            layout.overlay_work.display()
        );
        return rustix::mount::mount(
            "overlay",
            &layout.rootfs,
            "overlay",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            std::ffi::CString::new(options)
                .map_err(|e| internal("mounting the image's overlay", std::io::Error::other(e)))?
                .as_c_str(),
        )
        .map_err(|e| internal("mounting the image's overlay", e.into()));
    }
    // Copy-up by hand: the image's files, then whatever the layer already holds (a
    // restored snapshot) on top.
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rootfs.display()))
        .arg(&layout.rootfs)
        .status()
        .map_err(|e| internal("copying the image", e))?;
    let layered = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", layout.layer.display()))
        .arg(&layout.rootfs)
        .status()
        .map_err(|e| internal("copying the image", e))?;
    if status.success() && layered.success() {
        Ok(())
    } else {
        Err(internal(
            "copying the image",
            std::io::Error::other("cp failed"),
        ))
    }
}
