//! The capability check: what the provider cannot honour is refused before it runs.

use std::sync::Arc;

use bytes::Bytes;

use super::Layer;
use crate::capabilities::{Capabilities, Feature};
use crate::detached::{AttachFrom, CommandInfo};
use crate::error::{Error, Result};
use crate::exec::{ByteStream, ExecProcess, ExecRequest};
use crate::provider::{
    Capacity, DirEntry, FileStat, ListFilter, OutputStream, SandboxId, SandboxInfo,
    SandboxProvider, Snapshot, Tunnel,
};
use crate::requirements::Requirements;
use crate::spec::SandboxSpec;
use crate::usage::ResourceUsage;
use crate::watch::FileEvents;

/// Rejects what the provider cannot honour, before the provider runs: invalid specs and
/// requests, options beyond its [`Capabilities`], and operations it does not offer. It
/// changes nothing it passes on.
///
/// One rule, one error kind, on every provider ([`Requirements::enforce`]): a value over
/// a provider maximum is [`InvalidSpec`](crate::Error::InvalidSpec) naming the spec
/// field; a missing [`Feature`] (or GPU kind, isolation, region) is
/// [`Unsupported`](crate::Error::Unsupported) naming the rule. Providers may trust a spec
/// that passed.
pub struct Checked {
    inner: Arc<dyn SandboxProvider>,
}

/// The [`Layer`] of [`Checked`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Checking;

impl Layer for Checking {
    fn layer(&self, inner: Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider> {
        Arc::new(Checked::new(inner))
    }
}

impl Checked {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SandboxProvider>) -> Self {
        Self { inner }
    }

    fn caps(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn require_all(&self, requirements: &Requirements) -> Result<()> {
        requirements.enforce(self.inner.name(), self.caps())
    }

    fn require(&self, feature: Feature) -> Result<()> {
        self.require_all(&Requirements::new().with(feature))
    }

    fn check_spec(&self, spec: &SandboxSpec) -> Result<()> {
        spec.validate()?;
        self.inner.check_provider_options(&spec.provider_options)?;
        self.require_all(&Requirements::from_spec(spec))
    }

    fn check_exec(&self, request: &ExecRequest) -> Result<()> {
        request.validate()?;
        self.require_all(&Requirements::from_exec(request))
    }
}

crate::layer_impl! {
    Checked => inner forward [name, capabilities, wrapped, check_provider_options, info, terminate] {
        async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
            self.check_spec(spec)?;
            self.inner.create(spec).await
        }
        async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
            if !filter.tags.is_empty() {
                self.require(Feature::ListByTags)?;
            }
            self.inner.list(filter).await
        }
        async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
            self.check_exec(&request)?;
            self.inner.exec(id, request).await
        }
        async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
            self.require(Feature::Files)?;
            self.inner.read_file(id, path).await
        }
        async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
            self.require(Feature::Files)?;
            self.inner.write_file(id, path, contents).await
        }
        async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
            self.require(Feature::Files)?;
            self.inner.stat(id, path).await
        }
        async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
            self.require(Feature::Files)?;
            self.inner.list_dir(id, path).await
        }
        async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
            self.require(Feature::Files)?;
            self.inner.make_dir(id, path).await
        }
        async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
            self.require(Feature::Files)?;
            self.inner.remove(id, path, recursive).await
        }
        async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
            self.require(Feature::Files)?;
            self.inner.read_file_stream(id, path).await
        }
        async fn write_file_stream(
            &self,
            id: &SandboxId,
            path: &str,
            contents: ByteStream,
        ) -> Result<()> {
            self.require(Feature::Files)?;
            self.inner.write_file_stream(id, path, contents).await
        }
        async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
            self.require(Feature::BatchTransfer)?;
            self.inner.download_archive_stream(id, path).await
        }
        async fn upload_archive_stream(
            &self,
            id: &SandboxId,
            path: &str,
            tar: ByteStream,
        ) -> Result<()> {
            self.require(Feature::BatchTransfer)?;
            self.inner.upload_archive_stream(id, path, tar).await
        }
        async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
            self.require(Feature::BatchTransfer)?;
            self.inner.upload_archive(id, path, tar).await
        }
        async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
            self.require(Feature::BatchTransfer)?;
            self.inner.download_archive(id, path).await
        }
        async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
            self.require(Feature::FsSnapshot)?;
            self.inner.snapshot(id).await
        }
        async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
            self.require(Feature::FsSnapshot)?;
            self.inner.delete_snapshot(snapshot_id).await
        }
        async fn watch(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<FileEvents> {
            self.require(Feature::FileWatch)?;
            self.inner.watch(id, path, recursive).await
        }
        async fn start_detached(&self, id: &SandboxId, request: ExecRequest) -> Result<CommandInfo> {
            self.require(Feature::ExecDetached)?;
            request.validate()?;
            if request.stdin || request.pty {
                return Err(Error::invalid_spec(
                    if request.pty { "pty" } else { "stdin" },
                    "a detached command has no standard input or terminal",
                ));
            }
            Requirements::from_exec(&request).enforce(self.inner.name(), self.inner.capabilities())?;
            self.inner.start_detached(id, request).await
        }
        async fn commands(&self, id: &SandboxId) -> Result<Vec<CommandInfo>> {
            self.require(Feature::ExecDetached)?;
            self.inner.commands(id).await
        }
        async fn attach(&self, id: &SandboxId, command: &str, from: AttachFrom) -> Result<ExecProcess> {
            self.require(Feature::ExecDetached)?;
            self.inner.attach(id, command, from).await
        }
        async fn entrypoint_output(&self, id: &SandboxId, stream: OutputStream, offset: u64) -> Result<ByteStream> {
            self.require(Feature::EntrypointOutput)?;
            self.inner.entrypoint_output(id, stream, offset).await
        }
        async fn write_entrypoint_stdin(&self, id: &SandboxId, offset: u64, data: Bytes, eof: bool) -> Result<()> {
            self.require(Feature::EntrypointStdin)?;
            self.inner.write_entrypoint_stdin(id, offset, data, eof).await
        }
        async fn resource_usage(&self, id: &SandboxId) -> Result<ResourceUsage> {
            self.require(Feature::ResourceUsage)?;
            self.inner.resource_usage(id).await
        }
        async fn pause(&self, id: &SandboxId) -> Result<()> {
            self.require(Feature::Pause)?;
            self.inner.pause(id).await
        }
        async fn resume(&self, id: &SandboxId) -> Result<()> {
            self.require(Feature::Pause)?;
            self.inner.resume(id).await
        }
        async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
            self.require(Feature::Tunnels)?;
            self.inner.tunnels(id).await
        }
        async fn capacity(&self) -> Result<Capacity> {
            self.require(Feature::CapacityQuery)?;
            self.inner.capacity().await
        }
        async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
            self.require(Feature::LookupByName)?;
            self.inner.find_by_name(name).await
        }
    }
}
