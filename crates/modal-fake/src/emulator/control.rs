//! `modal.client.ModalClient`: apps, environments, images, secrets, volumes and the
//! sandbox lifecycle. The sandbox calls of both families (V1 and V2) delegate to
//! `lifecycle` (what they share) and `v2` (what only V2 does).

use std::collections::BTreeMap;

use sandkit_modal_proto::client::{
    self as pb, ObjectCreationType, modal_client_server::ModalClient,
};
use tonic::{Request, Response, Status};

use super::lifecycle::{CreateArgs, handle_metadata, idempotency_key};
use super::{
    AUTH_TOKEN_SUBJECT, Emulator, IMAGE_BUILDER_VERSION, SandboxVersion, environment_name,
};
use crate::ids;

type StreamOf<T> = tonic::codegen::BoxStream<T>;

const V1: SandboxVersion = SandboxVersion::V1;
const V2: SandboxVersion = SandboxVersion::V2;

fn creation_type(value: i32) -> ObjectCreationType {
    ObjectCreationType::try_from(value).unwrap_or(ObjectCreationType::Unspecified)
}

#[tonic::async_trait]
impl ModalClient for Emulator {
    async fn app_get_or_create(
        &self,
        request: Request<pb::AppGetOrCreateRequest>,
    ) -> Result<Response<pb::AppGetOrCreateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        if request.app_name.is_empty() {
            return Err(Status::invalid_argument("app_name must not be empty"));
        }
        let environment = environment_name(&request.environment_name);
        let key = (environment.clone(), request.app_name.clone());
        let mut state = self.state();
        let app_id = match (
            state.apps.get(&key).cloned(),
            creation_type(request.object_creation_type),
        ) {
            (Some(_), ObjectCreationType::CreateFailIfExists) => {
                return Err(Status::already_exists(format!(
                    "App '{}' already exists",
                    request.app_name
                )));
            }
            (Some(app_id), _) => app_id,
            (None, ObjectCreationType::Unspecified) => {
                return Err(Status::not_found(format!(
                    "App '{}' not found in environment '{environment}'",
                    request.app_name
                )));
            }
            (None, _) => {
                let app_id = ids::mint("ap");
                state.apps.insert(key, app_id.clone());
                state
                    .app_names
                    .insert(app_id.clone(), request.app_name.clone());
                app_id
            }
        };
        Ok(Response::new(pb::AppGetOrCreateResponse {
            app_id: app_id.clone(),
            handle_metadata: Some(pb::AppHandleMetadata {
                description: request.app_name,
                app_id,
                environment_name: environment,
                lifecycle: Some(pb::AppLifecycle {
                    app_state: pb::AppState::Deployed as i32,
                    ..Default::default()
                }),
            }),
        }))
    }

    async fn app_lookup(
        &self,
        request: Request<pb::AppLookupRequest>,
    ) -> Result<Response<pb::AppLookupResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let environment = environment_name(&request.environment_name);
        let app_id = self
            .state()
            .apps
            .get(&(environment.clone(), request.app_name.clone()))
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "App '{}' not found in environment '{environment}'",
                    request.app_name
                ))
            })?;
        Ok(Response::new(pb::AppLookupResponse { app_id }))
    }

    async fn auth_token_get(
        &self,
        request: Request<pb::AuthTokenGetRequest>,
    ) -> Result<Response<pb::AuthTokenGetResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let token = self.issue_jwt(AUTH_TOKEN_SUBJECT);
        Ok(Response::new(pb::AuthTokenGetResponse { token }))
    }

    async fn client_hello(
        &self,
        request: Request<()>,
    ) -> Result<Response<pb::ClientHelloResponse>, Status> {
        self.check_credentials(request.metadata())?;
        Ok(Response::new(pb::ClientHelloResponse {
            image_builder_version: IMAGE_BUILDER_VERSION.to_owned(),
            ..Default::default()
        }))
    }

    async fn environment_get_or_create(
        &self,
        request: Request<pb::EnvironmentGetOrCreateRequest>,
    ) -> Result<Response<pb::EnvironmentGetOrCreateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let name = environment_name(&request.into_inner().deployment_name);
        let environment_id = self
            .state()
            .environments
            .entry(name.clone())
            .or_insert_with(|| ids::derived("en", name.as_bytes()))
            .clone();
        Ok(Response::new(pb::EnvironmentGetOrCreateResponse {
            environment_id,
            metadata: Some(pb::EnvironmentMetadata {
                name,
                settings: Some(pb::EnvironmentSettings {
                    image_builder_version: IMAGE_BUILDER_VERSION.to_owned(),
                    webhook_suffix: "modal-fake.invalid".to_owned(),
                    ..Default::default()
                }),
                environment_type: pb::EnvironmentType::Public as i32,
            }),
        }))
    }

    async fn image_delete(
        &self,
        request: Request<pb::ImageDeleteRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete_image(request).await
    }

    async fn image_from_id(
        &self,
        request: Request<pb::ImageFromIdRequest>,
    ) -> Result<Response<pb::ImageFromIdResponse>, Status> {
        self.image_by_id(request).await
    }

    async fn image_get_or_create(
        &self,
        request: Request<pb::ImageGetOrCreateRequest>,
    ) -> Result<Response<pb::ImageGetOrCreateResponse>, Status> {
        self.get_or_create_image(request).await
    }

    async fn image_join_streaming(
        &self,
        request: Request<pb::ImageJoinStreamingRequest>,
    ) -> Result<Response<StreamOf<pb::ImageJoinStreamingResponse>>, Status> {
        self.join_image(request).await
    }

    async fn sandbox_create(
        &self,
        request: Request<pb::SandboxCreateRequest>,
    ) -> Result<Response<pb::SandboxCreateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let idempotency_key = idempotency_key(&request);
        let request = request.into_inner();
        let record = self
            .create_sandbox(CreateArgs {
                app_id: request.app_id,
                definition: request.definition.unwrap_or_default(),
                tags: request.tags,
                secret_sources: Vec::new(),
                version: V1,
                idempotency_key,
            })
            .await?;
        Ok(Response::new(pb::SandboxCreateResponse {
            sandbox_id: record.id.clone(),
            metadata: Some(handle_metadata(&record)),
        }))
    }

    async fn sandbox_create_v2(
        &self,
        request: Request<pb::SandboxCreateV2Request>,
    ) -> Result<Response<pb::SandboxCreateV2Response>, Status> {
        self.create_v2(request).await.map(Response::new)
    }

    async fn sandbox_get_command_router_access(
        &self,
        request: Request<pb::SandboxGetCommandRouterAccessRequest>,
    ) -> Result<Response<pb::SandboxGetCommandRouterAccessResponse>, Status> {
        self.sandbox_router_access(request).map(Response::new)
    }

    async fn sandbox_get_from_name(
        &self,
        request: Request<pb::SandboxGetFromNameRequest>,
    ) -> Result<Response<pb::SandboxGetFromNameResponse>, Status> {
        self.check_credentials(request.metadata())?;
        self.sandbox_from_name(request.get_ref(), V1)
            .map(Response::new)
    }

    async fn sandbox_get_from_name_v2(
        &self,
        request: Request<pb::SandboxGetFromNameRequest>,
    ) -> Result<Response<pb::SandboxGetFromNameResponse>, Status> {
        self.check_v2_call(request.metadata(), None)?;
        self.sandbox_from_name(request.get_ref(), V2)
            .map(Response::new)
    }

    /// The entrypoint's output, captured from the backend (when it offers it: otherwise
    /// the stream ends at once).
    async fn sandbox_get_logs(
        &self,
        request: Request<pb::SandboxGetLogsRequest>,
    ) -> Result<Response<StreamOf<pb::TaskLogsBatch>>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let record = self.sandbox_as(&request.sandbox_id, V1)?;
        Ok(Response::new(super::entrypoint::logs_v1(
            record.output.clone(),
            &request,
            record.task_id.clone(),
        )))
    }

    async fn sandbox_get_task_id(
        &self,
        request: Request<pb::SandboxGetTaskIdRequest>,
    ) -> Result<Response<pb::SandboxGetTaskIdResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox_as(&request.get_ref().sandbox_id, V1)?;
        Ok(Response::new(self.task_of(&record)))
    }

    async fn sandbox_get_task_id_v2(
        &self,
        request: Request<pb::SandboxGetTaskIdRequest>,
    ) -> Result<Response<pb::SandboxGetTaskIdResponse>, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        Ok(Response::new(self.task_of(&record)))
    }

    async fn sandbox_get_tunnels(
        &self,
        request: Request<pb::SandboxGetTunnelsRequest>,
    ) -> Result<Response<pb::SandboxGetTunnelsResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox_as(&request.get_ref().sandbox_id, V1)?;
        self.tunnels_of(&record).await.map(Response::new)
    }

    async fn sandbox_get_tunnels_v2(
        &self,
        request: Request<pb::SandboxGetTunnelsRequest>,
    ) -> Result<Response<pb::SandboxGetTunnelsResponse>, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        self.tunnels_of(&record).await.map(Response::new)
    }

    async fn sandbox_list(
        &self,
        request: Request<pb::SandboxListRequest>,
    ) -> Result<Response<pb::SandboxListResponse>, Status> {
        self.check_credentials(request.metadata())?;
        Ok(Response::new(
            self.list_sandboxes(request.get_ref(), Some(V1)),
        ))
    }

    /// Lists V1 and V2 sandboxes, as Modal's does.
    async fn sandbox_list_v2(
        &self,
        request: Request<pb::SandboxListRequest>,
    ) -> Result<Response<pb::SandboxListResponse>, Status> {
        self.check_v2_call(request.metadata(), None)?;
        Ok(Response::new(self.list_sandboxes(request.get_ref(), None)))
    }

    async fn sandbox_stdin_write(
        &self,
        request: Request<pb::SandboxStdinWriteRequest>,
    ) -> Result<Response<pb::SandboxStdinWriteResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let record = self.sandbox_as(&request.sandbox_id, V1)?;
        if !record.is_running() {
            return Err(Status::failed_precondition(
                "the sandbox has already terminated",
            ));
        }
        super::entrypoint::stdin_write_v1(
            self.backend(),
            &record.backend_id,
            &record.stdin,
            request,
        )
        .await?;
        Ok(Response::new(pb::SandboxStdinWriteResponse {}))
    }

    async fn sandbox_tags_get(
        &self,
        request: Request<pb::SandboxTagsGetRequest>,
    ) -> Result<Response<pb::SandboxTagsGetResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox_as(&request.get_ref().sandbox_id, V1)?;
        Ok(Response::new(pb::SandboxTagsGetResponse {
            tags: record.tags(),
        }))
    }

    async fn sandbox_tags_get_v2(
        &self,
        request: Request<pb::SandboxTagsGetRequest>,
    ) -> Result<Response<pb::SandboxTagsGetResponse>, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        Ok(Response::new(pb::SandboxTagsGetResponse {
            tags: record.tags(),
        }))
    }

    async fn sandbox_tags_set(
        &self,
        request: Request<pb::SandboxTagsSetRequest>,
    ) -> Result<Response<()>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let record = self.sandbox_as(&request.sandbox_id, V1)?;
        Self::set_tags(&record, request.tags).map(Response::new)
    }

    async fn sandbox_set_name(
        &self,
        request: Request<pb::SandboxSetNameRequest>,
    ) -> Result<Response<pb::SandboxSetNameResponse>, Status> {
        self.set_name(request).map(Response::new)
    }

    async fn sandbox_tags_set_v2(
        &self,
        request: Request<pb::SandboxTagsSetRequest>,
    ) -> Result<Response<()>, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        Self::set_tags(&record, request.into_inner().tags).map(Response::new)
    }

    async fn sandbox_terminate(
        &self,
        request: Request<pb::SandboxTerminateRequest>,
    ) -> Result<Response<pb::SandboxTerminateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox_as(&request.get_ref().sandbox_id, V1)?;
        Ok(Response::new(self.terminate_sandbox(&record).await))
    }

    async fn sandbox_terminate_v2(
        &self,
        request: Request<pb::SandboxTerminateRequest>,
    ) -> Result<Response<pb::SandboxTerminateResponse>, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        Ok(Response::new(self.terminate_sandbox(&record).await))
    }

    async fn sandbox_wait(
        &self,
        request: Request<pb::SandboxWaitRequest>,
    ) -> Result<Response<pb::SandboxWaitResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let record = self.sandbox_as(&request.sandbox_id, V1)?;
        Ok(Response::new(
            Self::wait_sandbox(&record, request.timeout).await,
        ))
    }

    async fn sandbox_wait_v2(
        &self,
        request: Request<pb::SandboxWaitRequest>,
    ) -> Result<Response<pb::SandboxWaitResponse>, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        let timeout = request.get_ref().timeout;
        Ok(Response::new(Self::wait_sandbox(&record, timeout).await))
    }

    async fn sandbox_wait_until_ready(
        &self,
        request: Request<pb::SandboxWaitUntilReadyRequest>,
    ) -> Result<Response<pb::SandboxWaitUntilReadyResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
        Ok(Response::new(pb::SandboxWaitUntilReadyResponse {
            ready_at: record.created_at,
        }))
    }

    async fn secret_get_or_create(
        &self,
        request: Request<pb::SecretGetOrCreateRequest>,
    ) -> Result<Response<pb::SecretGetOrCreateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let environment = environment_name(&request.environment_name);
        let creation = creation_type(request.object_creation_type);
        let values: BTreeMap<String, String> = request.env_dict.into_iter().collect();
        let mut state = self.state();
        let secret_id = if matches!(
            creation,
            ObjectCreationType::Ephemeral | ObjectCreationType::AnonymousOwnedByApp
        ) || request.deployment_name.is_empty()
        {
            let secret_id = ids::mint("st");
            state.secrets.insert(secret_id.clone(), values);
            secret_id
        } else {
            let key = (environment.clone(), request.deployment_name.clone());
            match (state.named_secrets.get(&key).cloned(), creation) {
                (Some(_), ObjectCreationType::CreateFailIfExists) => {
                    return Err(Status::already_exists(format!(
                        "Secret '{}' already exists",
                        request.deployment_name
                    )));
                }
                (Some(secret_id), ObjectCreationType::CreateOverwriteIfExists) => {
                    state.secrets.insert(secret_id.clone(), values);
                    secret_id
                }
                (Some(secret_id), _) => secret_id,
                (None, ObjectCreationType::Unspecified) => {
                    return Err(Status::not_found(format!(
                        "Secret '{}' not found in environment '{environment}'",
                        request.deployment_name
                    )));
                }
                (None, _) => {
                    let secret_id = ids::mint("st");
                    state.secrets.insert(secret_id.clone(), values);
                    state.named_secrets.insert(key, secret_id.clone());
                    secret_id
                }
            }
        };
        let keys: Vec<String> = state
            .secrets
            .get(&secret_id)
            .map(|values| values.keys().cloned().collect())
            .unwrap_or_default();
        let missing: Vec<&String> = request
            .required_keys
            .iter()
            .filter(|key| !keys.contains(key))
            .collect();
        if !missing.is_empty() {
            return Err(Status::failed_precondition(format!(
                "Secret is missing key(s): {}",
                missing
                    .iter()
                    .map(|key| key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Response::new(pb::SecretGetOrCreateResponse {
            secret_id,
            metadata: Some(pb::SecretMetadata {
                name: request.deployment_name,
                keys,
                environment_name: environment,
                ..Default::default()
            }),
        }))
    }

    async fn task_get_command_router_access(
        &self,
        request: Request<pb::TaskGetCommandRouterAccessRequest>,
    ) -> Result<Response<pb::TaskGetCommandRouterAccessResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox_of_task(&request.into_inner().task_id)?;
        let (jwt, url) = self.router_access(&record);
        Ok(Response::new(pb::TaskGetCommandRouterAccessResponse {
            jwt,
            url,
        }))
    }

    async fn volume_get_or_create(
        &self,
        request: Request<pb::VolumeGetOrCreateRequest>,
    ) -> Result<Response<pb::VolumeGetOrCreateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        if !self.backend().capabilities().volumes {
            return Err(Status::unimplemented(format!(
                "volumes are not supported by the emulator's backend `{}`",
                self.backend().name()
            )));
        }
        let request = request.into_inner();
        let environment = environment_name(&request.environment_name);
        let creation = creation_type(request.object_creation_type);
        let mut state = self.state();
        let (volume_id, name) = if matches!(
            creation,
            ObjectCreationType::Ephemeral | ObjectCreationType::AnonymousOwnedByApp
        ) || request.deployment_name.is_empty()
        {
            let volume_id = ids::mint("vo");
            // The backend volume is named after the id so it cannot collide with a named one.
            let name = format!("modal-fake-{volume_id}");
            state.volumes.insert(volume_id.clone(), name.clone());
            (volume_id, name)
        } else {
            let key = (environment, request.deployment_name.clone());
            match (state.named_volumes.get(&key).cloned(), creation) {
                (Some(_), ObjectCreationType::CreateFailIfExists) => {
                    return Err(Status::already_exists(format!(
                        "Volume '{}' already exists",
                        request.deployment_name
                    )));
                }
                (Some(volume_id), _) => (volume_id, request.deployment_name.clone()),
                (None, ObjectCreationType::Unspecified) => {
                    return Err(Status::not_found(format!(
                        "Volume '{}' not found",
                        request.deployment_name
                    )));
                }
                (None, _) => {
                    let volume_id = ids::mint("vo");
                    state
                        .volumes
                        .insert(volume_id.clone(), request.deployment_name.clone());
                    state.named_volumes.insert(key, volume_id.clone());
                    (volume_id, request.deployment_name.clone())
                }
            }
        };
        Ok(Response::new(pb::VolumeGetOrCreateResponse {
            volume_id,
            version: pb::VolumeFsVersion::V2 as i32,
            metadata: Some(pb::VolumeMetadata {
                version: pb::VolumeFsVersion::V2 as i32,
                name,
                ..Default::default()
            }),
        }))
    }

    async fn volume_heartbeat(
        &self,
        request: Request<pb::VolumeHeartbeatRequest>,
    ) -> Result<Response<()>, Status> {
        self.check_credentials(request.metadata())?;
        let volume_id = request.into_inner().volume_id;
        if self.state().volumes.contains_key(&volume_id) {
            Ok(Response::new(()))
        } else {
            Err(Status::not_found(format!("Volume `{volume_id}` not found")))
        }
    }
}
