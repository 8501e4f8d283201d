//! The cache directory: finished images by manifest digest, work directories under
//! `tmp/` that are removed unless installed, the reference index, and verified blob
//! copies.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sandkit_core::Error;
use sha2::{Digest as _, Sha256};

use super::ImageConfig;
use crate::NAME;

/// A failure of an image's content or of the cache, in words (as [`Error::Provider`]).
#[derive(Debug, thiserror::Error)]
#[error("image: {0}")]
pub(crate) struct ImageError(pub String);

/// Shorthand for an [`ImageError`] as a sandkit error.
pub(crate) fn image_error(message: impl Into<String>) -> Error {
    Error::provider(NAME, ImageError(message.into()))
}

/// An I/O failure of the cache, with what it was doing.
pub(crate) fn io_error(context: impl fmt::Display, error: &std::io::Error) -> Error {
    image_error(format!("{context}: {error}"))
}

/// A `sha256:<64 lowercase hex>` digest, checked before it names a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; any other algorithm or spelling is refused.
    pub(crate) fn parse(text: &str) -> sandkit_core::Result<Self> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            image_error(format!(
                "digest `{text}`: only sha256 digests are supported"
            ))
        })?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(image_error(format!("digest `{text}` is malformed")));
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex(&Sha256::digest(bytes)),
        }
    }

    /// The hex part.
    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as Docker names layers in its progress.
    pub(crate) fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Fails unless `bytes` hash to this digest.
    pub(crate) fn verify(&self, bytes: &[u8], what: &str) -> sandkit_core::Result<()> {
        let actual = Self::of(bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(mismatch(self, &actual, what))
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error for content that does not hash to its digest.
pub(crate) fn mismatch(expected: &Digest, actual: &Digest, what: &str) -> Error {
    image_error(format!(
        "{what} {expected} does not match its digest: its content hashes to {actual}"
    ))
}

/// A running sha256 over bytes as they stream past.
pub(crate) struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub(crate) fn new() -> Self {
        Self(Sha256::new())
    }

    /// Adds bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub(crate) fn finish(self) -> Digest {
        Digest {
            hex: hex(&self.0.finalize()),
        }
    }
}

/// Copies `reader` into a new file `dest`, hashing as it goes, and fails (removing the
/// copy) unless the content matches `expected`.
pub(crate) fn copy_verified(
    mut reader: impl Read,
    dest: &Path,
    expected: &Digest,
    what: &str,
) -> sandkit_core::Result<()> {
    let mut file = std::fs::File::create_new(dest)
        .map_err(|e| io_error(format_args!("creating {}", dest.display()), &e))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0_u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(format_args!("reading {what} {expected}"), &e)),
        };
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n])
            .map_err(|e| io_error(format_args!("writing {}", dest.display()), &e))?;
    }
    let actual = hasher.finish();
    if &actual != expected {
        drop(file);
        let _ = std::fs::remove_file(dest);
        return Err(mismatch(expected, &actual, what));
    }
    Ok(())
}

/// A work directory under `<cache>/tmp/`, removed when dropped unless installed.
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `<cache>/tmp/<uuid>` with `blobs/` and `rootfs/` in it.
    pub(crate) fn create(cache: &Path) -> sandkit_core::Result<Self> {
        let path = cache
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(path.join("blobs"))
            .map_err(|e| io_error(format_args!("creating {}", path.display()), &e))?;
        let work = Self { path };
        std::fs::create_dir(work.rootfs())
            .map_err(|e| io_error(format_args!("creating {}", work.path.display()), &e))?;
        Ok(work)
    }

    /// Where blobs are copied while they are verified.
    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.path.join("blobs").join(digest.hex())
    }

    /// Any other scratch file.
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.path.join("blobs").join(name)
    }

    /// The rootfs being unpacked.
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// Writes `config.json`, drops the blobs and renames the work directory to
    /// `final_dir`. When another pull installed the same digest first, that one is kept
    /// and this one removed: both are the same content.
    pub(crate) fn install(
        self,
        config: &ImageConfig,
        final_dir: &Path,
    ) -> sandkit_core::Result<()> {
        let json = serde_json::to_vec_pretty(config)
            .map_err(|e| image_error(format!("encoding the image config: {e}")))?;
        let config_path = self.path.join("config.json");
        std::fs::write(&config_path, json)
            .map_err(|e| io_error(format_args!("writing {}", config_path.display()), &e))?;
        let blobs = self.path.join("blobs");
        std::fs::remove_dir_all(&blobs)
            .map_err(|e| io_error(format_args!("removing {}", blobs.display()), &e))?;
        match std::fs::rename(&self.path, final_dir) {
            Ok(()) => Ok(()),
            // Someone else installed it: ENOTEMPTY or EEXIST on the rename. Ours goes.
            Err(_) if final_dir.join("config.json").is_file() => Ok(()),
            Err(e) => Err(io_error(
                format_args!("moving the image into {}", final_dir.display()),
                &e,
            )),
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.path.exists() {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an image work directory");
            }
        }
    }
}

/// Removes work directories older than a day: left by a process that was killed mid-pull.
pub(crate) fn sweep_stale(tmp: &Path) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if stale {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// `remove_dir_all` that first makes read-only directories writable (a non-root
/// unpack may have created some).
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(first) => {
            make_writable(path);
            std::fs::remove_dir_all(path).map_err(|_| first)
        }
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    );
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// What the index remembers of a reference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IndexEntry {
    /// The image manifest digest: the cache key.
    pub digest: String,
    /// What the reference itself resolved to (an index's digest, or the manifest's).
    pub resolved: String,
}

/// The index file from references to digests, `<cache>/index.json`.
pub(crate) struct Index {
    path: PathBuf,
}

impl Index {
    /// The index of the cache at `cache`.
    pub(crate) fn new(cache: &Path) -> Self {
        Self {
            path: cache.join("index.json"),
        }
    }

    fn read_all(&self) -> BTreeMap<String, IndexEntry> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The entry for `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<IndexEntry> {
        self.read_all().remove(key)
    }

    /// Records `key`. Atomic (written aside, then renamed); a concurrent update may win,
    /// which costs at most a manifest fetch later.
    pub(crate) fn put(&self, key: &str, entry: IndexEntry) -> sandkit_core::Result<()> {
        let mut all = self.read_all();
        if all.get(key) == Some(&entry) {
            return Ok(());
        }
        all.insert(key.to_owned(), entry);
        let json = serde_json::to_vec_pretty(&all)
            .map_err(|e| image_error(format!("encoding the image index: {e}")))?;
        let aside = self
            .path
            .with_file_name(format!("index.json.{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&aside, json)
            .and_then(|()| std::fs::rename(&aside, &self.path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&aside);
                io_error(format_args!("writing {}", self.path.display()), &e)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_before_they_name_files() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        for bad in [
            "sha512:00",
            "sha256:../../etc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/", "a".repeat(63)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mismatched_copy_is_removed_and_names_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let expected = Digest::of(b"right");
        let dest = dir.path().join("blob");
        let error = copy_verified(&b"wrong"[..], &dest, &expected, "layer").unwrap_err();
        assert!(error.to_string().contains(&expected.to_string()), "{error}");
        assert!(!dest.exists());
        copy_verified(&b"right"[..], &dest, &expected, "layer").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"right");
    }
}
