//! Applies layer tarballs to a rootfs, honouring whiteouts, without letting any entry
//! land outside it.
//!
//! Every create and remove goes through a [`cap_std::fs::Dir`] of the rootfs: paths are
//! resolved by cap-std relative to that directory handle (with `openat2` and
//! `RESOLVE_BENEATH` where the kernel has it, component by component otherwise), and
//! any resolution that would leave it (`..`, an absolute path, a symlink pointing out)
//! fails. Entry names with a `..` component or a leading `/` are refused before that.
//! Ownership and times are then set on the opened handle or with one-component `*at`
//! calls on the parent's handle, never through a path checked earlier.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions};
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};
use sandkit_core::Result;

use super::store::{Digest, image_error};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The rootfs being built, and the directory metadata to apply once every layer is in.
pub(crate) struct Rootfs {
    root: Dir,
    as_root: bool,
    /// Directory metadata, applied at the end so read-only directories do not block
    /// later entries.
    dirs: HashMap<PathBuf, Meta>,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl Rootfs {
    /// Opens the (empty) rootfs directory at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let root = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| image_error(format!("opening {}: {e}", path.display())))?;
        Ok(Self {
            root,
            as_root: rustix::process::geteuid().is_root(),
            dirs: HashMap::new(),
        })
    }

    /// Applies the layer blob at `blob` (gzip or plain tar; detected from its first
    /// bytes).
    pub(crate) fn apply_layer(&mut self, blob: &Path, digest: &Digest) -> Result<()> {
        let file = std::fs::File::open(blob)
            .map_err(|e| image_error(format!("opening layer {digest}: {e}")))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let head = reader
            .fill_buf()
            .map_err(|e| image_error(format!("reading layer {digest}: {e}")))?;
        let stream: Box<dyn Read> = match head {
            [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => {
                return Err(image_error(format!(
                    "layer {digest} is zstd-compressed, which is not supported"
                )));
            }
            _ => Box::new(reader),
        };
        let mut archive = tar::Archive::new(stream);
        let mut layer = Layer {
            digest,
            created: HashSet::new(),
        };
        let entries = archive
            .entries()
            .map_err(|e| image_error(format!("reading layer {digest}: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| image_error(format!("reading layer {digest}: {e}")))?;
            self.apply_entry(&mut layer, entry)?;
        }
        Ok(())
    }

    /// Applies the recorded directory modes, owners and times, deepest first.
    pub(crate) fn finish(mut self) -> Result<()> {
        let mut dirs: Vec<(PathBuf, Meta)> = self.dirs.drain().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, meta) in dirs {
            // Removed or replaced by a later layer: nothing to apply.
            let is_dir = self.root.symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if !is_dir {
                continue;
            }
            // cap-std's directory handles are `O_PATH`: set everything with one-component
            // `*at` calls on the parent's handle.
            let (parent, name) = match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                    (self.root.open_dir(parent), name)
                }
                (_, Some(name)) => (self.root.try_clone(), name),
                _ => continue,
            };
            let parent =
                parent.map_err(|e| image_error(format!("opening `{}`: {e}", path.display())))?;
            if self.as_root {
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(uid(meta.uid)),
                    Some(gid(meta.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| image_error(format!("chown `{}`: {e}", path.display())))?;
            }
            rustix::fs::chmodat(
                &parent,
                name,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| image_error(format!("chmod `{}`: {e}", path.display())))?;
            let _ =
                rustix::fs::utimensat(&parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW);
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        layer: &mut Layer<'_>,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let Some(rel) = clean(&raw).map_err(|reason| layer.refuse(&shown, reason))? else {
            // The archive's root (`./`): the rootfs itself.
            return Ok(());
        };
        let header = entry.header();
        let kind = header.entry_type();
        let meta = Meta {
            mode: header.mode().unwrap_or(0o755),
            uid: u32::try_from(header.uid().unwrap_or(0)).unwrap_or(0),
            gid: u32::try_from(header.gid().unwrap_or(0)).unwrap_or(0),
            mtime: i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0),
        };
        let name = rel
            .file_name()
            .and_then(|n| n.to_str().map(str::to_owned))
            .unwrap_or_default();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();

        // Whiteouts hide what lower layers put there, never this layer's own entries.
        if name == OPAQUE {
            let parent = self.parent(layer, &parent_rel, &shown)?;
            return self.opaque(layer, &parent, &parent_rel, &shown);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let target = parent_rel.join(hidden);
            if !layer.created.contains(&target) {
                let parent = self.parent(layer, &parent_rel, &shown)?;
                remove_any(&parent, Path::new(hidden))
                    .map_err(|e| layer.refuse(&shown, format!("whiteout: {e}")))?;
            }
            return Ok(());
        }

        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let parent = self.parent(layer, &parent_rel, &shown)?;
                let existing = parent.symlink_metadata(&name).ok();
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => {
                        remove_any(&parent, Path::new(&name))
                            .map_err(|e| layer.refuse(&shown, e))?;
                        parent
                            .create_dir(&name)
                            .map_err(|e| layer.refuse(&shown, e))?;
                    }
                    None => parent
                        .create_dir(&name)
                        .map_err(|e| layer.refuse(&shown, e))?,
                }
                self.dirs.insert(rel.clone(), meta);
            }
            T::Regular | T::Continuous => {
                let parent = self.parent(layer, &parent_rel, &shown)?;
                replace(&parent, &name).map_err(|e| layer.refuse(&shown, e))?;
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                let file = parent
                    .open_with(&name, &options)
                    .map_err(|e| layer.refuse(&shown, e))?;
                let mut std_file = file.into_std();
                std::io::copy(&mut entry, &mut std_file).map_err(|e| layer.refuse(&shown, e))?;
                if self.as_root {
                    rustix::fs::fchown(&std_file, Some(uid(meta.uid)), Some(gid(meta.gid)))
                        .map_err(|e| layer.refuse(&shown, e))?;
                }
                // After chown, which clears set-id bits.
                rustix::fs::fchmod(&std_file, Mode::from_raw_mode(meta.mode & 0o7777))
                    .map_err(|e| layer.refuse(&shown, e))?;
                let _ = rustix::fs::futimens(&std_file, &times(meta.mtime));
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8_lossy(&target).into_owned();
                let parent = self.parent(layer, &parent_rel, &shown)?;
                replace(&parent, &name).map_err(|e| layer.refuse(&shown, e))?;
                // The target is stored as written; it is only ever resolved later, inside
                // the sandbox.
                parent
                    .symlink_contents(&target, &name)
                    .map_err(|e| layer.refuse(&shown, e))?;
                if self.as_root {
                    let _ = rustix::fs::chownat(
                        &parent,
                        name.as_str(),
                        Some(uid(meta.uid)),
                        Some(gid(meta.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    );
                }
                let _ = rustix::fs::utimensat(
                    &parent,
                    name.as_str(),
                    &times(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target_rel = clean(&target)
                    .map_err(|reason| layer.refuse(&shown, format!("hard link target: {reason}")))?
                    .ok_or_else(|| layer.refuse(&shown, "hard link to the root directory"))?;
                if target_rel == rel {
                    return Ok(());
                }
                let parent = self.parent(layer, &parent_rel, &shown)?;
                replace(&parent, &name).map_err(|e| layer.refuse(&shown, e))?;
                // The target is resolved inside the rootfs by cap-std, so it cannot name a
                // host file.
                self.root
                    .hard_link(&target_rel, &parent, &name)
                    .map_err(|e| {
                        layer.refuse(
                            &shown,
                            format!("hard link to `{}`: {e}", target_rel.display()),
                        )
                    })?;
            }
            T::Char | T::Block | T::Fifo => {
                tracing::debug!(layer = %layer.digest, entry = %shown, "skipping a device node or fifo");
                return Ok(());
            }
            // Extended headers are consumed by the tar reader; anything else (sockets,
            // GNU sparse files, volume labels) carries nothing a rootfs needs.
            other => {
                tracing::debug!(layer = %layer.digest, entry = %shown, kind = ?other, "skipping a tar entry");
                return Ok(());
            }
        }
        layer.created.insert(rel);
        Ok(())
    }

    /// The parent directory of an entry, created (mode 0755) where missing.
    fn parent(&self, layer: &Layer<'_>, parent_rel: &Path, shown: &str) -> Result<Dir> {
        if parent_rel.as_os_str().is_empty() {
            return self.root.try_clone().map_err(|e| layer.refuse(shown, e));
        }
        match self.root.open_dir(parent_rel) {
            Ok(dir) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self
                .root
                .create_dir_all(parent_rel)
                .and_then(|()| self.root.open_dir(parent_rel))
                .map_err(|e| layer.refuse(shown, e)),
            // Through a symlink that leaves the rootfs, or through a file.
            Err(e) => Err(layer.refuse(shown, e)),
        }
    }

    /// `.wh..wh..opq`: empties the directory of what lower layers put in it.
    fn opaque(&self, layer: &Layer<'_>, dir: &Dir, dir_rel: &Path, shown: &str) -> Result<()> {
        let entries = dir.entries().map_err(|e| layer.refuse(shown, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| layer.refuse(shown, e))?;
            let name = entry.file_name();
            if layer.created.contains(&dir_rel.join(&name)) {
                continue;
            }
            remove_any(dir, Path::new(&name)).map_err(|e| layer.refuse(shown, e))?;
        }
        Ok(())
    }
}

/// The layer being applied.
struct Layer<'a> {
    digest: &'a Digest,
    /// Paths this layer created, which its own whiteouts leave alone.
    created: HashSet<PathBuf>,
}

