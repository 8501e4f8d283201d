//! Commands: run to completion with collected output, or started with streaming output.
//!
//! Whatever an `await` held is given back when asyncio cancels it: pyo3-async-runtimes
//! drops the Rust future, and the guards here kill the command on drop.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pyo3::exceptions::{PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use sandkit::{ByteStream, Error, ExecProcess, ExecRequest, ExitStatus, OutputStream, SandboxId};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Notify};

use crate::errors::{parse_fields, to_py};
use crate::provider::{NativeProvider, spawn};

/// A started command that is killed when dropped unless it was seen to finish.
struct KillOnDrop(Option<ExecProcess>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut process) = self.0.take() {
            pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
                let _ = process.kill().await;
            });
        }
    }
}

fn empty_stream() -> ByteStream {
    Box::pin(futures::stream::empty())
}

/// Reads a stream to its end, keeping at most `limit` bytes: (kept, cut, error).
async fn collect(mut stream: ByteStream, limit: usize) -> (Bytes, bool, Option<Error>) {
    let mut buffer = BytesMut::new();
    let mut cut = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                let room = limit.saturating_sub(buffer.len());
                cut |= chunk.len() > room;
                buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Err(error) => return (buffer.freeze(), cut, Some(error)),
        }
    }
    (buffer.freeze(), cut, None)
}

fn parse_request(request_json: &str) -> PyResult<ExecRequest> {
    parse_fields("request", request_json)
}

/// `(code, signal, stdout, stderr, stdout_truncated, stderr_truncated)`.
type Collected = (i32, Option<i32>, Py<PyBytes>, Py<PyBytes>, bool, bool);

async fn run(
    provider: Arc<dyn sandkit::SandboxProvider>,
    id: SandboxId,
    mut request: ExecRequest,
    stdin: Option<PyBackedBytes>,
) -> PyResult<Collected> {
    request.stdin = stdin.is_some();
    let limit = request.output_limit_bytes.map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    let mut process = provider.exec(&id, request).await.map_err(to_py)?;
    let stdout = std::mem::replace(&mut process.stdout, empty_stream());
    let stderr = std::mem::replace(&mut process.stderr, empty_stream());
    let input = process.stdin.take();
    let mut guard = KillOnDrop(Some(process));
    let feed = async move {
        if let (Some(mut writer), Some(data)) = (input, stdin) {
            // A command that exits without reading its input closes the pipe: its call.
            let _ = writer.write_all(&data).await;
            let _ = writer.shutdown().await;
        }
    };
    let running = guard.0.as_mut().expect("the guard holds the process");
    let (_, (out, out_cut, out_err), (err, err_cut, err_err), status) = tokio::join!(
        feed,
        collect(stdout, limit),
        collect(stderr, limit),
        running.wait()
    );
    guard.0 = None;
    let status: ExitStatus = match status {
        Err(Error::CommandTimeout { timeout, .. }) => {
            return Err(to_py(Error::CommandTimeout {
                timeout,
                stdout: out,
                stderr: err,
            }));
        }
        other => other.map_err(to_py)?,
    };
    if let Some(error) = out_err.or(err_err) {
        return Err(to_py(error));
    }
    Python::attach(|py| {
        Ok((
            status.code,
            status.signal,
            PyBytes::new(py, &out).unbind(),
            PyBytes::new(py, &err).unbind(),
            out_cut,
            err_cut,
        ))
    })
}

#[pymethods]
impl NativeProvider {
    /// Runs a command (JSON, the `ExecRequest` shape) to completion, with `stdin` as its
    /// input; resolves to `(code, signal, stdout, stderr, stdout_truncated,
    /// stderr_truncated)`. Cancelling the await kills the command.
    #[pyo3(signature = (id, request_json, stdin=None))]
    fn exec<'py>(
        &self,
        py: Python<'py>,
        id: String,
        request_json: &str,
        stdin: Option<PyBackedBytes>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = parse_request(request_json)?;
        let provider = self.inner.clone();
        spawn(py, run(provider, SandboxId(id), request, stdin))
    }

    /// Starts a command with streaming output; resolves to a `NativeProcess`.
    fn start<'py>(
        &self,
        py: Python<'py>,
        id: String,
        request_json: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = parse_request(request_json)?;
        let provider = self.inner.clone();
        spawn(py, async move {
            let mut process = provider
                .exec(&SandboxId(id), request)
                .await
                .map_err(to_py)?;
            let stdout = std::mem::replace(&mut process.stdout, empty_stream());
            let stderr = std::mem::replace(&mut process.stderr, empty_stream());
            let stdin = process.stdin.take();
            Ok(NativeProcess {
                stdout: Arc::new(Mutex::new(Some(stdout))),
                stderr: Arc::new(Mutex::new(Some(stderr))),
                stdin: Arc::new(Mutex::new(stdin)),
                control: Arc::new(Mutex::new(KillOnDrop(Some(process)))),
                kill_requested: Arc::new(Notify::new()),
            })
        })
    }

    /// Writes `data` to the entrypoint's stdin at byte `offset`, closing it after when
    /// `eof`.
    fn write_entrypoint_stdin<'py>(
        &self,
        py: Python<'py>,
        id: String,
        offset: u64,
        data: Vec<u8>,
        eof: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let provider = self.inner.clone();
        spawn(py, async move {
            provider
                .write_entrypoint_stdin(&SandboxId(id), offset, data.into(), eof)
                .await
                .map_err(to_py)
        })
    }

    /// The entrypoint's `stream` (`"stdout"` or `"stderr"`) from byte `offset` on,
    /// followed until the entrypoint ends; resolves to a `NativeStream`.
    fn entrypoint_output<'py>(
        &self,
        py: Python<'py>,
        id: String,
        stream: &str,
        offset: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stream = match stream {
            "stdout" => OutputStream::Stdout,
            "stderr" => OutputStream::Stderr,
            other => {
                return Err(to_py(Error::InvalidSpec {
                    field: "stream".to_owned(),
                    reason: format!("must be \"stdout\" or \"stderr\", not {other:?}"),
                }));
            }
        };
        let provider = self.inner.clone();
        spawn(py, async move {
            let output = provider
                .entrypoint_output(&SandboxId(id), stream, offset)
                .await
                .map_err(to_py)?;
            Ok(NativeStream {
                stream: Arc::new(Mutex::new(Some(output))),
            })
        })
    }
}

