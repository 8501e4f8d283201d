//! Tracing spans for every call, and lifecycle events with usage and estimated cost.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast;
use tracing::Instrument;

use super::Layer;
use crate::detached::{AttachFrom, CommandInfo};
use crate::error::Result;
use crate::exec::{ByteStream, ExecProcess, ExecRequest};
use crate::ownership::unix_now;
use crate::provider::{
    Capacity, DirEntry, FileStat, ListFilter, OutputStream, SandboxId, SandboxInfo,
    SandboxProvider, Snapshot, Tunnel,
};
use crate::spec::SandboxSpec;
use crate::usage::{LifecycleEvent, LifecycleKind, ResourceUsage, Usage};
use crate::watch::FileEvents;

/// Puts every call in a tracing span (provider, operation, sandbox id), logs failures, and
/// sends lifecycle events with usage and estimated cost.
pub struct Traced {
    inner: Arc<dyn SandboxProvider>,
    events: Option<broadcast::Sender<LifecycleEvent>>,
}

impl Traced {
    /// Wraps `inner`; events go to `events` when given.
    pub fn new(
        inner: Arc<dyn SandboxProvider>,
        events: Option<broadcast::Sender<LifecycleEvent>>,
    ) -> Self {
        Self { inner, events }
    }

    async fn traced<T>(
        &self,
        operation: &'static str,
        id: Option<&SandboxId>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::info_span!(
            "sandkit",
            provider = self.inner.name(),
            operation,
            sandbox = id.map(|id| id.as_str()).unwrap_or_default()
        );
        let result = call.instrument(span.clone()).await;
        if let Err(error) = &result {
            span.in_scope(|| tracing::debug!(error = %error, kind = error.kind(), "failed"));
        }
        result
    }

    /// What the sandbox's processes used so far, when the provider measures it and
    /// someone listens for events.
    async fn measure(&self, id: &SandboxId) -> Option<ResourceUsage> {
        if self.events.is_none() || !self.inner.capabilities().resource_usage {
            return None;
        }
        self.inner.resource_usage(id).await.ok()
    }

    fn emit(&self, kind: LifecycleKind, info: &SandboxInfo, measured: Option<ResourceUsage>) {
        let now = unix_now();
        let usage = Usage::of(info, now);
        let estimated_cost = self
            .inner
            .capabilities()
            .price_sheet
            .as_ref()
            .map(|sheet| sheet.estimate(&usage, info));
        tracing::info!(
            target: "sandkit::lifecycle",
            provider = self.inner.name(),
            sandbox = info.id.as_str(),
            event = ?kind,
            wall_secs = usage.wall_secs,
            estimated_cost,
            "sandbox lifecycle"
        );
        if let Some(events) = &self.events {
            // No subscriber is not an error.
            let _ = events.send(LifecycleEvent {
                kind,
                provider: self.inner.name().to_owned(),
                sandbox: info.id.clone(),
                at_unix_secs: now,
                usage,
                estimated_cost,
                measured,
            });
        }
    }

    async fn emit_for(&self, kind: LifecycleKind, id: &SandboxId) {
        if let Ok(info) = self.inner.info(id).await {
            let measured = self.measure(id).await;
            self.emit(kind, &info, measured);
        }
    }
}

/// The [`Layer`] of [`Traced`]: where lifecycle events go, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Tracing {
    /// The channel for lifecycle events.
    pub events: Option<broadcast::Sender<LifecycleEvent>>,
}

