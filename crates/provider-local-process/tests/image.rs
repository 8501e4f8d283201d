//! Daemonless OCI images: pulls through a real registry on 127.0.0.1:5000 (started by
//! `scripts/registry.sh`), crafted images pushed by the tests themselves, local OCI
//! layouts and `docker save` archives.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sandkit_core::Error;
use sandkit_provider_local_process::image::{ImageCache, ImageRootfs};
use sha2::Digest as _;

const REGISTRY: &str = "127.0.0.1:5000";
const BUSYBOX: &str = "127.0.0.1:5000/sandkit-test-busybox:latest";

// ---------------------------------------------------------------------------------------
// Helpers

/// Fails (never skips) when the registry is not there.
fn require_registry() {
    let answers = std::net::TcpStream::connect_timeout(
        &REGISTRY.parse().unwrap(),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        answers,
        "no registry answers on {REGISTRY}: run `scripts/registry.sh` (as root) first; it \
         starts one and pushes {BUSYBOX}"
    );
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![REGISTRY.to_owned()]),
        ..ClientConfig::default()
    })
}

fn sha256(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A `pull progress` event: (image, layer, status).
type Event = (String, String, String);

/// Every `pull progress` event of this test binary, from any thread.
fn events() -> &'static Mutex<Vec<Event>> {
    static EVENTS: OnceLock<Mutex<Vec<Event>>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Recorder);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        Mutex::new(Vec::new())
    })
}

/// The events about `image`.
fn events_of(image: &str) -> Vec<Event> {
    events()
        .lock()
        .unwrap()
        .iter()
        .filter(|(i, _, _)| i == image)
        .cloned()
        .collect()
}

struct Recorder;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields(BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut f = fields.0;
        if f.get("message").map(String::as_str) == Some("pull progress") {
            let take = |f: &mut BTreeMap<String, String>, k| f.remove(k).unwrap_or_default();
            let entry = (
                take(&mut f, "image"),
                take(&mut f, "layer"),
                take(&mut f, "status"),
            );
            events().lock().unwrap().push(entry);
        }
    }
}

