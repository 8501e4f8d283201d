//! Decoy files on the host: a directory with a fresh random token in every file, and a
//! record of its tree, so any read of it (the token in a reply) and any write to it (a
//! changed tree) is caught.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// What a decoy entry is, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
    Other,
}

/// A host directory no sandbox may read or write, removed when dropped.
///
/// Layout: `f`, `sub/f`, `root/f` (for ids that point the provider's state directory at
/// it) and `marker-<token>`, each holding [`Decoy::secret`]. The directory's own name has a
/// different random part: a symlink to it (whose target an archive may carry) is not a leak.
pub(crate) struct Decoy {
    dir: PathBuf,
    name: String,
    token: String,
    recorded: BTreeMap<PathBuf, Entry>,
}

impl Decoy {
    /// Makes a fresh decoy directory under `parent`.
    pub fn create(parent: &Path) -> Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let name = uuid::Uuid::new_v4().simple().to_string();
        let dir = parent.join(format!("sandkit-decoy-{name}"));
        fs::create_dir_all(dir.join("sub"))
            .with_context(|| format!("creating the decoy directory {}", dir.display()))?;
        fs::create_dir_all(dir.join("root"))?;
        let mut decoy = Self {
            dir,
            name,
            token,
            recorded: BTreeMap::new(),
        };
        let secret = decoy.secret();
        for name in ["f", "sub/f", "root/f", &format!("marker-{}", decoy.token)] {
            fs::write(decoy.dir.join(name), &secret)
                .with_context(|| format!("writing decoy file {name}"))?;
        }
        decoy.recorded = walk(&decoy.dir)?;
        Ok(decoy)
    }

    /// The decoy directory (absolute host path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The decoy directory as text.
    pub fn dir_str(&self) -> String {
        self.dir().display().to_string()
    }

    /// The decoy directory without its leading `/`, for climbing to it with `..`.
    pub fn dir_relative(&self) -> String {
        self.dir_str().trim_start_matches('/').to_owned()
    }

    /// The random part of the decoy directory's name (not secret).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What every decoy file holds.
    pub fn secret(&self) -> Vec<u8> {
        format!("sandkit-decoy-{}\n", self.token).into_bytes()
    }

    /// The name of the marker file, distinctive in a listing.
    pub fn marker(&self) -> String {
        format!("marker-{}", self.token)
    }

    /// Whether `bytes` carry the token (a decoy file was read, or its directory listed).
    pub fn leaked(&self, bytes: &[u8]) -> bool {
        let token = self.token.as_bytes();
        bytes.windows(token.len()).any(|window| window == token)
    }

    /// Fails, listing the differences, unless the decoy tree is exactly as created.
    pub fn check_untouched(&self) -> Result<()> {
        let now = walk(&self.dir).with_context(|| {
            format!(
                "the decoy directory {} can no longer be read (removed?)",
                self.dir.display()
            )
        })?;
        let mut changes = Vec::new();
        for (path, entry) in &self.recorded {
            match now.get(path) {
                None => changes.push(format!("removed {}", path.display())),
                Some(seen) if seen != entry => changes.push(format!("changed {}", path.display())),
                Some(_) => {}
            }
        }
        for path in now.keys().filter(|p| !self.recorded.contains_key(*p)) {
            changes.push(format!("created {}", path.display()));
        }
        anyhow::ensure!(
            changes.is_empty(),
            "the host decoy directory {} was written: {}",
            self.dir.display(),
            changes.join(", ")
        );
        Ok(())
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Every entry under `dir`, by relative path, without following symlinks.
fn walk(dir: &Path) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for item in fs::read_dir(dir.join(&relative))? {
            let item = item?;
            let path = relative.join(item.file_name());
            let meta = fs::symlink_metadata(dir.join(&path))?;
            let entry = if meta.is_dir() {
                pending.push(path.clone());
                Entry::Dir
            } else if meta.file_type().is_symlink() {
                Entry::Link(fs::read_link(dir.join(&path))?)
            } else if meta.is_file() {
                Entry::File(fs::read(dir.join(&path))?)
            } else {
                Entry::Other
            };
            found.insert(path, entry);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoy_notices_reads_and_writes() {
        let decoy = Decoy::create(&std::env::temp_dir()).expect("decoy");
        decoy.check_untouched().expect("fresh decoy");
        assert!(decoy.leaked(&decoy.secret()));
        assert!(!decoy.leaked(b"nothing here"));
        assert!(
            !decoy.leaked(decoy.dir_str().as_bytes()),
            "the path is not the secret"
        );
        assert!(decoy.leaked(decoy.marker().as_bytes()));
        fs::write(decoy.dir().join("sub/new"), "x").expect("write");
        assert!(decoy.check_untouched().is_err());
        fs::remove_file(decoy.dir().join("sub/new")).expect("remove");
        fs::write(decoy.dir().join("f"), "changed").expect("write");
        let error = decoy.check_untouched().expect_err("changed");
        assert!(error.to_string().contains("changed f"), "{error}");
        let dir = decoy.dir().to_path_buf();
        drop(decoy);
        assert!(!dir.exists());
    }
}
