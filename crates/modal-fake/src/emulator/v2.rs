//! What only Modal's V2 sandbox calls do: creation that hands back the task and its router
//! access at once, the sandbox token, the stricter header checks, and the entrypoint's
//! router streams.

use std::sync::Arc;

use sandkit_modal_proto::client::{self as pb, sandbox_get_command_router_access_request::Target};
use sandkit_modal_proto::task_command_router as tcr;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::lifecycle::{CreateArgs, handle_metadata, idempotency_key};
use super::{AUTH_TOKEN_SUBJECT, Emulator, SandboxRecord, SandboxVersion, header, lock};

/// The header V2 clients send back the `sandbox_token` of `SandboxCreateV2` in.
const SANDBOX_TOKEN_HEADER: &str = "x-modal-sandbox-token";

impl Emulator {
    /// The checks of a V2 call: credentials as on every call; an `x-modal-auth-token`, when
    /// sent, must be one `AuthTokenGet` issued and unexpired; an `x-modal-sandbox-token`,
    /// when sent on a call about `sandbox`, must be the one issued for it.
    pub(super) fn check_v2_call(
        &self,
        metadata: &MetadataMap,
        sandbox: Option<&SandboxRecord>,
    ) -> Result<(), Status> {
        self.check_credentials(metadata)?;
        if let Some(token) = header(metadata, "x-modal-auth-token")
            && !self.jwt_is_valid(token, Some(AUTH_TOKEN_SUBJECT))
        {
            return Err(Status::unauthenticated(
                "x-modal-auth-token is unknown or expired: fetch a new one with AuthTokenGet",
            ));
        }
        if let (Some(token), Some(record)) = (header(metadata, SANDBOX_TOKEN_HEADER), sandbox)
            && record.sandbox_token.as_deref() != Some(token)
        {
            return Err(Status::permission_denied(format!(
                "{SANDBOX_TOKEN_HEADER} is not the token issued for sandbox `{}`",
                record.id
            )));
        }
        Ok(())
    }

    /// The V2 sandbox a V2 call is about, after the call's checks.
    pub(super) fn v2_sandbox(
        &self,
        metadata: &MetadataMap,
        sandbox_id: &str,
    ) -> Result<Arc<SandboxRecord>, Status> {
        // Credentials first: an unauthenticated caller learns nothing about ids.
        self.check_credentials(metadata)?;
        let record = self.sandbox_as(sandbox_id, SandboxVersion::V2)?;
        self.check_v2_call(metadata, Some(&record))?;
        Ok(record)
    }

    /// `SandboxCreateV2`: a sandbox with V2 ids, its task and router access in the answer
    /// (so the client never polls for the task), and a sandbox token for later calls.
    pub(super) async fn create_v2(
        &self,
        request: Request<pb::SandboxCreateV2Request>,
    ) -> Result<pb::SandboxCreateV2Response, Status> {
        self.check_v2_call(request.metadata(), None)?;
        let idempotency_key = idempotency_key(&request);
        let request = request.into_inner();
        let mut secret_sources = Vec::new();
        // Older clients sent inline secrets as one map; newer ones as `secret_sources`,
        // which come after it so they win on a clash.
        if let Some(ephemeral) = request.ephemeral_secrets {
            secret_sources.push(pb::SecretSource {
                source: Some(pb::secret_source::Source::Env(ephemeral)),
            });
        }
        secret_sources.extend(request.secret_sources);
        let record = self
            .create_sandbox(CreateArgs {
                app_id: request.app_id,
                definition: request.definition.unwrap_or_default(),
                tags: request.tags,
                secret_sources,
                version: SandboxVersion::V2,
                idempotency_key,
            })
            .await?;
        let (jwt, url) = self.router_access(&record);
        Ok(pb::SandboxCreateV2Response {
            sandbox_id: record.id.clone(),
            // Tunnel endpoints are asked for with `SandboxGetTunnelsV2`; clients cache
            // only a complete set, so an empty one here is the honest answer.
            tunnels: Vec::new(),
            task_id: record.task_id.clone(),
            metadata: Some(handle_metadata(&record)),
            command_router_access: Some(pb::CommandRouterAccess { jwt, url }),
            sandbox_token: record.sandbox_token.clone().unwrap_or_default(),
        })
    }

