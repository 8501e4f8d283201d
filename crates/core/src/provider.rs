//! The provider trait, the data it returns, and the conveniences built on it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capabilities::Capabilities;
use crate::detached::{AttachFrom, CommandInfo};
use crate::error::{Error, Result};
use crate::exec::{ByteStream, ExecOutput, ExecProcess, ExecRequest};
use crate::spec::{GpuRequest, SandboxSpec};
use crate::usage::ResourceUsage;
use crate::watch::FileEvents;

/// A sandbox's id at its provider.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct SandboxId(pub String);

impl SandboxId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for SandboxId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for SandboxId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// Where a sandbox is in its life. Every provider maps its own states onto these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SandboxState {
    /// Accepted, not yet running.
    Provisioning,
    /// Running: commands can be executed.
    Running,
    /// Paused.
    Paused,
    /// Ended; `exit_code` is the main process's when known.
    Terminated {
        /// Exit code of the main process.
        exit_code: Option<i32>,
    },
    /// Could not start or crashed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One of a process's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl std::fmt::Display for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        })
    }
}

impl SandboxState {
    /// Terminated or failed: it will never run again.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Terminated { .. } | Self::Failed { .. })
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provisioning => f.write_str("provisioning"),
            Self::Running => f.write_str("running"),
            Self::Paused => f.write_str("paused"),
            Self::Terminated {
                exit_code: Some(code),
            } => write!(f, "terminated ({code})"),
            Self::Terminated { exit_code: None } => f.write_str("terminated"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// What a provider knows about a sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxInfo {
    /// The id.
    pub id: SandboxId,
    /// The provider's registry name.
    pub provider: String,
    /// The name, when it has one.
    pub name: Option<String>,
    /// The state.
    pub state: SandboxState,
    /// Tags, including sandkit's ownership tags.
    pub tags: BTreeMap<String, String>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at_unix_secs: u64,
    /// When the lifetime ends, seconds since the Unix epoch.
    pub expires_at_unix_secs: Option<u64>,
    /// Absolute working directory inside the sandbox; relative paths resolve against it.
    pub workdir: String,
    /// CPU cores allocated, when limited.
    pub cpu: Option<f64>,
    /// Memory allocated in MiB, when limited.
    pub memory_mib: Option<u64>,
    /// GPUs allocated.
    pub gpu: Option<GpuRequest>,
    /// Region, when known.
    pub region: Option<String>,
    /// How this sandbox runs where it differs from the provider's usual way, in words:
    /// say, commands through a slower path because an in-box agent could not start.
    /// Empty when nothing is out of the ordinary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Which sandboxes [`SandboxProvider::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ListFilter {
    /// Only sandboxes carrying every one of these tags with these values.
    pub tags: BTreeMap<String, String>,
    /// Include finished sandboxes the provider still remembers.
    pub include_finished: bool,
}

impl ListFilter {
    /// Every running sandbox.
    pub fn all() -> Self {
        Self::default()
    }

    /// Adds a tag to match.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Whether `info` passes the filter (for providers that filter client-side).
    pub fn matches(&self, info: &SandboxInfo) -> bool {
        (self.include_finished || !info.state.is_finished())
            && self
                .tags
                .iter()
                .all(|(key, value)| info.tags.get(key) == Some(value))
    }
}

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// Metadata of a path in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileStat {
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Permission bits (e.g. `0o644`).
    pub mode: u32,
    /// Last modification, seconds since the Unix epoch, when known.
    pub modified_unix_secs: Option<u64>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirEntry {
    /// The entry's name (not its path).
    pub name: String,
    /// What it is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// A filesystem snapshot, restorable with [`SandboxSpec::from_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Snapshot {
    /// The snapshot's id at the provider.
    pub id: String,
    /// The sandbox it was taken from.
    pub source: SandboxId,
}

/// A route from outside to a port of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tunnel {
    /// The port inside the sandbox.
    pub port: u16,
    /// Where to connect from outside, e.g. `https://abc.modal.host` or `127.0.0.1:49153`.
    pub url: String,
}

/// Free capacity at a provider.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    /// Sandboxes that can still be started, when known.
    pub available_sandboxes: Option<u32>,
    /// Free cpu cores, when known.
    pub available_cpu: Option<f64>,
    /// Free memory in MiB, when known.
    pub available_memory_mib: Option<u64>,
}

