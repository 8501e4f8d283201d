//! `sandkit cp`: copy files and directories between this machine and a sandbox.
//!
//! Like `cp -r`: when the destination is an existing directory (or ends with `/`), the
//! source is copied into it under its own name; otherwise it is copied to that path.
//! Directories travel as one tar archive when the provider has batch transfer, and file
//! by file otherwise.
//!
//! Everything streams: files are read and written in chunks through the provider's
//! stream methods, and archives are built and unpacked as they travel, so memory stays
//! flat whatever the size.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use sandkit::{Error, FileErrorKind, FileKind, SandboxId, SandboxProvider};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

mod pipe;

use pipe::{CHUNK_BYTES, LocalFailure, QUEUE_CHUNKS, QueueReader, local_file_stream};

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::{Spinner, print_json, warn};

/// Flags of `sandkit cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: a local path, or ID:PATH inside a sandbox.
    #[arg(value_name = "SRC")]
    pub source: String,

    /// Where to: a local path, or ID:PATH inside a sandbox (exactly one side is ID:PATH).
    #[arg(value_name = "DST")]
    pub destination: String,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    Sandbox { id: SandboxId, path: String },
}

impl Location {
    /// `ID:PATH` is a sandbox path unless it starts with `/` or `.`, or the part before
    /// the colon has a `/` in it (`dir/a:b` is a local file). `ID:` is the sandbox's
    /// working directory.
    fn parse(text: &str) -> Self {
        if !text.starts_with(['/', '.'])
            && let Some((id, path)) = text.split_once(':')
            && !id.is_empty()
            && !id.contains('/')
        {
            let path = if path.is_empty() { "." } else { path };
            return Self::Sandbox {
                id: SandboxId::from(id),
                path: path.to_owned(),
            };
        }
        Self::Local(PathBuf::from(text))
    }
}

/// What a copy moved, for `--json`.
#[derive(Debug, Default, Serialize)]
struct Copied {
    source: String,
    destination: String,
    files: u64,
    bytes: u64,
}

