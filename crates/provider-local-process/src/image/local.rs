//! Images from local files: an OCI image layout directory, or a `docker save` archive.
//! Everything here is blocking; callers run it on a blocking thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sandkit_core::{Error, Result};

use super::manifest::{self, ImageManifest, Parsed};
use super::store::{Digest, copy_verified, image_error, io_error};

/// The annotation naming an OCI layout entry's tag.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name (`docker save` of newer engines).
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The blob file of `digest` in the layout at `dir`.
pub(crate) fn layout_blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Reads a small blob of the layout, verified.
pub(crate) fn layout_blob(dir: &Path, digest: &Digest, what: &str) -> Result<Vec<u8>> {
    let path = layout_blob_path(dir, digest);
    let bytes = std::fs::read(&path).map_err(|e| missing_or_io(&path, what, digest, &e))?;
    digest.verify(&bytes, what)?;
    Ok(bytes)
}

/// Copies a layer blob of the layout to `dest`, verified.
pub(crate) fn layout_copy(dir: &Path, digest: &Digest, dest: &Path) -> Result<()> {
    let path = layout_blob_path(dir, digest);
    let file = File::open(&path).map_err(|e| missing_or_io(&path, "layer", digest, &e))?;
    copy_verified(file, dest, digest, "layer")
}

fn missing_or_io(path: &Path, what: &str, digest: &Digest, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            what: format!("{what} {digest} (no {})", path.display()),
        }
    } else {
        io_error(format_args!("reading {}", path.display()), e)
    }
}

/// The manifest of the layout at `dir` for `tag` (or its only image), through an index
/// to this host's platform. Returns the digest `index.json` names, the image manifest's
/// digest and the manifest.
pub(crate) fn layout_manifest(
    dir: &Path,
    tag: Option<&str>,
) -> Result<(Digest, Digest, ImageManifest)> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                what: format!("OCI image layout `{}` (no index.json)", dir.display()),
            }
        } else {
            io_error(format_args!("reading {}", index_path.display()), &e)
        }
    })?;
    let shown = format!("`{}`", index_path.display());
    let Parsed::Index(entries) = manifest::parse(&bytes, &shown)? else {
        return Err(image_error(format!("{shown} is not an image index")));
    };
    let entry = match tag {
        Some(tag) => entries
            .iter()
            .find(|e| {
                e.annotations.get(REF_NAME).map(String::as_str) == Some(tag)
                    || e.annotations
                        .get(CONTAINERD_NAME)
                        .is_some_and(|name| name.rsplit_once(':').is_some_and(|(_, t)| t == tag))
            })
            .ok_or_else(|| Error::NotFound {
                what: format!("tag `{tag}` in OCI image layout `{}`", dir.display()),
            })?,
        None if entries.len() == 1 => &entries[0],
        None if entries.iter().all(|e| e.platform.is_some()) && !entries.is_empty() => {
            manifest::pick_platform(&entries, &shown)?
        }
        None => {
            let tags: Vec<&str> = entries
                .iter()
                .filter_map(|e| e.annotations.get(REF_NAME).map(String::as_str))
                .collect();
            return Err(Error::invalid_spec(
                "image",
                format!(
                    "OCI image layout `{}` holds {} images; name one as `oci:{}:TAG` (tags: {})",
                    dir.display(),
                    entries.len(),
                    dir.display(),
                    tags.join(", ")
                ),
            ));
        }
    };
    let resolved = Digest::parse(&entry.digest)?;
    let bytes = layout_blob(dir, &resolved, "manifest")?;
    match manifest::parse(&bytes, &format!("manifest {resolved}"))? {
        Parsed::Image(image) => Ok((resolved.clone(), resolved, image)),
        Parsed::Index(entries) => {
            let entry = manifest::pick_platform(&entries, &format!("index {resolved}"))?;
            let digest = Digest::parse(&entry.digest)?;
            let bytes = layout_blob(dir, &digest, "manifest")?;
            match manifest::parse(&bytes, &format!("manifest {digest}"))? {
                Parsed::Image(image) => Ok((resolved, digest, image)),
                Parsed::Index(_) => Err(image_error(format!(
                    "index entry {digest} in `{}` is another index",
                    dir.display()
                ))),
            }
        }
    }
}

