//! The filesystem API of Modal's clients: each operation is an exec of
//! `/__modal/.bin/modal-sandbox-fs-tools '<json command>'`, answering on stdout (data or
//! JSON) and, on failure, with a non-zero exit and a JSON error payload on stderr. The
//! emulator answers these execs itself with the backend provider's file operations.

use std::sync::Arc;

use bytes::Bytes;
use sandkit_core::{
    DirEntry, Error as CoreError, FileErrorKind, FileKind, FileStat, SandboxId, SandboxProvider,
};
use serde::Deserialize;
use serde_json::json;

use super::{SandboxRecord, map_path};

/// The path clients exec for filesystem operations.
pub const FS_TOOLS_PATH: &str = "/__modal/.bin/modal-sandbox-fs-tools";

/// One fs-tools command, as the JSON argument spells it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum Command {
    /// Print a file's bytes.
    ReadFile {
        /// Absolute path.
        path: String,
    },
    /// Replace a file with stdin, creating parents.
    WriteFile {
        /// Absolute path.
        path: String,
    },
    /// Print a JSON array of FileInfo.
    ListFiles {
        /// Absolute path.
        path: String,
    },
    /// Print one FileInfo (lstat semantics).
    Stat {
        /// Absolute path.
        path: String,
    },
    /// Create a directory.
    MakeDirectory {
        /// Absolute path.
        path: String,
        /// Create missing parents, and accept an existing directory.
        #[serde(default)]
        parents: bool,
    },
    /// Remove a file or directory.
    Remove {
        /// Absolute path.
        path: String,
        /// Remove a directory's contents too.
        #[serde(default)]
        recursive: bool,
    },
    /// Stream change events.
    Watch {
        /// Absolute path.
        path: String,
    },
}

impl Command {
    /// Parses the JSON argument; `None` when it is not an fs-tools command.
    pub fn parse(argument: &str) -> Option<Command> {
        serde_json::from_str(argument).ok()
    }

    /// Whether the command reads its input from stdin.
    pub fn reads_stdin(&self) -> bool {
        matches!(self, Command::WriteFile { .. })
    }
}

/// What an fs-tools run prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: Bytes,
    /// Standard error.
    pub stderr: Bytes,
    /// Exit code.
    pub exit_code: i32,
}

impl Outcome {
    fn ok(stdout: impl Into<Bytes>) -> Self {
        Self {
            stdout: stdout.into(),
            stderr: Bytes::new(),
            exit_code: 0,
        }
    }

    /// A failure with fs-tools' JSON error payload.
    pub fn error(kind: &str, message: impl Into<String>) -> Self {
        let payload = json!({"version": 1, "error_kind": kind, "message": message.into()});
        Self {
            stdout: Bytes::new(),
            stderr: Bytes::from(payload.to_string()),
            exit_code: 1,
        }
    }

    fn from_error(error: &CoreError, for_mkdir: bool) -> Self {
        match error {
            CoreError::FileOperation { kind, .. } => {
                let kind_name = match kind {
                    FileErrorKind::NotFound => "NotFound",
                    FileErrorKind::IsADirectory => "IsDirectory",
                    FileErrorKind::NotADirectory => "NotDirectory",
                    FileErrorKind::PermissionDenied | FileErrorKind::OutsideSandbox => {
                        "PermissionDenied"
                    }
                    FileErrorKind::AlreadyExists if for_mkdir => "PathAlreadyExists",
                    FileErrorKind::AlreadyExists => "AlreadyExists",
                    FileErrorKind::DirectoryNotEmpty => "DirectoryNotEmpty",
                    FileErrorKind::TooLarge => "FileTooLarge",
                    _ => "Io",
                };
                Self::error(kind_name, kind.to_string())
            }
            CoreError::Unsupported { feature, .. } => {
                Self::error("NotSupported", format!("{feature} is not supported"))
            }
            other => Self::error("Io", other.to_string()),
        }
    }
}

/// Whether a backend error means the sandbox is gone (the exec then fails as a whole, the
/// way Modal's router answers execs in a sandbox that shut down).
pub fn is_sandbox_gone(error: &CoreError) -> bool {
    matches!(error, CoreError::NotFound { .. })
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File | FileKind::Other => "file",
        FileKind::Directory => "directory",
        FileKind::Symlink => "symlink",
    }
}

