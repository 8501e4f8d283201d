//! Layers: providers that wrap a provider, adding one concern each.
//!
//! [`standard`] stacks them in the order every caller wants: tracing and events outside,
//! retries in the middle, and the capability check innermost, so an option the provider
//! cannot honour is rejected before anything is attempted (and never retried).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::capabilities::{Capabilities, PauseSupport, TimeoutEnforcement};
use crate::error::{Error, Result};
use crate::exec::{ByteStream, ExecProcess, ExecRequest};
use crate::ownership::{Ownership, unix_now};
use crate::provider::{
    Capacity, DirEntry, FileStat, ListFilter, SandboxId, SandboxInfo, SandboxProvider, Snapshot,
    Tunnel,
};
use crate::requirements::Requirements;
use crate::spec::SandboxSpec;
use crate::usage::{LifecycleEvent, LifecycleKind, Usage};

/// Options for [`standard`].
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// Ownership tags to put on every sandbox.
    pub ownership: Ownership,
    /// Retry policy for retryable errors.
    pub retry: RetryPolicy,
    /// Where to send lifecycle events, if anywhere.
    pub events: Option<broadcast::Sender<LifecycleEvent>>,
}

/// Wraps `provider` in the standard layers: [`Traced`] ∘ [`Retrying`] ∘ [`Checked`].
pub fn standard(
    provider: Arc<dyn SandboxProvider>,
    options: LayerOptions,
) -> Arc<dyn SandboxProvider> {
    let checked = Arc::new(Checked::new(provider, options.ownership));
    let retrying = Arc::new(Retrying::new(checked, options.retry));
    Arc::new(Traced::new(retrying, options.events))
}

