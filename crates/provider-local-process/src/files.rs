//! A sandbox's files, seen from the host through a directory handle of the sandbox's
//! root. Every path resolves in the kernel, relative to that handle, with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..`, absolute symlinks and a
//! directory swapped for a symlink mid-operation all stay inside the root, so there is no
//! check of a path followed by an open of it. Trees are walked one component at a time
//! from open directory handles, never following a symlink.
//!
//! Only regular files and directories are read or written: a FIFO, socket or device is a
//! typed error at once (files are opened non-blocking, and checked with `fstat` before
//! use), and so is anything on a kernel filesystem (`/proc`, `/sys`, ...), which the host
//! side would otherwise read or write with the host's privileges.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use sandkit_core::{DirEntry, Error, FileErrorKind, FileKind, FileStat, Result};

use crate::error::{file, outside};

/// Linux's `PATH_MAX`: longer paths are refused before they reach the kernel.
const PATH_MAX: usize = 4096;

/// What a tar entry may become when an archive is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// An archive from a caller: regular files, directories, symlinks and hard links.
    Upload,
    /// A snapshot sandkit wrote: device nodes (overlay whiteouts) and full modes too.
    Snapshot,
}

/// The files of one sandbox.
#[derive(Debug, Clone)]
pub(crate) struct SandboxFs {
    root: Arc<OwnedFd>,
    /// How the sandbox names its root: `/` under bubblewrap, the host path without.
    seen_root: PathBuf,
    /// The working directory, as the sandbox names it.
    workdir: PathBuf,
    /// `..` above the root stays at the root (a container's rule) instead of being
    /// refused.
    clamp: bool,
}

impl SandboxFs {
    /// The files under `root` (a directory handle). `seen_root` and `workdir` are paths
    /// as the sandbox's processes see them.
    pub fn new(root: OwnedFd, seen_root: PathBuf, workdir: PathBuf) -> Self {
        let clamp = seen_root == Path::new("/");
        Self {
            root: Arc::new(root),
            seen_root,
            workdir,
            clamp,
        }
    }

    /// `path` (absolute as the sandbox sees it, or relative to the working directory) as
    /// components below the root.
    pub fn relative(&self, path: &str) -> Result<PathBuf> {
        if path.contains('\0') {
            return Err(Error::file(
                path.replace('\0', "\\0"),
                FileErrorKind::Other("the path contains a NUL byte".into()),
            ));
        }
        if path.len() >= PATH_MAX {
            return Err(Error::file(
                format!("{}...", path.chars().take(64).collect::<String>()),
                FileErrorKind::Other(format!("the path is longer than {PATH_MAX} bytes")),
            ));
        }
        let requested = Path::new(path);
        let absolute = if requested.is_absolute() {
            requested.to_path_buf()
        } else {
            self.workdir.join(requested)
        };
        let below = absolute
            .strip_prefix(&self.seen_root)
            .map_err(|_| outside(path))?;
        let mut parts: Vec<&OsStr> = Vec::new();
        for component in below.components() {
            match component {
                Component::Normal(name) => parts.push(name),
                Component::ParentDir if parts.pop().is_some() || self.clamp => {}
                Component::ParentDir => return Err(outside(path)),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        Ok(parts.iter().collect())
    }

    /// Opens `relative` below the root, in the kernel.
    fn open(&self, relative: &Path, flags: OFlags, mode: Mode) -> std::io::Result<OwnedFd> {
        let target: &Path = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        for _ in 0..16 {
            // EAGAIN: a rename or mount raced the lookup; the kernel asks for a retry.
            match rustix::fs::openat2(&*self.root, target, flags | OFlags::CLOEXEC, mode, resolve) {
                Err(Errno::AGAIN) => continue,
                other => return other.map_err(Into::into),
            }
        }
        Err(Errno::AGAIN.into())
    }

    fn open_dir(&self, relative: &Path, shown: &str) -> Result<OwnedFd> {
        self.open(relative, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| file(shown, &e))
    }

    /// Opens a regular file for reading; returns it with its size.
    pub fn open_read(&self, path: &str) -> Result<(File, u64)> {
        let relative = self.relative(path)?;
        let fd = self
            .open(
                &relative,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::empty(),
            )
            .map_err(|e| file(path, &e))?;
        let size = regular_file(&fd, path)?;
        Ok((File::from(fd), size))
    }

    /// Reads a whole regular file.
    pub fn read(&self, path: &str) -> Result<Bytes> {
        let (mut opened, size) = self.open_read(path)?;
        let mut contents = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 26));
        opened
            .read_to_end(&mut contents)
            .map_err(|e| file(path, &e))?;
        Ok(contents.into())
    }

