//! Files of a sandbox, confined to its root: paths resolve component by component, and
//! neither `..`, an absolute path outside the root, nor a symlink can lead out of it.
//! Also directory archives and snapshots (tar archives of the root).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use sandkit_core::{DirEntry, Error, FileErrorKind, FileKind, FileStat, Result};

use crate::error::{file, internal, outside};

/// Symlinks followed while resolving one path, as Linux allows (`MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// A sandbox's filesystem: every host path handed out lies inside `root`.
#[derive(Debug, Clone)]
pub(crate) struct Confined {
    root: PathBuf,
    workdir: PathBuf,
}

enum Step {
    Up,
    Name(OsString),
}

fn steps(path: &Path) -> VecDeque<Step> {
    path.components()
        .filter_map(|component| match component {
            Component::ParentDir => Some(Step::Up),
            Component::Normal(name) => Some(Step::Name(name.to_owned())),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

impl Confined {
    /// The filesystem under `root`; relative paths resolve against `workdir`.
    pub fn new(root: PathBuf, workdir: PathBuf) -> Self {
        Self { root, workdir }
    }

    /// The root (absolute host path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` (relative to the working directory, or absolute inside the root) to
    /// a host path inside the root. Symlinks are followed inside the root, and the final
    /// one only when `follow_final`; missing components are kept as they are.
    pub fn resolve(&self, path: &str, follow_final: bool) -> Result<PathBuf> {
        let requested = Path::new(path);
        let start = if requested.is_absolute() {
            requested.to_path_buf()
        } else {
            self.workdir.join(requested)
        };
        self.resolve_host(&start, path, follow_final)
    }

    /// [`Confined::resolve`] of a host path; errors show `shown`.
    fn resolve_host(&self, start: &Path, shown: &str, follow_final: bool) -> Result<PathBuf> {
        let below_root = start.strip_prefix(&self.root).map_err(|_| outside(shown))?;
        let mut pending = steps(below_root);
        let mut current = self.root.clone();
        let mut depth = 0usize;
        let mut hops = 0usize;
        while let Some(step) = pending.pop_front() {
            let name = match step {
                Step::Up if depth == 0 => return Err(outside(shown)),
                Step::Up => {
                    current.pop();
                    depth -= 1;
                    continue;
                }
                Step::Name(name) => name,
            };
            let candidate = current.join(&name);
            let follow = !pending.is_empty() || follow_final;
            let is_symlink = fs::symlink_metadata(&candidate)
                .map(|meta| meta.file_type().is_symlink())
                .unwrap_or(false);
            if !(is_symlink && follow) {
                current = candidate;
                depth += 1;
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(Error::file(
                    shown,
                    FileErrorKind::Other("too many levels of symbolic links".into()),
                ));
            }
            let target = fs::read_link(&candidate).map_err(|e| file(shown, &e))?;
            let mut next = if target.is_absolute() {
                let inside = target
                    .strip_prefix(&self.root)
                    .map_err(|_| outside(shown))?;
                current = self.root.clone();
                depth = 0;
                steps(inside)
            } else {
                steps(&target)
            };
            next.extend(pending.drain(..));
            pending = next;
        }
        Ok(current)
    }

    /// Reads a whole file.
    pub fn read(&self, path: &str) -> Result<Bytes> {
        let host = self.resolve(path, true)?;
        let mut contents = Vec::new();
        open_no_follow(&host, OpenOptions::new().read(true))
            .and_then(|mut f| f.read_to_end(&mut contents))
            .map_err(|e| file(path, &e))?;
        Ok(contents.into())
    }

    /// Creates or replaces a file, creating missing parents.
    pub fn write(&self, path: &str, contents: &[u8]) -> Result<()> {
        let host = self.resolve(path, true)?;
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent).map_err(|e| file(path, &e))?;
        }
        open_no_follow(
            &host,
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644),
        )
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| file(path, &e))
    }

    /// Metadata, not following a final symlink.
    pub fn stat(&self, path: &str) -> Result<FileStat> {
        let host = self.resolve(path, false)?;
        let meta = fs::symlink_metadata(&host).map_err(|e| file(path, &e))?;
        Ok(FileStat {
            kind: kind_of(&meta),
            size_bytes: meta.len(),
            mode: meta.mode() & 0o7777,
            modified_unix_secs: u64::try_from(meta.mtime()).ok(),
        })
    }

    /// A directory's entries, sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<DirEntry>> {
        let host = self.resolve(path, true)?;
        let mut entries = Vec::new();
        for entry in fs::read_dir(&host).map_err(|e| file(path, &e))? {
            let entry = entry.map_err(|e| file(path, &e))?;
            // An entry removed while listing is simply not listed.
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: kind_of(&meta),
                size_bytes: meta.len(),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Creates a directory and its missing parents.
    pub fn make_dir(&self, path: &str) -> Result<()> {
        let host = self.resolve(path, true)?;
        fs::create_dir_all(&host).map_err(|e| file(path, &e))?;
        // `create_dir_all` accepts an existing file at the path on some platforms.
        match fs::metadata(&host) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::file(path, FileErrorKind::AlreadyExists)),
            Err(e) => Err(file(path, &e)),
        }
    }

    /// Removes a file, a symlink (not its target), or a directory.
    pub fn remove(&self, path: &str, recursive: bool) -> Result<()> {
        let host = self.resolve(path, false)?;
        if host == self.root {
            return Err(Error::file(path, FileErrorKind::PermissionDenied));
        }
        let meta = fs::symlink_metadata(&host).map_err(|e| file(path, &e))?;
        let removed = if !meta.is_dir() {
            fs::remove_file(&host)
        } else if recursive {
            // std's remove_dir_all never follows symlinks out of the tree.
            fs::remove_dir_all(&host)
        } else {
            fs::remove_dir(&host)
        };
        removed.map_err(|e| file(path, &e))
    }

    /// Unpacks a tar archive under directory `path` (created when missing). Entries with
    /// absolute paths or `..`, and links leading out, are refused.
    pub fn unpack_archive(&self, path: &str, tar: &[u8]) -> Result<()> {
        let dir = self.resolve(path, true)?;
        fs::create_dir_all(&dir).map_err(|e| file(path, &e))?;
        let mut archive = tar::Archive::new(Cursor::new(tar));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        let bad_archive = |e: std::io::Error| {
            Error::file(path, FileErrorKind::Other(format!("bad tar archive: {e}")))
        };
        for entry in archive.entries().map_err(bad_archive)? {
            let mut entry = entry.map_err(bad_archive)?;
            let name = entry.path().map_err(bad_archive)?.into_owned();
            let shown = format!("{path}/{}", name.display());
            check_relative(&name, &shown)?;
            if entry.header().entry_type().is_hard_link()
                && let Some(link) = entry.link_name().map_err(bad_archive)?
            {
                check_relative(&link, &shown)?;
                self.resolve_host(&dir.join(&link), &shown, false)?;
            }
            // Parents must not lead out through a symlink unpacked earlier.
            self.resolve_host(&dir.join(&name), &shown, false)?;
            let unpacked = entry.unpack_in(&dir).map_err(|e| file(&shown, &e))?;
            if !unpacked {
                return Err(outside(&shown));
            }
        }
        Ok(())
    }

    /// A tar archive of `path` and everything under it. Entries are named from the last
    /// component of `path` (`dir/...`), or relative to the root when `path` is the root.
    pub fn pack_archive(&self, path: &str) -> Result<Bytes> {
        let host = self.resolve(path, true)?;
        let meta = fs::symlink_metadata(&host).map_err(|e| file(path, &e))?;
        let name = if host == self.root {
            PathBuf::from(".")
        } else {
            PathBuf::from(host.file_name().unwrap_or_default())
        };
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        let appended = if meta.is_dir() {
            builder.append_dir_all(&name, &host)
        } else {
            builder.append_path_with_name(&host, &name)
        };
        appended
            .and_then(|()| builder.into_inner())
            .map(Bytes::from)
            .map_err(|e| file(path, &e))
    }
}

