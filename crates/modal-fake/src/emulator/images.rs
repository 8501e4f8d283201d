//! Images: Modal image ids over the backend's default image, registry tags (when the
//! backend pulls images) and backend snapshots, each with the working directory its
//! sandboxes start in (`ImageMetadata.workdir`, which clients take as the default for
//! relative paths and commands, as Modal reports an image's `WORKDIR`).

use prost::Message as _;
use sandkit_core::{ImageSource as SpecImage, SandboxSpec};
use sandkit_modal_proto::client::{self as pb, generic_result::GenericStatus};
use tonic::{Request, Response, Status};

use super::spec::modal_workdir;
use super::{
    Emulator, IMAGE_BUILDER_VERSION, ImageSource, RegistryImages, lock, result, status_of,
};
use crate::ids;

type StreamOf<T> = tonic::codegen::BoxStream<T>;

/// Lifetime of the throw-away sandbox that shows where an image's commands start.
const PROBE_LIFETIME_SECS: u64 = 120;

/// The registry tag an image definition starts from (`FROM <tag>`).
fn registry_tag(image: &pb::Image) -> Option<String> {
    image.dockerfile_commands.first().and_then(|command| {
        let rest = command.trim().strip_prefix("FROM ")?;
        let tag = rest.split_whitespace().next()?;
        (tag != "base").then(|| tag.to_owned())
    })
}

fn image_metadata(workdir: Option<String>) -> pb::ImageMetadata {
    pb::ImageMetadata {
        image_builder_version: Some(IMAGE_BUILDER_VERSION.to_owned()),
        workdir,
        ..Default::default()
    }
}

impl Emulator {
    /// The backend image a sandbox of `source` runs (`None`: the backend's default).
    pub(crate) fn backend_image(&self, source: &ImageSource) -> Option<SpecImage> {
        match source {
            ImageSource::Snapshot { backend_id, .. } => Some(SpecImage::Snapshot {
                id: backend_id.clone(),
            }),
            // Asked to, a backend that pulls images runs the tag asked for; otherwise the
            // backend's default image runs.
            ImageSource::Default {
                registry: Some(reference),
            } if self.0.registry_images == RegistryImages::Pull
                && self.backend().capabilities().image_registry =>
            {
                Some(SpecImage::Registry {
                    reference: reference.clone(),
                })
            }
            ImageSource::Default { .. } => None,
        }
    }

    /// The working directory (a Modal path) commands of a sandbox of `source` start in
    /// when its definition names none. A snapshot keeps the one of the sandbox it was
    /// taken from; for other images the backend is asked once, with a throw-away sandbox,
    /// and the answer kept. `None` when the backend cannot say (the client then assumes
    /// `/`, as before).
    pub(crate) async fn image_workdir(&self, source: &ImageSource) -> Option<String> {
        if let ImageSource::Snapshot { workdir, .. } = source {
            return workdir.clone();
        }
        let image = self.backend_image(source);
        let key = match &image {
            Some(SpecImage::Registry { reference }) => reference.clone(),
            _ => String::new(),
        };
        if let Some(known) = lock(&self.0.image_workdirs).get(&key) {
            return known.clone();
        }
        let workdir = self.probe_workdir(image).await;
        lock(&self.0.image_workdirs)
            .entry(key)
            .or_insert(workdir)
            .clone()
    }

    async fn probe_workdir(&self, image: Option<SpecImage>) -> Option<String> {
        let mut spec = SandboxSpec::new();
        spec.image = image;
        let max = self.backend().capabilities().max_lifetime_secs;
        spec.lifetime_secs =
            Some(max.map_or(PROBE_LIFETIME_SECS, |max| max.min(PROBE_LIFETIME_SECS)));
        spec.tags
            .insert("modal-fake.purpose".to_owned(), "workdir-probe".to_owned());
        let info = match self.backend().create(&spec).await {
            Ok(info) => info,
            Err(error) => {
                tracing::info!(%error, "cannot learn the image's working directory");
                return None;
            }
        };
        let root = self.probe_path_root(&info, None).await;
        let workdir = modal_workdir(&info.workdir, root.as_deref());
        if let Err(error) = self.backend().terminate(&info.id).await {
            tracing::warn!(sandbox = %info.id, %error, "terminating the workdir probe failed");
        }
        Some(workdir)
    }

