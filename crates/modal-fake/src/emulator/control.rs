//! `modal.client.ModalClient`: apps, environments, images, secrets, volumes and the
//! sandbox lifecycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandkit_modal_proto::client::{
    self as pb, ObjectCreationType, generic_result::GenericStatus,
    modal_client_server::ModalClient, sandbox_get_command_router_access_request::Target,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::spec::modal_workdir;
use super::{
    Emulator, IMAGE_BUILDER_VERSION, SandboxRecord, environment_name, host_and_port, lock, result,
    status_of,
};
use crate::ids;

type StreamOf<T> = tonic::codegen::BoxStream<T>;

/// Longest a long poll (`SandboxWait`, `SandboxGetTaskId`) is held, as Modal's server does.
const MAX_LONG_POLL: Duration = Duration::from_secs(55);
/// Modal's maximum sandbox lifetime.
const MAX_TIMEOUT_SECS: u32 = 24 * 60 * 60;
/// Modal's default sandbox lifetime.
const DEFAULT_TIMEOUT_SECS: u32 = 300;

fn long_poll(timeout_secs: f32) -> Duration {
    if timeout_secs.is_finite() && timeout_secs > 0.0 {
        Duration::from_secs_f32(timeout_secs).min(MAX_LONG_POLL)
    } else {
        Duration::ZERO
    }
}

fn creation_type(value: i32) -> ObjectCreationType {
    ObjectCreationType::try_from(value).unwrap_or(ObjectCreationType::Unspecified)
}

fn handle_metadata(record: &SandboxRecord) -> pb::SandboxHandleMetadata {
    pb::SandboxHandleMetadata {
        result: record.result(),
        app_id: record.app_id.clone(),
    }
}

/// Waits until the sandbox has a result or `limit` passes.
async fn wait_for_result(record: &SandboxRecord, limit: Duration) -> Option<pb::GenericResult> {
    let mut receiver = record.result.subscribe();
    let _ = tokio::time::timeout(limit, receiver.wait_for(Option::is_some)).await;
    record.result()
}

impl Emulator {
    fn sandbox_info(record: &SandboxRecord) -> pb::SandboxInfo {
        let result = record.result();
        let finished_at = lock(&record.finished_at).unwrap_or(0.0);
        pb::SandboxInfo {
            id: record.id.clone(),
            created_at: record.created_at,
            task_info: Some(pb::TaskInfo {
                id: record.task_id.clone(),
                started_at: record.created_at,
                finished_at,
                result: result.clone(),
                enqueued_at: record.created_at,
                sandbox_id: record.id.clone(),
                ..Default::default()
            }),
            app_id: record.app_id.clone(),
            tags: record.tags(),
            name: record.name.clone().unwrap_or_default(),
            image_id: record.image_id.clone(),
            regions: record.regions.clone(),
            timeout_secs: record.timeout_secs,
            idle_timeout_secs: record.idle_timeout_secs,
            ready_at: Some(record.created_at),
            metadata: Some(handle_metadata(record)),
            ..Default::default()
        }
    }

    fn router_access(&self, record: &SandboxRecord) -> (String, String) {
        (self.issue_jwt(&record.task_id), self.0.router_url.clone())
    }
}

fn tags_match(have: &[pb::SandboxTag], wanted: &[pb::SandboxTag]) -> bool {
    wanted.iter().all(|want| {
        have.iter()
            .any(|tag| tag.tag_name == want.tag_name && tag.tag_value == want.tag_value)
    })
}

