//! Files through `modal-sandbox-fs-tools`, the helper Modal places in every sandbox: each
//! operation is one exec of it with a JSON command; failures come back as JSON on stderr.

use std::sync::Arc;

use bytes::Bytes;
use sandkit_core::{DirEntry, Error, FileErrorKind, FileKind, FileStat, Result};
use serde::Deserialize;
use serde_json::json;
use tonic::Code;

use crate::NAME;
use crate::client::Router;
use crate::error::{from_fs_tools, from_status};
use crate::exec::{self, Start};

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

    /// Runs one fs-tools command; `Ok` carries stdout of a successful run.
    async fn run(
        &self,
        path: &str,
        command: serde_json::Value,
        stdin: Option<Bytes>,
    ) -> Result<Bytes> {
        let start = Start {
            argv: vec![FS_TOOLS_PATH.to_owned(), command.to_string()],
            workdir: None,
            env: Default::default(),
            timeout: None,
        };
        let exec = exec::start(Arc::clone(&self.router), start)
            .await
            .map_err(|status| from_status(&status, &format!("file operation on `{path}`")))?;
        let feed = async {
            match stdin {
                Some(data) => exec.write_stdin_stream(data).await,
                None => Ok(()),
            }
        };
        let (fed, collected) = tokio::join!(feed, exec.collect());
        let (status, stdout, stderr) = collected?;
        if !status.success() {
            return Err(from_fs_tools(path, status.code, &stderr));
        }
        if let Err(failure) = fed {
            // FAILED_PRECONDITION / ABORTED mean the helper exited before reading all of
            // stdin; its exit status and stderr (handled above) say why.
            if !matches!(failure.code(), Code::FailedPrecondition | Code::Aborted) {
                return Err(from_status(&failure, &format!("writing `{path}`")));
            }
        }
        Ok(stdout)
    }

    pub async fn read(&self, path: &str) -> Result<Bytes> {
        let absolute = self.absolute(path)?;
        self.run(path, json!({"ReadFile": {"path": absolute}}), None)
            .await
    }

    pub async fn write(&self, path: &str, contents: Bytes) -> Result<()> {
        let absolute = self.absolute(path)?;
        self.run(
            path,
            json!({"WriteFile": {"path": absolute}}),
            Some(contents),
        )
        .await
        .map(drop)
    }

    pub async fn stat(&self, path: &str) -> Result<FileStat> {
        let absolute = self.absolute(path)?;
        let stdout = self
            .run(path, json!({"Stat": {"path": absolute}}), None)
            .await?;
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
            .run(path, json!({"ListFiles": {"path": absolute}}), None)
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
                None,
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
            None,
        )
        .await
        .map(drop)
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, stdout: &[u8]) -> Result<T> {
    serde_json::from_slice(stdout).map_err(|error| {
        Error::provider(
            NAME,
            format!("unexpected fs-tools output for `{path}`: {error}"),
        )
    })
}