/// A sandbox provider. Object-safe: hold it as `Arc<dyn SandboxProvider>`.
///
/// Every operation but `create`, `list` and `capacity` takes a sandbox id. Paths are
/// sandbox paths: relative ones resolve against [`SandboxInfo::workdir`].
///
/// Shared behaviour, each checked by the conformance suite:
/// - an unknown or finished id is [`Error::NotFound`] for every operation but
///   `terminate`, which returns `Ok`;
/// - an option the provider cannot honour is [`Error::Unsupported`], never ignored;
/// - optional operations default to [`Error::Unsupported`].
#[async_trait]
pub trait SandboxProvider: Send + Sync + 'static {
    /// The registry name, e.g. `local-process`.
    fn name(&self) -> &str;

    /// What this instance can do (configuration may change it).
    fn capabilities(&self) -> &Capabilities;

    /// The provider this one wraps, when it is a layer (see [`crate::layers`]); `None` for
    /// a provider itself. Lets code that adds layers start from the bare provider
    /// ([`crate::layers::bare`]), so a stack is never wrapped twice.
    fn wrapped(&self) -> Option<&Arc<dyn SandboxProvider>> {
        None
    }

    /// Checks [`SandboxSpec::provider_options`] against this provider's options. The
    /// default accepts none: any key is [`Error::Unsupported`].
    fn check_provider_options(&self, options: &BTreeMap<String, serde_json::Value>) -> Result<()> {
        match options.keys().next() {
            Some(key) => Err(Error::unsupported(
                self.name(),
                format!("provider option `{key}`"),
            )),
            None => Ok(()),
        }
    }

    /// Creates a sandbox and returns once commands can run in it. The spec arrives
    /// validated and with sandkit's ownership tags when called through
    /// [`crate::layers::standard`].
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo>;

    /// Current information about a sandbox.
    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo>;

    /// Sandboxes matching the filter (needs `list_by_tags` for tag filters).
    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>>;

    /// Starts a command. A non-zero exit is a normal result; a program that does not
    /// exist is [`Error::ProgramNotFound`], one that exists but cannot start is
    /// [`Error::ExecFailed`]; a paused sandbox is [`Error::InvalidState`]; a timeout kills
    /// the process tree and `wait` returns [`Error::CommandTimeout`].
    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess>;

    /// Reads a whole file (needs `files`).
    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes>;

    /// Creates or replaces a file, creating missing parent directories (needs `files`).
    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()>;

    /// Metadata of a path, not following a final symlink (needs `files`).
    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat>;

    /// Entries of a directory, sorted by name (needs `files`).
    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>>;

    /// Creates a directory and its missing parents; an existing directory is fine
    /// (needs `files`).
    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()>;

    /// Removes a file, or a directory (with its contents when `recursive`) (needs `files`).
    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()>;

    /// Ends the sandbox and frees everything it holds. Idempotent: an unknown or finished
    /// id is `Ok`.
    async fn terminate(&self, id: &SandboxId) -> Result<()>;

    /// Reads a file as a stream of chunks, so a large (or sparse) file is never held
    /// whole (needs `files`). Errors about the path come before the first chunk. The
    /// default reads the file whole with [`SandboxProvider::read_file`]; providers that
    /// can stream override it.
    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let contents = self.read_file(id, path).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(contents) })))
    }

    /// Creates or replaces a file from a stream of chunks (needs `files`). The default
    /// collects the stream and calls [`SandboxProvider::write_file`].
    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        contents: ByteStream,
    ) -> Result<()> {
        let contents = collect(contents).await?;
        self.write_file(id, path, contents).await
    }

    /// A tar archive of `path` as a stream (needs `batch_transfer`). The default builds
    /// it whole with [`SandboxProvider::download_archive`].
    async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        let tar = self.download_archive(id, path).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(tar) })))
    }

    /// Writes a tar archive, given as a stream, under directory `path` (needs
    /// `batch_transfer`). The default collects it and calls
    /// [`SandboxProvider::upload_archive`].
    async fn upload_archive_stream(
        &self,
        id: &SandboxId,
        path: &str,
        tar: ByteStream,
    ) -> Result<()> {
        let tar = collect(tar).await?;
        self.upload_archive(id, path, tar).await
    }

    /// Writes a tar archive's entries under directory `path` (needs `batch_transfer`).
    async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
        let _ = (id, path, tar);
        Err(Error::unsupported(self.name(), "batch upload"))
    }

    /// A tar archive of `path` and everything under it (needs `batch_transfer`).
    async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        let _ = (id, path);
        Err(Error::unsupported(self.name(), "batch download"))
    }

    /// Snapshots the filesystem (needs `fs_snapshot`).
    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        let _ = id;
        Err(Error::unsupported(self.name(), "filesystem snapshots"))
    }

    /// Deletes a snapshot; an unknown id is `Ok` (needs `fs_snapshot`).
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let _ = snapshot_id;
        Err(Error::unsupported(self.name(), "filesystem snapshots"))
    }

    /// Changes under the directory `path` (a sandbox path, as for the other file
    /// operations), and under its subdirectories when `recursive`, as a stream that
    /// starts once the watch is in place (needs `file_watch`). A path that is not a
    /// directory is [`Error::FileOperation`].
    async fn watch(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<FileEvents> {
        let _ = (id, path, recursive);
        Err(Error::unsupported(self.name(), "watching files"))
    }

    /// Starts a command detached (needs `exec_detached`): it runs on without a client,
    /// and its latest output is kept for [`SandboxProvider::attach`]. The request may
    /// not ask for stdin or a terminal ([`Error::InvalidSpec`]).
    async fn start_detached(&self, id: &SandboxId, request: ExecRequest) -> Result<CommandInfo> {
        let _ = (id, request);
        Err(Error::unsupported(self.name(), "detached commands"))
    }

    /// The sandbox's detached commands, running or ended, oldest first (needs
    /// `exec_detached`).
    async fn commands(&self, id: &SandboxId) -> Result<Vec<CommandInfo>> {
        let _ = id;
        Err(Error::unsupported(self.name(), "detached commands"))
    }

    /// Attaches to detached command `command` (needs `exec_detached`): its output from
    /// `from` on, live until it ends, and its end; `kill` and `signal` reach it. Dropping
    /// the process detaches again. An unknown command is [`Error::NotFound`].
    async fn attach(&self, id: &SandboxId, command: &str, from: AttachFrom) -> Result<ExecProcess> {
        let _ = (id, command, from);
        Err(Error::unsupported(self.name(), "detached commands"))
    }

    /// The entrypoint's output on `stream` from byte `offset` on, live until the
    /// entrypoint (the sandbox's main process) ends and everything it wrote was read
    /// (needs `entrypoint_output`). Reading again from the offset reached resumes a cut
    /// stream. A sandbox made without an entrypoint gives whatever its default main
    /// process writes, usually nothing, until the sandbox ends.
    async fn entrypoint_output(
        &self,
        id: &SandboxId,
        stream: OutputStream,
        offset: u64,
    ) -> Result<ByteStream> {
        let _ = (id, stream, offset);
        Err(Error::unsupported(
            self.name(),
            "reading an entrypoint's output",
        ))
    }

    /// Writes `data` to the entrypoint's stdin at byte `offset` of it, closing the stdin
    /// after when `eof` (needs `entrypoint_stdin`). Bytes before what was written
    /// already are skipped, so a retried write is not applied twice; an offset past it
    /// is [`Error::InvalidSpec`], as is a write to a closed stdin.
    async fn write_entrypoint_stdin(
        &self,
        id: &SandboxId,
        offset: u64,
        data: Bytes,
        eof: bool,
    ) -> Result<()> {
        let _ = (id, offset, data, eof);
        Err(Error::unsupported(
            self.name(),
            "writing to an entrypoint's stdin",
        ))
    }

    /// What the sandbox's processes use now: cpu seconds, resident and peak memory
    /// (needs `resource_usage`).
    async fn resource_usage(&self, id: &SandboxId) -> Result<ResourceUsage> {
        let _ = id;
        Err(Error::unsupported(self.name(), "resource usage"))
    }

    /// Pauses every process of the sandbox (needs `pause`). Pausing a paused sandbox is
    /// [`Error::InvalidState`].
    async fn pause(&self, id: &SandboxId) -> Result<()> {
        let _ = id;
        Err(Error::unsupported(self.name(), "pause"))
    }

    /// Resumes a paused sandbox (needs `pause`). Resuming a running sandbox is
    /// [`Error::InvalidState`].
    async fn resume(&self, id: &SandboxId) -> Result<()> {
        let _ = id;
        Err(Error::unsupported(self.name(), "resume"))
    }

    /// Routes to the sandbox's exposed ports (needs `tunnels`).
    async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
        let _ = id;
        Err(Error::unsupported(self.name(), "tunnels"))
    }

    /// Free capacity (needs `capacity_query`).
    async fn capacity(&self) -> Result<Capacity> {
        Err(Error::unsupported(self.name(), "capacity queries"))
    }

    /// The running sandbox with this name (needs `lookup_by_name`).
    async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
        let _ = name;
        Err(Error::unsupported(self.name(), "lookup by name"))
    }
}