    /// `SandboxSetName`: names a running V2 sandbox made without a name, once. The same
    /// name again is fine (a retry); another name is `FAILED_PRECONDITION`, as is a
    /// finished sandbox; a name a running sandbox of the app holds is `ALREADY_EXISTS`.
    pub(super) fn set_name(
        &self,
        request: Request<pb::SandboxSetNameRequest>,
    ) -> Result<pb::SandboxSetNameResponse, Status> {
        let record = self.v2_sandbox(request.metadata(), &request.get_ref().sandbox_id)?;
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("a sandbox name must not be empty"));
        }
        if !record.is_running() {
            return Err(Status::failed_precondition(format!(
                "sandbox `{}` is no longer running",
                record.id
            )));
        }
        // Under the state lock, so two sandboxes cannot take one name at once.
        let state = self.state();
        let mut current = lock(&record.name);
        match current.as_deref() {
            Some(same) if same == name => return Ok(pb::SandboxSetNameResponse {}),
            Some(other) => {
                return Err(Status::failed_precondition(format!(
                    "sandbox `{}` is already named `{other}`",
                    record.id
                )));
            }
            None => {}
        }
        let taken = state
            .reserved_names
            .contains(&(record.app_id.clone(), name.clone()))
            || state
                .sandboxes
                .values()
                .any(|other| other.id != record.id && other.holds_name(&record.app_id, &name));
        if taken {
            return Err(Status::already_exists(format!(
                "Sandbox with name '{name}' already exists in App"
            )));
        }
        *current = Some(name);
        Ok(pb::SandboxSetNameResponse {})
    }

    /// `SandboxGetCommandRouterAccess`, by sandbox or task id. V2 clients call it; it
    /// answers for sandboxes of either family, since router access is the same for both.
    pub(super) fn sandbox_router_access(
        &self,
        request: Request<pb::SandboxGetCommandRouterAccessRequest>,
    ) -> Result<pb::SandboxGetCommandRouterAccessResponse, Status> {
        self.check_credentials(request.metadata())?;
        let record = match &request.get_ref().target {
            Some(Target::SandboxId(id)) => self.sandbox(id)?,
            Some(Target::TaskId(id)) => self.sandbox_of_task(id)?,
            None => {
                return Err(Status::invalid_argument(
                    "a sandbox_id or task_id is required",
                ));
            }
        };
        self.check_v2_call(request.metadata(), Some(&record))?;
        let (jwt, url) = self.router_access(&record);
        Ok(pb::SandboxGetCommandRouterAccessResponse {
            jwt,
            url,
            worker_ipv4_address: "127.0.0.1".to_owned(),
        })
    }

    /// The router's task checks for the V2 entrypoint streams: a valid router token, and a
    /// task of a V2 sandbox (V1 sandboxes use `SandboxGetLogs` / `SandboxStdinWrite`).
    fn v2_entrypoint_task(&self, metadata: &MetadataMap, task_id: &str) -> Result<(), Status> {
        self.check_router_token(metadata, task_id)?;
        let record = self.sandbox_of_task(task_id)?;
        if record.version != SandboxVersion::V2 {
            return Err(Status::failed_precondition(format!(
                "task `{task_id}` belongs to V1 sandbox `{}`: its entrypoint's streams are \
                 `SandboxGetLogs` and `SandboxStdinWrite`",
                record.id
            )));
        }
        Ok(())
    }

    /// The captured entrypoint output `SandboxStdioReadV2` reads, after its token and
    /// task checks; `UNIMPLEMENTED` on a backend that does not offer it.
    pub(super) fn entrypoint_output_v2(
        &self,
        request: &Request<tcr::SandboxStdioReadV2Request>,
    ) -> Result<Arc<super::entrypoint::EntrypointOutput>, Status> {
        let task_id = &request.get_ref().task_id;
        self.v2_entrypoint_task(request.metadata(), task_id)?;
        self.sandbox_of_task(task_id)?
            .output
            .clone()
            .ok_or_else(|| {
                Status::unimplemented(
                    "this emulator's backend does not offer an entrypoint's output \
                 (local-docker with `agent: false`, say)",
                )
            })
    }

    /// The sandbox a `SandboxStdinWriteV2` writes to, after its token and task checks;
    /// a finished one is `FAILED_PRECONDITION`, as V1's `SandboxStdinWrite` says.
    pub(super) fn entrypoint_stdin_v2(
        &self,
        request: &Request<tcr::SandboxStdinWriteV2Request>,
    ) -> Result<Arc<SandboxRecord>, Status> {
        let task_id = &request.get_ref().task_id;
        self.v2_entrypoint_task(request.metadata(), task_id)?;
        let record = self.sandbox_of_task(task_id)?;
        if !record.is_running() {
            return Err(Status::failed_precondition(
                "the sandbox has already terminated",
            ));
        }
        Ok(record)
    }
}
