//! Where a sandbox's image comes from: a registry (pulled with progress when missing), a
//! Dockerfile context (built with progress), or a snapshot sandkit committed earlier.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::models::ImageInspect;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures::StreamExt;
use sandkit_core::ownership::RESERVED_TAG_PREFIX;
use sandkit_core::{Error, ImageSource, Result};

use crate::client::Engine;
use crate::error::{self, Subject};
use crate::sandbox::{BUILD_REPOSITORY, LABEL_BUILT, LABEL_SNAPSHOT_OF, SNAPSHOT_REPOSITORY};

/// An image ready to create a container from.
#[derive(Debug, Clone)]
pub(crate) struct ReadyImage {
    /// What to pass as the container's image.
    pub reference: String,
    /// The image's working directory, when it sets one.
    pub working_dir: Option<String>,
    /// Set when the image was built for this sandbox: its tag, removed with it.
    pub built_tag: Option<String>,
    /// The user the image runs as, when it names one.
    pub user: Option<String>,
}

/// Makes the image `source` names available on the engine. `ownership` (sandkit's tags)
/// label images built here, so a leak check finds them.
pub(crate) async fn prepare(
    engine: &Engine,
    source: &ImageSource,
    ownership: &BTreeMap<String, String>,
) -> Result<ReadyImage> {
    match source {
        ImageSource::Registry { reference } => {
            let inspect = present_or_pulled(engine, reference).await?;
            Ok(ready(reference.clone(), &inspect, None))
        }
        ImageSource::Snapshot { id } => {
            let inspect = snapshot_image(engine, id).await?;
            Ok(ready(id.clone(), &inspect, None))
        }
        ImageSource::Dockerfile {
            context_dir,
            dockerfile,
        } => {
            let tag = build(engine, context_dir, dockerfile.as_deref(), ownership).await?;
            let inspect = engine
                .docker
                .inspect_image(&tag)
                .await
                .map_err(|e| error::map(e, Subject::Image(&tag)))?;
            Ok(ready(tag.clone(), &inspect, Some(tag)))
        }
    }
}

fn ready(reference: String, inspect: &ImageInspect, built_tag: Option<String>) -> ReadyImage {
    ReadyImage {
        reference,
        working_dir: inspect
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty()),
        built_tag,
        user: inspect
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty()),
    }
}

/// The snapshot image `id`, which must be one sandkit committed.
pub(crate) async fn snapshot_image(engine: &Engine, id: &str) -> Result<ImageInspect> {
    let not_found = || Error::NotFound {
        what: format!("snapshot `{id}`"),
    };
    // Only `sandkit-snapshot:TAG` with a tag in the engine's grammar goes into a URL.
    let tag = id
        .strip_prefix(SNAPSHOT_REPOSITORY)
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or_default();
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !tag_ok {
        return Err(not_found());
    }
    let inspect = engine
        .docker
        .inspect_image(id)
        .await
        .map_err(|e| error::map(e, Subject::Snapshot(id)))?;
    let ours = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|labels| labels.contains_key(LABEL_SNAPSHOT_OF));
    if ours { Ok(inspect) } else { Err(not_found()) }
}

/// The image, pulled first when the engine does not have it.
async fn present_or_pulled(engine: &Engine, reference: &str) -> Result<ImageInspect> {
    match engine.docker.inspect_image(reference).await {
        Ok(inspect) => return Ok(inspect),
        Err(e) if error::is_not_found(&e) => {}
        Err(e) => return Err(error::map(e, Subject::Image(reference))),
    }
    pull(engine, reference).await?;
    engine
        .docker
        .inspect_image(reference)
        .await
        .map_err(|e| error::map(e, Subject::Image(reference)))
}

/// Pulls `reference`, reporting progress as tracing events (one per layer and status).
async fn pull(engine: &Engine, reference: &str) -> Result<()> {
    let (image, tag) = split_tag(reference);
    tracing::info!(image = %reference, "pulling image");
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .tag(tag)
        .build();
    let mut progress = Box::pin(engine.docker.create_image(Some(options), None, None));
    let mut last_status: HashMap<String, String> = HashMap::new();
    while let Some(event) = progress.next().await {
        let event = event.map_err(|e| {
            let cause = error::map(e, Subject::Image(reference));
            Error::CreationFailed {
                message: format!(
                    "image `{reference}` is not on the engine and pulling it failed: {cause}"
                ),
            }
        })?;
        let layer = event.id.clone().unwrap_or_default();
        let status = event.status.clone().unwrap_or_default();
        // Byte counts change constantly; report each layer's status once.
        if last_status.get(&layer) != Some(&status) {
            tracing::info!(image = %reference, layer = %layer, status = %status, "pull progress");
            last_status.insert(layer, status);
        }
    }
    Ok(())
}

/// `name:tag` / `name@digest` split for the pull API, which would pull every tag of a
/// reference given without one.
fn split_tag(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        // A digest goes in the tag parameter as is.
        return (name, digest);
    }
    match reference.rsplit_once(':') {
        // `registry:5000/name` has a colon but no tag.
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// Builds the Dockerfile context into a fresh `sandkit-build:<uuid>` tag.
async fn build(
    engine: &Engine,
    context_dir: &Path,
    dockerfile: Option<&str>,
    ownership: &BTreeMap<String, String>,
) -> Result<String> {
    let dockerfile = dockerfile.unwrap_or("Dockerfile").to_owned();
    if !context_dir.is_dir() {
        return Err(Error::invalid_spec(
            "image.context_dir",
            format!("`{}` is not a directory", context_dir.display()),
        ));
    }
    if !context_dir.join(&dockerfile).is_file() {
        return Err(Error::invalid_spec(
            "image.dockerfile",
            format!("no `{dockerfile}` in `{}`", context_dir.display()),
        ));
    }
    let context = context_archive(context_dir.to_path_buf()).await?;
    let tag = format!(
        "{BUILD_REPOSITORY}:{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut labels: HashMap<String, String> = ownership
        .iter()
        .filter(|(key, _)| key.starts_with(RESERVED_TAG_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    labels.insert(LABEL_BUILT.to_owned(), "1".to_owned());
    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&dockerfile)
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    tracing::info!(context = %context_dir.display(), %tag, "building image");
    let mut progress = Box::pin(engine.docker.build_image(
        options,
        None,
        Some(bollard::body_full(context)),
    ));
    while let Some(event) = progress.next().await {
        let event = event.map_err(|e| Error::CreationFailed {
            message: format!(
                "building an image from `{}` failed: {}",
                context_dir.display(),
                error::map(e, Subject::Image(&tag))
            ),
        })?;
        if let Some(line) = event
            .stream
            .as_deref()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            tracing::info!(%tag, "build: {line}");
        }
    }
    Ok(tag)
}

/// The build context as a tar archive (symlinks kept as symlinks).
async fn context_archive(dir: PathBuf) -> Result<bytes::Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", &dir)
            .and_then(|()| builder.into_inner())
            .map(bytes::Bytes::from)
            .map_err(|e| {
                Error::invalid_spec(
                    "image.context_dir",
                    format!("cannot read `{}`: {e}", dir.display()),
                )
            })
    })
    .await
    .map_err(|e| error::other(format!("archiving a build context: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(
            split_tag("debian:bookworm-slim"),
            ("debian", "bookworm-slim")
        );
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(
            split_tag("registry:5000/team/app"),
            ("registry:5000/team/app", "latest")
        );
        assert_eq!(split_tag("registry:5000/app:1"), ("registry:5000/app", "1"));
        assert_eq!(split_tag("app@sha256:abc"), ("app", "sha256:abc"));
    }
}