fn idempotency_key<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("x-idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
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
        let token = self.issue_jwt("client");
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
        let key = idempotency_key(&request);
        let request = request.into_inner();
        if let Some(key) = &key {
            let repeat = {
                let state = self.state();
                state
                    .create_keys
                    .get(key)
                    .and_then(|id| state.sandboxes.get(id))
                    .cloned()
            };
            if let Some(record) = repeat {
                return Ok(Response::new(pb::SandboxCreateResponse {
                    sandbox_id: record.id.clone(),
                    metadata: Some(handle_metadata(&record)),
                }));
            }
        }
        let definition = request.definition.unwrap_or_default();
        if !self.state().app_names.contains_key(&request.app_id) {
            return Err(Status::not_found(format!(
                "App `{}` not found",
                request.app_id
            )));
        }
        let timeout_secs = match definition.timeout_secs {
            0 => DEFAULT_TIMEOUT_SECS,
            secs if secs > MAX_TIMEOUT_SECS => {
                return Err(Status::invalid_argument(format!(
                    "timeout_secs {secs} exceeds the maximum of {MAX_TIMEOUT_SECS}"
                )));
            }
            secs => secs,
        };
        let name = definition.name.clone().filter(|name| !name.is_empty());
        let spec = self.spec_for(&definition, timeout_secs)?;
        let name_key = name.clone().map(|name| (request.app_id.clone(), name));
        if let Some(name_key) = &name_key {
            let mut state = self.state();
            let taken = state.reserved_names.contains(name_key)
                || state.sandboxes.values().any(|sandbox| {
                    sandbox.app_id == name_key.0
                        && sandbox.name.as_deref() == Some(name_key.1.as_str())
                        && sandbox.is_running()
                });
            if taken {
                return Err(Status::already_exists(format!(
                    "Sandbox with name '{}' already exists in App",
                    name_key.1
                )));
            }
            state.reserved_names.insert(name_key.clone());
        }
        let created = self.backend().create(&spec).await;
        let info = match created {
            Ok(info) => info,
            Err(error) => {
                if let Some(name_key) = &name_key {
                    self.state().reserved_names.remove(name_key);
                }
                return Err(status_of(error));
            }
        };
        let path_root = self.probe_path_root(&info, spec.workdir.as_deref()).await;
        let workdir = modal_workdir(&info.workdir, path_root.as_deref());
        let mut state = self.state();
        let record = Arc::new(SandboxRecord {
            id: ids::sandbox_id(),
            task_id: ids::task_id(),
            app_id: request.app_id.clone(),
            name,
            image_id: definition.image_id.clone(),
            backend_id: info.id,
            created_at: Self::next_created_at(&mut state),
            timeout_secs,
            idle_timeout_secs: definition.idle_timeout_secs,
            regions: definition
                .scheduler_placement
                .as_ref()
                .map(|placement| placement.regions.clone())
                .unwrap_or_default(),
            has_ports: !spec.ports.is_empty(),
            path_root,
            workdir,
            emulated_idle_timeout: definition
                .idle_timeout_secs
                .filter(|_| !self.backend().capabilities().idle_timeout),
            activity: Mutex::new(std::time::Instant::now()),
            running_execs: std::sync::atomic::AtomicUsize::new(0),
            tags: Mutex::new(request.tags),
            result: watch::channel(None).0,
            finished_at: Mutex::new(None),
            watchers: Mutex::new(Vec::new()),
        });
        if let Some(name_key) = &name_key {
            // The record now holds the name; the reservation only covered the creation.
            state.reserved_names.remove(name_key);
        }
        state
            .sandboxes
            .insert(record.id.clone(), Arc::clone(&record));
        state
            .tasks
            .insert(record.task_id.clone(), record.id.clone());
        if let Some(key) = key {
            state.create_keys.insert(key, record.id.clone());
        }
        drop(state);
        self.watch(&record);
        tracing::info!(sandbox = %record.id, backend = %record.backend_id, "sandbox created");
        Ok(Response::new(pb::SandboxCreateResponse {
            sandbox_id: record.id.clone(),
            metadata: Some(handle_metadata(&record)),
        }))
    }

    async fn sandbox_get_command_router_access(
        &self,
        request: Request<pb::SandboxGetCommandRouterAccessRequest>,
    ) -> Result<Response<pb::SandboxGetCommandRouterAccessResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = match request.into_inner().target {
            Some(Target::SandboxId(id)) => self.sandbox(&id)?,
            Some(Target::TaskId(id)) => self.sandbox_of_task(&id)?,
            None => {
                return Err(Status::invalid_argument(
                    "a sandbox_id or task_id is required",
                ));
            }
        };
        let (jwt, url) = self.router_access(&record);
        Ok(Response::new(pb::SandboxGetCommandRouterAccessResponse {
            jwt,
            url,
            worker_ipv4_address: "127.0.0.1".to_owned(),
        }))
    }

    async fn sandbox_get_from_name(
        &self,
        request: Request<pb::SandboxGetFromNameRequest>,
    ) -> Result<Response<pb::SandboxGetFromNameResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let environment = environment_name(&request.environment_name);
        let state = self.state();
        let app_id = state
            .apps
            .get(&(environment.clone(), request.app_name.clone()))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "App '{}' not found in environment '{environment}'",
                    request.app_name
                ))
            })?;
        let mut candidates: Vec<&Arc<SandboxRecord>> = state
            .sandboxes
            .values()
            .filter(|sandbox| {
                sandbox.app_id == *app_id
                    && sandbox.name.as_deref() == Some(request.sandbox_name.as_str())
                    && (sandbox.is_running() || request.include_terminated)
            })
            .collect();
        candidates.sort_by(|a, b| {
            b.is_running()
                .cmp(&a.is_running())
                .then(b.created_at.total_cmp(&a.created_at))
        });
        let record = candidates.first().ok_or_else(|| {
            Status::not_found(format!(
                "Sandbox with name '{}' not found in App '{}'",
                request.sandbox_name, request.app_name
            ))
        })?;
        Ok(Response::new(pb::SandboxGetFromNameResponse {
            sandbox_id: record.id.clone(),
            metadata: Some(handle_metadata(record)),
        }))
    }

    /// The entrypoint's output is not reachable through the provider API: the log stream
    /// ends at once.
    async fn sandbox_get_logs(
        &self,
        request: Request<pb::SandboxGetLogsRequest>,
    ) -> Result<Response<StreamOf<pb::TaskLogsBatch>>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
        let batch = pb::TaskLogsBatch {
            task_id: record.task_id.clone(),
            entry_id: "0-1".to_owned(),
            eof: true,
            sandbox_id: record.id.clone(),
            ..Default::default()
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(batch)]))))
    }

    async fn sandbox_get_task_id(
        &self,
        request: Request<pb::SandboxGetTaskIdRequest>,
    ) -> Result<Response<pb::SandboxGetTaskIdResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
        // The task exists from creation on; a finished sandbox also reports its result.
        Ok(Response::new(pb::SandboxGetTaskIdResponse {
            task_id: Some(record.task_id.clone()),
            task_result: record.result(),
        }))
    }

    async fn sandbox_get_tunnels(
        &self,
        request: Request<pb::SandboxGetTunnelsRequest>,
    ) -> Result<Response<pb::SandboxGetTunnelsResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
        if !record.has_ports || !record.is_running() {
            return Ok(Response::new(pb::SandboxGetTunnelsResponse::default()));
        }
        let tunnels = self
            .backend()
            .tunnels(&record.backend_id)
            .await
            .map_err(status_of)?;
        let tunnels = tunnels
            .into_iter()
            .filter_map(|tunnel| {
                let (host, port) = host_and_port(&tunnel.url)?;
                Some(pb::TunnelData {
                    host: host.clone(),
                    port,
                    unencrypted_host: Some(host),
                    unencrypted_port: Some(port),
                    container_port: u32::from(tunnel.port),
                })
            })
            .collect();
        Ok(Response::new(pb::SandboxGetTunnelsResponse {
            result: Some(result(GenericStatus::Success, 0, "")),
            tunnels,
        }))
    }

    async fn sandbox_list(
        &self,
        request: Request<pb::SandboxListRequest>,
    ) -> Result<Response<pb::SandboxListResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let mut matching: Vec<Arc<SandboxRecord>> = self
            .state()
            .sandboxes
            .values()
            .filter(|sandbox| {
                (request.app_id.is_empty() || sandbox.app_id == request.app_id)
                    && (request.include_finished || sandbox.is_running())
                    && (request.before_timestamp <= 0.0
                        || sandbox.created_at < request.before_timestamp)
                    && tags_match(&sandbox.tags(), &request.tags)
            })
            .cloned()
            .collect();
        matching.sort_by(|a, b| b.created_at.total_cmp(&a.created_at));
        matching.truncate(self.0.list_page_size);
        Ok(Response::new(pb::SandboxListResponse {
            sandboxes: matching
                .iter()
                .map(|record| Self::sandbox_info(record))
                .collect(),
        }))
    }

    async fn sandbox_stdin_write(
        &self,
        request: Request<pb::SandboxStdinWriteRequest>,
    ) -> Result<Response<pb::SandboxStdinWriteResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
        if !record.is_running() {
            return Err(Status::failed_precondition(
                "the sandbox has already terminated",
            ));
        }
        Err(Status::unimplemented(
            "modal-fake cannot write to a sandbox entrypoint's stdin; use an exec instead",
        ))
    }

    async fn sandbox_tags_get(
        &self,
        request: Request<pb::SandboxTagsGetRequest>,
    ) -> Result<Response<pb::SandboxTagsGetResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
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
        let record = self.sandbox(&request.sandbox_id)?;
        let mut unique: BTreeMap<String, String> = BTreeMap::new();
        for tag in request.tags {
            if tag.tag_name.is_empty() {
                return Err(Status::invalid_argument("tag names must not be empty"));
            }
            unique.insert(tag.tag_name, tag.tag_value);
        }
        *lock(&record.tags) = unique
            .into_iter()
            .map(|(tag_name, tag_value)| pb::SandboxTag {
                tag_name,
                tag_value,
            })
            .collect();
        Ok(Response::new(()))
    }

    async fn sandbox_terminate(
        &self,
        request: Request<pb::SandboxTerminateRequest>,
    ) -> Result<Response<pb::SandboxTerminateResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let record = self.sandbox(&request.into_inner().sandbox_id)?;
        let existing_result = record.result();
        if existing_result.is_none() {
            self.end(
                &record,
                result(GenericStatus::Terminated, 137, "terminated"),
            )
            .await;
            tracing::info!(sandbox = %record.id, "sandbox terminated");
        }
        Ok(Response::new(pb::SandboxTerminateResponse {
            existing_result,
        }))
    }

    async fn sandbox_wait(
        &self,
        request: Request<pb::SandboxWaitRequest>,
    ) -> Result<Response<pb::SandboxWaitResponse>, Status> {
        self.check_credentials(request.metadata())?;
        let request = request.into_inner();
        let record = self.sandbox(&request.sandbox_id)?;
        let result = wait_for_result(&record, long_poll(request.timeout)).await;
        Ok(Response::new(pb::SandboxWaitResponse {
            result,
            metadata: Some(handle_metadata(&record)),
        }))
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