impl Layer<'_> {
    fn refuse(&self, entry: &str, reason: impl std::fmt::Display) -> sandkit_core::Error {
        image_error(format!("layer {} entry `{entry}`: {reason}", self.digest))
    }
}

/// The entry name as a relative path of normal components; `None` for the root itself.
/// Absolute names and `..` are refused.
fn clean(raw: &[u8]) -> std::result::Result<Option<PathBuf>, String> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute entry names are refused".to_owned());
            }
            Component::ParentDir => {
                return Err(
                    "entry names with `..` are refused: they would leave the rootfs".to_owned(),
                );
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

/// Removes whatever is at `name` in `dir` (a directory with its contents), without
/// following a symlink there. Missing is fine.
fn remove_any(dir: &Dir, name: &Path) -> std::io::Result<()> {
    match dir.symlink_metadata(name) {
        Ok(meta) if meta.is_dir() => dir.remove_dir_all(name),
        Ok(_) => dir.remove_file(name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes room for a non-directory entry: removes what is at `name` now.
fn replace(dir: &Dir, name: &str) -> std::io::Result<()> {
    remove_any(dir, Path::new(name))
}

fn times(mtime: i64) -> Timestamps {
    let at = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean(b"./a/./b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(clean(b"./").unwrap(), None);
        assert!(clean(b"/etc/passwd").is_err());
        assert!(clean(b"a/../../x").is_err());
        assert!(clean(b"../x").is_err());
    }
}
