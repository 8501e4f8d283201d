use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::capabilities::Capabilities;
use crate::error::{Error, Result};
use crate::exec::{ExecProcess, ExecRequest};
use crate::provider::{DirEntry, FileStat, ListFilter, SandboxId, SandboxInfo};
use crate::spec::SandboxSpec;

/// A provider that only has a name: enough to build and peel layer stacks.
struct Named(Capabilities, Mutex<Option<SandboxSpec>>);

#[async_trait]
impl SandboxProvider for Named {
    fn name(&self) -> &str {
        "named"
    }
    fn capabilities(&self) -> &Capabilities {
        &self.0
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        // Remembers what reached the provider, then refuses.
        *self.1.lock().unwrap() = Some(spec.clone());
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
    let provider: Arc<dyn SandboxProvider> =
        Arc::new(Named(Capabilities::default(), Mutex::default()));
    assert!(same(&bare(&provider), &provider));
    let once = standard(Arc::clone(&provider), LayerOptions::default());
    let twice = standard(Arc::clone(&once), LayerOptions::default());
    assert!(!same(&once, &provider));
    assert!(same(&bare(&once), &provider));
    assert!(same(&bare(&twice), &provider));
}

fn spec_reaching(
    caps: Capabilities,
    spec: &SandboxSpec,
) -> (Result<SandboxInfo>, Option<SandboxSpec>) {
    let named = Arc::new(Named(caps, Mutex::default()));
    let layered = standard(named.clone(), LayerOptions::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let result = runtime.block_on(layered.create(spec));
    let seen = named.1.lock().unwrap().clone();
    (result, seen)
}

#[test]
fn ownership_tags_go_only_to_providers_with_tags() {
    let tagged = Capabilities {
        tags: true,
        default_lifetime_secs: Some(60),
        ..Capabilities::default()
    };
    let (_, seen) = spec_reaching(tagged, &SandboxSpec::new());
    let seen = seen.expect("the create reached the provider");
    assert!(
        seen.tags.contains_key("sandkit.managed-by"),
        "{:?}",
        seen.tags
    );
    assert_eq!(seen.lifetime_secs, Some(60));

    // A provider without tags runs plain specs, untagged...
    let (_, seen) = spec_reaching(Capabilities::default(), &SandboxSpec::new());
    assert!(seen.expect("reached the provider").tags.is_empty());
    // ...and refuses a spec with tags before it runs.
    let (result, seen) = spec_reaching(Capabilities::default(), &SandboxSpec::new().tag("a", "b"));
    assert!(
        matches!(result, Err(Error::Unsupported { .. })),
        "{result:?}"
    );
    assert!(seen.is_none());
}

#[test]
fn a_capability_override_is_what_the_layers_check() {
    let full = Capabilities {
        files: true,
        ..Capabilities::default()
    };
    let named: Arc<dyn SandboxProvider> = Arc::new(Named(full, Mutex::default()));
    let narrowed: Arc<dyn SandboxProvider> =
        Arc::new(CapabilityOverride::narrowed(named, |caps| {
            caps.files = false
        }));
    assert!(!narrowed.capabilities().files);
    // Not peeled: it is what the suite should run.
    assert!(same(&bare(&narrowed), &narrowed));
    let layered = standard(narrowed, LayerOptions::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let error = runtime
        .block_on(layered.read_file(&SandboxId("x".into()), "/etc/hostname"))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Unsupported { .. }) && error.to_string().contains("files"),
        "{error}"
    );
}