/// `ls -l` style permission string, e.g. `-rw-r--r--`.
fn permissions(kind: FileKind, mode: u32) -> String {
    let mut text = String::with_capacity(10);
    text.push(match kind {
        FileKind::Directory => 'd',
        FileKind::Symlink => 'l',
        FileKind::File | FileKind::Other => '-',
    });
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        text.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        text.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        text.push(if bits & 0o1 != 0 { 'x' } else { '-' });
    }
    text
}

/// FileInfo as fs-tools prints it. Owner and group are not known through the provider
/// API, so they are empty.
fn file_info(path: &str, stat: &FileStat) -> serde_json::Value {
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("/");
    json!({
        "name": name,
        "path": path,
        "type": kind_name(stat.kind),
        "size": stat.size_bytes,
        "mode": stat.mode,
        "permissions": permissions(stat.kind, stat.mode),
        "owner": "",
        "group": "",
        "modified_time": stat.modified_unix_secs.map_or(0.0, |secs| secs as f64),
        "symlink_target": null,
    })
}

fn child_path(directory: &str, entry: &DirEntry) -> String {
    if directory.ends_with('/') {
        format!("{directory}{}", entry.name)
    } else {
        format!("{directory}/{}", entry.name)
    }
}

/// Runs `command` against `sandbox` at `backend`. Paths are Modal paths: they are shown as
/// given and mapped to the backend's paths for the operations. `stdin` is the input of
/// `WriteFile`. `Err` means the sandbox itself is unavailable.
pub(crate) async fn run(
    backend: &Arc<dyn SandboxProvider>,
    sandbox: &SandboxRecord,
    command: &Command,
    stdin: Bytes,
) -> Result<Outcome, CoreError> {
    let files = Files {
        backend,
        id: &sandbox.backend_id,
        root: sandbox.path_root.as_deref(),
    };
    let result = match command {
        Command::ReadFile { path } => files.read_file(path).await.map(Outcome::ok),
        Command::WriteFile { path } => files
            .write_file(path, stdin)
            .await
            .map(|()| Outcome::ok(Bytes::new())),
        Command::Stat { path } => files
            .stat(path)
            .await
            .map(|stat| Outcome::ok(file_info(path, &stat).to_string())),
        Command::ListFiles { path } => list_files(&files, path).await,
        Command::MakeDirectory { path, parents } => make_directory(&files, path, *parents).await,
        Command::Remove { path, recursive } => files
            .remove(path, *recursive)
            .await
            .map(|()| Outcome::ok(Bytes::new())),
        Command::Watch { .. } => Ok(Outcome::error(
            "NotSupported",
            "watching files is not supported by modal-fake",
        )),
    };
    match result {
        Ok(outcome) => Ok(outcome),
        Err(error) if is_sandbox_gone(&error) => Err(error),
        Err(error) => Ok(Outcome::from_error(
            &error,
            matches!(command, Command::MakeDirectory { .. }),
        )),
    }
}

async fn list_files(files: &Files<'_>, path: &str) -> Result<Outcome, CoreError> {
    let stat = files.stat(path).await?;
    if stat.kind != FileKind::Directory {
        return Ok(Outcome::error("NotDirectory", "Not a directory"));
    }
    let entries = files.list_dir(path).await?;
    let mut infos = Vec::with_capacity(entries.len());
    for entry in &entries {
        let child = child_path(path, entry);
        // An entry can vanish between the listing and its stat; list what is left.
        match files.stat(&child).await {
            Ok(stat) => infos.push(file_info(&child, &stat)),
            Err(CoreError::FileOperation {
                kind: FileErrorKind::NotFound,
                ..
            }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Outcome::ok(serde_json::Value::Array(infos).to_string()))
}

async fn make_directory(
    files: &Files<'_>,
    path: &str,
    parents: bool,
) -> Result<Outcome, CoreError> {
    if !parents {
        // Without `parents` the path must not exist and its parent must: the provider's
        // make_dir is `mkdir -p`, so check both first.
        match files.stat(path).await {
            Ok(_) => return Ok(Outcome::error("PathAlreadyExists", "Path already exists")),
            Err(CoreError::FileOperation {
                kind: FileErrorKind::NotFound,
                ..
            }) => {}
            Err(error) => return Err(error),
        }
        let parent = match path.trim_end_matches('/').rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((parent, _)) => parent,
        };
        match files.stat(parent).await {
            Ok(stat) if stat.kind == FileKind::Directory => {}
            Ok(_) => return Ok(Outcome::error("NotDirectory", "Not a directory")),
            Err(CoreError::FileOperation {
                kind: FileErrorKind::NotFound,
                ..
            }) => return Ok(Outcome::error("NotFound", "No such file or directory")),
            Err(error) => return Err(error),
        }
    } else if let Ok(stat) = files.stat(path).await
        && stat.kind != FileKind::Directory
    {
        return Ok(Outcome::error("PathAlreadyExists", "Path already exists"));
    }
    files
        .make_dir(path)
        .await
        .map(|()| Outcome::ok(Bytes::new()))
}

/// The backend's file operations on one sandbox, taking Modal paths. Errors keep naming
/// the Modal path.
struct Files<'a> {
    backend: &'a Arc<dyn SandboxProvider>,
    id: &'a SandboxId,
    root: Option<&'a str>,
}

