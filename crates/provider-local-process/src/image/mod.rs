//! OCI images without a daemon: pulled from a registry or read from local files, verified,
//! unpacked into a read-only rootfs and cached by manifest digest.
//!
//! # References
//!
//! [`ImageCache::ensure`] accepts:
//!
//! - **A registry reference**, `[registry/]name[:tag][@sha256:...]`:
//!   `127.0.0.1:5000/sandkit-test-busybox:latest`, or `python:3.12-slim`, which means
//!   `docker.io/library/python:3.12-slim`; `:latest` when neither tag nor digest is given.
//!   Pulled over the OCI distribution protocol (`oci-client`), anonymously (with Docker
//!   Hub's anonymous token exchange). Registries on `localhost` or a loopback address are
//!   spoken to in plain HTTP, every other one in HTTPS (rustls). An index (manifest list)
//!   is resolved to its `linux/<host arch>` image.
//! - **`oci:/abs/path/to/layout[:tag]`**: a local [OCI image layout] directory. With a
//!   tag, the `index.json` entry annotated `org.opencontainers.image.ref.name=<tag>`;
//!   without, its only entry (or the host's platform when the entries are platforms).
//! - **`docker-archive:/abs/path/image.tar`**: a `docker save` tarball holding one image,
//!   in the old layout (`<id>/layer.tar`) or the newer OCI-style one.
//!
//! Local paths must be absolute. A malformed reference is [`Error::InvalidSpec`] with
//! field `image`; an image that does not exist is [`Error::NotFound`]; a registry that
//! cannot be reached is [`Error::Unavailable`]. Bad content (a digest mismatch, an
//! escaping layer entry) is an [`Error::Provider`] naming the blob's digest.
//!
//! # Verification and unpacking
//!
//! Every blob (manifest, config, layer) is hashed with sha256 while it is copied into
//! the work directory, and nothing is parsed or unpacked before its digest matched.
//! Layers are gzip or plain tar (zstd is refused), applied bottom first, with
//! whiteouts: `.wh.NAME` removes `NAME` of lower layers, `.wh..wh..opq` empties its
//! directory of what lower layers put there. Entries are created through a
//! [`cap_std::fs::Dir`] of the rootfs, so nothing lands outside it: names that are
//! absolute or contain `..` are refused, and so is any path whose resolution would leave
//! the rootfs through a symlink an earlier entry made (an absolute symlink target
//! counts as leaving, even one that would resolve inside). Hard links are resolved
//! inside the rootfs. Symlink targets are stored as written.
//!
//! Not unpacked: **device nodes and fifos are skipped** (never created, even as root),
//! and extended attributes (so file capabilities) are dropped. Owners are kept when this
//! process runs as root; otherwise every file belongs to the caller. Modes (set-id bits
//! included) and modification times are kept.
//!
//! # The cache
//!
//! Under the directory given to [`ImageCache::new`] (the provider uses
//! `<state_dir>/images`):
//!
//! - `sha256-<hex>/rootfs` and `sha256-<hex>/config.json` (the [`ImageConfig`]), by
//!   image manifest digest. For a `docker-archive:`, which has no distribution manifest,
//!   the key is the config digest (Docker's image id).
//! - `tmp/<uuid>/`: a pull in progress. Blobs and the rootfs are built there and the
//!   directory is renamed into place only when complete, so a failed or interrupted pull
//!   never leaves a partial image in the cache; a failed one removes its work directory,
//!   and work directories older than a day (of a killed process) are swept.
//!   Concurrent pulls of one image are safe: the first rename wins, later ones discard
//!   their copy.
//! - `index.json`: reference → digest. A second `ensure` of a tag re-checks the digest
//!   with one manifest `HEAD` request and downloads nothing when it is unchanged; when
//!   the registry cannot be reached, the cached image is used.
//!
//! # Progress
//!
//! Like local-docker's pull: `tracing` info events `pull progress` with the fields
//! `image`, `layer` (the digest's first 12 hex digits) and `status` (`Pulling fs layer`,
//! `Downloading`, `Verifying Checksum`, `Download complete`, `Extracting`,
//! `Pull complete`, then `Digest: ...` and `Status: Downloaded newer image for ...`).
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

