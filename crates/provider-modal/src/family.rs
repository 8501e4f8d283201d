//! Modal's two sandbox APIs. V1 creates with `SandboxCreate` and polls `SandboxGetTaskId`
//! for the task; V2 (Modal's Python client's default since 1.6.0) answers `SandboxCreateV2`
//! with the task and its router access at once. Every later call about a sandbox goes to
//! the API its id's shape says, as Modal's clients route them.

use std::sync::Arc;

use sandkit_core::{Error, Result, SandboxId, SandboxSpec};
use sandkit_modal_proto::client as pb;
use tonic::Code;

use crate::NAME;
use crate::calls::{ControlCall, V2};
use crate::client::{AccessSource, sandbox_token};
use crate::config::Protocol;
use crate::error::{CallError, from_status};
use crate::mapping::{definition, environment, sandbox_tags};
use crate::provider::{ModalProvider, subject};

/// Which API serves a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V1,
    V2,
}

/// What a create call gives back: the id, the lifetime in seconds, and a V2 answer.
type Created = (SandboxId, u64, Option<pb::SandboxCreateV2Response>);

/// Longest V2 id suffix accepted; Modal mints 26 characters, and anything much longer is
/// not an id but a mistake.
const MAX_ID_SUFFIX: usize = 64;

impl Family {
    /// The API of the sandbox `id`, by its shape as Modal's clients tell them apart: `sb-`
    /// and 22 base62 characters is V1, `sb-` and any other run of base62 characters is V2.
    /// `None`: not a Modal sandbox id, so no sandbox of ours.
    pub fn of(id: &str) -> Option<Self> {
        let rest = id.strip_prefix("sb-")?;
        if rest.is_empty()
            || rest.len() > MAX_ID_SUFFIX
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        Some(if rest.len() == 22 { Self::V1 } else { Self::V2 })
    }
}

impl ModalProvider {
    /// The API a new sandbox of `spec` is created with: the configured one, where `auto`
    /// is Modal's Python client's rule (V2 unless a GPU is asked for; sandkit asks for no
    /// network file system or sandbox-wide terminal, the rule's other two cases).
    pub(crate) fn family_for(&self, spec: &SandboxSpec) -> Result<Family> {
        match (self.settings.protocol, spec.gpu.is_some()) {
            (Protocol::V1, _) | (Protocol::Auto, true) => Ok(Family::V1),
            (Protocol::Auto, false) => Ok(Family::V2),
            (Protocol::V2, false) => Ok(Family::V2),
            (Protocol::V2, true) => Err(Error::unsupported(
                NAME,
                "GPUs on V2 sandboxes (Modal serves GPUs on V1 only): \
                 set `protocol` to \"auto\" or \"v1\"",
            )),
        }
    }

