//! Running commands: the request, the streaming process, and collected output.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};

/// A stream of output chunks. Chunks are raw bytes: invalid UTF-8 survives.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// The writing end of a command's standard input. Shut it down (or drop it) to send EOF.
pub type StdinWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A command to run in a sandbox. `argv` is executed directly: there is no implicit shell.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory: relative to the sandbox's working directory, or absolute.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Open a standard input pipe (needs `Capabilities::exec_stdin`); otherwise stdin is
    /// empty.
    pub stdin: bool,
    /// Kill the whole process tree after this long, counted from the start and enforced
    /// whether or not anyone calls `wait` (needs `Capabilities::exec_timeout`).
    #[serde(with = "optional_secs", rename = "timeout_secs")]
    #[schemars(with = "Option<f64>")]
    pub timeout: Option<Duration>,
    /// Run as this user (needs `Capabilities::exec_run_as_user`).
    pub user: Option<String>,
    /// Run on a pseudo-terminal (needs `Capabilities::exec_pty`): standard output is
    /// the terminal's raw bytes (standard error is on it too, so the `stderr` stream is
    /// empty), standard input is typed on it (`\x03` is Ctrl-C), and
    /// [`ExecProcess::resize`] changes its size.
    pub pty: bool,
    /// The terminal's first size, with [`ExecRequest::pty`]: 24 rows by 80 columns when
    /// unset.
    pub pty_size: Option<PtySize>,
    /// Keep at most this many bytes of each stream when output is collected
    /// ([`ExecProcess::output`]); the rest is read and discarded, and the output says it
    /// was truncated. A streaming reader sees every byte.
    pub output_limit_bytes: Option<u64>,
}

impl ExecRequest {
    /// A request to run `argv`.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Opens standard input.
    pub fn stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs as another user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Limits collected output per stream.
    pub fn output_limit_bytes(mut self, limit: u64) -> Self {
        self.output_limit_bytes = Some(limit);
        self
    }

    /// Checks argv, cwd and env; errors name the field.
    pub fn validate(&self) -> Result<()> {
        crate::spec::validate_argv("argv", &self.argv, false)?;
        crate::spec::validate_env(
            "env",
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        if let Some(cwd) = &self.cwd
            && (cwd.is_empty() || cwd.contains('\0'))
        {
            return Err(Error::invalid_spec(
                "cwd",
                "must be a non-empty path without NUL",
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid_spec(
                "timeout_secs",
                "must be greater than zero",
            ));
        }
        if let Some(size) = &self.pty_size {
            if !self.pty {
                return Err(Error::invalid_spec("pty_size", "is set without `pty`"));
            }
            size.validate("pty_size")?;
        }
        Ok(())
    }
}

mod optional_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => s.serialize_some(&duration.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        secs.map(|secs| {
            Duration::try_from_secs_f64(secs).map_err(|_| {
                serde::de::Error::custom(format!(
                    "timeout_secs must be a non-negative number, got {secs}"
                ))
            })
        })
        .transpose()
    }
}

/// The size of a pseudo-terminal, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PtySize {
    /// Rows (lines), at least 1.
    pub rows: u16,
    /// Columns, at least 1.
    pub cols: u16,
}

impl Default for PtySize {
    fn default() -> Self {
        Self { rows: 24, cols: 80 }
    }
}

impl PtySize {
    /// Checks that neither side is 0.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Err(Error::invalid_spec(
                field,
                format!("a terminal of {} rows by {} columns", self.rows, self.cols),
            ));
        }
        Ok(())
    }
}

/// How a command ended. Death by signal `n` is reported as code `128 + n`, as shells do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExitStatus {
    /// The exit code (`128 + signal` when killed by a signal).
    pub code: i32,
    /// The signal that killed the command, when known.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// A normal exit with `code`.
    pub fn code(code: i32) -> Self {
        Self { code, signal: None }
    }

    /// Death by `signal`.
    pub fn signal(signal: i32) -> Self {
        Self {
            code: 128 + signal,
            signal: Some(signal),
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Some(signal) => write!(f, "killed by signal {signal} (exit {})", self.code),
            None => write!(f, "exit {}", self.code),
        }
    }
}

