//! Files through the engine's archive API: a tar archive in (PUT), a tar archive out
//! (GET), and a path's metadata (HEAD). The engine resolves every path inside the
//! container's root, so `..` and symlinks cannot reach the host.
//!
//! The API has no delete, so `remove` runs `rm`/`rmdir` in the sandbox (any image with
//! coreutils or busybox has them).
//!
//! A sandbox on sandkit's agent does none of this: its agent opens the files inside the
//! container, in one round trip each (see `sandkit_agent_host`'s files). Archives stay
//! on the engine's API.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use sandkit_core::{DirEntry, Error, ExecRequest, FileErrorKind, FileKind, FileStat, Result};

use crate::client::Engine;
use crate::error::{self, Subject};
use crate::sandbox::Meta;

/// How many symlinks a read or write follows before giving up (as the kernel's ELOOP).
pub(crate) const MAX_SYMLINK_HOPS: usize = 16;

// Go's `os.FileMode` bits, which the engine reports in a path's stat.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;
const GO_MODE_IRREGULAR: u32 = 1 << 19;

/// Paths of this many bytes or more are refused, as the kernel refuses them (`PATH_MAX`
/// counts the terminating NUL).
pub(crate) const PATH_MAX: usize = 4096;

/// Refuses what no file operation may send to the engine: a NUL byte (Go would cut the
/// path there, or fail with a host path in the message) and paths of [`PATH_MAX`] bytes or
/// more. Both are [`Error::FileOperation`] naming the path.
pub(crate) fn check_path(path: &str) -> Result<()> {
    if path.contains('\0') {
        return Err(Error::file(
            path,
            FileErrorKind::Other("the path contains a NUL byte".to_owned()),
        ));
    }
    if path.len() >= PATH_MAX {
        return Err(Error::file(
            path,
            FileErrorKind::Other(format!(
                "the path is {} bytes; paths must be shorter than {PATH_MAX}",
                path.len()
            )),
        ));
    }
    Ok(())
}

/// A path's metadata as the engine reports it, without following a final symlink.
#[derive(Debug, Clone)]
struct PathStat {
    stat: FileStat,
    link_target: String,
}

/// File operations on one sandbox.
pub(crate) struct Files<'a> {
    pub engine: &'a Engine,
    pub meta: &'a Meta,
}