/// The provider under every layer that reports itself through
/// [`SandboxProvider::wrapped`]; `provider` itself when it is not a layer. Wrap the result,
/// not the argument, to be sure a stack is not layered twice (twice-applied ownership tags
/// would be rejected as reserved).
pub fn bare(provider: &Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider> {
    let mut current = provider;
    while let Some(inner) = current.wrapped() {
        current = inner;
    }
    Arc::clone(current)
}

// ---------------------------------------------------------------------------------------
// Capability check
// ---------------------------------------------------------------------------------------

/// Rejects what the provider cannot honour, before the provider runs: invalid specs and
/// requests, options beyond its [`Capabilities`], and operations it does not offer. Also
/// fills the default lifetime and adds ownership tags on create.
pub struct Checked {
    inner: Arc<dyn SandboxProvider>,
    ownership: Ownership,
}

impl Checked {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SandboxProvider>, ownership: Ownership) -> Self {
        Self { inner, ownership }
    }

    fn caps(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn require(&self, offered: bool, feature: &str) -> Result<()> {
        if offered {
            Ok(())
        } else {
            Err(Error::unsupported(self.inner.name(), feature))
        }
    }

    /// Turns the first unmet requirement of a spec into the error a caller expects: a
    /// value over a provider maximum is an invalid spec; a missing feature is unsupported.
    fn check_spec(&self, spec: &SandboxSpec) -> Result<()> {
        spec.validate()?;
        self.inner.check_provider_options(&spec.provider_options)?;
        let unmet = Requirements::from_spec(spec).check(self.caps());
        let Some(first) = unmet.first() else {
            return Ok(());
        };
        let field = match first.rule.as_str() {
            "lifetime.max" => Some("lifetime_secs"),
            "gpu.count" => Some("gpu.count"),
            "cpu.max" => Some("cpu"),
            "memory.max" => Some("memory_mib"),
            _ => None,
        };
        Err(match field {
            Some(field) => Error::invalid_spec(field, first.reason.clone()),
            None => Error::unsupported(
                self.inner.name(),
                format!("{} ({})", first.rule, first.reason),
            ),
        })
    }

    fn check_exec(&self, request: &ExecRequest) -> Result<()> {
        request.validate()?;
        let caps = self.caps();
        if request.stdin {
            self.require(caps.exec_stdin, "standard input for commands")?;
        }
        if request.pty {
            self.require(caps.exec_pty, "pseudo-terminals")?;
        }
        if request.user.is_some() {
            self.require(caps.exec_run_as_user, "running commands as another user")?;
        }
        if request.timeout.is_some() {
            self.require(
                caps.exec_timeout != TimeoutEnforcement::None,
                "exec timeouts",
            )?;
        }
        Ok(())
    }

    fn files(&self) -> Result<()> {
        self.require(self.caps().files, "file operations")
    }
}

#[async_trait]
impl SandboxProvider for Checked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn wrapped(&self) -> Option<&Arc<dyn SandboxProvider>> {
        Some(&self.inner)
    }
    fn check_provider_options(&self, options: &BTreeMap<String, serde_json::Value>) -> Result<()> {
        self.inner.check_provider_options(options)
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        self.check_spec(spec)?;
        let mut spec = spec.clone();
        if spec.lifetime_secs.is_none() {
            spec.lifetime_secs = self.caps().default_lifetime_secs;
        }
        self.ownership.apply(&mut spec, unix_now());
        self.inner.create(&spec).await
    }
    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
        self.inner.info(id).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        if !filter.tags.is_empty() {
            self.require(self.caps().list_by_tags, "listing by tags")?;
        }
        self.inner.list(filter).await
    }
    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        self.check_exec(&request)?;
        self.inner.exec(id, request).await
    }
    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.files()?;
        self.inner.read_file(id, path).await
    }
    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        self.files()?;
        self.inner.write_file(id, path, contents).await
    }
    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        self.files()?;
        self.inner.stat(id, path).await
    }
    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        self.files()?;
        self.inner.list_dir(id, path).await
    }
    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        self.files()?;
        self.inner.make_dir(id, path).await
    }
    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        self.files()?;
        self.inner.remove(id, path, recursive).await
    }
    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        self.inner.terminate(id).await
    }
    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.require(self.caps().files, "file operations")?;
        self.inner.read_file_stream(id, path).await
    }
    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        contents: ByteStream,
    ) -> Result<()> {
        self.require(self.caps().files, "file operations")?;
        self.inner.write_file_stream(id, path, contents).await
    }
    async fn download_archive_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.require(self.caps().batch_transfer, "batch download")?;
        self.inner.download_archive_stream(id, path).await
    }
    async fn upload_archive_stream(
        &self,
        id: &SandboxId,
        path: &str,
        tar: ByteStream,
    ) -> Result<()> {
        self.require(self.caps().batch_transfer, "batch upload")?;
        self.inner.upload_archive_stream(id, path, tar).await
    }
    async fn upload_archive(&self, id: &SandboxId, path: &str, tar: Bytes) -> Result<()> {
        self.require(self.caps().batch_transfer, "batch upload")?;
        self.inner.upload_archive(id, path, tar).await
    }
    async fn download_archive(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.require(self.caps().batch_transfer, "batch download")?;
        self.inner.download_archive(id, path).await
    }
    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        self.require(self.caps().fs_snapshot, "filesystem snapshots")?;
        self.inner.snapshot(id).await
    }
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.require(self.caps().fs_snapshot, "filesystem snapshots")?;
        self.inner.delete_snapshot(snapshot_id).await
    }
    async fn pause(&self, id: &SandboxId) -> Result<()> {
        self.require(self.caps().pause != PauseSupport::No, "pause")?;
        self.inner.pause(id).await
    }
    async fn resume(&self, id: &SandboxId) -> Result<()> {
        self.require(self.caps().pause != PauseSupport::No, "resume")?;
        self.inner.resume(id).await
    }
    async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
        self.require(self.caps().tunnels, "tunnels")?;
        self.inner.tunnels(id).await
    }
    async fn capacity(&self) -> Result<Capacity> {
        self.require(self.caps().capacity_query, "capacity queries")?;
        self.inner.capacity().await
    }
    async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
        self.require(self.caps().lookup_by_name, "lookup by name")?;
        self.inner.find_by_name(name).await
    }
}

