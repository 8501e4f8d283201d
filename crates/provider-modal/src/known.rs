//! What this provider instance knows about sandboxes beyond what Modal reports: their
//! command routers once opened, their working directories, and what their specs asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sandkit_core::{GpuRequest, SandboxSpec};

use crate::client::Router;

/// What is known about one sandbox.
#[derive(Default, Clone)]
pub(crate) struct Known {
    pub router: Option<Arc<Router>>,
    /// The working directory commands start in; passed explicitly with every command so
    /// it holds whatever the server's default is.
    pub workdir: Option<String>,
    /// What the spec asked for, to fill what a listing leaves out.
    pub placement: Option<Placement>,
    /// V1 writes to the entrypoint's stdin so far, and their bytes (V1 numbers writes
    /// where V2 addresses bytes).
    pub stdin_writes: u32,
    pub stdin_bytes: u64,
}

/// The parts of a spec a listing may not report, and the tags the sandbox was created with
/// (a listing filtered by them finds it without asking for its tags first).
#[derive(Clone, Default)]
pub(crate) struct Placement {
    pub name: Option<String>,
    pub cpu: Option<f64>,
    pub memory_mib: Option<u64>,
    pub gpu: Option<GpuRequest>,
    pub region: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Placement {
    /// What `spec` asked for.
    pub fn of(spec: &SandboxSpec) -> Self {
        Self {
            name: spec.name.clone(),
            cpu: spec.cpu,
            memory_mib: spec.memory_mib,
            gpu: spec.gpu,
            region: spec.region.clone(),
            tags: spec.tags.clone(),
        }
    }
}

/// Sandboxes by id.
#[derive(Default)]
pub(crate) struct KnownSandboxes(Mutex<HashMap<String, Known>>);

impl KnownSandboxes {
    /// What is known about `id`; nothing for a sandbox this instance has not seen.
    pub fn get(&self, id: &str) -> Known {
        self.0
            .lock()
            .expect("cache lock")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Updates what is known about `id`.
    pub fn remember(&self, id: &str, update: impl FnOnce(&mut Known)) {
        update(
            self.0
                .lock()
                .expect("cache lock")
                .entry(id.to_owned())
                .or_default(),
        );
    }

    /// Drops `id`, which has ended.
    pub fn forget(&self, id: &str) {
        self.0.lock().expect("cache lock").remove(id);
    }
}