/// A `docker save` archive: its one image's config and layer paths, and the symlinks
/// older engines use for repeated layers.
pub(crate) struct Archive {
    path: PathBuf,
    config: String,
    layers: Vec<String>,
    symlinks: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

impl Archive {
    /// Reads the archive's `manifest.json`; the archive must hold one image.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut manifest = None;
        let mut symlinks = HashMap::new();
        for_each_entry(path, |name, entry| {
            match entry.header().entry_type() {
                tar::EntryType::Symlink => {
                    if let Some(target) = entry.link_name().ok().flatten() {
                        let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                        if let Some(target) = normalise(&base.join(target)) {
                            symlinks.insert(name, target);
                        }
                    }
                }
                _ if name == "manifest.json" => {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes)?;
                    manifest = Some(bytes);
                }
                _ => {}
            }
            Ok(())
        })?;
        let manifest = manifest.ok_or_else(|| {
            Error::invalid_spec(
                "image",
                format!(
                    "`{}` is not a docker save archive (no manifest.json)",
                    path.display()
                ),
            )
        })?;
        let mut images: Vec<ArchiveImage> = serde_json::from_slice(&manifest)
            .map_err(|e| image_error(format!("manifest.json of `{}`: {e}", path.display())))?;
        if images.len() != 1 {
            return Err(Error::invalid_spec(
                "image",
                format!(
                    "`{}` holds {} images; only single-image archives are supported",
                    path.display(),
                    images.len()
                ),
            ));
        }
        let image = images.remove(0);
        Ok(Self {
            path: path.to_owned(),
            config: image.config,
            layers: image.layers,
            symlinks,
        })
    }

    /// The config's digest, from its file name (`blobs/sha256/<hex>` or `<hex>.json`).
    pub(crate) fn config_digest(&self) -> Result<Digest> {
        let name = Path::new(&self.config)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        Digest::parse(&format!("sha256:{}", name.trim_end_matches(".json"))).map_err(|_| {
            image_error(format!(
                "config `{}` in `{}` is not named by its digest",
                self.config,
                self.path.display()
            ))
        })
    }

    /// Reads the config, verified against `digest`.
    pub(crate) fn config(&self, digest: &Digest) -> Result<Vec<u8>> {
        let wanted = self.resolve(&self.config);
        let mut found = None;
        for_each_entry(&self.path, |name, entry| {
            if found.is_none() && name == wanted && entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                found = Some(bytes);
            }
            Ok(())
        })?;
        let bytes = found.ok_or_else(|| {
            image_error(format!(
                "`{}` has no config `{}`",
                self.path.display(),
                self.config
            ))
        })?;
        digest.verify(&bytes, "config blob")?;
        Ok(bytes)
    }

    /// The digest each layer must have: the one in its name (`blobs/sha256/<hex>`), or else
    /// the config's diff id (older archives store layers uncompressed).
    pub(crate) fn layer_digests(&self, diff_ids: &[String]) -> Result<Vec<Digest>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let resolved = self.resolve(layer);
                if let Some(hex) = resolved.strip_prefix("blobs/sha256/") {
                    return Digest::parse(&format!("sha256:{hex}"));
                }
                let diff_id = diff_ids.get(i).ok_or_else(|| {
                    image_error(format!("layer `{layer}` has no diff id in the config"))
                })?;
                Digest::parse(diff_id)
            })
            .collect()
    }

    /// Copies every layer into `dest(i)`, verified against `digests[i]`.
    pub(crate) fn copy_layers(
        &self,
        digests: &[Digest],
        dest: impl Fn(usize) -> PathBuf,
    ) -> Result<()> {
        let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            wanted.entry(self.resolve(layer)).or_default().push(i);
        }
        let mut done = vec![false; self.layers.len()];
        let mut failure = None;
        for_each_entry(&self.path, |name, entry| {
            if failure.is_some() || !entry.header().entry_type().is_file() {
                return Ok(());
            }
            let Some(indices) = wanted.get(&name) else {
                return Ok(());
            };
            let first = indices[0];
            if let Err(e) = copy_verified(&mut *entry, &dest(first), &digests[first], "layer") {
                failure = Some(e);
                return Ok(());
            }
            for &i in indices {
                if i != first {
                    if let Err(e) = std::fs::copy(dest(first), dest(i)) {
                        failure = Some(io_error("copying a repeated layer", &e));
                        return Ok(());
                    }
                }
                done[i] = true;
            }
            Ok(())
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        if let Some(i) = done.iter().position(|d| !d) {
            return Err(image_error(format!(
                "`{}` has no layer `{}`",
                self.path.display(),
                self.layers[i]
            )));
        }
        Ok(())
    }

    /// `name` through the archive's symlinks.
    fn resolve(&self, name: &str) -> String {
        let mut name = normalise(Path::new(name)).unwrap_or_else(|| name.to_owned());
        for _ in 0..8 {
            match self.symlinks.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        name
    }
}

/// A relative archive path without `.`, with `..` applied; `None` if it climbs out.
fn normalise(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// Calls `f` with each entry of the tar archive at `path` and its normalised name.
fn for_each_entry(
    path: &Path,
    mut f: impl FnMut(String, &mut tar::Entry<'_, File>) -> std::io::Result<()>,
) -> Result<()> {
    let read_error = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                what: format!("docker archive `{}`", path.display()),
            }
        } else {
            io_error(format_args!("reading `{}`", path.display()), &e)
        }
    };
    let file = File::open(path).map_err(read_error)?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| normalise(&p))
            .unwrap_or_default();
        f(name, &mut entry).map_err(read_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_are_normalised() {
        assert_eq!(normalise(Path::new("./a/b/../c")).as_deref(), Some("a/c"));
        assert_eq!(normalise(Path::new("../x")), None);
    }
}
