//! Ownership: the tags that let `reap` find a run's sandboxes, and the default lifetime.

use std::sync::Arc;

use super::Layer;
use crate::error::Result;
use crate::ownership::{Ownership, unix_now};
use crate::provider::{SandboxInfo, SandboxProvider};
use crate::spec::SandboxSpec;

/// Fills what a create leaves to defaults: the provider's default lifetime when the spec
/// sets none, and the ownership tags (managed-by, owner, run id, created-at, expires-at)
/// on providers that have tags. A provider declaring `tags: false` gets no tags: its
/// sandboxes cannot be reaped by tag, which its capabilities already say.
pub struct Owned {
    inner: Arc<dyn SandboxProvider>,
    ownership: Ownership,
}

impl Owned {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SandboxProvider>, ownership: Ownership) -> Self {
        Self { inner, ownership }
    }
}

impl Layer for Ownership {
    fn layer(&self, inner: Arc<dyn SandboxProvider>) -> Arc<dyn SandboxProvider> {
        Arc::new(Owned::new(inner, self.clone()))
    }
}

crate::layer_impl! {
    Owned => inner forward [
        name, capabilities, wrapped, check_provider_options, info, list, exec, read_file,
        write_file, stat, list_dir, make_dir, remove, terminate, read_file_stream,
        write_file_stream, download_archive_stream, upload_archive_stream, upload_archive,
        download_archive, snapshot, delete_snapshot, pause, resume, tunnels, capacity,
        find_by_name, resource_usage, watch,
        entrypoint_output, write_entrypoint_stdin,
        start_detached, commands, attach,
    ] {
        async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
            let caps = self.inner.capabilities();
            let mut spec = spec.clone();
            if spec.lifetime_secs.is_none() {
                spec.lifetime_secs = caps.default_lifetime_secs;
            }
            if caps.tags {
                self.ownership.apply(&mut spec, unix_now());
            }
            self.inner.create(&spec).await
        }
    }
}