    /// Creates (or truncates) a regular file for writing, creating missing parents.
    pub fn open_write(&self, path: &str) -> Result<File> {
        let relative = self.relative(path)?;
        if relative.as_os_str().is_empty() {
            return Err(Error::file(path, FileErrorKind::IsADirectory));
        }
        if let Some(parent) = relative.parent() {
            self.make_dirs(parent, path)?;
        }
        let fd = self
            .open(
                &relative,
                OFlags::WRONLY | OFlags::CREATE | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| file(path, &e))?;
        regular_file(&fd, path)?;
        rustix::fs::ftruncate(&fd, 0).map_err(|e| file(path, &e.into()))?;
        Ok(File::from(fd))
    }

    /// Creates or replaces a regular file, creating missing parents.
    pub fn write(&self, path: &str, contents: &[u8]) -> Result<()> {
        self.open_write(path)?
            .write_all(contents)
            .map_err(|e| file(path, &e))
    }

    /// Metadata, not following a final symlink.
    pub fn stat(&self, path: &str) -> Result<FileStat> {
        let relative = self.relative(path)?;
        let fd = self
            .open(&relative, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| file(path, &e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| file(path, &e.into()))?;
        Ok(file_stat(&stat))
    }

    /// What `path` is, following a final symlink (inside the root).
    pub fn kind_following(&self, path: &str) -> Result<FileKind> {
        let relative = self.relative(path)?;
        let fd = self
            .open(&relative, OFlags::PATH, Mode::empty())
            .map_err(|e| file(path, &e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| file(path, &e.into()))?;
        Ok(kind_of(&stat))
    }

    /// A directory's entries, sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        let relative = self.relative(path)?;
        let dir = self
            .open(&relative, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| file(path, &e))?;
        let mut entries = Vec::new();
        for (name, stat) in entries_of(&dir).map_err(|e| file(path, &e))? {
            entries.push(DirEntry {
                name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
                kind: kind_of(&stat),
                size_bytes: stat.st_size as u64,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Creates a directory and its missing parents.
    pub fn make_dir(&self, path: &str) -> Result<()> {
        let relative = self.relative(path)?;
        self.make_dirs(&relative, path)
    }

    /// Creates every missing directory of `relative`, one component at a time, each with
    /// `mkdirat` in a parent opened in the kernel.
    fn make_dirs(&self, relative: &Path, shown: &str) -> Result<()> {
        let mut prefix = PathBuf::new();
        for component in relative.components() {
            let parent = prefix.clone();
            prefix.push(component);
            match self.open(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                    let exists = self.open(&prefix, OFlags::PATH, Mode::empty()).is_ok();
                    return Err(Error::file(
                        shown,
                        if exists && prefix == relative {
                            FileErrorKind::AlreadyExists
                        } else {
                            FileErrorKind::NotADirectory
                        },
                    ));
                }
                Err(e) => return Err(file(shown, &e)),
            }
            let parent = self.open_dir(&parent, shown)?;
            match rustix::fs::mkdirat(&parent, component.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(file(shown, &e.into())),
            }
            // A name that existed as something else (a symlink into nowhere, a file).
            self.open(&prefix, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                .map_err(|e| match e.raw_os_error() {
                    Some(code) if code == Errno::NOTDIR.raw_os_error() => Error::file(
                        shown,
                        if prefix == relative {
                            FileErrorKind::AlreadyExists
                        } else {
                            FileErrorKind::NotADirectory
                        },
                    ),
                    _ => file(shown, &e),
                })?;
        }
        Ok(())
    }

    /// Removes a file, a symlink (not its target), or a directory.
    pub fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        let relative = self.relative(path)?;
        let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
            return Err(Error::file(path, FileErrorKind::PermissionDenied));
        };
        let parent = self.open_dir(parent, path)?;
        let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| file(path, &e.into()))?;
        let removed = if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            rustix::fs::unlinkat(&parent, name, AtFlags::empty())
        } else if recursive {
            remove_tree(&parent, name)
        } else {
            rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR)
        };
        removed.map_err(|e| file(path, &e.into()))
    }