/// Copies; prints nothing on success (a summary with `--json`).
pub async fn run(context: &Context, args: CpArgs) -> Result<i32, CliError> {
    let source = Location::parse(&args.source);
    let destination = Location::parse(&args.destination);
    let mut copied = match (source, destination) {
        (Location::Local(local), Location::Sandbox { id, path }) => {
            let provider = context.open().await?;
            let _spinner = Spinner::start(format!("copying to {id}"), context.json);
            upload(&provider, &local, &id, &path).await?
        }
        (Location::Sandbox { id, path }, Location::Local(local)) => {
            let provider = context.open().await?;
            let _spinner = Spinner::start(format!("copying from {id}"), context.json);
            download(&provider, &id, &path, &local).await?
        }
        (Location::Local(_), Location::Local(_)) => {
            return Err(CliError::usage(
                "cp: one of SRC and DST must be a sandbox path, ID:PATH",
            ));
        }
        (Location::Sandbox { .. }, Location::Sandbox { .. }) => {
            return Err(CliError::usage(
                "cp: copying between two sandboxes is not supported; copy through a local path",
            ));
        }
    };
    copied.source = args.source;
    copied.destination = args.destination;
    if context.json {
        print_json(&copied)?;
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// To a sandbox
// ---------------------------------------------------------------------------------------

async fn upload(
    provider: &Arc<dyn SandboxProvider>,
    local: &Path,
    id: &SandboxId,
    remote: &str,
) -> Result<Copied, CliError> {
    let metadata = tokio::fs::metadata(local)
        .await
        .map_err(|error| CliError::io(local, error))?;
    let into_directory = remote.ends_with('/') || remote_is_dir(provider, id, remote).await?;
    let target = match (into_directory, local_name(local)?) {
        (true, Some(name)) => join(remote, &name),
        _ => remote.trim_end_matches('/').to_owned(),
    };
    let target = if target.is_empty() {
        "/".to_owned()
    } else {
        target
    };

    if metadata.is_file() {
        let bytes = upload_file(provider, local, id, &target).await?;
        return Ok(Copied {
            files: 1,
            bytes,
            ..Copied::default()
        });
    }
    if !metadata.is_dir() {
        return Err(CliError::usage(format!(
            "cp: `{}` is neither a file nor a directory",
            local.display()
        )));
    }

    let root = local.to_owned();
    let entries = tokio::task::spawn_blocking(move || walk_local(&root))
        .await
        .map_err(|error| CliError::Failed(format!("walking the directory: {error}")))??;
    let mut copied = Copied::default();
    for entry in &entries {
        if let LocalKind::File { size_bytes } = entry.kind {
            copied.files += 1;
            copied.bytes += size_bytes;
        }
    }
    provider.make_dir(id, &target).await?;
    if provider.capabilities().batch_transfer {
        upload_directory_archive(provider, local, entries, id, &target).await?;
        return Ok(copied);
    }
    for entry in &entries {
        let remote_path = join(&target, &entry.remote_relative);
        match entry.kind {
            LocalKind::Directory => provider.make_dir(id, &remote_path).await?,
            LocalKind::File { .. } => {
                upload_file(provider, &local.join(&entry.relative), id, &remote_path).await?;
            }
            LocalKind::Symlink => warn(format_args!(
                "skipped symlink `{}`: {} has no batch transfer to carry it",
                local.join(&entry.relative).display(),
                provider.name()
            )),
        }
    }
    Ok(copied)
}

/// Streams one local file to `remote`; returns its size.
async fn upload_file(
    provider: &Arc<dyn SandboxProvider>,
    local: &Path,
    id: &SandboxId,
    remote: &str,
) -> Result<u64, CliError> {
    let file = tokio::fs::File::open(local)
        .await
        .map_err(|error| CliError::io(local, error))?;
    let size = file
        .metadata()
        .await
        .map_err(|error| CliError::io(local, error))?
        .len();
    let failure = LocalFailure::default();
    let result = provider
        .write_file_stream(id, remote, local_file_stream(file, &failure))
        .await;
    if let Some(error) = failure.take() {
        return Err(CliError::io(local, error));
    }
    result?;
    Ok(size)
}

/// Builds the tar archive of `entries` while the provider unpacks it.
async fn upload_directory_archive(
    provider: &Arc<dyn SandboxProvider>,
    local: &Path,
    entries: Vec<LocalEntry>,
    id: &SandboxId,
    target: &str,
) -> Result<(), CliError> {
    let (writer, archive) = sandkit::stream::chunk_channel(QUEUE_CHUNKS, CHUNK_BYTES);
    let root = local.to_owned();
    let build = tokio::task::spawn_blocking(move || {
        let failer = writer.failer();
        let built = build_archive(&root, &entries, writer)
            .and_then(|mut writer| writer.flush().map_err(|error| CliError::io(&root, error)));
        if let Err(error) = &built {
            // The provider must not take a cut-off archive for a whole one.
            failer.fail(Error::FileOperation {
                path: root.display().to_string(),
                kind: FileErrorKind::Other(format!("building the archive failed: {error}")),
            });
        }
        built
    });
    let uploaded = provider.upload_archive_stream(id, target, archive).await;
    let built = build
        .await
        .map_err(|error| CliError::Failed(format!("building the archive: {error}")))?;
    match (built, uploaded) {
        (Ok(()), uploaded) => Ok(uploaded?),
        // The builder stopped because the provider did: the provider's error says why.
        (Err(CliError::Io { source, .. }), Err(error))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Err(error.into())
        }
        (Err(error), _) => Err(error),
    }
}

/// Whether `path` is an existing directory in the sandbox.
async fn remote_is_dir(
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    path: &str,
) -> Result<bool, CliError> {
    match provider.stat(id, path).await {
        Ok(stat) => Ok(stat.kind == FileKind::Directory),
        Err(Error::FileOperation {
            kind: FileErrorKind::NotFound,
            ..
        }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug)]
enum LocalKind {
    Directory,
    File { size_bytes: u64 },
    Symlink,
}

#[derive(Debug)]
struct LocalEntry {
    /// Relative to the walked root.
    relative: PathBuf,
    /// The same, `/`-separated, for sandbox paths.
    remote_relative: String,
    kind: LocalKind,
}

/// Every entry under `root` (not `root` itself), parents before children, sorted by name.
/// Symlinks are reported, not followed.
fn walk_local(root: &Path) -> Result<Vec<LocalEntry>, CliError> {
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let dir = root.join(&relative_dir);
        let mut children = std::fs::read_dir(&dir)
            .map_err(|error| CliError::io(&dir, error))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| CliError::io(&dir, error))?;
        children.sort_by_key(|child| child.file_name());
        let mut subdirectories = Vec::new();
        for child in children {
            let relative = relative_dir.join(child.file_name());
            let path = child.path();
            let file_type = child
                .file_type()
                .map_err(|error| CliError::io(&path, error))?;
            let kind = if file_type.is_symlink() {
                LocalKind::Symlink
            } else if file_type.is_dir() {
                subdirectories.push(relative.clone());
                LocalKind::Directory
            } else {
                let metadata = child
                    .metadata()
                    .map_err(|error| CliError::io(&path, error))?;
                LocalKind::File {
                    size_bytes: metadata.len(),
                }
            };
            let remote_relative = remote_relative(&relative)?;
            entries.push(LocalEntry {
                relative,
                remote_relative,
                kind,
            });
        }
        // Reversed so that popping visits them in name order.
        pending.extend(subdirectories.into_iter().rev());
    }
    Ok(entries)
}