impl Layer for Tracing {
    fn layer(&self, inner: Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider> {
        Arc::new(Traced::new(inner, self.events.clone()))
    }
}

crate::layer_impl! {
    Traced => inner forward [name, capabilities, wrapped, check_provider_options] {
        async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
            let info = self.traced("create", None, self.inner.create(spec)).await?;
            self.emit(LifecycleKind::Created, &info, None);
            Ok(info)
        }
        async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
            self.traced("info", Some(id), self.inner.info(id)).await
        }
        async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
            self.traced("list", None, self.inner.list(filter)).await
        }
        async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
            self.traced("exec", Some(id), self.inner.exec(id, request))
                .await
        }
        async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
            self.traced("read_file", Some(id), self.inner.read_file(id, path))
                .await
        }
        async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
            self.traced(
                "write_file",
                Some(id),
                self.inner.write_file(id, path, contents),
            )
            .await
        }
        async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
            self.traced("stat", Some(id), self.inner.stat(id, path))
                .await
        }
        async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
            self.traced("list_dir", Some(id), self.inner.list_dir(id, path))
                .await
        }
        async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
            self.traced("make_dir", Some(id), self.inner.make_dir(id, path))
                .await
        }
        async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
            self.traced("remove", Some(id), self.inner.remove(id, path, recursive))
                .await
        }
        async fn terminate(&self, id: &SandboxId) -> Result<()> {
            let before = if self.events.is_some() {
                self.inner.info(id).await.ok()
            } else {
                None
            };
            // Measured before the end, while there are processes to ask.
            let measured = match &before {
                Some(info) if !info.state.is_finished() => self.measure(id).await,
                _ => None,
            };
            self.traced("terminate", Some(id), self.inner.terminate(id))
                .await?;
            if let Some(info) = before.filter(|info| !info.state.is_finished()) {
                self.emit(LifecycleKind::Terminated, &info, measured);
            }
            Ok(())
        }
        async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
            self.traced(
                "read_file_stream",
                Some(id),
                self.inner.read_file_stream(id, path),
            )
            .await
        }
        async fn write_file_stream(
            &self,
            id: &SandboxId,
            path: &str,
            contents: ByteStream,
        ) -> Result<()> {
            self.traced(
                "write_file_stream",
                Some(id),
                self.inner.write_file_stream(id, path, contents),
            )
            .await
        }
        async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
            self.traced(
                "download_archive_stream",
                Some(id),
                self.inner.download_archive_stream(id, path),
            )
            .await
        }
        async fn upload_archive_stream(
            &self,
            id: &SandboxId,
            path: &str,
            tar: ByteStream,
        ) -> Result<()> {
            self.traced(
                "upload_archive_stream",
                Some(id),
                self.inner.upload_archive_stream(id, path, tar),
            )
            .await
        }
        async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
            self.traced(
                "upload_archive",
                Some(id),
                self.inner.upload_archive(id, path, tar),
            )
            .await
        }
        async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
            self.traced(
                "download_archive",
                Some(id),
                self.inner.download_archive(id, path),
            )
            .await
        }
        async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
            self.traced("snapshot", Some(id), self.inner.snapshot(id))
                .await
        }
        async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
            self.traced(
                "delete_snapshot",
                None,
                self.inner.delete_snapshot(snapshot_id),
            )
            .await
        }
        async fn watch(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<FileEvents> {
            self.traced("watch", Some(id), self.inner.watch(id, path, recursive))
                .await
        }
        async fn resource_usage(&self, id: &SandboxId) -> Result<ResourceUsage> {
            self.traced("resource_usage", Some(id), self.inner.resource_usage(id))
                .await
        }
        async fn write_entrypoint_stdin(&self, id: &SandboxId, offset: u64, data: Bytes, eof: bool) -> Result<()> {
            self.traced(
                "write_entrypoint_stdin",
                Some(id),
                self.inner.write_entrypoint_stdin(id, offset, data, eof),
            )
            .await
        }
        async fn entrypoint_output(&self, id: &SandboxId, stream: OutputStream, offset: u64) -> Result<ByteStream> {
            self.traced(
                "entrypoint_output",
                Some(id),
                self.inner.entrypoint_output(id, stream, offset),
            )
            .await
        }
        async fn start_detached(&self, id: &SandboxId, request: ExecRequest) -> Result<CommandInfo> {
            self.traced("start_detached", Some(id), self.inner.start_detached(id, request))
                .await
        }
        async fn commands(&self, id: &SandboxId) -> Result<Vec<CommandInfo>> {
            self.traced("commands", Some(id), self.inner.commands(id)).await
        }
        async fn attach(&self, id: &SandboxId, command: &str, from: AttachFrom) -> Result<ExecProcess> {
            self.traced("attach", Some(id), self.inner.attach(id, command, from))
                .await
        }
        async fn pause(&self, id: &SandboxId) -> Result<()> {
            self.traced("pause", Some(id), self.inner.pause(id)).await?;
            self.emit_for(LifecycleKind::Paused, id).await;
            Ok(())
        }
        async fn resume(&self, id: &SandboxId) -> Result<()> {
            self.traced("resume", Some(id), self.inner.resume(id))
                .await?;
            self.emit_for(LifecycleKind::Resumed, id).await;
            Ok(())
        }
        async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
            self.traced("tunnels", Some(id), self.inner.tunnels(id))
                .await
        }
        async fn capacity(&self) -> Result<Capacity> {
            self.traced("capacity", None, self.inner.capacity()).await
        }
        async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
            self.traced("find_by_name", None, self.inner.find_by_name(name))
                .await
        }
    }
}