    /// A tar archive of `path` and everything under it. Entries are named from the last
    /// component of `path` (`dir/...`), or relative to the root when `path` is the root.
    pub fn pack_archive(&self, path: &str) -> Result<Bytes> {
        let mut out = Vec::new();
        self.open_archive(path)?.write_to(&mut out)?;
        Ok(out.into())
    }

    /// Opens what [`SandboxFs::pack_archive`] packs, checking it before any byte is
    /// written (a FIFO or device is refused here).
    pub fn open_archive(&self, path: &str) -> Result<ArchiveSource> {
        let relative = self.relative(path)?;
        let fd = self
            .open(
                &relative,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::empty(),
            )
            .map_err(|e| file(path, &e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| file(path, &e.into()))?;
        refuse_kernel_files(&fd, path)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory | FileType::RegularFile => {}
            _ => return Err(not_regular(path)),
        }
        Ok(ArchiveSource {
            fd,
            stat,
            name: relative.file_name().map(PathBuf::from),
            shown: path.to_owned(),
        })
    }

    /// Unpacks a tar archive under directory `path` (created when missing). Entries with
    /// absolute names or `..` are refused; links resolve inside the root like any path.
    pub fn unpack_archive(&self, path: &str, tar: impl Read, trust: Trust) -> Result<()> {
        let base = self.relative(path)?;
        self.make_dirs(&base, path)?;
        let mut archive = tar::Archive::new(tar);
        let bad = |e: std::io::Error| {
            Error::file(path, FileErrorKind::Other(format!("bad tar archive: {e}")))
        };
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = entry.path().map_err(bad)?.into_owned();
            let shown = format!("{path}/{}", name.display());
            let inside = base.join(checked_relative(&name, &shown)?);
            if inside == base {
                continue;
            }
            let header = entry.header().clone();
            let mode = header.mode().unwrap_or(0o644)
                & if trust == Trust::Snapshot {
                    0o7777
                } else {
                    0o777
                };
            let kind = header.entry_type();
            if kind.is_dir() {
                self.make_dirs(&inside, &shown)?;
                let dir = self.open_dir(&inside, &shown)?;
                let _ = rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode));
                continue;
            }
            let (Some(parent), Some(leaf)) = (inside.parent(), inside.file_name()) else {
                continue;
            };
            self.make_dirs(parent, &shown)?;
            let parent = self.open_dir(parent, &shown)?;
            // Whatever is there (a file, a symlink planted earlier) is replaced, never
            // followed.
            match rustix::fs::statat(&parent, leaf, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                    return Err(Error::file(&shown, FileErrorKind::IsADirectory));
                }
                Ok(_) => rustix::fs::unlinkat(&parent, leaf, AtFlags::empty())
                    .map_err(|e| file(&shown, &e.into()))?,
                Err(_) => {}
            }
            let made = if kind.is_file() || kind == tar::EntryType::Continuous {
                rustix::fs::openat(
                    &parent,
                    leaf,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                )
                .map_err(std::io::Error::from)
                .and_then(|fd| {
                    let mut out = File::from(fd);
                    std::io::copy(&mut entry, &mut out)?;
                    rustix::fs::fchmod(&out, Mode::from_raw_mode(mode))?;
                    Ok(())
                })
            } else if kind.is_symlink() {
                let target = entry.link_name().map_err(bad)?.unwrap_or_default();
                rustix::fs::symlinkat(target.as_os_str(), &parent, leaf).map_err(Into::into)
            } else if kind.is_hard_link() {
                let target = entry.link_name().map_err(bad)?.unwrap_or_default();
                let source = base.join(checked_relative(&target, &shown)?);
                let (Some(source_parent), Some(source_leaf)) =
                    (source.parent(), source.file_name())
                else {
                    return Err(outside(&shown));
                };
                let source_parent = self.open_dir(source_parent, &shown)?;
                rustix::fs::linkat(&source_parent, source_leaf, &parent, leaf, AtFlags::empty())
                    .map_err(Into::into)
            } else if trust == Trust::Snapshot && (kind.is_character_special() || kind.is_fifo()) {
                let file_type = if kind.is_fifo() {
                    FileType::Fifo
                } else {
                    FileType::CharacterDevice
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                rustix::fs::mknodat(&parent, leaf, file_type, Mode::from_raw_mode(mode), dev)
                    .map_err(Into::into)
            } else {
                return Err(Error::file(
                    &shown,
                    FileErrorKind::Other(format!("{kind:?} entries are not unpacked")),
                ));
            };
            made.map_err(|e| file(&shown, &e))?;
        }
        Ok(())
    }
}