/// Waits for and kills a running command; implemented by each provider.
#[async_trait]
pub trait ExecControl: Send {
    /// Waits for the command to end. A timeout yields [`Error::CommandTimeout`] after the
    /// process tree was killed; a non-zero exit is an `Ok`.
    async fn wait(&mut self) -> Result<ExitStatus>;

    /// Kills the command's whole process tree. Killing a finished command is not an error.
    async fn kill(&mut self) -> Result<()>;

    /// Sends `signal` (a standard Linux signal number, already checked to be in `1..=31`) to the
    /// command's process group and every descendant. Signalling a finished command is
    /// not an error. A provider without `Capabilities::exec_signal` returns
    /// [`Error::Unsupported`].
    async fn signal(&mut self, signal: i32) -> Result<()>;

    /// Changes the size of the command's pseudo-terminal (already checked: the command
    /// has one, and the size is not 0). A provider without `Capabilities::exec_pty`
    /// returns [`Error::Unsupported`].
    async fn resize(&mut self, size: PtySize) -> Result<()>;
}

/// A running command: its output streams, its stdin, and its control.
///
/// Read `stdout` and `stderr` while waiting (or use [`ExecProcess::output`]): a command
/// whose output nobody reads may block once the transport's buffers fill.
pub struct ExecProcess {
    /// Standard output chunks.
    pub stdout: ByteStream,
    /// Standard error chunks.
    pub stderr: ByteStream,
    /// Standard input, when requested.
    pub stdin: Option<StdinWriter>,
    control: Box<dyn ExecControl>,
    timeout: Option<Duration>,
    output_limit_bytes: Option<u64>,
    pty: bool,
}

impl fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecProcess")
            .field("stdin", &self.stdin.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The collected result of a finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Standard output (at most the request's output limit).
    pub stdout: Bytes,
    /// Standard error (at most the request's output limit).
    pub stderr: Bytes,
    /// Whether either stream was cut at the output limit.
    pub truncated: bool,
}

impl ExecOutput {
    /// Standard output as text, with invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text, with invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl ExecProcess {
    /// Assembles a process from a provider's parts. `request` supplies the timeout and
    /// output limit that [`ExecProcess::output`] reports.
    pub fn new(
        request: &ExecRequest,
        stdout: ByteStream,
        stderr: ByteStream,
        stdin: Option<StdinWriter>,
        control: Box<dyn ExecControl>,
    ) -> Self {
        Self {
            stdout,
            stderr,
            stdin,
            control,
            timeout: request.timeout,
            output_limit_bytes: request.output_limit_bytes,
            pty: request.pty,
        }
    }

    /// Waits for the command to end (see [`ExecControl::wait`]).
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        self.control.wait().await
    }

    /// Kills the command's process tree.
    pub async fn kill(&mut self) -> Result<()> {
        self.control.kill().await
    }

    /// Sends `signal` to the command's process group (needs `Capabilities::exec_signal`):
    /// the standard Linux numbers (`1..=31`), such as 2 for `SIGINT` or 15 for
    /// `SIGTERM`. Anything else is [`Error::InvalidSpec`] naming `signal`.
    pub async fn signal(&mut self, signal: i32) -> Result<()> {
        if !(1..=31).contains(&signal) {
            return Err(Error::invalid_spec(
                "signal",
                format!("{signal} is not a standard signal number (1 to 31)"),
            ));
        }
        self.control.signal(signal).await
    }

    /// Whether the command runs on a pseudo-terminal ([`ExecRequest::pty`]).
    pub fn pty(&self) -> bool {
        self.pty
    }

    /// Changes the size of the command's pseudo-terminal. A command started without
    /// [`ExecRequest::pty`], or a size with a 0, is [`Error::InvalidSpec`].
    pub async fn resize(&mut self, size: PtySize) -> Result<()> {
        if !self.pty {
            return Err(Error::invalid_spec(
                "pty",
                "the command runs without a pseudo-terminal, so it has no size",
            ));
        }
        size.validate("pty_size")?;
        self.control.resize(size).await
    }

    /// Writes `input` to stdin (if open) and closes it, then collects both streams and
    /// waits. On a timeout, the [`Error::CommandTimeout`] carries the output so far.
    pub async fn output_with_stdin(mut self, input: Bytes) -> Result<ExecOutput> {
        let stdin = self.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A command that exits without reading all its input closes the pipe; that
                // is its business, not an error of ours.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let (_, output) = tokio::join!(feed, self.output());
        output
    }

    /// Closes stdin, collects both streams and waits. On a timeout, the
    /// [`Error::CommandTimeout`] carries the output so far.
    pub async fn output(mut self) -> Result<ExecOutput> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        let limit = self
            .output_limit_bytes
            .map(|l| l as usize)
            .unwrap_or(usize::MAX);
        // Wait while collecting: a provider that enforces the timeout in `wait` must see
        // it called before the streams end, or a command that never exits would hang here.
        let stdout = collect(&mut self.stdout, limit);
        let stderr = collect(&mut self.stderr, limit);
        let ((stdout, stdout_cut, stdout_err), (stderr, stderr_cut, stderr_err), status) =
            tokio::join!(stdout, stderr, self.control.wait());
        match status {
            Err(Error::CommandTimeout { timeout, .. }) => Err(Error::CommandTimeout {
                timeout,
                stdout,
                stderr,
            }),
            Err(other) => Err(other),
            Ok(status) => {
                if let Some(error) = stdout_err.or(stderr_err) {
                    return Err(error);
                }
                Ok(ExecOutput {
                    status,
                    stdout,
                    stderr,
                    truncated: stdout_cut || stderr_cut,
                })
            }
        }
    }
}