// ---------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------

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

#[async_trait]
impl SandboxProvider for Retrying {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn wrapped(&self) -> Option<&Arc<dyn SandboxProvider>> {
        Some(&self.inner)
    }
    fn check_provider_options(&self, options: &BTreeMap<String, serde_json::Value>) -> Result<()> {
        self.inner.check_provider_options(options)
    }
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

// ---------------------------------------------------------------------------------------
// Tracing and lifecycle events
// ---------------------------------------------------------------------------------------

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

    fn emit(&self, kind: LifecycleKind, info: &SandboxInfo) {
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
            });
        }
    }

    async fn emit_for(&self, kind: LifecycleKind, id: &SandboxId) {
        if let Ok(info) = self.inner.info(id).await {
            self.emit(kind, &info);
        }
    }
}

#[async_trait]
impl SandboxProvider for Traced {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn wrapped(&self) -> Option<&Arc<dyn SandboxProvider>> {
        Some(&self.inner)
    }
    fn check_provider_options(&self, options: &BTreeMap<String, serde_json::Value>) -> Result<()> {
        self.inner.check_provider_options(options)
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        let info = self.traced("create", None, self.inner.create(spec)).await?;
        self.emit(LifecycleKind::Created, &info);
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
        self.traced("terminate", Some(id), self.inner.terminate(id))
            .await?;
        if let Some(info) = before.filter(|info| !info.state.is_finished()) {
            self.emit(LifecycleKind::Terminated, &info);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider that only has a name: enough to build and peel layer stacks.
    struct Named(Capabilities);

    #[async_trait]
    impl SandboxProvider for Named {
        fn name(&self) -> &str {
            "named"
        }
        fn capabilities(&self) -> &Capabilities {
            &self.0
        }
        async fn create(&self, _: &SandboxSpec) -> Result<SandboxInfo> {
            Err(Error::unsupported("named", "create"))
        }
        async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
            Err(Error::sandbox_not_found(id))
        }
        async fn list(&self, _: &ListFilter) -> Result<Vec<SandboxInfo>> {
            Ok(Vec::new())
        }
        async fn exec(&self, id: &SandboxId, _: ExecRequest) -> Result<ExecProcess> {
            Err(Error::sandbox_not_found(id))
        }
        async fn read_file(&self, id: &SandboxId, _: &str) -> Result<Bytes> {
            Err(Error::sandbox_not_found(id))
        }
        async fn write_file(&self, id: &SandboxId, _: &str, _: Bytes) -> Result<()> {
            Err(Error::sandbox_not_found(id))
        }
        async fn stat(&self, id: &SandboxId, _: &str) -> Result<FileStat> {
            Err(Error::sandbox_not_found(id))
        }
        async fn list_dir(&self, id: &SandboxId, _: &str) -> Result<Vec<DirEntry>> {
            Err(Error::sandbox_not_found(id))
        }
        async fn make_dir(&self, id: &SandboxId, _: &str) -> Result<()> {
            Err(Error::sandbox_not_found(id))
        }
        async fn remove(&self, id: &SandboxId, _: &str, _: bool) -> Result<()> {
            Err(Error::sandbox_not_found(id))
        }
        async fn terminate(&self, _: &SandboxId) -> Result<()> {
            Ok(())
        }
    }

    fn same(a: &Arc<dyn SandboxProvider>, b: &Arc<dyn SandboxProvider>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
    }

    #[test]
    fn bare_peels_every_standard_layer() {
        let provider: Arc<dyn SandboxProvider> = Arc::new(Named(Capabilities::default()));
        assert!(same(&bare(&provider), &provider));
        let once = standard(Arc::clone(&provider), LayerOptions::default());
        let twice = standard(Arc::clone(&once), LayerOptions::default());
        assert!(!same(&once, &provider));
        assert!(same(&bare(&once), &provider));
        assert!(same(&bare(&twice), &provider));
    }
}