/// A checked file or directory, ready to be archived.
pub(crate) struct ArchiveSource {
    fd: OwnedFd,
    stat: rustix::fs::Stat,
    name: Option<PathBuf>,
    shown: String,
}

impl ArchiveSource {
    /// Writes the archive to `out`.
    pub fn write_to(self, out: impl Write) -> Result<()> {
        let mut builder = tar::Builder::new(out);
        let shown = self.shown.clone();
        let packed = match (FileType::from_raw_mode(self.stat.st_mode), self.name) {
            (FileType::Directory, None) => pack_tree(&mut builder, &self.fd, Path::new("")),
            (FileType::Directory, Some(name)) => append_header(
                &mut builder,
                &name,
                &self.stat,
                tar::EntryType::Directory,
                None,
            )
            .and_then(|()| pack_tree(&mut builder, &self.fd, &name)),
            (_, name) => {
                let name = name.unwrap_or_else(|| PathBuf::from("file"));
                append_file(&mut builder, &name, &self.stat, File::from(self.fd))
            }
        };
        packed
            .and_then(|()| builder.into_inner()?.flush())
            .map_err(|e| file(&shown, &e))
    }
}

/// A tar archive of the whole tree under `dir` (a directory handle), written to `out`.
pub(crate) fn pack_dir(dir: BorrowedFd<'_>, out: impl Write) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(out);
    let dir = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    pack_tree(&mut builder, &dir, Path::new(""))?;
    builder.into_inner()?.flush()
}

/// The size of the regular file `fd`, or the typed error for anything else.
fn regular_file(fd: &OwnedFd, shown: &str) -> Result<u64> {
    let stat = rustix::fs::fstat(fd).map_err(|e| file(shown, &e.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(Error::file(shown, FileErrorKind::IsADirectory)),
        _ => return Err(not_regular(shown)),
    }
    refuse_kernel_files(fd, shown)?;
    Ok(stat.st_size as u64)
}

fn not_regular(shown: &str) -> Error {
    Error::file(
        shown,
        FileErrorKind::Other("not a regular file or directory (a FIFO, socket or device)".into()),
    )
}

fn refuse_kernel_files(fd: &OwnedFd, shown: &str) -> Result<()> {
    if sandkit_agent::kernel::is_kernel_file(fd).map_err(|e| file(shown, &e))? {
        return Err(Error::file(shown, FileErrorKind::PermissionDenied));
    }
    Ok(())
}

/// The entries of an open directory (not `.` and `..`), each with its `lstat`.
fn entries_of(dir: &OwnedFd) -> std::io::Result<Vec<(CString, rustix::fs::Stat)>> {
    let mut found = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        // An entry removed while listing is simply not listed.
        if let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            found.push((name.to_owned(), stat));
        }
    }
    Ok(found)
}