/// One output stream of a started command: an async iterator of `bytes` chunks.
#[pyclass(frozen, module = "sandkit._native")]
pub struct NativeStream {
    stream: Arc<Mutex<Option<ByteStream>>>,
}

#[pymethods]
impl NativeStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream.clone();
        spawn(py, async move {
            let mut guard = stream.lock().await;
            let next = match guard.as_mut() {
                Some(stream) => stream.next().await,
                None => None,
            };
            match next {
                Some(Ok(chunk)) => Python::attach(|py| Ok(PyBytes::new(py, &chunk).unbind())),
                Some(Err(error)) => Err(to_py(error)),
                None => {
                    *guard = None;
                    Err(PyStopAsyncIteration::new_err(()))
                }
            }
        })
    }
}

/// A started command: `stdout`/`stderr` streams, `write_stdin`/`close_stdin`, `wait`
/// and `kill`. Dropped before it was seen to finish, it is killed.
#[pyclass(frozen, module = "sandkit._native")]
pub struct NativeProcess {
    stdout: Arc<Mutex<Option<ByteStream>>>,
    stderr: Arc<Mutex<Option<ByteStream>>>,
    stdin: Arc<Mutex<Option<sandkit::StdinWriter>>>,
    control: Arc<Mutex<KillOnDrop>>,
    kill_requested: Arc<Notify>,
}

#[pymethods]
impl NativeProcess {
    /// Standard output chunks.
    #[getter]
    fn stdout(&self) -> NativeStream {
        NativeStream {
            stream: self.stdout.clone(),
        }
    }

    /// Standard error chunks.
    #[getter]
    fn stderr(&self) -> NativeStream {
        NativeStream {
            stream: self.stderr.clone(),
        }
    }

    /// Writes to standard input (opened with `stdin=True`).
    fn write_stdin<'py>(
        &self,
        py: Python<'py>,
        data: PyBackedBytes,
    ) -> PyResult<Bound<'py, PyAny>> {
        let stdin = self.stdin.clone();
        spawn(py, async move {
            let mut guard = stdin.lock().await;
            let writer = guard
                .as_mut()
                .ok_or_else(|| PyValueError::new_err("stdin is not open"))?;
            writer.write_all(&data).await.map_err(PyErr::from)?;
            writer.flush().await.map_err(PyErr::from)
        })
    }

    /// Closes standard input (the command sees end of file).
    fn close_stdin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stdin = self.stdin.clone();
        spawn(py, async move {
            if let Some(mut writer) = stdin.lock().await.take() {
                let _ = writer.shutdown().await;
            }
            Ok(())
        })
    }

    /// Waits for the command to end; resolves to `(code, signal)`. A timeout raises
    /// `CommandTimeout` (its output is what the streams gave).
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let control = self.control.clone();
        let kill_requested = self.kill_requested.clone();
        spawn(py, async move {
            let mut guard = control.lock().await;
            let Some(process) = guard.0.as_mut() else {
                return Err(PyValueError::new_err("the process was already waited for"));
            };
            let status = tokio::select! {
                status = process.wait() => status,
                () = kill_requested.notified() => {
                    let _ = process.kill().await;
                    process.wait().await
                }
            };
            match status {
                Ok(status) => {
                    guard.0 = None;
                    Ok((status.code, status.signal))
                }
                Err(error) => {
                    if matches!(error, Error::CommandTimeout { .. }) {
                        guard.0 = None;
                    }
                    Err(to_py(error))
                }
            }
        })
    }

    /// Kills the command's process tree; killing a finished command is fine.
    fn kill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let control = self.control.clone();
        let kill_requested = self.kill_requested.clone();
        spawn(py, async move {
            match control.try_lock() {
                Ok(mut guard) => {
                    if let Some(process) = guard.0.as_mut() {
                        process.kill().await.map_err(to_py)?;
                    }
                }
                // A `wait` holds the process: it kills on this signal.
                Err(_) => kill_requested.notify_one(),
            }
            Ok(())
        })
    }
}
