//! Retries of idempotent operations on retryable errors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Layer;
use crate::detached::{AttachFrom, CommandInfo};
use crate::error::{Error, Result};
use crate::exec::{ByteStream, ExecProcess, ExecRequest};
use crate::provider::{
    Capacity, DirEntry, FileStat, ListFilter, OutputStream, SandboxId, SandboxInfo,
    SandboxProvider, Snapshot, Tunnel,
};
use crate::spec::SandboxSpec;
use crate::usage::ResourceUsage;
use crate::watch::FileEvents;

/// Exponential backoff for retryable errors, honouring a provider's `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between attempts (a provider's `retry_after` may exceed it).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `attempt` (0-based) after `error`.
    pub fn backoff(&self, attempt: u32, error: &Error) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_backoff);
        error
            .retry_after()
            .map_or(exponential, |after| after.max(exponential))
    }

    /// Runs `operation` until it succeeds, fails for good, or `retryable` says no.
    pub async fn run<T, F, Fut>(
        &self,
        retryable: impl Fn(&Error) -> bool,
        mut operation: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match operation().await {
                Err(error) if attempt < self.max_retries && retryable(&error) => {
                    let wait = self.backoff(attempt, &error);
                    tracing::debug!(%error, attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Retries idempotent operations on retryable errors. `create` is retried only when the
/// provider rate-limited it (nothing was created); `exec`, `snapshot`, `pause` and
/// `resume` are never retried.
pub struct Retrying {
    inner: Arc<dyn SandboxProvider>,
    policy: RetryPolicy,
}

impl Retrying {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SandboxProvider>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    async fn idempotent<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.policy.run(Error::is_retryable, operation).await
    }
}

impl Layer for RetryPolicy {
    fn layer(&self, inner: Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider> {
        Arc::new(Retrying::new(inner, *self))
    }
}

crate::layer_impl! {
    Retrying => inner forward [name, capabilities, wrapped, check_provider_options] {
        async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
            let rate_limited = |error: &Error| matches!(error, Error::RateLimited { .. });
            self.policy
                .run(rate_limited, || self.inner.create(spec))
                .await
        }
        async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
            self.idempotent(|| self.inner.info(id)).await
        }
        async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
            self.idempotent(|| self.inner.list(filter)).await
        }
        async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
            self.inner.exec(id, request).await
        }
        async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
            self.idempotent(|| self.inner.read_file(id, path)).await
        }
        async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
            self.idempotent(|| self.inner.write_file(id, path, contents.clone()))
                .await
        }
        async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
            self.idempotent(|| self.inner.stat(id, path)).await
        }
        async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
            self.idempotent(|| self.inner.list_dir(id, path)).await
        }
        async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
            self.idempotent(|| self.inner.make_dir(id, path)).await
        }
        async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
            self.inner.remove(id, path, recursive).await
        }
        async fn terminate(&self, id: &SandboxId) -> Result<()> {
            self.idempotent(|| self.inner.terminate(id)).await
        }
        async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
            // Opening is retried; a stream that fails half-way is the caller's to restart.
            self.idempotent(|| self.inner.read_file_stream(id, path))
                .await
        }
        async fn write_file_stream(
            &self,
            id: &SandboxId,
            path: &str,
            contents: ByteStream,
        ) -> Result<()> {
            // A stream is consumed once: never retried.
            self.inner.write_file_stream(id, path, contents).await
        }
        async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
            self.idempotent(|| self.inner.download_archive_stream(id, path))
                .await
        }
        async fn upload_archive_stream(
            &self,
            id: &SandboxId,
            path: &str,
            tar: ByteStream,
        ) -> Result<()> {
            self.inner.upload_archive_stream(id, path, tar).await
        }
        async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
            self.idempotent(|| self.inner.upload_archive(id, path, tar.clone()))
                .await
        }
        async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
            self.idempotent(|| self.inner.download_archive(id, path))
                .await
        }
        async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
            self.inner.snapshot(id).await
        }
        async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
            self.idempotent(|| self.inner.delete_snapshot(snapshot_id))
                .await
        }
        async fn pause(&self, id: &SandboxId) -> Result<()> {
            self.inner.pause(id).await
        }
        async fn watch(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<FileEvents> {
            self.idempotent(|| self.inner.watch(id, path, recursive)).await
        }
        async fn resource_usage(&self, id: &SandboxId) -> Result<ResourceUsage> {
            self.idempotent(|| self.inner.resource_usage(id)).await
        }
        async fn entrypoint_output(&self, id: &SandboxId, stream: OutputStream, offset: u64) -> Result<ByteStream> {
            self.idempotent(|| self.inner.entrypoint_output(id, stream, offset)).await
        }
        // Written at an offset, so a retry is not applied twice.
        async fn write_entrypoint_stdin(&self, id: &SandboxId, offset: u64, data: Bytes, eof: bool) -> Result<()> {
            self.idempotent(|| self.inner.write_entrypoint_stdin(id, offset, data.clone(), eof))
                .await
        }
        // Starting twice would run the command twice.
        async fn start_detached(&self, id: &SandboxId, request: ExecRequest) -> Result<CommandInfo> {
            self.inner.start_detached(id, request).await
        }
        async fn commands(&self, id: &SandboxId) -> Result<Vec<CommandInfo>> {
            self.idempotent(|| self.inner.commands(id)).await
        }
        async fn attach(&self, id: &SandboxId, command: &str, from: AttachFrom) -> Result<ExecProcess> {
            self.idempotent(|| self.inner.attach(id, command, from)).await
        }
        async fn resume(&self, id: &SandboxId) -> Result<()> {
            self.inner.resume(id).await
        }
        async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
            self.idempotent(|| self.inner.tunnels(id)).await
        }
        async fn capacity(&self) -> Result<Capacity> {
            self.idempotent(|| self.inner.capacity()).await
        }
        async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
            self.idempotent(|| self.inner.find_by_name(name)).await
        }
    }
}