/// Writes a tar archive of `entries`, named relative to `root`, to `writer`; symlinks
/// are stored as links.
fn build_archive<W: Write>(root: &Path, entries: &[LocalEntry], writer: W) -> Result<W, CliError> {
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    for entry in entries {
        let path = root.join(&entry.relative);
        let added = match entry.kind {
            LocalKind::Directory => builder.append_dir(&entry.relative, &path),
            LocalKind::File { .. } | LocalKind::Symlink => {
                builder.append_path_with_name(&path, &entry.relative)
            }
        };
        added.map_err(|error| CliError::io(&path, error))?;
    }
    builder
        .into_inner()
        .map_err(|error| CliError::io(root, error))
}

fn remote_relative(relative: &Path) -> Result<String, CliError> {
    let parts = relative
        .components()
        .map(|component| match component {
            Component::Normal(part) => part.to_str().map(str::to_owned),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            CliError::usage(format!(
                "cp: `{}` is not a UTF-8 path, which sandbox paths must be",
                relative.display()
            ))
        })?;
    Ok(parts.join("/"))
}

/// The last component of a local path, when it has a usable one (`.` and `/` have none).
fn local_name(path: &Path) -> Result<Option<String>, CliError> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => {
            name.to_str().map(|n| Some(n.to_owned())).ok_or_else(|| {
                CliError::usage(format!(
                    "cp: `{}` is not a UTF-8 name, which sandbox paths must be",
                    path.display()
                ))
            })
        }
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// From a sandbox
// ---------------------------------------------------------------------------------------

async fn download(
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    remote: &str,
    local: &Path,
) -> Result<Copied, CliError> {
    let stat = provider.stat(id, remote).await?;
    let local_text = local.as_os_str().to_string_lossy();
    let into_directory = local_text.ends_with('/') || local.is_dir();
    let target = match (into_directory, remote_name(remote)) {
        (true, Some(name)) => local.join(name),
        _ => local.to_owned(),
    };

    if stat.kind != FileKind::Directory {
        let bytes = download_file(provider, id, remote, &target).await?;
        return Ok(Copied {
            files: 1,
            bytes,
            ..Copied::default()
        });
    }

    if provider.capabilities().batch_transfer {
        return download_directory_archive(provider, id, remote, target).await;
    }

    let mut copied = Copied::default();
    create_dir(&target)?;
    let mut pending = vec![(remote.trim_end_matches('/').to_owned(), target)];
    while let Some((remote_dir, local_dir)) = pending.pop() {
        for entry in provider.list_dir(id, &remote_dir).await? {
            let remote_path = join(&remote_dir, &entry.name);
            let local_path = local_dir.join(checked_name(&entry.name)?);
            match entry.kind {
                FileKind::Directory => {
                    create_dir(&local_path)?;
                    pending.push((remote_path, local_path));
                }
                FileKind::File => {
                    copied.bytes += download_file(provider, id, &remote_path, &local_path).await?;
                    copied.files += 1;
                }
                FileKind::Symlink | FileKind::Other => warn(format_args!(
                    "skipped `{remote_path}`: only files and directories are copied without batch transfer"
                )),
            }
        }
    }
    Ok(copied)
}