/// Reads a stream to its end, keeping at most `limit` bytes.
async fn collect(stream: &mut ByteStream, limit: usize) -> (Bytes, bool, Option<Error>) {
    let mut buffer = BytesMut::new();
    let mut truncated = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                let room = limit.saturating_sub(buffer.len());
                if chunk.len() > room {
                    truncated = true;
                }
                buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Err(error) => return (buffer.freeze(), truncated, Some(error)),
        }
    }
    (buffer.freeze(), truncated, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Finished(Result<ExitStatus>);

    #[async_trait]
    impl ExecControl for Finished {
        async fn wait(&mut self) -> Result<ExitStatus> {
            std::mem::replace(&mut self.0, Ok(ExitStatus::code(0)))
        }
        async fn kill(&mut self) -> Result<()> {
            Ok(())
        }
        async fn signal(&mut self, _signal: i32) -> Result<()> {
            Ok(())
        }
        async fn resize(&mut self, _size: PtySize) -> Result<()> {
            Ok(())
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn output_keeps_streams_apart_and_applies_the_limit() {
        let request = ExecRequest::new(["x"]).output_limit_bytes(4);
        let process = ExecProcess::new(
            &request,
            chunks(&[b"abc", b"def"]),
            chunks(&[b"\xff\xfe"]),
            None,
            Box::new(Finished(Ok(ExitStatus::code(3)))),
        );
        let output = process.output().await.unwrap();
        assert_eq!(output.stdout, Bytes::from_static(b"abcd"));
        assert_eq!(output.stderr, Bytes::from_static(b"\xff\xfe"));
        assert!(output.truncated);
        assert_eq!(output.status.code, 3);
    }

    #[tokio::test]
    async fn a_timeout_carries_the_output_so_far() {
        let request = ExecRequest::new(["x"]);
        let timeout = Error::CommandTimeout {
            timeout: Duration::from_secs(1),
            stdout: Bytes::new(),
            stderr: Bytes::new(),
        };
        let process = ExecProcess::new(
            &request,
            chunks(&[b"partial"]),
            chunks(&[]),
            None,
            Box::new(Finished(Err(timeout))),
        );
        match process.output().await {
            Err(Error::CommandTimeout { stdout, .. }) => assert_eq!(stdout, "partial"),
            other => panic!("expected CommandTimeout, got {other:?}"),
        }
    }

    #[test]
    fn signals_map_to_128_plus_n() {
        assert_eq!(ExitStatus::signal(15).code, 143);
        assert!(!ExitStatus::signal(15).success());
    }

    #[test]
    fn requests_validate_argv_and_env() {
        assert!(ExecRequest::new(Vec::<String>::new()).validate().is_err());
        let error = ExecRequest::new(["a\0b"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("argv[0]"), "{error}");
        let error = ExecRequest::new(["true"])
            .env("X=Y", "1")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("env.X=Y"), "{error}");
    }
}