impl Files<'_> {
    fn path(&self, path: &str) -> String {
        map_path(self.root, path)
    }

    fn rename(&self, error: CoreError, path: &str) -> CoreError {
        match error {
            CoreError::FileOperation { kind, .. } => CoreError::file(path, kind),
            other => other,
        }
    }

    async fn read_file(&self, path: &str) -> Result<Bytes, CoreError> {
        let result = self.backend.read_file(self.id, &self.path(path)).await;
        result.map_err(|e| self.rename(e, path))
    }

    async fn write_file(&self, path: &str, contents: Bytes) -> Result<(), CoreError> {
        let result = self
            .backend
            .write_file(self.id, &self.path(path), contents)
            .await;
        result.map_err(|e| self.rename(e, path))
    }

    async fn stat(&self, path: &str) -> Result<FileStat, CoreError> {
        let result = self.backend.stat(self.id, &self.path(path)).await;
        result.map_err(|e| self.rename(e, path))
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, CoreError> {
        let result = self.backend.list_dir(self.id, &self.path(path)).await;
        result.map_err(|e| self.rename(e, path))
    }

    async fn make_dir(&self, path: &str) -> Result<(), CoreError> {
        let result = self.backend.make_dir(self.id, &self.path(path)).await;
        result.map_err(|e| self.rename(e, path))
    }

    async fn remove(&self, path: &str, recursive: bool) -> Result<(), CoreError> {
        let result = self
            .backend
            .remove(self.id, &self.path(path), recursive)
            .await;
        result.map_err(|e| self.rename(e, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_clients_send_them() {
        assert_eq!(
            Command::parse(r#"{"ReadFile":{"path":"/tmp/a"}}"#),
            Some(Command::ReadFile {
                path: "/tmp/a".into()
            })
        );
        assert_eq!(
            Command::parse(r#"{"MakeDirectory":{"path":"/d","parents":true}}"#),
            Some(Command::MakeDirectory {
                path: "/d".into(),
                parents: true
            })
        );
        assert_eq!(
            Command::parse(
                r#"{"Watch":{"path":"/d","recursive":false,"filter":null,"timeout_secs":null}}"#
            ),
            Some(Command::Watch { path: "/d".into() })
        );
        assert_eq!(Command::parse("not json"), None);
        assert!(
            Command::parse(r#"{"WriteFile":{"path":"/x"}}"#)
                .unwrap()
                .reads_stdin()
        );
    }

    #[test]
    fn errors_use_the_fs_tools_payload() {
        let outcome =
            Outcome::from_error(&CoreError::file("/x", FileErrorKind::IsADirectory), false);
        assert_eq!(outcome.exit_code, 1);
        let payload: serde_json::Value = serde_json::from_slice(&outcome.stderr).unwrap();
        assert_eq!(payload["error_kind"], "IsDirectory");
        assert_eq!(payload["version"], 1);
        let exists =
            Outcome::from_error(&CoreError::file("/x", FileErrorKind::AlreadyExists), true);
        let payload: serde_json::Value = serde_json::from_slice(&exists.stderr).unwrap();
        assert_eq!(payload["error_kind"], "PathAlreadyExists");
    }

    #[test]
    fn file_info_has_every_key_clients_read() {
        let stat = FileStat {
            kind: FileKind::File,
            size_bytes: 3,
            mode: 0o644,
            modified_unix_secs: Some(10),
        };
        let info = file_info("/tmp/a.txt", &stat);
        for key in [
            "name",
            "path",
            "type",
            "size",
            "mode",
            "permissions",
            "owner",
            "group",
            "modified_time",
            "symlink_target",
        ] {
            assert!(info.get(key).is_some(), "{key}");
        }
        assert_eq!(info["name"], "a.txt");
        assert_eq!(info["permissions"], "-rw-r--r--");
    }
}
