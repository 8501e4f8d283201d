//! A provider that declares other capabilities than the one it wraps.

use std::sync::Arc;

use crate::capabilities::Capabilities;
use crate::provider::SandboxProvider;

/// `inner` with `capabilities` declared in place of its own; every call goes to `inner`
/// unchanged. Put it under the standard layers to have them refuse what `inner` could do
/// but the narrowed capabilities deny, for example to run the conformance suite's negative
/// twins against a real provider.
///
/// It is a provider in its own right, not a layer [`bare`](super::bare) peels: the
/// conformance suite runs it with the capabilities it declares.
pub struct CapabilityOverride {
    inner: Arc<dyn SandboxProvider>,
    capabilities: Capabilities,
}

impl CapabilityOverride {
    /// `inner`, declaring `capabilities`.
    pub fn new(inner: Arc<dyn SandboxProvider>, capabilities: Capabilities) -> Self {
        Self {
            inner,
            capabilities,
        }
    }

    /// `inner`, declaring its own capabilities as changed by `narrow`.
    pub fn narrowed(
        inner: Arc<dyn SandboxProvider>,
        narrow: impl FnOnce(&mut Capabilities),
    ) -> Self {
        let mut capabilities = inner.capabilities().clone();
        narrow(&mut capabilities);
        Self::new(inner, capabilities)
    }
}

crate::layer_impl! {
    CapabilityOverride => inner forward [
        name, check_provider_options, create, info, list, exec, read_file, write_file, stat,
        list_dir, make_dir, remove, terminate, read_file_stream, write_file_stream,
        download_archive_stream, upload_archive_stream, upload_archive, download_archive,
        snapshot, delete_snapshot, pause, resume, tunnels, capacity, find_by_name, resource_usage, watch,
        entrypoint_output, write_entrypoint_stdin,
        start_detached, commands, attach,
    ] {
        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }
        fn wrapped(&self) -> Option<&Arc<dyn SandboxProvider>> {
            None
        }
    }
}