/// Streams one sandbox file to `local` (created or truncated once the sandbox has said
/// the file is there); returns its size. A copy cut off midway removes the partial file.
async fn download_file(
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    remote: &str,
    local: &Path,
) -> Result<u64, CliError> {
    let mut stream = provider.read_file_stream(id, remote).await?;
    let file = tokio::fs::File::create(local)
        .await
        .map_err(|error| CliError::io(local, error))?;
    let mut writer = tokio::io::BufWriter::with_capacity(CHUNK_BYTES, file);
    let copied = async {
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            writer
                .write_all(&chunk)
                .await
                .map_err(|error| CliError::io(local, error))?;
            bytes += chunk.len() as u64;
        }
        writer
            .shutdown()
            .await
            .map_err(|error| CliError::io(local, error))?;
        Ok::<_, CliError>(bytes)
    }
    .await;
    if copied.is_err() {
        let _ = tokio::fs::remove_file(local).await;
    }
    copied
}

/// Unpacks the sandbox's archive of directory `remote` into `target` as it downloads.
async fn download_directory_archive(
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    remote: &str,
    target: PathBuf,
) -> Result<Copied, CliError> {
    let mut stream = provider.download_archive_stream(id, remote).await?;
    let (sender, receiver) = mpsc::channel(QUEUE_CHUNKS);
    let name = remote_name(remote);
    let unpack = tokio::task::spawn_blocking(move || {
        let reader = QueueReader {
            queue: receiver,
            current: Bytes::new(),
        };
        unpack_archive(reader, name.as_deref(), &target)
    });
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        let item = chunk.map_err(|error| {
            let message = error.to_string();
            failed = Some(error);
            std::io::Error::other(message)
        });
        let stop = item.is_err();
        // A closed queue: the unpacking failed, and says why below.
        if sender.send(item).await.is_err() || stop {
            break;
        }
    }
    drop(sender);
    let unpacked = unpack
        .await
        .map_err(|error| CliError::Failed(format!("unpacking the archive: {error}")))?;
    match failed {
        Some(error) => Err(error.into()),
        None => unpacked,
    }
}

/// A directory entry name from the sandbox, refused when it could step out of `local`.
fn checked_name(name: &str) -> Result<&str, CliError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(CliError::Failed(format!(
            "the sandbox listed an entry named `{name}`, which is not a file name"
        )));
    }
    Ok(name)
}

fn create_dir(path: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(path).map_err(|error| CliError::io(path, error))
}

/// Unpacks a downloaded directory archive to `target`, merging into an existing
/// directory. The archive holds the directory under its own `name` (as the Docker Engine
/// and local-process build it), or its entries directly when the directory has no name
/// (`.`, `/`). It goes through a temporary directory next to `target`, so `tar`'s checks
/// keep every entry inside it.
fn unpack_archive(
    archive: impl Read,
    name: Option<&str>,
    target: &Path,
) -> Result<Copied, CliError> {
    let parent = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".sandkit-cp-")
        .tempdir_in(&parent)
        .map_err(|error| CliError::io(&parent, error))?;
    tar::Archive::new(archive)
        .unpack(scratch.path())
        .map_err(|error| {
            CliError::Failed(format!("cannot unpack the sandbox's archive: {error}"))
        })?;

    let root = match name.map(|name| scratch.path().join(name)) {
        Some(named) if named.is_dir() => named,
        _ => scratch.path().to_owned(),
    };

    let mut copied = Copied::default();
    for entry in walk_local(&root)? {
        if let LocalKind::File { size_bytes } = entry.kind {
            copied.files += 1;
            copied.bytes += size_bytes;
        }
    }
    merge_move(&root, target)?;
    Ok(copied)
}