mod local;
mod manifest;
mod registry;
mod store;
mod unpack;

use std::path::{Path, PathBuf};

use sandkit_core::{Error, Result};

use store::{Digest, Index, IndexEntry, WorkDir, image_error};

/// What a process of an image runs with, from the image's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// Environment variables (`Env`), in order.
    pub env: Vec<(String, String)>,
    /// The working directory (`WorkingDir`), when set.
    pub working_dir: Option<String>,
    /// The entrypoint (`Entrypoint`); empty when unset.
    pub entrypoint: Vec<String>,
    /// The default command (`Cmd`); empty when unset.
    pub cmd: Vec<String>,
    /// The user (`User`: a name or `uid[:gid]`), when set.
    pub user: Option<String>,
}

/// An unpacked image in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRootfs {
    /// The image manifest digest, `sha256:<hex>` (for a `docker-archive:`, the config
    /// digest).
    pub digest: String,
    /// The root filesystem. Shared by every user of the image: treat it as read-only.
    pub rootfs: PathBuf,
    /// The image's configuration.
    pub config: ImageConfig,
}

/// A cache of unpacked images in one directory. Cheap to create; any number of caches
/// (and processes) may share a directory. Clones share their registry clients.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
    clients: registry::Clients,
}

/// Where an image comes from.
#[derive(Debug)]
enum Source {
    Registry(oci_client::Reference),
    Layout { dir: PathBuf, tag: Option<String> },
    Archive(PathBuf),
}

/// The `oci:` prefix of a local OCI image layout.
const LAYOUT_PREFIX: &str = "oci:";
/// The `docker-archive:` prefix of a `docker save` tarball.
const ARCHIVE_PREFIX: &str = "docker-archive:";

fn parse_source(reference: &str) -> Result<Source> {
    let absolute = |path: &str| {
        let path = PathBuf::from(path);
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(Error::invalid_spec(
                "image",
                format!("`{reference}`: the path must be absolute"),
            ))
        }
    };
    if let Some(rest) = reference.strip_prefix(LAYOUT_PREFIX) {
        // A colon in the last path component separates the tag.
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') && !tag.is_empty() => {
                (path, Some(tag.to_owned()))
            }
            _ => (rest, None),
        };
        return Ok(Source::Layout {
            dir: absolute(path)?,
            tag,
        });
    }
    if let Some(path) = reference.strip_prefix(ARCHIVE_PREFIX) {
        return Ok(Source::Archive(absolute(path)?));
    }
    registry::parse_reference(reference).map(Source::Registry)
}

/// Emits one progress event, in the shape local-docker's pull uses.
fn progress(image: &str, layer: &str, status: &str) {
    tracing::info!(image = %image, layer = %layer, status = %status, "pull progress");
}

impl ImageCache {
    /// A cache in `dir` (created when first used).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            clients: registry::Clients::default(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pulls (or finds in the cache) and unpacks the image `reference` names (see the
    /// [module documentation](self) for the accepted forms), and returns its read-only
    /// rootfs.
    pub async fn ensure(&self, reference: &str) -> Result<ImageRootfs> {
        let source = parse_source(reference)?;
        std::fs::create_dir_all(self.dir.join("tmp"))
            .map_err(|e| store::io_error(format_args!("creating {}", self.dir.display()), &e))?;
        store::sweep_stale(&self.dir.join("tmp"));
        match source {
            Source::Registry(reference) => self.ensure_registry(reference).await,
            Source::Layout { dir, tag } => self.ensure_layout(reference, dir, tag).await,
            Source::Archive(path) => self.ensure_archive(reference, path).await,
        }
    }

    /// The cached image of `digest`, when complete.
    fn cached(&self, digest: &Digest) -> Option<ImageRootfs> {
        let dir = self.image_dir(digest);
        let config = std::fs::read(dir.join("config.json")).ok()?;
        let config = serde_json::from_slice(&config).ok()?;
        Some(ImageRootfs {
            digest: digest.to_string(),
            rootfs: dir.join("rootfs"),
            config,
        })
    }