/// Refuses archive names that are absolute or climb with `..`.
fn check_relative(name: &Path, shown: &str) -> Result<()> {
    let escapes = name.components().any(|component| {
        matches!(
            component,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes { Err(outside(shown)) } else { Ok(()) }
}

fn open_no_follow(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    options.custom_flags(nix::libc::O_NOFOLLOW).open(path)
}

fn kind_of(meta: &fs::Metadata) -> FileKind {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

/// Archives `root` into `archive` (written beside it, then renamed into place).
pub(crate) fn write_snapshot(root: &Path, archive: &Path) -> Result<()> {
    let temporary = archive.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut builder = tar::Builder::new(File::create(&temporary)?);
        builder.follow_symlinks(false);
        builder.append_dir_all(".", root)?;
        builder.into_inner()?.sync_all()?;
        fs::rename(&temporary, archive)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        internal(format!("writing snapshot {}", archive.display()), e)
    })
}

/// Unpacks a snapshot into an empty root. tar refuses entries that would land outside.
pub(crate) fn restore_snapshot(archive: &Path, root: &Path) -> Result<()> {
    let file =
        File::open(archive).map_err(|e| internal(format!("opening {}", archive.display()), e))?;
    let mut archive_reader = tar::Archive::new(file);
    archive_reader.set_preserve_permissions(true);
    archive_reader.set_preserve_mtime(true);
    archive_reader
        .unpack(root)
        .map_err(|e| internal(format!("restoring {}", archive.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> (tempfile::TempDir, Confined) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("root");
        fs::create_dir_all(root.join("work")).unwrap();
        let confined = Confined::new(root.clone(), root.join("work"));
        (dir, confined)
    }

    fn kind(result: Result<impl std::fmt::Debug>) -> FileErrorKind {
        match result {
            Err(Error::FileOperation { kind, .. }) => kind,
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_workdir() {
        let (_dir, fs) = sandbox();
        assert_eq!(fs.resolve("a/b", true).unwrap(), fs.root().join("work/a/b"));
        assert_eq!(fs.resolve("../x", true).unwrap(), fs.root().join("x"));
        assert_eq!(
            fs.resolve("./a/./b/..", true).unwrap(),
            fs.root().join("work/a")
        );
    }

    #[test]
    fn dot_dot_and_outside_absolute_paths_are_refused() {
        let (_dir, fs) = sandbox();
        assert_eq!(
            kind(fs.resolve("../../x", true)),
            FileErrorKind::OutsideSandbox
        );
        assert_eq!(
            kind(fs.resolve("/etc/passwd", true)),
            FileErrorKind::OutsideSandbox
        );
        let sneaky = format!("{}/../root/x", fs.root().display());
        assert_eq!(
            kind(fs.resolve(&sneaky, true)),
            FileErrorKind::OutsideSandbox
        );
    }

    #[test]
    fn symlinks_are_followed_inside_the_root_only() {
        let (_dir, fs) = sandbox();
        let work = fs.root().join("work");
        std::os::unix::fs::symlink("/etc", work.join("etc")).unwrap();
        std::os::unix::fs::symlink("../..", work.join("up")).unwrap();
        std::os::unix::fs::symlink("sub", work.join("inside")).unwrap();
        assert_eq!(kind(fs.read("etc/passwd")), FileErrorKind::OutsideSandbox);
        assert_eq!(kind(fs.write("up/x", b"no")), FileErrorKind::OutsideSandbox);
        fs.write("inside/f", b"yes").unwrap();
        assert_eq!(fs.read("sub/f").unwrap(), "yes");
        // The link itself is visible and removable.
        assert_eq!(fs.stat("etc").unwrap().kind, FileKind::Symlink);
        fs.remove("etc", false).unwrap();
        assert!(Path::new("/etc/passwd").exists());
    }

    #[test]
    fn archives_round_trip_and_refuse_escapes() {
        let (_dir, fs) = sandbox();
        fs.write("tree/a.txt", b"a").unwrap();
        fs.write("tree/sub/b.bin", &[0xff, 0x00]).unwrap();
        let archive = fs.pack_archive("tree").unwrap();
        fs.unpack_archive("copy", &archive).unwrap();
        assert_eq!(fs.read("copy/tree/sub/b.bin").unwrap(), &[0xff, 0x00][..]);

        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`, so write the name into the header by hand.
        header.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let evil = builder.into_inner().unwrap();
        assert_eq!(
            kind(fs.unpack_archive("copy", &evil)),
            FileErrorKind::OutsideSandbox
        );
        assert!(!fs.root().join("work/evil").exists());
    }
}