fn remove_tree(parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<()> {
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for (child, stat) in
        entries_of(&dir).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?
    {
        let child = OsStr::from_bytes(child.as_bytes());
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            remove_tree(&dir, child)?;
        } else {
            rustix::fs::unlinkat(&dir, child, AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

/// Appends everything under the open directory `dir`, named below `prefix`.
fn pack_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &OwnedFd,
    prefix: &Path,
) -> std::io::Result<()> {
    let mut entries = entries_of(dir)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, stat) in entries {
        let leaf = OsStr::from_bytes(name.as_bytes());
        let path = prefix.join(leaf);
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let child = rustix::fs::openat(
                    dir,
                    leaf,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                append_header(builder, &path, &stat, tar::EntryType::Directory, None)?;
                pack_tree(builder, &child, &path)?;
            }
            FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    dir,
                    leaf,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                // Swapped for something else since the listing: not packed.
                let now = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(now.st_mode) == FileType::RegularFile {
                    append_file(builder, &path, &now, File::from(fd))?;
                }
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, leaf, Vec::new())?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                append_header(
                    builder,
                    &path,
                    &stat,
                    tar::EntryType::Symlink,
                    Some(&target),
                )?;
            }
            FileType::Fifo => append_header(builder, &path, &stat, tar::EntryType::Fifo, None)?,
            FileType::CharacterDevice => {
                append_header(builder, &path, &stat, tar::EntryType::Char, None)?
            }
            // Sockets and block devices are not content.
            _ => {}
        }
    }
    Ok(())
}

fn append_header<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    stat: &rustix::fs::Stat,
    kind: tar::EntryType,
    link: Option<&Path>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(stat.st_mode & 0o7777);
    header.set_mtime(u64::try_from(stat.st_mtime).unwrap_or(0));
    header.set_uid(u64::from(stat.st_uid));
    header.set_gid(u64::from(stat.st_gid));
    header.set_size(0);
    if kind == tar::EntryType::Char {
        let rdev = stat.st_rdev;
        header.set_device_major(rustix::fs::major(rdev))?;
        header.set_device_minor(rustix::fs::minor(rdev))?;
    }
    match link {
        Some(target) => builder.append_link(&mut header, path, target),
        None => builder.append_data(&mut header, path, std::io::empty()),
    }
}

fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    stat: &rustix::fs::Stat,
    contents: File,
) -> std::io::Result<()> {
    let size = stat.st_size as u64;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(stat.st_mode & 0o7777);
    header.set_mtime(u64::try_from(stat.st_mtime).unwrap_or(0));
    header.set_size(size);
    // A file that shrinks while it is read is padded, so the archive stays well formed.
    let body = contents.take(size).chain(std::io::repeat(0)).take(size);
    builder.append_data(&mut header, path, body)
}

/// Refuses archive names that are absolute or climb with `..`.
fn checked_relative<'a>(name: &'a Path, shown: &str) -> Result<&'a Path> {
    let escapes = name.components().any(|component| {
        matches!(
            component,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes {
        Err(outside(shown))
    } else {
        Ok(name)
    }
}

fn kind_of(stat: &rustix::fs::Stat) -> FileKind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => FileKind::Symlink,
        FileType::Directory => FileKind::Directory,
        FileType::RegularFile => FileKind::File,
        _ => FileKind::Other,
    }
}

fn file_stat(stat: &rustix::fs::Stat) -> FileStat {
    FileStat {
        kind: kind_of(stat),
        size_bytes: stat.st_size as u64,
        mode: stat.st_mode & 0o7777,
        modified_unix_secs: u64::try_from(stat.st_mtime).ok(),
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