impl Files<'_> {
    pub(crate) fn id(&self) -> &str {
        &self.meta.container_id
    }

    /// The sandbox's agent, which serves its files when it has one.
    pub(crate) fn agent(&self) -> Option<&sandkit_agent_host::Agent> {
        self.meta.agent.as_ref()
    }

    /// `path` made absolute, once [`check_path`] accepts it.
    pub(crate) fn absolute_checked(&self, path: &str) -> Result<String> {
        check_path(path)?;
        let absolute = self.meta.absolute(path);
        check_path(&absolute).map_err(|_| {
            Error::file(
                path,
                FileErrorKind::Other(format!(
                    "the path resolves to {} bytes; paths must be shorter than {PATH_MAX}",
                    absolute.len()
                )),
            )
        })?;
        Ok(absolute)
    }

    pub(crate) fn subject<'p>(&'p self, shown: &'p str) -> Subject<'p> {
        Subject::Path {
            sandbox: self.id(),
            path: shown,
        }
    }

    /// Metadata of `absolute` (shown to callers as `shown`), not following a final
    /// symlink; `None` when nothing is there.
    async fn lstat(&self, absolute: &str, shown: &str) -> Result<Option<PathStat>> {
        self.lstat_checked(absolute, shown, true).await
    }

    /// [`Files::lstat`]; with `check_sandbox` false, a missing container may look like a
    /// missing path (for callers whose next request finds out anyway).
    async fn lstat_checked(
        &self,
        absolute: &str,
        shown: &str,
        check_sandbox: bool,
    ) -> Result<Option<PathStat>> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(absolute)
            .build();
        match self
            .engine
            .docker
            .get_container_archive_info(self.id(), Some(options))
            .await
        {
            Ok(stat) => Ok(Some(PathStat {
                stat: file_stat(stat.file_mode, stat.size, stat.modification_time.as_deref()),
                link_target: stat.link_target,
            })),
            Err(e) if error::is_not_found(&e) => {
                // A HEAD answer has no body, so the engine's 404 does not say whether
                // the container or the file is missing: ask about the container.
                if check_sandbox {
                    self.ensure_sandbox().await?;
                }
                Ok(None)
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message,
            }) if message.is_empty() || message.contains("not a directory") => {
                // The engine's lstat met a file where a directory should be.
                Err(Error::file(shown, FileErrorKind::NotADirectory))
            }
            Err(e) => Err(error::map(e, self.subject(shown))),
        }
    }

    /// Fails with [`Error::NotFound`] unless the container exists.
    async fn ensure_sandbox(&self) -> Result<()> {
        self.engine
            .docker
            .inspect_container(self.id(), None)
            .await
            .map(drop)
            .map_err(|e| error::map(e, Subject::Sandbox(self.id())))
    }

    /// Follows symlinks from `absolute` to the path they end at, with its stat (`None`
    /// when that path does not exist, or when the sandbox is gone and `check_sandbox` is
    /// false).
    async fn resolve(
        &self,
        absolute: &str,
        shown: &str,
        check_sandbox: bool,
    ) -> Result<(String, Option<PathStat>)> {
        let mut current = absolute.to_owned();
        for _ in 0..MAX_SYMLINK_HOPS {
            let stat = self.lstat_checked(&current, shown, check_sandbox).await?;
            match stat {
                Some(stat) if stat.stat.kind == FileKind::Symlink => {
                    current = link_destination(&current, &stat.link_target);
                }
                other => return Ok((current, other)),
            }
        }
        Err(Error::file(
            shown,
            FileErrorKind::Other("too many levels of symbolic links".to_owned()),
        ))
    }

    /// Reads a whole regular file, following symlinks (through
    /// [`Files::read_stream`], so only the contents are held, not the engine's archive).
    pub async fn read(&self, path: &str) -> Result<Bytes> {
        let (size, mut stream) = match self.agent() {
            Some(agent) => (
                0,
                agent
                    .read_file_stream(self.absolute_checked(path)?, path)
                    .await?,
            ),
            None => self.read_stream_sized(path).await?,
        };
        let mut contents = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            contents.extend_from_slice(&chunk?);
        }
        Ok(contents.freeze())
    }

    /// Creates or replaces a file (mode 0644), creating missing parent directories.
    ///
    /// One upload in the common case: the engine is told never to replace a directory
    /// with a file (it answers with an error instead, which becomes `IsADirectory`), so
    /// no stat is needed first. Like tar, it replaces a symlink at the path with the
    /// file rather than writing through it.
    pub async fn write(&self, path: &str, contents: Bytes) -> Result<()> {
        if let Some(agent) = self.agent() {
            let contents = Box::pin(futures::stream::once(async { Ok(contents) }));
            return agent
                .write_file_stream(self.absolute_checked(path)?, path, contents)
                .await;
        }
        self.write_contents(path, crate::transfer::Contents::Memory(contents))
            .await
    }

    /// Metadata of a path, not following a final symlink.
    pub async fn stat(&self, path: &str) -> Result<FileStat> {
        if let Some(agent) = self.agent() {
            return agent.stat(self.absolute_checked(path)?, path).await;
        }
        self.lstat(&self.absolute_checked(path)?, path)
            .await?
            .map(|stat| stat.stat)
            .ok_or_else(|| Error::file(path, FileErrorKind::NotFound))
    }

    /// Entries of a directory, sorted by name. The archive of the directory is read as
    /// it streams, keeping only the names of its direct entries.
    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        let absolute = self.absolute_checked(path)?;
        if let Some(agent) = self.agent() {
            return agent.list_dir(absolute, path).await;
        }
        // `dir/.` makes the engine follow a symlinked directory and name entries `./x`.
        let request = if absolute == "/" {
            "/.".to_owned()
        } else {
            format!("{absolute}/.")
        };
        let stream = self.download_stream(&request, path).await?;
        let reader = tokio_util::io::StreamReader::new(
            stream.map_err(|e| std::io::Error::other(e.to_string())),
        );
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let shown = path.to_owned();
        let mut entries = tokio::task::spawn_blocking(move || direct_entries(bridge, &shown))
            .await
            .map_err(|e| error::other(format!("listing a directory: {e}")))??;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Creates a directory and its missing parents; an existing directory is fine.
    pub async fn make_dir(&self, path: &str) -> Result<()> {
        if let Some(agent) = self.agent() {
            return agent.make_dir(self.absolute_checked(path)?, path).await;
        }
        self.make_dir_absolute(&self.absolute_checked(path)?, path)
            .await
    }

    pub(crate) async fn make_dir_absolute(&self, absolute: &str, shown: &str) -> Result<()> {
        let parts: Vec<&str> = absolute.split('/').filter(|p| !p.is_empty()).collect();
        // Find the deepest existing ancestor, then unpack the missing chain into it:
        // unpacking `a/b/` into `/` would replace a symlinked `/a` with a directory.
        for existing in (0..=parts.len()).rev() {
            let ancestor = format!("/{}", parts[..existing].join("/"));
            // Only the first look asks whether the sandbox itself is gone.
            let (_, stat) = self
                .resolve(&ancestor, shown, existing == parts.len())
                .await?;
            match stat.map(|s| s.stat.kind) {
                None => continue,
                Some(FileKind::Directory) if existing == parts.len() => return Ok(()),
                Some(FileKind::Directory) => {
                    let archive = directories_archive(&parts[existing..], shown)?;
                    return self.upload_bytes(&ancestor, archive, shown).await;
                }
                Some(_) if existing == parts.len() => {
                    return Err(Error::file(shown, FileErrorKind::AlreadyExists));
                }
                Some(_) => return Err(Error::file(shown, FileErrorKind::NotADirectory)),
            }
        }
        // Unreachable in practice: `/` always exists.
        Err(Error::file(shown, FileErrorKind::NotFound))
    }

    /// Removes a file, a symlink, or a directory (with its contents when `recursive`).
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        let absolute = self.absolute_checked(path)?;
        if absolute == "/" {
            return Err(Error::file(path, FileErrorKind::PermissionDenied));
        }
        if let Some(agent) = self.agent() {
            return agent.remove(absolute, recursive, path).await;
        }
        let stat = self
            .lstat(&absolute, path)
            .await?
            .ok_or_else(|| Error::file(path, FileErrorKind::NotFound))?;
        let argv = match (stat.stat.kind, recursive) {
            (FileKind::Directory, false) => vec!["rmdir", "--", &absolute],
            (FileKind::Directory, true) => vec!["rm", "-rf", "--", &absolute],
            _ => vec!["rm", "-f", "--", &absolute],
        };
        // As root: the archive API also reads and writes as root.
        let request = ExecRequest::new(argv).user("0");
        let output = crate::exec::start(self.engine, self.meta, request)
            .await?
            .output()
            .await
            .map_err(|e| match e {
                Error::ExecFailed { program, reason } => Error::file(
                    path,
                    FileErrorKind::Other(format!(
                        "removing files runs `{program}` in the sandbox, which failed: {reason}"
                    )),
                ),
                Error::ProgramNotFound { program } => Error::file(
                    path,
                    FileErrorKind::Other(format!(
                        "removing files runs `{program}` in the sandbox, which has none"
                    )),
                ),
                other => other,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = output.stderr_lossy();
        let lower = stderr.to_ascii_lowercase();
        let kind = if lower.contains("not empty") {
            FileErrorKind::DirectoryNotEmpty
        } else if lower.contains("permission denied")
            || lower.contains("read-only")
            || lower.contains("operation not permitted")
            || lower.contains("resource busy")
        {
            FileErrorKind::PermissionDenied
        } else if lower.contains("no such file") {
            FileErrorKind::NotFound
        } else {
            FileErrorKind::Other(stderr.trim().to_owned())
        };
        Err(Error::file(path, kind))
    }

    /// Unpacks a tar archive under directory `path`, created when missing.
    pub async fn upload_archive(&self, path: &str, tar: Bytes) -> Result<()> {
        self.upload_archive_stream(path, Box::pin(futures::stream::once(async { Ok(tar) })))
            .await
    }

    /// A tar archive of `path` and everything under it, entries named from its last
    /// component (`dir/...`).
    pub async fn download_archive(&self, path: &str) -> Result<Bytes> {
        let mut stream = self.download_archive_stream(path).await?;
        let mut archive = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk?);
        }
        Ok(archive.freeze())
    }

    /// The engine's archive of `absolute`, with an error before the first byte mapped.
    pub(crate) async fn download_stream(
        &self,
        absolute: &str,
        shown: &str,
    ) -> Result<impl Stream<Item = std::result::Result<Bytes, bollard::errors::Error>> + use<>>
    {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(absolute)
            .build();
        let mut stream = Box::pin(
            self.engine
                .docker
                .download_from_container(self.id(), Some(options)),
        );
        let first = match stream.next().await {
            Some(Err(e)) => return Err(error::map(e, self.subject(shown))),
            Some(Ok(first)) => Some(Ok(first)),
            None => None,
        };
        Ok(futures::stream::iter(first).chain(stream))
    }
}