    fn image_dir(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("sha256-{}", digest.hex()))
    }

    fn remember(&self, key: &str, resolved: &Digest, image: ImageRootfs) -> Result<ImageRootfs> {
        Index::new(&self.dir).put(
            key,
            IndexEntry {
                digest: image.digest.clone(),
                resolved: resolved.to_string(),
            },
        )?;
        Ok(image)
    }

    async fn ensure_registry(&self, reference: oci_client::Reference) -> Result<ImageRootfs> {
        let key = reference.whole();
        let client = self.clients.client(&reference);
        let known = Index::new(&self.dir).get(&key).and_then(|entry| {
            let digest = Digest::parse(&entry.digest).ok()?;
            Some((entry.resolved, self.cached(&digest)?))
        });
        if let Some((resolved, image)) = known {
            if reference.digest() == Some(resolved.as_str()) {
                return Ok(image);
            }
            match registry::current_digest(&client, &reference).await {
                Ok(current) if current == resolved => {
                    tracing::debug!(image = %key, digest = %image.digest, "image cache hit");
                    return Ok(image);
                }
                Ok(_) => {}
                Err(e @ Error::Unavailable { .. }) => {
                    tracing::warn!(image = %key, error = %e, "registry unreachable; using the cached image");
                    return Ok(image);
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(image = %key, "pulling image");
        let resolved = registry::resolve(&client, &reference).await?;
        if let Some(image) = self.cached(&resolved.digest) {
            return self.remember(&key, &resolved.resolved, image);
        }
        let config_digest = Digest::parse(&resolved.manifest.config.digest)?;
        let config_bytes = registry::fetch_small(&client, &reference, &config_digest).await?;
        let config = manifest::parse_config(&config_bytes, &config_digest)?;
        let layers = layer_digests(&resolved.manifest)?;
        let work = WorkDir::create(&self.dir)?;
        let targets = layers.iter().map(|d| (d.clone(), work.blob(d))).collect();
        registry::fetch_layers(&client, &reference, &key, targets).await?;
        let image = self
            .unpack_and_install(&key, work, &resolved.digest, layers, config.image)
            .await?;
        self.remember(&key, &resolved.resolved, image)
    }

    async fn ensure_layout(
        &self,
        shown: &str,
        dir: PathBuf,
        tag: Option<String>,
    ) -> Result<ImageRootfs> {
        let (resolved, digest, image_manifest) = {
            let dir = dir.clone();
            blocking(move || local::layout_manifest(&dir, tag.as_deref())).await?
        };
        if let Some(image) = self.cached(&digest) {
            return self.remember(shown, &resolved, image);
        }
        let config_digest = Digest::parse(&image_manifest.config.digest)?;
        let layers = layer_digests(&image_manifest)?;
        let work = WorkDir::create(&self.dir)?;
        let blobs: Vec<(Digest, PathBuf)> =
            layers.iter().map(|d| (d.clone(), work.blob(d))).collect();
        let owned_shown = shown.to_owned();
        let config = blocking(move || {
            let bytes = local::layout_blob(&dir, &config_digest, "config blob")?;
            let config = manifest::parse_config(&bytes, &config_digest)?;
            for (digest, dest) in &blobs {
                progress(&owned_shown, digest.short(), "Copying");
                if !dest.exists() {
                    local::layout_copy(&dir, digest, dest)?;
                }
                progress(&owned_shown, digest.short(), "Verifying Checksum");
            }
            Ok(config)
        })
        .await?;
        let image = self
            .unpack_and_install(shown, work, &digest, layers, config.image)
            .await?;
        self.remember(shown, &resolved, image)
    }

    async fn ensure_archive(&self, shown: &str, path: PathBuf) -> Result<ImageRootfs> {
        let (archive, digest, config_bytes) = blocking(move || {
            let archive = local::Archive::open(&path)?;
            let digest = archive.config_digest()?;
            let bytes = archive.config(&digest)?;
            Ok((archive, digest, bytes))
        })
        .await?;
        if let Some(image) = self.cached(&digest) {
            return self.remember(shown, &digest, image);
        }
        let config = manifest::parse_config(&config_bytes, &digest)?;
        let layers = archive.layer_digests(&config.diff_ids)?;
        let work = WorkDir::create(&self.dir)?;
        let dests: Vec<PathBuf> = (0..layers.len())
            .map(|i| work.scratch(&format!("layer-{i}")))
            .collect();
        let expected = layers.clone();
        let owned_shown = shown.to_owned();
        let dests_for_copy = dests.clone();
        blocking(move || {
            progress(&owned_shown, "", "Copying layers");
            archive.copy_layers(&expected, |i| dests_for_copy[i].clone())
        })
        .await?;
        // Unpack from the per-position copies (a layer may repeat).
        for (digest, dest) in layers.iter().zip(&dests) {
            let blob = work.blob(digest);
            if !blob.exists() {
                std::fs::rename(dest, &blob)
                    .map_err(|e| store::io_error("moving a layer copy", &e))?;
            }
        }
        let image = self
            .unpack_and_install(shown, work, &digest, layers, config.image)
            .await?;
        self.remember(shown, &digest, image)
    }

    /// Unpacks the verified layer blobs of `work` bottom first and installs the image.
    async fn unpack_and_install(
        &self,
        shown: &str,
        work: WorkDir,
        digest: &Digest,
        layers: Vec<Digest>,
        config: ImageConfig,
    ) -> Result<ImageRootfs> {
        let final_dir = self.image_dir(digest);
        let shown = shown.to_owned();
        let started = std::time::Instant::now();
        let install_config = config.clone();
        let shown = blocking(move || {
            let mut rootfs = unpack::Rootfs::open(&work.rootfs())?;
            for layer in &layers {
                progress(&shown, layer.short(), "Extracting");
                rootfs.apply_layer(&work.blob(layer), layer)?;
                progress(&shown, layer.short(), "Pull complete");
            }
            rootfs.finish()?;
            work.install(&install_config, &final_dir)?;
            Ok(shown)
        })
        .await?;
        progress(&shown, "", &format!("Digest: {digest}"));
        progress(
            &shown,
            "",
            &format!("Status: Downloaded newer image for {shown}"),
        );
        tracing::debug!(digest = %digest, elapsed = ?started.elapsed(), "image unpacked");
        self.cached(digest)
            .map(|image| ImageRootfs { config, ..image })
            .ok_or_else(|| {
                image_error(format!(
                    "image {digest} vanished from the cache after install"
                ))
            })
    }
}

/// The layer digests of a manifest, checked.
fn layer_digests(manifest: &manifest::ImageManifest) -> Result<Vec<Digest>> {
    manifest
        .layers
        .iter()
        .map(|layer| Digest::parse(&layer.digest))
        .collect()
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| image_error(format!("an image task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_told_apart() {
        assert!(matches!(
            parse_source("oci:/srv/layout:v1").unwrap(),
            Source::Layout { dir, tag: Some(tag) } if dir == Path::new("/srv/layout") && tag == "v1"
        ));
        assert!(matches!(
            parse_source("oci:/srv/lay:out/dir").unwrap(),
            Source::Layout { dir, tag: None } if dir == Path::new("/srv/lay:out/dir")
        ));
        assert!(matches!(
            parse_source("docker-archive:/tmp/a.tar").unwrap(),
            Source::Archive(p) if p == Path::new("/tmp/a.tar")
        ));
        assert!(matches!(
            parse_source("busybox").unwrap(),
            Source::Registry(_)
        ));
        for bad in ["oci:relative/dir", "docker-archive:a.tar", "Not A Ref"] {
            assert!(
                matches!(parse_source(bad), Err(Error::InvalidSpec { ref field, .. }) if field == "image"),
                "{bad}"
            );
        }
    }
}
