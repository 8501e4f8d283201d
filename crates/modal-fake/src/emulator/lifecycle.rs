//! The sandbox lifecycle shared by Modal's V1 calls (`SandboxCreate`, `SandboxWait`, ...)
//! and V2 calls (`SandboxCreateV2`, `SandboxWaitV2`, ...): both families manage the same
//! records and backend sandboxes; only ids, request shapes and what each family may see
//! differ.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandkit_core::{Error as CoreError, SandboxState, SecretString};
use sandkit_modal_proto::client::{
    self as pb, generic_result::GenericStatus, secret_source::Source,
};
use tokio::sync::watch;
use tonic::{Request, Status};

use super::spec::modal_workdir;
use super::{
    Emulator, SandboxRecord, SandboxVersion, environment_name, host_and_port, lock, result,
    status_of,
};
use crate::ids;

/// Longest a long poll (`SandboxWait`, `SandboxGetTaskId`) is held, as Modal's server does.
const MAX_LONG_POLL: Duration = Duration::from_secs(55);
/// Modal's maximum sandbox lifetime.
const MAX_TIMEOUT_SECS: u32 = 24 * 60 * 60;
/// Modal's default sandbox lifetime.
const DEFAULT_TIMEOUT_SECS: u32 = 300;
/// How long a V2 sandbox token stays valid past the sandbox's own lifetime. Clients never
/// refresh it, so it must outlive the sandbox.
const SANDBOX_TOKEN_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

fn long_poll(timeout_secs: f32) -> Duration {
    if timeout_secs.is_finite() && timeout_secs > 0.0 {
        Duration::from_secs_f32(timeout_secs).min(MAX_LONG_POLL)
    } else {
        Duration::ZERO
    }
}

/// The handle metadata answers carry.
pub(super) fn handle_metadata(record: &SandboxRecord) -> pb::SandboxHandleMetadata {
    pb::SandboxHandleMetadata {
        result: record.result(),
        app_id: record.app_id.clone(),
    }
}

/// The client's `x-idempotency-key`, constant across the retries of one call.
pub(super) fn idempotency_key<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("x-idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn tags_match(have: &[pb::SandboxTag], wanted: &[pb::SandboxTag]) -> bool {
    wanted.iter().all(|want| {
        have.iter()
            .any(|tag| tag.tag_name == want.tag_name && tag.tag_value == want.tag_value)
    })
}

/// A sandbox creation, whichever call family asked for it.
pub(super) struct CreateArgs {
    pub app_id: String,
    pub definition: pb::Sandbox,
    pub tags: Vec<pb::SandboxTag>,
    /// Environment beyond the definition's `secret_ids` (V2 sends inline secrets here).
    pub secret_sources: Vec<pb::SecretSource>,
    pub version: SandboxVersion,
    pub idempotency_key: Option<String>,
}

impl Emulator {
    /// The sandbox `sandbox_id` if it belongs to the call family `version`. A sandbox of
    /// the other family is `NOT_FOUND`, naming the calls that do reach it: clients choose
    /// the family by the id's shape, so a mismatch is a client routing mistake.
    pub(super) fn sandbox_as(
        &self,
        sandbox_id: &str,
        version: SandboxVersion,
    ) -> Result<Arc<SandboxRecord>, Status> {
        let record = self.sandbox(sandbox_id)?;
        if record.version == version {
            Ok(record)
        } else {
            Err(Status::not_found(format!(
                "Sandbox `{sandbox_id}` is a {:?} sandbox: use the {:?} calls (e.g. `SandboxWait{}`)",
                record.version,
                record.version,
                record.version.rpc_suffix()
            )))
        }
    }

    /// The environment inline and stored secret sources give.
    fn secret_source_env(
        &self,
        sources: &[pb::SecretSource],
    ) -> Result<BTreeMap<String, String>, Status> {
        let state = self.state();
        let mut env = BTreeMap::new();
        for source in sources {
            match &source.source {
                Some(Source::SecretId(secret_id)) => {
                    let values = state.secrets.get(secret_id).ok_or_else(|| {
                        Status::not_found(format!("Secret `{secret_id}` not found"))
                    })?;
                    env.extend(values.clone());
                }
                Some(Source::Env(map)) => env.extend(map.contents.clone()),
                None => {}
            }
        }
        Ok(env)
    }

    /// The record an earlier attempt of the same call created (same idempotency key).
    pub(super) fn created_before(&self, key: Option<&str>) -> Option<Arc<SandboxRecord>> {
        let state = self.state();
        state
            .create_keys
            .get(key?)
            .and_then(|id| state.sandboxes.get(id))
            .cloned()
    }

