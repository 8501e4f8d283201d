//! The native half of the `sandkit` Python package (`sandkit._native`).
//!
//! Thin and JSON-shaped on purpose: specs, requests, filters and requirements arrive as
//! JSON documents in the Rust types' own serde shape, and information (sandbox info,
//! capabilities, selections, decisions, reap reports) leaves as JSON, so the Python
//! layer (`python/sandkit/`) owns argument checking, keyword arguments and data classes,
//! and this crate never mirrors a core type by hand. Bytes (command output, file
//! contents) cross as Python `bytes`, chunk by chunk where they stream.

mod errors;
mod exec;
mod files;
mod provider;
mod router;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<provider::NativeProvider>()?;
    module.add_class::<exec::NativeProcess>()?;
    module.add_class::<exec::NativeStream>()?;
    module.add_class::<router::NativeRouter>()?;
    module.add_function(wrap_pyfunction!(provider::open, module)?)?;
    module.add_function(wrap_pyfunction!(provider::providers_json, module)?)?;
    module.add_function(wrap_pyfunction!(provider::select_json, module)?)?;
    module.add_function(wrap_pyfunction!(router::router_from_file, module)?)?;
    module.add("LINKED_PROVIDERS", sandkit::LINKED_PROVIDERS.to_vec())?;
    Ok(())
}
