//! The JSON documents of an image: indexes, manifests and the image configuration, in
//! their OCI and Docker spellings, parsed into just the fields sandkit uses.

use serde::Deserialize;

use super::ImageConfig;
use super::store::{Digest, image_error};

/// OCI image index media type.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list media type.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest media type.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker image manifest (schema 2) media type.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Every manifest media type a pull accepts.
pub(crate) const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor: what a manifest or index says about a blob.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub digest: String,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An index (OCI) or manifest list (Docker), or a manifest: told apart by their fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// A parsed manifest document.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// An index: the entries to choose a platform from.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Image(ImageManifest),
}

/// An image manifest: the config blob and the layers, bottom first.
#[derive(Debug, Clone)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Parses a manifest or index document.
pub(crate) fn parse(bytes: &[u8], what: &str) -> sandkit_core::Result<Parsed> {
    let doc: AnyManifest = serde_json::from_slice(bytes)
        .map_err(|e| image_error(format!("{what}: not a manifest or index: {e}")))?;
    let is_index = matches!(doc.media_type.as_deref(), Some(OCI_INDEX | DOCKER_LIST))
        || (doc.manifests.is_some() && doc.config.is_none());
    if is_index {
        return Ok(Parsed::Index(doc.manifests.unwrap_or_default()));
    }
    match (doc.config, doc.layers) {
        (Some(config), Some(layers)) => Ok(Parsed::Image(ImageManifest { config, layers })),
        _ => Err(image_error(format!(
            "{what}: a manifest without `config` and `layers` (media type {})",
            doc.media_type.as_deref().unwrap_or("unset")
        ))),
    }
}

/// The OCI architecture name of this host.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The index entry for linux on this host's architecture; on arm64 an entry with
/// variant `v8` or none.
pub(crate) fn pick_platform<'a>(
    entries: &'a [Descriptor],
    what: &str,
) -> sandkit_core::Result<&'a Descriptor> {
    let arch = host_arch();
    let fits = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch
                && (arch != "arm64" || matches!(p.variant.as_deref(), None | Some("v8")))
        })
    };
    entries.iter().find(fits).ok_or_else(|| {
        let offered: Vec<String> = entries
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        sandkit_core::Error::NotFound {
            what: format!(
                "a linux/{arch} image in {what} (it offers: {})",
                if offered.is_empty() {
                    "no platforms".to_owned()
                } else {
                    offered.join(", ")
                }
            ),
        }
    })
}

/// The parts of an image configuration blob sandkit reads.
#[derive(Debug, Default, Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// A parsed image configuration: what a process of the image runs with, and the
/// digests of the uncompressed layers.
pub(crate) struct Config {
    pub image: ImageConfig,
    pub diff_ids: Vec<String>,
}

/// Parses an image configuration blob.
pub(crate) fn parse_config(bytes: &[u8], digest: &Digest) -> sandkit_core::Result<Config> {
    let blob: ConfigBlob = serde_json::from_slice(bytes)
        .map_err(|e| image_error(format!("image config {digest}: {e}")))?;
    let run = blob.config.unwrap_or_default();
    let env = run
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (pair, String::new()),
        })
        .collect();
    Ok(Config {
        image: ImageConfig {
            env,
            working_dir: run.working_dir.filter(|w| !w.is_empty()),
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            user: run.user.filter(|u| !u.is_empty()),
        },
        diff_ids: blob.rootfs.unwrap_or_default().diff_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_picks_the_host_platform() {
        let arch = host_arch();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:aa","size":1,"platform":{{"os":"windows","architecture":"{arch}"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:bb","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#
        );
        let Parsed::Index(entries) = parse(index.as_bytes(), "test").unwrap() else {
            panic!("not an index");
        };
        assert_eq!(pick_platform(&entries, "test").unwrap().digest, "sha256:bb");
        let error = pick_platform(&entries[..1], "test").unwrap_err();
        assert!(
            matches!(error, sandkit_core::Error::NotFound { .. }),
            "{error}"
        );
    }

    #[test]
    fn config_fields_are_read() {
        let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let config = parse_config(
            br#"{"config":{"Env":["PATH=/bin","EMPTY"],"WorkingDir":"/w","Cmd":["sh"],"User":""},
                 "rootfs":{"type":"layers","diff_ids":["sha256:ab"]}}"#,
            &digest,
        )
        .unwrap();
        assert_eq!(
            config.image.env,
            vec![
                ("PATH".into(), "/bin".into()),
                ("EMPTY".into(), String::new())
            ]
        );
        assert_eq!(config.image.working_dir.as_deref(), Some("/w"));
        assert_eq!(config.image.cmd, vec!["sh".to_owned()]);
        assert_eq!(config.image.user, None);
        assert_eq!(config.diff_ids, vec!["sha256:ab".to_owned()]);
    }
}
