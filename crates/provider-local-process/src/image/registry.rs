//! Pulls from a registry over the OCI distribution protocol with `oci-client`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sandkit_core::{Error, Result};
use tokio::io::AsyncWriteExt;

use super::manifest::{self, ACCEPTED, Parsed};
use super::progress;
use super::store::{Digest, Hasher, image_error, io_error, mismatch};

/// How many blobs download at once.
const PARALLEL_DOWNLOADS: usize = 3;

/// Parses a registry reference: `name[:tag][@digest]`, Docker Hub when no registry is
/// named, `:latest` when neither a tag nor a digest is.
pub(crate) fn parse_reference(text: &str) -> Result<Reference> {
    let reference: Reference = text.parse().map_err(|e| {
        Error::invalid_spec("image", format!("`{text}` is not an image reference: {e}"))
    })?;
    if reference.tag().is_none() && reference.digest().is_none() {
        return Ok(Reference::with_tag(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            "latest".to_owned(),
        ));
    }
    Ok(reference)
}

/// Whether the registry is on this machine, where plain HTTP is used.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Registry clients, one per registry: building one loads the system's root
/// certificates, and it keeps the registry's tokens. Held by a cache, not the process:
/// a client belongs to the async runtime it first ran on, and a process may have several.
#[derive(Clone, Default)]
pub(crate) struct Clients(Arc<Mutex<HashMap<String, Client>>>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

impl Clients {
    /// A client for `reference`'s registry: plain HTTP for loopback registries, HTTPS
    /// (rustls with ring) otherwise.
    pub(crate) fn client(&self, reference: &Reference) -> Client {
        let registry = reference.resolve_registry().to_owned();
        let mut clients = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        clients
            .entry(registry)
            .or_insert_with(|| new_client(reference))
            .clone()
    }
}

fn new_client(reference: &Reference) -> Client {
    // reqwest's rustls needs a process-wide crypto provider; an already installed one is
    // kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut plain = Vec::new();
    for registry in [reference.registry(), reference.resolve_registry()] {
        if is_loopback(registry) {
            plain.push(registry.to_owned());
        }
    }
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain),
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

/// The digest the reference points at now (an index's or a manifest's), from a HEAD
/// request.
pub(crate) async fn current_digest(client: &Client, reference: &Reference) -> Result<String> {
    client
        .fetch_manifest_digest(reference, &RegistryAuth::Anonymous)
        .await
        .map_err(|e| map(e, reference))
}

/// A resolved image: the digest the reference named, the platform manifest and its
/// digest.
pub(crate) struct Resolved {
    pub resolved: Digest,
    pub digest: Digest,
    pub manifest: manifest::ImageManifest,
}

/// Fetches the manifest `reference` names, verified, going through an index to this
/// host's platform.
pub(crate) async fn resolve(client: &Client, reference: &Reference) -> Result<Resolved> {
    let (bytes, resolved) = fetch_manifest(client, reference, reference.digest()).await?;
    match manifest::parse(&bytes, &format!("manifest of `{reference}`"))? {
        Parsed::Image(manifest) => Ok(Resolved {
            digest: resolved.clone(),
            resolved,
            manifest,
        }),
        Parsed::Index(entries) => {
            let entry = manifest::pick_platform(&entries, &format!("`{reference}`"))?;
            let platform_ref = reference.clone_with_digest(entry.digest.clone());
            let (bytes, digest) =
                fetch_manifest(client, &platform_ref, Some(&entry.digest)).await?;
            match manifest::parse(&bytes, &format!("manifest {digest}"))? {
                Parsed::Image(manifest) => Ok(Resolved {
                    resolved,
                    digest,
                    manifest,
                }),
                Parsed::Index(_) => Err(image_error(format!(
                    "`{reference}`: index entry {digest} is another index"
                ))),
            }
        }
    }
}

/// One manifest document and its digest, computed here; when `expected` is given the
/// content must hash to it.
async fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    expected: Option<&str>,
) -> Result<(Vec<u8>, Digest)> {
    let (bytes, _) = client
        .pull_manifest_raw(reference, &RegistryAuth::Anonymous, ACCEPTED)
        .await
        .map_err(|e| map(e, reference))?;
    let actual = Digest::of(&bytes);
    if let Some(expected) = expected {
        let expected = Digest::parse(expected)?;
        if expected != actual {
            return Err(mismatch(&expected, &actual, "manifest"));
        }
    }
    Ok((bytes.to_vec(), actual))
}

