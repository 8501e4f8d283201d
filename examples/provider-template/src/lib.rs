//! A template for third-party sandkit providers: `template` runs commands as host
//! processes in a private temporary directory.
//!
//! It is deliberately small and declares only what it really does: exec with separate
//! streams, stdin, client-side timeouts that kill the process tree, tags and listing. It
//! offers no file API (it does not confine symlinks, so it must not claim `files`), no
//! isolation, no snapshots and no pause: the conformance suite reports those cases as
//! skipped with the reason and checks that each answers `Error::Unsupported`.
//!
//! State lives in this process. Sandboxes end at their lifetime and, at the latest, when
//! the provider is dropped, so none outlives its creator. A real provider keeps state
//! where another process can find it and enforces lifetimes on its own side.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sandkit_core::ownership::unix_now;
use sandkit_core::{
    Arch, Capabilities, DirEntry, Error, ExecControl, ExecProcess, ExecRequest, ExitStatus,
    FileStat, ListFilter, Os, ProviderFactory, Result, SandboxId, SandboxInfo, SandboxProvider,
    SandboxSpec, SandboxState, TimeoutEnforcement,
};
use tokio_util::io::ReaderStream;

/// Configuration. `{}` gives a working default.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// Lifetime for sandboxes whose spec sets none, in seconds (default 600).
    pub default_lifetime_secs: Option<u64>,
}

struct Entry {
    info: SandboxInfo,
    env: BTreeMap<String, String>,
    /// Held for its `Drop`, which removes the directory.
    _dir: tempfile::TempDir,
    /// Process groups of the commands started in the sandbox.
    groups: Arc<Mutex<Vec<i32>>>,
}

impl Entry {
    fn kill_all(&self) {
        for group in self.groups.lock().expect("groups lock").drain(..) {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
}

/// The template provider.
pub struct TemplateProvider {
    capabilities: Capabilities,
    sandboxes: Arc<Mutex<HashMap<SandboxId, Entry>>>,
}

fn capabilities(default_lifetime_secs: u64) -> Capabilities {
    Capabilities {
        default_lifetime_secs: Some(default_lifetime_secs),
        entrypoint: false,
        exec_stdin: true,
        // Commands run in their own process group, which `signal` reaches.
        exec_signal: true,
        exec_separate_stderr: true,
        exec_timeout: TimeoutEnforcement::Client,
        tags: true,
        list_by_tags: true,
        os: Os::host(),
        arch: Arch::host(),
        ..Capabilities::default()
    }
}

impl TemplateProvider {
    fn entry<T>(&self, id: &SandboxId, f: impl FnOnce(&Entry) -> T) -> Result<T> {
        let sandboxes = self.sandboxes.lock().expect("sandboxes lock");
        sandboxes
            .get(id)
            .map(f)
            .ok_or_else(|| Error::sandbox_not_found(id))
    }

    fn files_unsupported<T>(&self) -> Result<T> {
        Err(Error::unsupported(Self::NAME, "file operations"))
    }
}

impl Drop for TemplateProvider {
    fn drop(&mut self) {
        if let Ok(mut sandboxes) = self.sandboxes.lock() {
            for (_, entry) in sandboxes.drain() {
                entry.kill_all();
            }
        }
    }
}

impl ProviderFactory for TemplateProvider {
    const NAME: &'static str = "template";
    const SUMMARY: &'static str = "template: host processes in a temporary directory";
    type Config = TemplateConfig;

    fn static_capabilities() -> Capabilities {
        capabilities(600)
    }

    async fn from_config(config: TemplateConfig) -> Result<Self> {
        Ok(Self {
            capabilities: capabilities(config.default_lifetime_secs.unwrap_or(600)),
            sandboxes: Arc::default(),
        })
    }
}

sandkit_core::register_provider!(TemplateProvider);

#[async_trait]
impl SandboxProvider for TemplateProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        spec.validate_with_ownership_tags()?;
        let dir = tempfile::tempdir().map_err(|error| Error::CreationFailed {
            message: format!("cannot create the sandbox directory: {error}"),
        })?;
        // Host processes share the host's filesystem, so a requested workdir is placed
        // under the sandbox's directory rather than at the host path.
        let workdir = match &spec.workdir {
            Some(path) => dir.path().join(path.trim_start_matches('/')),
            None => dir.path().to_owned(),
        };
        std::fs::create_dir_all(&workdir).map_err(|error| Error::CreationFailed {
            message: format!("cannot create the workdir: {error}"),
        })?;
        let id = SandboxId(format!(
            "tp-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        let now = unix_now();
        let info = SandboxInfo {
            id: id.clone(),
            provider: Self::NAME.to_owned(),
            name: spec.name.clone(),
            state: SandboxState::Running,
            tags: spec.tags.clone(),
            created_at_unix_secs: now,
            expires_at_unix_secs: spec.lifetime_secs.map(|secs| now + secs),
            workdir: workdir.display().to_string(),
            cpu: None,
            memory_mib: None,
            gpu: None,
            region: None,
            notes: Vec::new(),
        };
        let mut env = spec.env.clone();
        env.extend(
            spec.secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned())),
        );
        let entry = Entry {
            info: info.clone(),
            env,
            _dir: dir,
            groups: Arc::default(),
        };
        self.sandboxes
            .lock()
            .expect("sandboxes lock")
            .insert(id.clone(), entry);
        if let Some(lifetime) = spec.lifetime_secs {
            // The lifetime ends the sandbox even if nobody terminates it.
            let sandboxes = Arc::downgrade(&self.sandboxes);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(lifetime)).await;
                if let Some(sandboxes) = sandboxes.upgrade()
                    && let Some(entry) = sandboxes.lock().expect("sandboxes lock").remove(&id)
                {
                    entry.kill_all();
                }
            });
        }
        Ok(info)
    }

    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
        self.entry(id, |entry| entry.info.clone())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        let sandboxes = self.sandboxes.lock().expect("sandboxes lock");
        let mut all: Vec<SandboxInfo> = sandboxes
            .values()
            .map(|entry| entry.info.clone())
            .filter(|info| filter.matches(info))
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        let (dir, env, groups) = self.entry(id, |e| {
            (
                PathBuf::from(&e.info.workdir),
                e.env.clone(),
                e.groups.clone(),
            )
        })?;
        let cwd = match &request.cwd {
            Some(cwd) => dir.join(cwd),
            None => dir.clone(),
        };
        let mut command = tokio::process::Command::new(&request.argv[0]);
        command
            .args(&request.argv[1..])
            .current_dir(&cwd)
            .env("HOME", &dir)
            .envs(&env)
            .envs(&request.env)
            .process_group(0)
            .stdin(if request.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A program that does not exist has its own error (the CLI's exit code 127); a
        // missing working directory fails the spawn with the same errno, so check it first.
        let mut child = command.spawn().map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound if cwd.is_dir() => Error::ProgramNotFound {
                program: request.argv[0].clone(),
            },
            _ => Error::ExecFailed {
                program: request.argv[0].clone(),
                reason: error.to_string(),
            },
        })?;
        let group = child.id().map(|pid| pid as i32);
        if let Some(group) = group {
            groups.lock().expect("groups lock").push(group);
        }
        let stdout = ReaderStream::new(child.stdout.take().expect("stdout is piped"));
        let stderr = ReaderStream::new(child.stderr.take().expect("stderr is piped"));
        let stdin = child
            .stdin
            .take()
            .map(|stdin| Box::pin(stdin) as sandkit_core::StdinWriter);
        // The timeout runs from the start, whether or not anyone waits.
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let timer = match (request.timeout, group) {
            (Some(timeout), Some(group)) => {
                let timed_out = timed_out.clone();
                Some(tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
                }))
            }
            _ => None,
        };
        let control = Control {
            child,
            group,
            timeout: request.timeout,
            timed_out,
            timer,
            groups,
        };
        Ok(ExecProcess::new(
            &request,
            Box::pin(stdout.map(|chunk| chunk.map_err(|e| Error::provider(Self::NAME, e)))),
            Box::pin(stderr.map(|chunk| chunk.map_err(|e| Error::provider(Self::NAME, e)))),
            stdin,
            Box::new(control),
        ))
    }

    async fn read_file(&self, _: &SandboxId, _: &str) -> Result<Bytes> {
        self.files_unsupported()
    }
    async fn write_file(&self, _: &SandboxId, _: &str, _: Bytes) -> Result<()> {
        self.files_unsupported()
    }
    async fn stat(&self, _: &SandboxId, _: &str) -> Result<FileStat> {
        self.files_unsupported()
    }
    async fn list_dir(&self, _: &SandboxId, _: &str) -> Result<Vec<DirEntry>> {
        self.files_unsupported()
    }
    async fn make_dir(&self, _: &SandboxId, _: &str) -> Result<()> {
        self.files_unsupported()
    }
    async fn remove(&self, _: &SandboxId, _: &str, _: bool) -> Result<()> {
        self.files_unsupported()
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        let entry = self.sandboxes.lock().expect("sandboxes lock").remove(id);
        if let Some(entry) = entry {
            entry.kill_all();
        }
        Ok(())
    }
}

