//! Opening providers, their capabilities, sandbox lifecycle, selection and reaping.

use std::sync::Arc;

use pyo3::prelude::*;
use sandkit::{ListFilter, ReapFilter, Requirements, SandboxId, SandboxProvider, SandboxSpec};

use crate::errors::{bad_json, parse_fields, to_json, to_py};

/// A provider opened with the standard layers (capability checks, retries, tracing,
/// ownership tags). Every sandbox operation takes the sandbox's id.
#[pyclass(frozen, module = "sandkit._native")]
pub struct NativeProvider {
    pub(crate) inner: Arc<dyn SandboxProvider>,
}

/// Runs `future` on sandkit's tokio runtime and hands its value to asyncio.
pub(crate) fn spawn<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, future)
}

/// Opens the provider registered as `name` with a JSON configuration (`"null"` for the
/// default); resolves to a `NativeProvider`.
#[pyfunction]
pub fn open<'py>(py: Python<'py>, name: String, config_json: &str) -> PyResult<Bound<'py, PyAny>> {
    let config: serde_json::Value =
        serde_json::from_str(config_json).map_err(|error| bad_json("config", error))?;
    spawn(py, async move {
        let inner = sandkit::Provider::named(name)
            .config(config)
            .open()
            .await
            .map_err(to_py)?;
        Ok(NativeProvider { inner })
    })
}

/// Every registered provider as JSON: `[{"name", "summary", "capabilities"}]`.
#[pyfunction]
pub fn providers_json() -> PyResult<String> {
    let registrations = sandkit::providers().map_err(to_py)?;
    let listed: Vec<serde_json::Value> = registrations
        .iter()
        .map(|registration| {
            serde_json::json!({
                "name": registration.name,
                "summary": registration.summary,
                "capabilities": registration.capabilities(),
            })
        })
        .collect();
    to_json(&listed)
}

/// `select` over the registered providers (or only `names`, in that order), from their
/// default capabilities: the selection as JSON.
#[pyfunction]
#[pyo3(signature = (requirements_json, names=None))]
pub fn select_json(requirements_json: &str, names: Option<Vec<String>>) -> PyResult<String> {
    let requirements: Requirements = parse_fields("requirements", requirements_json)?;
    let registrations = sandkit::providers().map_err(to_py)?;
    let candidates: Vec<(&str, sandkit::Capabilities)> = match names {
        None => registrations
            .iter()
            .map(|registration| (registration.name, registration.capabilities()))
            .collect(),
        Some(names) => {
            let mut picked = Vec::with_capacity(names.len());
            for name in names {
                let registration = sandkit::registry::find(&name).map_err(to_py)?;
                picked.push((registration.name, registration.capabilities()));
            }
            picked
        }
    };
    let selection = sandkit::select(
        &requirements,
        candidates.iter().map(|(name, caps)| (*name, caps)),
    );
    to_json(&selection)
}

#[pymethods]
impl NativeProvider {
    /// The registry name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// This instance's capabilities as JSON.
    fn capabilities_json(&self) -> PyResult<String> {
        to_json(self.inner.capabilities())
    }

    /// Creates a sandbox from a spec (JSON, the `SandboxSpec` shape); resolves to its
    /// info as JSON.
    fn create<'py>(&self, py: Python<'py>, spec_json: &str) -> PyResult<Bound<'py, PyAny>> {
        let spec: SandboxSpec = parse_fields("spec", spec_json)?;
        let provider = self.inner.clone();
        spawn(py, async move {
            spec.validate().map_err(to_py)?;
            let info = provider.create(&spec).await.map_err(to_py)?;
            to_json(&info)
        })
    }

    /// Current info of a sandbox as JSON.
    fn info<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let info = provider.info(&SandboxId(id)).await.map_err(to_py)?;
            to_json(&info)
        })
    }

    /// Sandboxes matching a filter (JSON, the `ListFilter` shape), as a JSON list.
    fn list<'py>(&self, py: Python<'py>, filter_json: &str) -> PyResult<Bound<'py, PyAny>> {
        let filter: ListFilter =
            serde_json::from_str(filter_json).map_err(|error| bad_json("filter", error))?;
        let provider = self.inner.clone();
        spawn(py, async move {
            let found = provider.list(&filter).await.map_err(to_py)?;
            to_json(&found)
        })
    }

    /// Ends a sandbox; an unknown or finished id is fine.
    fn terminate<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider.terminate(&SandboxId(id)).await.map_err(to_py)
        })
    }

    /// Snapshots a sandbox's filesystem; resolves to the snapshot as JSON.
    fn snapshot<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let snapshot = provider.snapshot(&SandboxId(id)).await.map_err(to_py)?;
            to_json(&snapshot)
        })
    }

    /// Deletes a snapshot; an unknown id is fine.
    fn delete_snapshot<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider.delete_snapshot(&id).await.map_err(to_py)
        })
    }

    /// Pauses every process of a sandbox.
    fn pause<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider.pause(&SandboxId(id)).await.map_err(to_py)
        })
    }

    /// Resumes a paused sandbox.
    fn resume<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider.resume(&SandboxId(id)).await.map_err(to_py)
        })
    }

    /// Routes to a sandbox's exposed ports, as a JSON list.
    fn tunnels<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let tunnels = provider.tunnels(&SandboxId(id)).await.map_err(to_py)?;
            to_json(&tunnels)
        })
    }

    /// Finds sandkit-made sandboxes matching a filter (JSON, the `ReapFilter` shape) and,
    /// unless `dry_run`, ends them; resolves to the report as JSON.
    fn reap<'py>(
        &self,
        py: Python<'py>,
        filter_json: &str,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let filter: ReapFilter =
            serde_json::from_str(filter_json).map_err(|error| bad_json("filter", error))?;
        let provider = self.inner.clone();
        spawn(py, async move {
            let report = sandkit::reap(provider.as_ref(), &filter, dry_run)
                .await
                .map_err(to_py)?;
            to_json(&report)
        })
    }

    fn __repr__(&self) -> String {
        format!("NativeProvider({:?})", self.inner.name())
    }
}
