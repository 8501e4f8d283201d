//! The Modal objects a sandbox belongs to or is made with besides its image: the app that
//! owns sandkit's sandboxes, the ephemeral secret carrying the spec's environment, and
//! volumes.

use sandkit_core::{Error, Result, SandboxSpec};
use sandkit_modal_proto::client as pb;

use crate::mapping::{environment, volume_mount};
use crate::provider::ModalProvider;

impl ModalProvider {
    /// The app that owns our sandboxes, created on first use.
    pub(crate) async fn app_id(&self) -> Result<String> {
        self.app_id
            .get_or_try_init(|| async {
                let request = pb::AppGetOrCreateRequest {
                    app_name: self.settings.app_name.clone(),
                    environment_name: self.settings.environment.clone(),
                    object_creation_type: pb::ObjectCreationType::CreateIfMissing as i32,
                };
                let what = format!("app `{}`", self.settings.app_name);
                let response = self.control_plane.call(request, &what).await?;
                Ok(response.app_id)
            })
            .await
            .cloned()
    }

    /// An ephemeral secret carrying the spec's environment and secrets; `None` when it has
    /// neither.
    pub(crate) async fn environment_secret(&self, spec: &SandboxSpec) -> Result<Option<String>> {
        let Some(env_dict) = environment(spec) else {
            return Ok(None);
        };
        let request = pb::SecretGetOrCreateRequest {
            object_creation_type: pb::ObjectCreationType::Ephemeral as i32,
            environment_name: self.settings.environment.clone(),
            env_dict,
            ..Default::default()
        };
        let response = self
            .control_plane
            .call(request, "the sandbox's environment")
            .await?;
        Ok(Some(response.secret_id))
    }

    /// The spec's volumes, each created when missing.
    pub(crate) async fn volume_mounts(&self, spec: &SandboxSpec) -> Result<Vec<pb::VolumeMount>> {
        let mut mounts = Vec::with_capacity(spec.volumes.len());
        for volume in &spec.volumes {
            let request = pb::VolumeGetOrCreateRequest {
                deployment_name: volume.name.clone(),
                environment_name: self.settings.environment.clone(),
                object_creation_type: pb::ObjectCreationType::CreateIfMissing as i32,
                ..Default::default()
            };
            let response = self
                .control_plane
                .call(request, &format!("volume `{}`", volume.name))
                .await
                .map_err(|error| Error::Volume {
                    message: Error::from(error).to_string(),
                })?;
            mounts.push(volume_mount(volume, response.volume_id));
        }
        Ok(mounts)
    }
}