    /// Creates a sandbox at the backend and records it. Names are unique among the running
    /// sandboxes of an app, V1 and V2 alike.
    pub(super) async fn create_sandbox(
        &self,
        args: CreateArgs,
    ) -> Result<Arc<SandboxRecord>, Status> {
        if let Some(record) = self.created_before(args.idempotency_key.as_deref()) {
            return Ok(record);
        }
        let CreateArgs {
            app_id,
            definition,
            tags,
            secret_sources,
            version,
            idempotency_key,
        } = args;
        if !self.state().app_names.contains_key(&app_id) {
            return Err(Status::not_found(format!("App `{app_id}` not found")));
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
        let mut spec = self.spec_for(&definition, timeout_secs)?;
        for (key, value) in self.secret_source_env(&secret_sources)? {
            spec.secrets.insert(key, SecretString::new(value));
        }
        let name_key = name.clone().map(|name| (app_id.clone(), name));
        if let Some(name_key) = &name_key {
            self.reserve_name(name_key)?;
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
        let (id, task_id, sandbox_token) = match version {
            SandboxVersion::V1 => (ids::sandbox_id(), ids::task_id(), None),
            SandboxVersion::V2 => {
                let id = ids::sandbox_id_v2();
                let lifetime = Duration::from_secs(u64::from(timeout_secs)) + SANDBOX_TOKEN_GRACE;
                // JWT-shaped so recordings redact it like every other token.
                let token = ids::mint_jwt(&id, lifetime);
                (id, ids::task_id_v2(), Some(token))
            }
        };
        let mut state = self.state();
        let record = Arc::new(SandboxRecord {
            id,
            version,
            sandbox_token,
            task_id,
            app_id,
            name: Mutex::new(name),
            image_id: definition.image_id.clone(),
            backend_id: info.id.clone(),
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
            created: std::time::Instant::now(),
            running_execs: std::sync::atomic::AtomicUsize::new(0),
            tags: Mutex::new(tags),
            result: watch::channel(None).0,
            finished_at: Mutex::new(None),
            watchers: Mutex::new(Vec::new()),
            output: super::entrypoint::capture(self.backend(), &info.id),
            stdin: Default::default(),
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
        if let Some(key) = idempotency_key {
            state.create_keys.insert(key, record.id.clone());
        }
        drop(state);
        self.watch(&record);
        tracing::info!(
            sandbox = %record.id,
            backend = %record.backend_id,
            version = ?record.version,
            "sandbox created"
        );
        Ok(record)
    }

    /// Holds `name` in its app while a sandbox of that name is being created;
    /// `ALREADY_EXISTS` if a running sandbox (or another creation) has it.
    pub(super) fn reserve_name(&self, name_key: &(String, String)) -> Result<(), Status> {
        let mut state = self.state();
        let taken = state.reserved_names.contains(name_key)
            || state
                .sandboxes
                .values()
                .any(|sandbox| sandbox.holds_name(&name_key.0, &name_key.1));
        if taken {
            return Err(Status::already_exists(format!(
                "Sandbox with name '{}' already exists in App",
                name_key.1
            )));
        }
        state.reserved_names.insert(name_key.clone());
        Ok(())
    }

    /// `SandboxGetFromName[V2]`: the running (or, if asked, newest finished) sandbox of
    /// that name among the family's sandboxes.
    pub(super) fn sandbox_from_name(
        &self,
        request: &pb::SandboxGetFromNameRequest,
        version: SandboxVersion,
    ) -> Result<pb::SandboxGetFromNameResponse, Status> {
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
                sandbox.version == version
                    && sandbox.app_id == *app_id
                    && sandbox.name().as_deref() == Some(request.sandbox_name.as_str())
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
        Ok(pb::SandboxGetFromNameResponse {
            sandbox_id: record.id.clone(),
            metadata: Some(handle_metadata(record)),
        })
    }

    /// `SandboxGetTaskId[V2]`: the task exists from creation on (for a V1 sandbox, once
    /// the task-start delay has passed: before, the answer holds neither a task id nor a
    /// result, as while Modal schedules); a finished sandbox also reports its result.
    pub(super) fn task_of(&self, record: &SandboxRecord) -> pb::SandboxGetTaskIdResponse {
        let scheduling = record.version == SandboxVersion::V1
            && record.is_running()
            && record.created.elapsed() < self.0.task_start_delay;
        if scheduling {
            return pb::SandboxGetTaskIdResponse::default();
        }
        pb::SandboxGetTaskIdResponse {
            task_id: Some(record.task_id.clone()),
            task_result: record.result(),
        }
    }

    /// Refuses router calls for `task_id` as `UNAVAILABLE` until the router-ready delay
    /// has passed since its sandbox was created, as Modal's router refuses connections
    /// while the task still starts on its worker. Unknown tasks are left to the call.
    pub(crate) fn check_router_ready(&self, task_id: &str) -> Result<(), Status> {
        let delay = self.0.router_ready_delay;
        if delay.is_zero() {
            return Ok(());
        }
        let Ok(record) = self.sandbox_of_task(task_id) else {
            return Ok(());
        };
        let waited = record.created.elapsed();
        if waited < delay {
            return Err(Status::unavailable(format!(
                "the command router of task `{task_id}` is not accepting connections yet \
                 (ready {:.1} s after create)",
                delay.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// `SandboxGetTunnels[V2]`.
    pub(super) async fn tunnels_of(
        &self,
        record: &SandboxRecord,
    ) -> Result<pb::SandboxGetTunnelsResponse, Status> {
        if !record.has_ports || !record.is_running() {
            return Ok(pb::SandboxGetTunnelsResponse::default());
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
        Ok(pb::SandboxGetTunnelsResponse {
            result: Some(result(GenericStatus::Success, 0, "")),
            tunnels,
        })
    }

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
            name: record.name().unwrap_or_default(),
            image_id: record.image_id.clone(),
            regions: record.regions.clone(),
            timeout_secs: record.timeout_secs,
            idle_timeout_secs: record.idle_timeout_secs,
            ready_at: Some(record.created_at),
            metadata: Some(handle_metadata(record)),
            ..Default::default()
        }
    }

    /// `SandboxList` (`only` = V1) and `SandboxListV2` (`only` = `None`: both families).
    pub(super) fn list_sandboxes(
        &self,
        request: &pb::SandboxListRequest,
        only: Option<SandboxVersion>,
    ) -> pb::SandboxListResponse {
        let mut matching: Vec<Arc<SandboxRecord>> = self
            .state()
            .sandboxes
            .values()
            .filter(|sandbox| {
                only.is_none_or(|version| sandbox.version == version)
                    && (request.app_id.is_empty() || sandbox.app_id == request.app_id)
                    && (request.include_finished || sandbox.is_running())
                    && (request.before_timestamp <= 0.0
                        || sandbox.created_at < request.before_timestamp)
                    && tags_match(&sandbox.tags(), &request.tags)
            })
            .cloned()
            .collect();
        matching.sort_by(|a, b| b.created_at.total_cmp(&a.created_at));
        matching.truncate(self.0.list_page_size);
        pb::SandboxListResponse {
            sandboxes: matching
                .iter()
                .map(|record| Self::sandbox_info(record))
                .collect(),
        }
    }

    /// `SandboxTagsSet[V2]`: replaces the whole set (one value per name).
    pub(super) fn set_tags(
        record: &SandboxRecord,
        tags: Vec<pb::SandboxTag>,
    ) -> Result<(), Status> {
        let mut unique: BTreeMap<String, String> = BTreeMap::new();
        for tag in tags {
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
        Ok(())
    }

    /// `SandboxTerminate[V2]`: ends a running sandbox; reports the result it already had.
    pub(super) async fn terminate_sandbox(
        &self,
        record: &Arc<SandboxRecord>,
    ) -> pb::SandboxTerminateResponse {
        let existing_result = record.result();
        if existing_result.is_none() {
            self.end(record, result(GenericStatus::Terminated, 137, "terminated"))
                .await;
            tracing::info!(sandbox = %record.id, "sandbox terminated");
        }
        pb::SandboxTerminateResponse { existing_result }
    }

    /// `SandboxWait[V2]`: long-polls up to `timeout` seconds (capped) for the result.
    pub(super) async fn wait_sandbox(
        record: &SandboxRecord,
        timeout: f32,
    ) -> pb::SandboxWaitResponse {
        let mut receiver = record.result.subscribe();
        let _ = tokio::time::timeout(long_poll(timeout), receiver.wait_for(Option::is_some)).await;
        pb::SandboxWaitResponse {
            result: record.result(),
            metadata: Some(handle_metadata(record)),
        }
    }

    /// Router address and a fresh JWT for the sandbox's task.
    pub(super) fn router_access(&self, record: &SandboxRecord) -> (String, String) {
        (self.issue_jwt(&record.task_id), self.0.router_url.clone())
    }

    /// Notices when the backend sandbox ends by itself (its entrypoint exited, or it was
    /// removed behind the emulator's back).
    pub(super) async fn monitor(&self, record: &Arc<SandboxRecord>) {
        let mut finished = record.result.subscribe();
        loop {
            tokio::select! {
                _ = finished.wait_for(Option::is_some) => return,
                () = tokio::time::sleep(super::MONITOR_INTERVAL) => {}
            }
            let outcome = match self.0.backend.info(&record.backend_id).await {
                Ok(info) => match info.state {
                    SandboxState::Terminated { exit_code: Some(0) } => {
                        result(GenericStatus::Success, 0, "")
                    }
                    SandboxState::Terminated {
                        exit_code: Some(code),
                    } => result(
                        GenericStatus::Failure,
                        code,
                        format!("exited with code {code}"),
                    ),
                    SandboxState::Terminated { exit_code: None } => {
                        result(GenericStatus::Terminated, 137, "terminated")
                    }
                    SandboxState::Failed { reason } => result(GenericStatus::Failure, 1, reason),
                    _ => continue,
                },
                Err(CoreError::NotFound { .. }) => result(
                    GenericStatus::InternalFailure,
                    1,
                    "the backend sandbox disappeared",
                ),
                Err(error) => {
                    tracing::debug!(sandbox = %record.id, %error, "backend info failed");
                    continue;
                }
            };
            self.end(record, outcome).await;
            return;
        }
    }
}
