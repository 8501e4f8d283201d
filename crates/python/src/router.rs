//! The router over the pools of a `sandkit.toml`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use sandkit::layers::LayerOptions;
use sandkit::{Requirements, SandboxSpec};
use sandkit_orchestrate::Router;

use crate::errors::{parse_fields, to_json, to_py};
use crate::provider::{NativeProvider, spawn};

/// A router built from a pools file.
#[pyclass(frozen, module = "sandkit._native")]
pub struct NativeRouter {
    inner: Arc<Router>,
}

/// Loads a pools file and builds every pool; resolves to a `NativeRouter`.
#[pyfunction]
pub fn router_from_file(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    spawn(py, async move {
        let router = Router::from_file(&path, LayerOptions::default())
            .await
            .map_err(to_py)?;
        Ok(NativeRouter {
            inner: Arc::new(router),
        })
    })
}

#[pymethods]
impl NativeRouter {
    /// The pools' names, most preferred first.
    fn pool_names(&self) -> Vec<String> {
        self.inner
            .pools()
            .iter()
            .map(|pool| pool.name.clone())
            .collect()
    }

    /// The provider of pool `name` (with the pool's layers), or `None`.
    fn pool_provider(&self, name: &str) -> Option<NativeProvider> {
        self.inner.pool(name).map(|pool| NativeProvider {
            inner: pool.provider.clone(),
        })
    }

    /// The pool's default spec as JSON (merged under every spec routed to it).
    fn pool_spec_json(&self, name: &str) -> PyResult<Option<String>> {
        self.inner
            .pool(name)
            .map(|pool| to_json(&pool.spec))
            .transpose()
    }

    /// Which pools could take a spec, creating nothing: the decision as JSON.
    fn plan_json(&self, spec_json: &str, requirements_json: &str) -> PyResult<String> {
        let (spec, requirements) = parse(spec_json, requirements_json)?;
        to_json(&self.inner.plan(&spec, &requirements))
    }

    /// Creates a sandbox on the first pool that fits and has room; resolves to
    /// `(provider, info_json, decision_json)`. The sandbox is the caller's to terminate.
    fn create<'py>(
        &self,
        py: Python<'py>,
        spec_json: &str,
        requirements_json: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (spec, requirements) = parse(spec_json, requirements_json)?;
        let router = self.inner.clone();
        spawn(py, async move {
            spec.validate().map_err(to_py)?;
            let (lease, decision) = router.create(&spec, &requirements).await.map_err(to_py)?;
            let sandbox = lease.detach();
            let provider = NativeProvider {
                inner: sandbox.provider().clone(),
            };
            Ok((provider, to_json(sandbox.info())?, to_json(&decision)?))
        })
    }
}

fn parse(spec_json: &str, requirements_json: &str) -> PyResult<(SandboxSpec, Requirements)> {
    let spec = parse_fields("spec", spec_json)?;
    let requirements = parse_fields("requirements", requirements_json)?;
    Ok((spec, requirements))
}