/// Conveniences for every provider, including `dyn SandboxProvider`.
#[async_trait]
pub trait SandboxProviderExt: SandboxProvider {
    /// Runs `request` to completion and collects its output.
    async fn run(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecOutput> {
        self.exec(id, request).await?.output().await
    }

    /// Runs `request` with `input` on stdin and collects its output.
    async fn run_with_stdin(
        &self,
        id: &SandboxId,
        request: ExecRequest,
        input: Bytes,
    ) -> Result<ExecOutput> {
        self.exec(id, request.stdin())
            .await?
            .output_with_stdin(input)
            .await
    }

    /// Reads a file as UTF-8 text.
    async fn read_to_string(&self, id: &SandboxId, path: &str) -> Result<String> {
        let bytes = self.read_file(id, path).await?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::file(
                path,
                crate::error::FileErrorKind::Other("not valid UTF-8".into()),
            )
        })
    }

    /// Polls `info` until the sandbox runs, or fails after `timeout`.
    async fn wait_ready(&self, id: &SandboxId, timeout: Duration) -> Result<SandboxInfo> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info = self.info(id).await?;
            match &info.state {
                crate::SandboxState::Running => return Ok(info),
                crate::SandboxState::Failed { reason } => {
                    return Err(Error::CreationFailed {
                        message: reason.clone(),
                    });
                }
                crate::SandboxState::Terminated { .. } => return Err(Error::sandbox_not_found(id)),
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        operation: format!("waiting for sandbox {id} to run"),
                        timeout,
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl<P: SandboxProvider + ?Sized> SandboxProviderExt for P {}

/// A handle on one sandbox: its provider and id, for method-call style.
#[derive(Clone)]
pub struct Sandbox {
    provider: Arc<dyn SandboxProvider>,
    info: SandboxInfo,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("provider", &self.provider.name())
            .field("id", &self.info.id)
            .finish()
    }
}

