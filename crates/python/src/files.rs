//! Files inside a sandbox. Reads and writes go through the provider's stream API: a read
//! appends chunk by chunk to one growing Python buffer, and a write hands out slices of
//! the caller's `bytes` without copying them, so a file never sits whole in memory twice.

use bytes::Bytes;
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use sandkit::{ByteStream, SandboxId};

use crate::errors::{to_json, to_py};
use crate::provider::{NativeProvider, spawn};

/// Size of the slices a write hands to the provider.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

#[pymethods]
impl NativeProvider {
    /// Reads a whole file; resolves to `bytes`.
    fn read_file<'py>(
        &self,
        py: Python<'py>,
        id: String,
        path: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let mut stream = provider
                .read_file_stream(&SandboxId(id), &path)
                .await
                .map_err(to_py)?;
            // `io.BytesIO.getvalue()` hands back its own buffer when nothing else holds
            // it: the chunks are copied once, into the result.
            let buffer: Py<PyAny> = Python::attach(|py| {
                Ok::<_, PyErr>(py.import("io")?.call_method0("BytesIO")?.unbind())
            })?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(to_py)?;
                Python::attach(|py| {
                    buffer
                        .bind(py)
                        .call_method1("write", (PyBytes::new(py, &chunk),))
                        .map(drop)
                })?;
            }
            Python::attach(|py| Ok(buffer.bind(py).call_method0("getvalue")?.unbind()))
        })
    }

    /// Creates or replaces a file with `data`, creating missing parent directories.
    fn write_file<'py>(
        &self,
        py: Python<'py>,
        id: String,
        path: String,
        data: PyBackedBytes,
    ) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let whole = Bytes::from_owner(data);
            let total = whole.len();
            let chunks = (0..total.div_ceil(WRITE_CHUNK_BYTES).max(1)).map(move |index| {
                let start = index * WRITE_CHUNK_BYTES;
                Ok(whole.slice(start..total.min(start + WRITE_CHUNK_BYTES)))
            });
            let stream: ByteStream = Box::pin(futures::stream::iter(chunks));
            provider
                .write_file_stream(&SandboxId(id), &path, stream)
                .await
                .map_err(to_py)
        })
    }

    /// Metadata of a path (not following a final symlink), as JSON.
    fn stat<'py>(&self, py: Python<'py>, id: String, path: String) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let stat = provider.stat(&SandboxId(id), &path).await.map_err(to_py)?;
            to_json(&stat)
        })
    }

    /// Entries of a directory, sorted by name, as JSON.
    fn list_dir<'py>(
        &self,
        py: Python<'py>,
        id: String,
        path: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            let entries = provider
                .list_dir(&SandboxId(id), &path)
                .await
                .map_err(to_py)?;
            to_json(&entries)
        })
    }

    /// Creates a directory and its missing parents.
    fn make_dir<'py>(
        &self,
        py: Python<'py>,
        id: String,
        path: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider
                .make_dir(&SandboxId(id), &path)
                .await
                .map_err(to_py)
        })
    }

    /// Removes a file, or a directory (with its contents when `recursive`).
    fn remove<'py>(
        &self,
        py: Python<'py>,
        id: String,
        path: String,
        recursive: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider
                .remove(&SandboxId(id), &path, recursive)
                .await
                .map_err(to_py)
        })
    }
}