/// The direct entries of the directory archived as `./...`.
fn direct_entries(reader: impl Read, shown: &str) -> Result<Vec<DirEntry>> {
    let bad = |e: std::io::Error| {
        Error::file(
            shown,
            FileErrorKind::Other(format!("unreadable archive from the engine: {e}")),
        )
    };
    let mut archive = tar::Archive::new(reader);
    let mut entries = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name_bytes = entry.path_bytes();
        let name = String::from_utf8_lossy(&name_bytes);
        let relative = name.trim_start_matches("./").trim_end_matches('/');
        if relative.is_empty() || relative == "." || relative.contains('/') {
            continue;
        }
        let header = entry.header();
        entries.push(DirEntry {
            name: relative.to_owned(),
            kind: kind_of(header.entry_type()),
            size_bytes: if header.entry_type().is_file() {
                entry.size()
            } else {
                0
            },
        });
    }
    Ok(entries)
}

fn kind_of(entry_type: tar::EntryType) -> FileKind {
    match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link => {
            FileKind::File
        }
        tar::EntryType::Directory => FileKind::Directory,
        tar::EntryType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// A [`FileStat`] from the engine's Go file mode.
fn file_stat(go_mode: u32, size: i64, modified: Option<&str>) -> FileStat {
    let kind = if go_mode & GO_MODE_DIR != 0 {
        FileKind::Directory
    } else if go_mode & GO_MODE_SYMLINK != 0 {
        FileKind::Symlink
    } else if go_mode
        & (GO_MODE_DEVICE
            | GO_MODE_NAMED_PIPE
            | GO_MODE_SOCKET
            | GO_MODE_CHAR_DEVICE
            | GO_MODE_IRREGULAR)
        != 0
    {
        FileKind::Other
    } else {
        FileKind::File
    };
    let mut mode = go_mode & 0o777;
    for (go_bit, unix_bit) in [
        (GO_MODE_SETUID, 0o4000),
        (GO_MODE_SETGID, 0o2000),
        (GO_MODE_STICKY, 0o1000),
    ] {
        if go_mode & go_bit != 0 {
            mode |= unix_bit;
        }
    }
    FileStat {
        kind,
        size_bytes: u64::try_from(size).unwrap_or(0),
        mode,
        modified_unix_secs: modified
            .and_then(|m| humantime::parse_rfc3339_weak(m).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
    }
}

/// Where a symlink at `link` pointing to `target` leads.
pub(crate) fn link_destination(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        crate::sandbox::absolute("/", target)
    } else {
        let (parent, _) = split_parent(link);
        crate::sandbox::absolute(parent, target)
    }
}

/// `/a/b/c` -> (`/a/b`, `c`); `/c` -> (`/`, `c`).
pub(crate) fn split_parent(absolute: &str) -> (&str, &str) {
    match absolute.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => ("/", absolute),
    }
}