    /// Sends the create call of `family` for `spec` and returns the new sandbox's id and
    /// lifetime in seconds. A V2 sandbox's router, which comes with it, is remembered.
    /// The spec's environment goes inline in `secret_sources` on V2; V1 has no place for
    /// inline values, so there it is an ephemeral secret.
    pub(crate) async fn submit(
        &self,
        family: Family,
        app_id: String,
        spec: &SandboxSpec,
        image_id: String,
        volume_mounts: Vec<pb::VolumeMount>,
    ) -> Result<(SandboxId, u64)> {
        let tags = sandbox_tags(&spec.tags);
        let mut result = self
            .send_create(family, &app_id, spec, &image_id, &volume_mounts, &tags)
            .await;
        // `auto` on a server without V2 (an older fake): nothing was created, so V1 may be
        // asked instead.
        if family == Family::V2
            && self.settings.protocol == Protocol::Auto
            && matches!(&result, Ok(Err(error)) if error.code() == Code::Unimplemented)
        {
            tracing::debug!("the server does not implement SandboxCreateV2; creating a V1 sandbox");
            result = self
                .send_create(Family::V1, &app_id, spec, &image_id, &volume_mounts, &tags)
                .await;
        }
        let result = result?;
        let (id, lifetime, v2) = match result {
            Ok(created) => created,
            Err(error) if error.code() == Code::AlreadyExists && spec.name.is_some() => {
                return Err(Error::AlreadyExists {
                    what: format!(
                        "sandbox named `{}` in app `{}`",
                        spec.name.as_deref().unwrap_or_default(),
                        self.settings.app_name
                    ),
                });
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(response) = v2 {
            let source = AccessSource::Sandbox {
                sandbox_id: response.sandbox_id,
                token: sandbox_token(&response.sandbox_token),
            };
            // No access in the answer (an older server): the router is fetched on first use.
            if let Some(access) = response.command_router_access
                && !response.task_id.is_empty()
            {
                match self
                    .control_plane
                    .router(&response.task_id, source, Some(access))
                    .await
                {
                    Ok(router) => {
                        let router = Arc::new(router);
                        self.known
                            .remember(id.as_str(), |known| known.router = Some(router));
                    }
                    Err(status) => {
                        self.terminate_quietly(&id).await;
                        return Err(from_status(&status, &subject(id.as_str())));
                    }
                }
            }
        }
        Ok((id, lifetime))
    }

    /// One create call of `family`: the new sandbox's id and lifetime, and for V2 the
    /// whole answer. The outer error is one before the call; the inner, the call's.
    async fn send_create(
        &self,
        family: Family,
        app_id: &str,
        spec: &SandboxSpec,
        image_id: &str,
        volume_mounts: &[pb::VolumeMount],
        tags: &[pb::SandboxTag],
    ) -> Result<std::result::Result<Created, CallError>> {
        let app_id = app_id.to_owned();
        let tags = tags.to_vec();
        match family {
            Family::V1 => {
                let secret_ids = self.environment_secret(spec).await?.into_iter().collect();
                let definition = definition(
                    spec,
                    image_id.to_owned(),
                    secret_ids,
                    volume_mounts.to_vec(),
                )?;
                let lifetime = u64::from(definition.timeout_secs);
                let request = pb::SandboxCreateRequest {
                    app_id,
                    definition: Some(definition),
                    tags,
                    ..Default::default()
                };
                Ok(self
                    .control_plane
                    .call(request, "the new sandbox")
                    .await
                    .map(|response| (SandboxId(response.sandbox_id), lifetime, None)))
            }
            Family::V2 => {
                let definition = definition(
                    spec,
                    image_id.to_owned(),
                    Vec::new(),
                    volume_mounts.to_vec(),
                )?;
                let lifetime = u64::from(definition.timeout_secs);
                let secret_sources = environment(spec)
                    .map(|contents| pb::SecretSource {
                        source: Some(pb::secret_source::Source::Env(pb::StringMap { contents })),
                    })
                    .into_iter()
                    .collect();
                let request = pb::SandboxCreateV2Request {
                    app_id,
                    definition: Some(definition),
                    tags,
                    secret_sources,
                    ..Default::default()
                };
                Ok(self
                    .control_plane
                    .call(request, "the new sandbox")
                    .await
                    .map(|response| {
                        let id = SandboxId(response.sandbox_id.clone());
                        (id, lifetime, Some(response))
                    }))
            }
        }
    }

    /// Whether listing and lookup by name may use V2 calls, which also see V1 sandboxes.
    pub(crate) fn lists_v2(&self) -> bool {
        self.settings.protocol != Protocol::V1
    }

    /// Sends `request` about the sandbox `id` to its V1 or V2 method, as the id's shape
    /// says.
    pub(crate) async fn sandbox_call<R>(
        &self,
        id: &str,
        request: R,
    ) -> std::result::Result<R::Response, CallError>
    where
        R: ControlCall,
        V2<R>: ControlCall<Response = R::Response>,
    {
        let what = subject(id);
        match Family::of(id) {
            Some(Family::V2) => self.control_plane.call(V2(request), &what).await,
            _ => self.control_plane.call(request, &what).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Family;

    #[test]
    fn ids_are_told_apart_by_shape() {
        assert_eq!(Family::of("sb-nGEijt9WbBMlGrsPH9FOaC"), Some(Family::V1));
        assert_eq!(
            Family::of("sb-0123456789abcdefghijABCDEF"),
            Some(Family::V2)
        );
        assert_eq!(Family::of("sb-short"), Some(Family::V2));
        assert_eq!(Family::of("sb-"), None);
        assert_eq!(Family::of("sb-nGEijt9WbBMlGrsPH9FOa-"), None);
        assert_eq!(Family::of("ta-nGEijt9WbBMlGrsPH9FOaC"), None);
        assert_eq!(Family::of(&format!("sb-{}", "a".repeat(65))), None);
        assert_eq!(Family::of("sb-../../etc"), None);
    }
}