struct Control {
    child: tokio::process::Child,
    group: Option<i32>,
    timeout: Option<Duration>,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
    /// Stopped once the command ends, so it never signals a recycled process group.
    timer: Option<tokio::task::JoinHandle<()>>,
    groups: Arc<Mutex<Vec<i32>>>,
}

impl Control {
    fn kill_group(&self) {
        if let Some(group) = self.group {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl ExecControl for Control {
    async fn wait(&mut self) -> Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::provider(TemplateProvider::NAME, e))?;
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        if self.timed_out.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::CommandTimeout {
                timeout: self.timeout.unwrap_or_default(),
                stdout: Bytes::new(),
                stderr: Bytes::new(),
            });
        }
        // Children the command left behind in its group end with it.
        self.kill_group();
        if let Some(group) = self.group {
            self.groups
                .lock()
                .expect("groups lock")
                .retain(|g| *g != group);
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::code(code),
            (None, Some(signal)) => ExitStatus::signal(signal),
            (None, None) => ExitStatus::code(-1),
        })
    }

    async fn kill(&mut self) -> Result<()> {
        self.kill_group();
        Ok(())
    }

    async fn signal(&mut self, signal: i32) -> Result<()> {
        let signal = Signal::try_from(signal)
            .map_err(|_| Error::invalid_spec("signal", format!("no signal {signal} here")))?;
        if let Some(group) = self.group {
            // ESRCH: the group is gone, so the command has ended.
            let _ = killpg(Pid::from_raw(group), signal);
        }
        Ok(())
    }

    async fn resize(&mut self, _size: sandkit_core::PtySize) -> Result<()> {
        Err(Error::unsupported(
            TemplateProvider::NAME,
            "pseudo-terminals",
        ))
    }
}