impl Sandbox {
    /// Creates a sandbox.
    pub async fn create(provider: Arc<dyn SandboxProvider>, spec: &SandboxSpec) -> Result<Self> {
        let info = provider.create(spec).await?;
        Ok(Self { provider, info })
    }

    /// Attaches to an existing sandbox by id.
    pub async fn connect(provider: Arc<dyn SandboxProvider>, id: &SandboxId) -> Result<Self> {
        let info = provider.info(id).await?;
        Ok(Self { provider, info })
    }

    /// The id.
    pub fn id(&self) -> &SandboxId {
        &self.info.id
    }

    /// Information as of creation or the last [`Sandbox::refresh`].
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn SandboxProvider> {
        &self.provider
    }

    /// Fetches current information.
    pub async fn refresh(&mut self) -> Result<&SandboxInfo> {
        self.info = self.provider.info(&self.info.id).await?;
        Ok(&self.info)
    }

    /// Starts a command.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecProcess> {
        self.provider.exec(&self.info.id, request).await
    }

    /// Runs a command to completion.
    pub async fn run(&self, request: ExecRequest) -> Result<ExecOutput> {
        self.provider.run(&self.info.id, request).await
    }

    /// Reads a file.
    pub async fn read_file(&self, path: &str) -> Result<Bytes> {
        self.provider.read_file(&self.info.id, path).await
    }

    /// Writes a file.
    pub async fn write_file(&self, path: &str, contents: impl Into<Bytes>) -> Result<()> {
        self.provider
            .write_file(&self.info.id, path, contents.into())
            .await
    }

    /// Snapshots the filesystem.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        self.provider.snapshot(&self.info.id).await
    }

    /// Terminates the sandbox.
    pub async fn terminate(self) -> Result<()> {
        self.provider.terminate(&self.info.id).await
    }
}

/// Collects a stream of chunks into one buffer.
pub async fn collect(mut stream: ByteStream) -> Result<Bytes> {
    use futures::StreamExt;
    let mut buffer = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk?);
    }
    Ok(buffer.freeze())
}