/// Downloads a small blob (the config) into memory, verified.
pub(crate) async fn fetch_small(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut stream = client
        .pull_blob_stream(reference, digest.to_string().as_str())
        .await
        .map_err(|e| map(e, reference))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| stream_error(e, reference, digest))?;
        bytes.extend_from_slice(&chunk);
    }
    digest.verify(&bytes, "config blob")?;
    Ok(bytes)
}

/// Downloads the layers into the given files, a few at a time, each verified against its
/// digest before this returns.
pub(crate) async fn fetch_layers(
    client: &Client,
    reference: &Reference,
    shown: &str,
    layers: Vec<(Digest, PathBuf)>,
) -> Result<()> {
    futures::stream::iter(layers)
        .map(|(digest, path)| async move {
            progress(shown, digest.short(), "Pulling fs layer");
            download(client, reference, shown, &digest, &path).await
        })
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

async fn download(
    client: &Client,
    reference: &Reference,
    shown: &str,
    digest: &Digest,
    path: &PathBuf,
) -> Result<()> {
    let mut stream = client
        .pull_blob_stream(reference, digest.to_string().as_str())
        .await
        .map_err(|e| map(e, reference))?;
    let mut file = tokio::fs::File::create_new(path)
        .await
        .map_err(|e| io_error(format_args!("creating {}", path.display()), &e))?;
    let mut hasher = Hasher::new();
    progress(shown, digest.short(), "Downloading");
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| stream_error(e, reference, digest))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error(format_args!("writing {}", path.display()), &e))?;
    }
    file.flush()
        .await
        .map_err(|e| io_error(format_args!("writing {}", path.display()), &e))?;
    progress(shown, digest.short(), "Verifying Checksum");
    let actual = hasher.finish();
    if &actual != digest {
        return Err(mismatch(digest, &actual, "layer"));
    }
    progress(shown, digest.short(), "Download complete");
    Ok(())
}

fn stream_error(error: std::io::Error, reference: &Reference, digest: &Digest) -> Error {
    // oci-client checks the digest as it streams and reports a mismatch as an I/O error.
    if error.to_string().to_lowercase().contains("digest") {
        return image_error(format!("blob {digest} of `{reference}`: {error}"));
    }
    Error::Unavailable {
        message: format!("downloading blob {digest} of `{reference}`: {error}"),
    }
}

/// Maps a distribution client error into sandkit's.
fn map(error: OciDistributionError, reference: &Reference) -> Error {
    use OciDistributionError as E;
    let not_found = |detail: &str| Error::NotFound {
        what: format!("image `{reference}`{detail}"),
    };
    match error {
        E::ImageManifestNotFoundError(_) => not_found(""),
        E::RegistryError { ref envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                not_found("")
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                not_found(
                    " (the registry refused anonymous access: it does not exist or needs credentials)",
                )
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                Error::RateLimited { retry_after: None }
            } else {
                image_error(format!("registry error for `{reference}`: {error}"))
            }
        }
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => not_found(
            " (the registry refused anonymous access: it does not exist or needs credentials)",
        ),
        E::ServerError { code: 404, .. } => not_found(""),
        E::ServerError { code: 429, .. } => Error::RateLimited { retry_after: None },
        E::ServerError { code, .. } if code >= 500 => Error::Unavailable {
            message: format!("registry of `{reference}`: {error}"),
        },
        E::RequestError(ref e) if e.is_connect() || e.is_timeout() || e.is_request() => {
            Error::Unavailable {
                message: format!(
                    "registry `{}` cannot be reached: {}",
                    reference.resolve_registry(),
                    chain(e)
                ),
            }
        }
        E::DigestError(_) => image_error(format!("`{reference}`: {error}")),
        other => image_error(format!("pulling `{reference}`: {other}")),
    }
}

/// An error with its sources, for messages.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised() {
        let r = parse_reference("python:3.12-slim").unwrap();
        assert_eq!(r.whole(), "docker.io/library/python:3.12-slim");
        let r = parse_reference("127.0.0.1:5000/sandkit-test-busybox").unwrap();
        assert_eq!(r.whole(), "127.0.0.1:5000/sandkit-test-busybox:latest");
        assert!(matches!(
            parse_reference("UPPER/Case:x"),
            Err(Error::InvalidSpec { field, .. }) if field == "image"
        ));
    }

    #[test]
    fn only_loopback_registries_use_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("index.docker.io"));
        assert!(!is_loopback("registry.example.com:5000"));
    }
}