/// Moves `source` to `destination`; into an existing directory, entry by entry.
fn merge_move(source: &Path, destination: &Path) -> Result<(), CliError> {
    let existing = std::fs::symlink_metadata(destination).ok();
    match existing {
        None => {
            std::fs::rename(source, destination).map_err(|error| CliError::io(destination, error))
        }
        Some(metadata) if metadata.is_dir() && source.is_dir() => {
            for entry in std::fs::read_dir(source).map_err(|error| CliError::io(source, error))? {
                let entry = entry.map_err(|error| CliError::io(source, error))?;
                merge_move(&entry.path(), &destination.join(entry.file_name()))?;
            }
            Ok(())
        }
        Some(metadata) if metadata.is_dir() => Err(CliError::io(
            destination,
            std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "a directory is in the way of a file",
            ),
        )),
        Some(_) if source.is_dir() => Err(CliError::io(
            destination,
            std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "a file is in the way of a directory",
            ),
        )),
        Some(_) => {
            std::fs::rename(source, destination).map_err(|error| CliError::io(destination, error))
        }
    }
}

/// The last component of a sandbox path, when it has a usable one.
fn remote_name(path: &str) -> Option<String> {
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    match name {
        "" | "." | ".." => None,
        name => Some(name.to_owned()),
    }
}

/// `dir/name` with exactly one `/` between them.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_are_id_colon_path() {
        assert_eq!(
            Location::parse("sb-1:/work/a.txt"),
            Location::Sandbox {
                id: SandboxId::from("sb-1"),
                path: "/work/a.txt".into()
            }
        );
        assert_eq!(
            Location::parse("sb-1:"),
            Location::Sandbox {
                id: SandboxId::from("sb-1"),
                path: ".".into()
            }
        );
        assert_eq!(
            Location::parse("./sb-1:x"),
            Location::Local(PathBuf::from("./sb-1:x"))
        );
        assert_eq!(
            Location::parse("dir/a:b"),
            Location::Local(PathBuf::from("dir/a:b"))
        );
        assert_eq!(
            Location::parse("plain.txt"),
            Location::Local(PathBuf::from("plain.txt"))
        );
    }

    #[test]
    fn names_and_joins() {
        assert_eq!(remote_name("/a/b/"), Some("b".into()));
        assert_eq!(remote_name("."), None);
        assert_eq!(remote_name("/"), None);
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(join("/a/", "b"), "/a/b");
        assert_eq!(local_name(Path::new("x/y")).unwrap(), Some("y".into()));
        assert_eq!(local_name(Path::new(".")).unwrap(), None);
    }

    #[test]
    fn archives_round_trip_through_a_merge() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source.path().join("d/e")).unwrap();
        std::fs::write(source.path().join("d/e/f.txt"), b"deep").unwrap();
        std::fs::write(source.path().join("top.txt"), b"top").unwrap();
        // Archived from the root: entries are not under a directory name.
        let entries = walk_local(source.path()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.remote_relative.as_str()).collect();
        assert_eq!(names, ["d", "top.txt", "d/e", "d/e/f.txt"]);
        let archive = build_archive(source.path(), &entries, Vec::new()).unwrap();

        let destination = tempfile::tempdir().unwrap();
        std::fs::create_dir(destination.path().join("out")).unwrap();
        std::fs::write(destination.path().join("out/kept.txt"), b"kept").unwrap();
        let copied = unpack_archive(&archive[..], None, &destination.path().join("out")).unwrap();
        assert_eq!((copied.files, copied.bytes), (2, 7));
        let out = destination.path().join("out");
        assert_eq!(std::fs::read(out.join("d/e/f.txt")).unwrap(), b"deep");
        assert_eq!(std::fs::read(out.join("kept.txt")).unwrap(), b"kept");
        // Nothing of the scratch directory is left next to the target.
        let leftovers: Vec<_> = std::fs::read_dir(destination.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["out"]);
    }

    #[test]
    fn archives_named_under_the_directory_are_unwrapped() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source.path().join("data")).unwrap();
        std::fs::write(source.path().join("data/a.txt"), b"a").unwrap();
        let entries = walk_local(source.path()).unwrap();
        let archive = build_archive(source.path(), &entries, Vec::new()).unwrap();
        let destination = tempfile::tempdir().unwrap();
        let target = destination.path().join("copy");
        unpack_archive(&archive[..], Some("data"), &target).unwrap();
        assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"a");
    }
}