pub(crate) fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A tar archive holding the directory chain `parts[0]/parts[1]/...`.
fn directories_archive(parts: &[&str], shown: &str) -> Result<Bytes> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for part in parts {
        path.push_str(part);
        path.push('/');
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        header.set_mtime(now_unix_secs());
        builder
            .append_data(&mut header, &path, std::io::empty())
            .map_err(|e| Error::file(shown, FileErrorKind::Other(format!("archiving: {e}"))))?;
    }
    builder
        .into_inner()
        .map(Bytes::from)
        .map_err(|e| Error::file(shown, FileErrorKind::Other(format!("archiving: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes_map_to_kinds_and_unix_bits() {
        let dir = file_stat(2_147_484_141, 4096, Some("2026-11-21T22:42:33.866931112Z"));
        assert_eq!(dir.kind, FileKind::Directory);
        assert_eq!(dir.mode, 0o755);
        assert!(dir.modified_unix_secs.is_some());
        let link = file_stat(134_218_239, 12, None);
        assert_eq!(link.kind, FileKind::Symlink);
        let file = file_stat(0o644 | GO_MODE_SETUID, 3, None);
        assert_eq!((file.kind, file.mode), (FileKind::File, 0o4644));
    }

    #[test]
    fn symlinks_resolve_like_the_kernel() {
        assert_eq!(link_destination("/bin/sh", "/bin/busybox"), "/bin/busybox");
        assert_eq!(link_destination("/a/b/link", "../c"), "/a/b/../c");
        assert_eq!(link_destination("/link", "target"), "/target");
    }

    #[test]
    fn listing_keeps_direct_entries_only() {
        let archive = directories_archive(&["sub", "deeper"], "x").unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind) in [
            ("./", tar::EntryType::Directory),
            ("./a.txt", tar::EntryType::Regular),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            builder
                .append_data(&mut header, name, std::io::empty())
                .unwrap();
        }
        let listing = builder.into_inner().unwrap();
        let entries = direct_entries(&listing[..], "x").unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "a.txt");
        let nested: Vec<_> = direct_entries(&archive[..], "x")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(nested, vec!["sub".to_owned()]);
    }
}
