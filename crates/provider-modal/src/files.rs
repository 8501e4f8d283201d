//! Files through `modal-sandbox-fs-tools`, the helper Modal places in every sandbox: each
//! operation is one exec of it with a JSON command; failures come back as JSON on stderr.
//! Reads hand stdout on as it arrives and writes stream stdin, so no file is held whole.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{
    ByteStream, DirEntry, Error, ExecControl, FileErrorKind, FileKind, FileStat, Result,
};
use sandkit_modal_proto::task_command_router::TaskExecStdioFileDescriptor;
use serde::Deserialize;
use serde_json::json;
use tonic::Code;

use crate::NAME;
use crate::client::Router;
use crate::error::{from_fs_tools, from_status};
use crate::exec::{self, Control, Exec, STDIN_RETAIN_BYTES, Start, StdinFailure, gather};

/// Where Modal places its filesystem helper in every sandbox; file operations exec it.
pub const FS_TOOLS_PATH: &str = "/__modal/.bin/modal-sandbox-fs-tools";

/// One entry as fs-tools reports it.
#[derive(Debug, Deserialize)]
struct FileInfo {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mode: u32,
    #[serde(default)]
    modified_time: Option<f64>,
}

impl FileInfo {
    fn kind(&self) -> FileKind {
        match self.kind.as_str() {
            "file" => FileKind::File,
            "directory" => FileKind::Directory,
            "symlink" => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// The files of one sandbox, with relative paths resolved against its working directory.
pub(crate) struct Files {
    pub router: Arc<Router>,
    pub workdir: String,
}

impl Files {
    /// `path` made absolute.
    pub fn absolute(&self, path: &str) -> Result<String> {
        if path.is_empty() || path.contains('\0') {
            return Err(Error::invalid_spec(
                "path",
                "must be a non-empty path without NUL",
            ));
        }
        Ok(if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{}", self.workdir.trim_end_matches('/'), path)
        })
    }

    /// Starts one fs-tools command.
    async fn start(&self, path: &str, command: serde_json::Value) -> Result<Exec> {
        let start = Start {
            argv: vec![FS_TOOLS_PATH.to_owned(), command.to_string()],
            workdir: None,
            env: Default::default(),
            timeout: None,
        };
        exec::start(Arc::clone(&self.router), start)
            .await
            .map_err(|status| from_status(&status, &format!("file operation on `{path}`")))
    }

    /// Runs one fs-tools command without input; `Ok` carries stdout of a successful run.
    async fn run(&self, path: &str, command: serde_json::Value) -> Result<Bytes> {
        let (status, stdout, stderr) = self.start(path, command).await?.collect().await?;
        if !status.success() {
            return Err(from_fs_tools(path, status.code, &stderr));
        }
        Ok(stdout)
    }

    /// The whole file, collected from [`Files::read_stream`].
    pub async fn read(&self, path: &str) -> Result<Bytes> {
        sandkit_core::collect(self.read_stream(path).await?).await
    }

    /// The file as fs-tools' stdout arrives, chunk by chunk, never collected. Errors about
    /// the path come before the first chunk: this waits for the first chunk or the end of
    /// stdout. A failure after data has flowed ends the stream with an `Err` item.
    pub async fn read_stream(&self, path: &str) -> Result<ByteStream> {
        let absolute = self.absolute(path)?;
        let exec = self
            .start(path, json!({"ReadFile": {"path": absolute}}))
            .await?;
        let mut stdout = exec.output(TaskExecStdioFileDescriptor::Stdout);
        let first = match stdout.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => return Err(error),
            None => {
                finished(&exec, path).await?;
                return Ok(Box::pin(futures::stream::empty()));
            }
        };
        let tail = ReadTail {
            exec,
            stdout,
            path: path.to_owned(),
        };
        let rest = futures::stream::unfold(Some(tail), |tail| async move {
            let mut tail = tail?;
            match tail.stdout.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), Some(tail))),
                Some(Err(error)) => Some((Err(error), None)),
                // Stdout is complete: only the exit status can still say it is not the file.
                None => finished(&tail.exec, &tail.path)
                    .await
                    .err()
                    .map(|error| (Err(error), None)),
            }
        });
        Ok(Box::pin(
            futures::stream::once(std::future::ready(Ok(first))).chain(rest),
        ))
    }

    /// Replaces the file with `contents`.
    pub async fn write(&self, path: &str, contents: Bytes) -> Result<()> {
        let input: ByteStream = Box::pin(futures::stream::once(std::future::ready(Ok(contents))));
        // Kept whole for resuming: the chunks are slices of the one buffer.
        self.write_from(path, input, usize::MAX).await
    }

    /// Replaces the file with `contents`, streamed into fs-tools' stdin as it arrives.
    pub async fn write_stream(&self, path: &str, contents: ByteStream) -> Result<()> {
        self.write_from(path, contents, STDIN_RETAIN_BYTES).await
    }

    async fn write_from(&self, path: &str, contents: ByteStream, retain: usize) -> Result<()> {
        let absolute = self.absolute(path)?;
        let exec = self
            .start(path, json!({"WriteFile": {"path": absolute}}))
            .await?;
        let feed = exec.write_stdin_from(contents, retain);
        let outcome = exec.collect();
        tokio::pin!(feed, outcome);
        let first = tokio::select! {
            fed = &mut feed => Ok(fed),
            collected = &mut outcome => Err(collected),
        };
        let (fed, collected) = match first {
            Ok(Err(StdinFailure::Input(error))) => return Err(abandon(exec.clone(), error).await),
            Ok(fed) => (fed, outcome.await),
            // The helper ended before its input did; unless it succeeded, it says why.
            Err(collected) => match collected {
                Ok((status, ..)) if status.success() => (feed.await, collected),
                collected => (Ok(()), collected),
            },
        };
        let (status, _, stderr) = collected?;
        if !status.success() {
            return Err(from_fs_tools(path, status.code, &stderr));
        }
        match fed {
            Ok(()) => Ok(()),
            Err(StdinFailure::Input(error)) => Err(abandon(exec.clone(), error).await),
            // FAILED_PRECONDITION / ABORTED mean the helper exited before reading all of
            // stdin; its exit status and stderr (handled above) say why.
            Err(StdinFailure::Status(failure))
                if matches!(failure.code(), Code::FailedPrecondition | Code::Aborted) =>
            {
                Ok(())
            }
            Err(StdinFailure::Status(failure)) => {
                Err(from_status(&failure, &format!("writing `{path}`")))
            }
        }
    }

    pub async fn stat(&self, path: &str) -> Result<FileStat> {
        let absolute = self.absolute(path)?;
        let stdout = self.run(path, json!({"Stat": {"path": absolute}})).await?;
        let info: FileInfo = parse(path, &stdout)?;
        Ok(FileStat {
            kind: info.kind(),
            size_bytes: info.size,
            mode: info.mode & 0o7777,
            modified_unix_secs: info
                .modified_time
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(|t| t as u64),
        })
    }

    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        let absolute = self.absolute(path)?;
        let stdout = self
            .run(path, json!({"ListFiles": {"path": absolute}}))
            .await?;
        let infos: Vec<FileInfo> = parse(path, &stdout)?;
        let mut entries: Vec<DirEntry> = infos
            .into_iter()
            .map(|info| DirEntry {
                kind: info.kind(),
                size_bytes: info.size,
                name: info.name,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    pub async fn make_dir(&self, path: &str) -> Result<()> {
        let absolute = self.absolute(path)?;
        let made = self
            .run(
                path,
                json!({"MakeDirectory": {"path": absolute, "parents": true}}),
            )
            .await;
        match made {
            Ok(_) => Ok(()),
            // An existing directory is fine; an existing file is not.
            Err(Error::FileOperation {
                kind: FileErrorKind::AlreadyExists,
                ..
            }) => match self.stat(path).await?.kind {
                FileKind::Directory => Ok(()),
                _ => Err(Error::file(path, FileErrorKind::AlreadyExists)),
            },
            Err(error) => Err(error),
        }
    }

    pub async fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        let absolute = self.absolute(path)?;
        self.run(
            path,
            json!({"Remove": {"path": absolute, "recursive": recursive}}),
        )
        .await
        .map(drop)
    }
}

/// The rest of a read: stdout from the second chunk on, then the exit status.
struct ReadTail {
    exec: Exec,
    stdout: ByteStream,
    path: String,
}

/// Checks a run of fs-tools whose stdout has ended: `Err` when it failed.
async fn finished(exec: &Exec, path: &str) -> Result<()> {
    let (status, stderr) = tokio::join!(
        exec.wait(),
        gather(exec.output(TaskExecStdioFileDescriptor::Stderr))
    );
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(from_fs_tools(path, status.code, &stderr?))
    }
}

/// A write whose input failed: fs-tools never got EOF, so it is killed rather than left
/// waiting (what it wrote so far stays). Returns the input's error.
async fn abandon(exec: Exec, error: Error) -> Error {
    if let Err(failure) = Control::new(exec).kill().await {
        tracing::debug!(%failure, "stopping an abandoned fs-tools write failed");
    }
    error
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, stdout: &[u8]) -> Result<T> {
    serde_json::from_slice(stdout).map_err(|error| {
        Error::provider(
            NAME,
            format!("unexpected fs-tools output for `{path}`: {error}"),
        )
    })
}