    fn image_source(&self, image_id: &str) -> Result<ImageSource, Status> {
        self.state()
            .images
            .get(image_id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Image `{image_id}` not found")))
    }

    /// `ImageDelete`: forgets the image, deleting its backend snapshot.
    pub(crate) async fn delete_image(
        &self,
        request: Request<pb::ImageDeleteRequest>,
    ) -> Result<Response<()>, Status> {
        self.check_credentials(request.metadata())?;
        let image_id = request.into_inner().image_id;
        let removed = self.state().images.remove(&image_id);
        match removed {
            Some(ImageSource::Snapshot { backend_id, .. }) => {
                self.backend()
                    .delete_snapshot(&backend_id)
                    .await
                    .map_err(status_of)?;
                self.state()
                    .backend_snapshots
                    .retain(|id| *id != backend_id);
                Ok(Response::new(()))
            }
            Some(ImageSource::Default { .. }) => Ok(Response::new(())),
            None => Err(Status::not_found(format!("Image `{image_id}` not found"))),
        }
    }

    /// `ImageFromId`.
    pub(crate) async fn image_by_id(
        &self,
        request: Request<pb::ImageFromIdRequest>,
    ) -> Result<Response<pb::ImageFromIdResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let image_id = request.into_inner().image_id;
        let source = self.image_source(&image_id)?;
        let workdir = self.image_workdir(&source).await;
        Ok(Response::new(pb::ImageFromIdResponse {
            image_id,
            metadata: Some(image_metadata(workdir)),
        }))
    }

    /// `ImageGetOrCreate`: an id derived from the definition; build steps are not run.
    pub(crate) async fn get_or_create_image(
        &self,
        request: Request<pb::ImageGetOrCreateRequest>,
    ) -> Result<Response<pb::ImageGetOrCreateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let image = request.image.clone().unwrap_or_default();
        let (image_id, source) = {
            let mut state = self.state();
            // Layers inherit their base's filesystem; build steps themselves are not run.
            let source = match image.base_images.first() {
                Some(base) => state.images.get(&base.image_id).cloned().ok_or_else(|| {
                    Status::not_found(format!("base Image `{}` not found", base.image_id))
                })?,
                None => ImageSource::Default {
                    registry: registry_tag(&image),
                },
            };
            if image.dockerfile_commands.len() > 1 {
                tracing::info!(
                    commands = image.dockerfile_commands.len() - 1,
                    "image build steps are not run by modal-fake"
                );
            }
            let mut seed = image.encode_to_vec();
            seed.extend_from_slice(request.builder_version.as_bytes());
            let image_id = ids::derived("im", &seed);
            let source = state
                .images
                .entry(image_id.clone())
                .or_insert(source)
                .clone();
            (image_id, source)
        };
        let workdir = self.image_workdir(&source).await;
        Ok(Response::new(pb::ImageGetOrCreateResponse {
            image_id,
            result: Some(result(GenericStatus::Success, 0, "")),
            metadata: Some(image_metadata(workdir)),
        }))
    }

    /// `ImageJoinStreaming`: every image is built at once.
    pub(crate) async fn join_image(
        &self,
        request: Request<pb::ImageJoinStreamingRequest>,
    ) -> Result<Response<StreamOf<pb::ImageJoinStreamingResponse>>, Status> {
        self.check_credentials(request.metadata())?;
        let image_id = request.into_inner().image_id;
        let source = self.image_source(&image_id)?;
        let workdir = self.image_workdir(&source).await;
        let done = pb::ImageJoinStreamingResponse {
            result: Some(result(GenericStatus::Success, 0, "")),
            entry_id: "1".to_owned(),
            eof: true,
            metadata: Some(image_metadata(workdir)),
            ..Default::default()
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(done)]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_tags_come_from_the_first_from_line() {
        let image = |commands: &[&str]| pb::Image {
            dockerfile_commands: commands.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        };
        assert_eq!(
            registry_tag(&image(&["FROM alpine:3.21", "RUN true"])).as_deref(),
            Some("alpine:3.21")
        );
        assert_eq!(registry_tag(&image(&["FROM base"])), None);
        assert_eq!(registry_tag(&image(&[])), None);
    }
}