/// A tar entry to craft; names are written raw, so `..` and `/abs` get through.
enum Entry {
    Dir(&'static str),
    File(String, &'static [u8]),
    Symlink(String, String),
    HardLink(String, String),
}

fn file(name: &str, data: &'static [u8]) -> Entry {
    Entry::File(name.to_owned(), data)
}

fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (name, kind, data, link): (&str, _, &[u8], Option<&str>) = match entry {
            Entry::Dir(name) => (name, tar::EntryType::Directory, b"", None),
            Entry::File(name, data) => (name, tar::EntryType::Regular, data, None),
            Entry::Symlink(name, target) => (name, tar::EntryType::Symlink, b"", Some(target)),
            Entry::HardLink(name, target) => (name, tar::EntryType::Link, b"", Some(target)),
        };
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            let raw = &mut header.as_old_mut().linkname;
            raw[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A crafted image: gzip layers and an OCI config running `/bin/sh`.
fn crafted(layers: &[&[Entry]]) -> (Vec<ImageLayer>, Config) {
    let tars: Vec<Vec<u8>> = layers.iter().map(|entries| layer_tar(entries)).collect();
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin", "CRAFTED=1"], "Cmd": ["/bin/sh"], "WorkingDir": "/w"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    (
        tars.iter()
            .map(|t| ImageLayer::oci_v1_gzip(gzip(t), None))
            .collect(),
        Config::oci_v1(serde_json::to_vec(&config).unwrap(), None),
    )
}

/// Pushes a crafted image to the registry under a fresh name; returns its reference.
async fn push(name: &str, layers: &[&[Entry]]) -> String {
    require_registry();
    let reference = format!(
        "{REGISTRY}/sandkit-test-{name}-{}:latest",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (layers, config) = crafted(layers);
    let manifest = OciImageManifest::build(&layers, &config, None);
    client()
        .push(
            &reference.parse().unwrap(),
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .unwrap();
    reference
}

/// Writes an OCI image layout of the given blobs and manifest, tagged `latest`.
fn write_layout(dir: &Path, manifest: &[u8], blobs: &[Vec<u8>]) {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).unwrap();
    for blob in blobs.iter().chain(std::iter::once(&manifest.to_vec())) {
        let digest = sha256(blob);
        std::fs::write(blob_dir.join(&digest["sha256:".len()..]), blob).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A layout of a crafted image: (manifest bytes, layer blobs).
fn crafted_layout(dir: &Path, layers: &[&[Entry]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (layers, config) = crafted(layers);
    let manifest = OciImageManifest::build(&layers, &config, None);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut blobs: Vec<Vec<u8>> = layers.iter().map(|l| l.data.to_vec()).collect();
    blobs.push(config.data.to_vec());
    write_layout(dir, &manifest, &blobs);
    let layer_blobs = blobs[..blobs.len() - 1].to_vec();
    (manifest, layer_blobs)
}

/// Everything under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The cache holds no image and no work directory: only `tmp/` (empty) and maybe the
/// index.
fn assert_cache_empty(cache: &Path) {
    let left: Vec<String> = tree(cache)
        .into_iter()
        .filter(|p| p != "tmp" && p != "index.json")
        .collect();
    assert!(left.is_empty(), "the cache kept {left:?}");
}

fn cache_in(dir: &Path) -> (PathBuf, ImageCache) {
    let path = dir.join("cache");
    (path.clone(), ImageCache::new(path))
}

fn check_busybox(image: &ImageRootfs) {
    let root = &image.rootfs;
    let busybox = std::fs::metadata(root.join("bin/busybox")).unwrap();
    assert!(busybox.is_file() && busybox.permissions().mode() & 0o111 != 0);
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("sandbox:x:1000:1000"), "{passwd}");
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    if rustix::process::geteuid().is_root() {
        assert_eq!(
            std::fs::metadata(root.join("home/sandbox")).unwrap().uid(),
            1000
        );
    }
    assert_eq!(image.config.cmd, vec!["/bin/sh".to_owned()]);
    assert!(image.digest.starts_with("sha256:") && image.digest.len() == 71);
}

// ---------------------------------------------------------------------------------------
// Registry pulls

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_pulls_from_the_registry_and_the_second_ensure_is_a_cache_hit() {
    require_registry();
    events();
    let dir = tempfile::tempdir().unwrap();
    let (cache_dir, cache) = cache_in(dir.path());

    let started = std::time::Instant::now();
    let image = cache.ensure(BUSYBOX).await.unwrap();
    let cold = started.elapsed();
    check_busybox(&image);

    // The digest is the registry's manifest digest.
    let reference: Reference = BUSYBOX.parse().unwrap();
    let (manifest, _) = client()
        .pull_manifest_raw(
            &reference,
            &RegistryAuth::Anonymous,
            &[
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
            ],
        )
        .await
        .unwrap();
    assert_eq!(image.digest, sha256(&manifest));
    assert_eq!(
        image.rootfs,
        cache_dir.join(format!("sha256-{}/rootfs", &image.digest[7..]))
    );
    assert!(
        cache_dir
            .join(format!("sha256-{}/config.json", &image.digest[7..]))
            .is_file()
    );

    // Progress in local-docker's shape, each layer downloaded once.
    let first = events_of(BUSYBOX);
    let downloads = first.iter().filter(|(_, _, s)| s == "Downloading").count();
    assert!(downloads >= 1, "{first:?}");
    for status in [
        "Pulling fs layer",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(
            first.iter().any(|(_, l, s)| s == status && l.len() == 12),
            "{status}: {first:?}"
        );
    }
    assert!(
        first
            .iter()
            .any(|(_, _, s)| s == &format!("Digest: {}", image.digest))
    );

    // Second ensure: nothing downloaded, the same rootfs directory (same inode).
    let inode = std::fs::metadata(&image.rootfs).unwrap().ino();
    let started = std::time::Instant::now();
    let again = cache.ensure(BUSYBOX).await.unwrap();
    let hit = started.elapsed();
    assert_eq!(again, image);
    assert_eq!(std::fs::metadata(&again.rootfs).unwrap().ino(), inode);
    assert_eq!(
        events_of(BUSYBOX).len(),
        first.len(),
        "the cache hit emitted pull progress"
    );

    // A fresh cache object over the same directory finds it too (the index is on disk).
    let third = ImageCache::new(cache_dir.clone())
        .ensure(BUSYBOX)
        .await
        .unwrap();
    assert_eq!(third.digest, image.digest);
    assert_eq!(events_of(BUSYBOX).len(), first.len());
    assert!(tree(&cache_dir.join("tmp")).is_empty());
    eprintln!("busybox: cold pull + unpack {cold:?}, cache hit {hit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_hard_links_and_inner_symlinks_are_honoured() {
    let lower: &[Entry] = &[
        Entry::Dir("a/"),
        file("a/keep", b"keep"),
        file("a/gone", b"gone"),
        Entry::HardLink("a/linked".into(), "a/keep".into()),
        Entry::Dir("b/"),
        file("b/old", b"old"),
        Entry::Dir("b/sub/"),
        file("b/sub/deep", b"deep"),
        file("top", b"top"),
        Entry::Symlink("inner".into(), "a".into()),
    ];
    let upper: &[Entry] = &[
        file("a/.wh.gone", b""),
        Entry::Dir("b/"),
        file("b/.wh..wh..opq", b""),
        file("b/new", b"new"),
        file(".wh.top", b""),
        // Through a symlink that stays inside: allowed, lands in `a/`.
        file("inner/through", b"through"),
        // A whiteout of this layer's own entry does not remove it.
        file("c", b"c"),
        file(".wh.c", b""),
    ];
    let reference = push("whiteouts", &[lower, upper]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, cache) = cache_in(dir.path());
    let image = cache.ensure(&reference).await.unwrap();
    let root = &image.rootfs;
    assert_eq!(
        tree(root),
        [
            "a",
            "a/keep",
            "a/linked",
            "a/through",
            "b",
            "b/new",
            "c",
            "inner"
        ],
        "rootfs content"
    );
    assert_eq!(
        std::fs::metadata(root.join("a/keep")).unwrap().ino(),
        std::fs::metadata(root.join("a/linked")).unwrap().ino()
    );
    assert_eq!(std::fs::read(root.join("a/through")).unwrap(), b"through");
    assert_eq!(image.config.working_dir.as_deref(), Some("/w"));
    assert!(image.config.env.contains(&("CRAFTED".into(), "1".into())));
    assert!(!events_of(&reference).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaping_layers_are_refused_and_create_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_abs = outside.display().to_string();
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        (
            "dotdot",
            vec![file("../../../../../../escaped-dotdot", b"x")],
        ),
        (
            "dotdot-inner",
            vec![Entry::Dir("d/"), file("d/../../escaped-inner", b"x")],
        ),
        (
            "absolute",
            vec![file(&format!("{outside_abs}/escaped-absolute"), b"x")],
        ),
        (
            "symlink-absolute",
            vec![
                Entry::Symlink("evil".into(), outside_abs.clone()),
                file("evil/escaped-through-symlink", b"x"),
            ],
        ),
        (
            "symlink-relative",
            vec![
                Entry::Symlink("evil".into(), format!("../../../../../../..{outside_abs}")),
                file("evil/escaped-through-relative", b"x"),
            ],
        ),
        (
            "hardlink-out",
            vec![Entry::HardLink(
                "pw".into(),
                "../../../../../../etc/passwd".into(),
            )],
        ),
        (
            "hardlink-through-symlink",
            vec![
                Entry::Symlink("etc-link".into(), "/etc".into()),
                Entry::HardLink("pw".into(), "etc-link/passwd".into()),
            ],
        ),
    ];
    for (name, entries) in &cases {
        let reference = push(name, &[entries]).await;
        let (cache_dir, cache) = cache_in(&dir.path().join(name));
        let error = cache.ensure(&reference).await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Provider { .. }), "{name}: {message}");
        eprintln!("{name}: {message}");
        assert!(message.contains("entry"), "{name}: {message}");
        assert!(
            tree(&outside).is_empty(),
            "{name}: wrote outside: {:?}",
            tree(&outside)
        );
        assert_cache_empty(&cache_dir);
    }
    // Nothing escaped into the test directory either (each case has its own cache dir).
    let stray: Vec<String> = tree(dir.path())
        .into_iter()
        .filter(|p| p.contains("escaped"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    assert!(!Path::new("/escaped-dotdot").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensures_of_one_image_agree() {
    let entries: &[Entry] = &[Entry::Dir("x/"), file("x/y", b"y")];
    let reference = push("concurrent", &[entries]).await;
    let dir = tempfile::tempdir().unwrap();
    let (cache_dir, cache) = cache_in(dir.path());
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            let reference = reference.clone();
            tokio::spawn(async move { cache.ensure(&reference).await })
        })
        .collect();
    let mut digests = Vec::new();
    for task in tasks {
        let image = task.await.unwrap().unwrap();
        assert_eq!(std::fs::read(image.rootfs.join("x/y")).unwrap(), b"y");
        digests.push(image.digest);
    }
    digests.dedup();
    assert_eq!(digests.len(), 1);
    let images: Vec<String> = tree(&cache_dir)
        .into_iter()
        .filter(|p| p.starts_with("sha256-") && !p.contains('/'))
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(tree(&cache_dir.join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_errors_map_to_sandkit_errors() {
    require_registry();
    let dir = tempfile::tempdir().unwrap();
    let (cache_dir, cache) = cache_in(dir.path());
    let missing = cache
        .ensure(&format!("{REGISTRY}/sandkit-test-does-not-exist:latest"))
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    let missing_tag = cache
        .ensure(&format!("{REGISTRY}/sandkit-test-busybox:no-such-tag"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing_tag, Error::NotFound { .. }),
        "{missing_tag}"
    );
    // Nothing listens on port 1.
    let unreachable = cache
        .ensure("127.0.0.1:1/nothing:latest")
        .await
        .unwrap_err();
    assert!(
        matches!(unreachable, Error::Unavailable { .. }),
        "{unreachable}"
    );
    for bad in [
        "Bad Reference",
        "oci:relative",
        "docker-archive:rel.tar",
        "",
    ] {
        let error = cache.ensure(bad).await.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidSpec { field, .. } if field == "image"),
            "{bad}: {error}"
        );
    }
    assert_cache_empty(&cache_dir);
}

// ---------------------------------------------------------------------------------------
// Local sources

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_layout_of_the_registry_image_unpacks_to_the_same_digest() {
    require_registry();
    // Copy the registry's image into a layout, blob by blob, as published.
    let reference: Reference = BUSYBOX.parse().unwrap();
    let client = client();
    let (manifest, _) = client
        .pull_manifest_raw(
            &reference,
            &RegistryAuth::Anonymous,
            &["application/vnd.docker.distribution.manifest.v2+json"],
        )
        .await
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut digests = vec![parsed["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in parsed["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    let mut blobs = Vec::new();
    for digest in &digests {
        let mut blob = Vec::new();
        client
            .pull_blob(&reference, digest.as_str(), &mut blob)
            .await
            .unwrap();
        blobs.push(blob);
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_layout(&layout, &manifest, &blobs);

    let (_, cache) = cache_in(dir.path());
    let image = cache
        .ensure(&format!("oci:{}:latest", layout.display()))
        .await
        .unwrap();
    check_busybox(&image);
    assert_eq!(image.digest, sha256(&manifest));
    // Without a tag: the layout's only image.
    let untagged = cache
        .ensure(&format!("oci:{}", layout.display()))
        .await
        .unwrap();
    assert_eq!(untagged, image);
    let wrong_tag = cache
        .ensure(&format!("oci:{}:nope", layout.display()))
        .await
        .unwrap_err();
    assert!(matches!(wrong_tag, Error::NotFound { .. }), "{wrong_tag}");
    let no_layout = cache
        .ensure("oci:/nonexistent/sandkit-layout")
        .await
        .unwrap_err();
    assert!(matches!(no_layout, Error::NotFound { .. }), "{no_layout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_leaves_no_partial_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let good: &[Entry] = &[file("good", b"good")];
    let second: &[Entry] = &[file("second", b"second")];
    let (_, layers) = crafted_layout(&layout, &[good, second]);
    // Corrupt the second layer: the first unpacks, the second fails its digest.
    let digest = sha256(&layers[1]);
    let blob = layout.join("blobs/sha256").join(&digest[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let (cache_dir, cache) = cache_in(dir.path());
    let error = cache
        .ensure(&format!("oci:{}:latest", layout.display()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&digest), "{error}");
    assert_cache_empty(&cache_dir);

    // A manifest whose bytes do not match the digest index.json names.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest_blob = layout.join("blobs/sha256").join(&manifest_digest[7..]);
    let mut manifest = std::fs::read(&manifest_blob).unwrap();
    manifest.push(b' ');
    std::fs::write(&manifest_blob, manifest).unwrap();
    let error = cache
        .ensure(&format!("oci:{}", layout.display()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&manifest_digest), "{error}");
    assert_cache_empty(&cache_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_save_archive_unpacks() {
    let images = std::env::var_os("SANDKIT_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-images"));
    let archive = images.join("busybox.tar");
    assert!(
        archive.is_file(),
        "{} is missing: run `scripts/registry.sh` (as root) first; it saves it",
        archive.display()
    );
    let archive = archive.canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cache_dir, cache) = cache_in(dir.path());
    let reference = format!("docker-archive:{}", archive.display());
    let image = cache.ensure(&reference).await.unwrap();
    check_busybox(&image);
    // The key is the image id (config digest), which the script recorded.
    let id = std::fs::read_to_string(images.join("busybox.tar.id")).unwrap();
    assert_eq!(image.digest, id.trim());
    let again = cache.ensure(&reference).await.unwrap();
    assert_eq!(again, image);
    assert!(tree(&cache_dir.join("tmp")).is_empty());

    let missing = cache
        .ensure("docker-archive:/nonexistent/sandkit.tar")
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_layout_with_an_escaping_entry_is_refused() {
    // The same guard without a registry: a local layout.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    crafted_layout(
        &layout,
        &[&[file("ok", b"ok"), file("../../escaped-layout", b"x")]],
    );
    let (cache_dir, cache) = cache_in(dir.path());
    let error = cache
        .ensure(&format!("oci:{}", layout.display()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("../../escaped-layout"),
        "{error}"
    );
    assert_cache_empty(&cache_dir);
    assert!(!tree(dir.path()).iter().any(|p| p.contains("escaped")));
}
