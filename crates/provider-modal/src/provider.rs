//! The `modal` provider: sandkit's trait over Modal's control plane and command routers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use sandkit_core::ownership::{TAG_CREATED_AT, unix_now};
use sandkit_core::registry::ProviderFactory;
use sandkit_core::{
    Arch, BillingModel, ByteStream, Capabilities, DirEntry, EgressDefault, Error, ExecProcess,
    ExecRequest, FileStat, GpuKind, GpuRequest, IdleCost, ImageSource, Isolation, ListFilter,
    NetworkPolicy, Os, PauseSupport, PriceSheet, Result, SandboxId, SandboxInfo, SandboxProvider,
    SandboxSpec, SandboxState, Snapshot, TimeoutEnforcement, Transport, Tunnel,
};
use sandkit_modal_proto::client as pb;
use sandkit_modal_proto::client::generic_result::GenericStatus;
use sandkit_modal_proto::task_command_router::{
    TaskExecStdioFileDescriptor, TaskSnapshotFilesystemRequest,
};
use tokio::sync::OnceCell;
use tonic::{Code, Status};

use crate::NAME;
use crate::client::{ControlPlane, Router};
use crate::config::{ModalConfig, Settings};
use crate::error::from_status;
use crate::exec::{self, Control, Start};
use crate::files::Files;
use crate::retry::RetryPolicy;

/// Longest lifetime Modal allows a sandbox, in seconds.
pub const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;
/// Lifetime Modal's clients give a sandbox when none is asked for, in seconds.
pub const DEFAULT_LIFETIME_SECS: u64 = 300;
/// Interval between `SandboxGetTaskId` polls while a sandbox is scheduled.
const TASK_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a snapshot may take, across retries.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(55);
/// Long-poll of one `ImageJoinStreaming` / `SandboxWait` call, in seconds.
const LONG_POLL_SECS: f32 = 55.0;
/// Longest an image build is waited for.
const IMAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long `terminate` waits for Modal to report the sandbox finished.
const TERMINATE_WAIT: Duration = Duration::from_secs(30);

/// Regions Modal's region-selection guide names; the server has the final word.
const DEFAULT_REGIONS: [&str; 14] = [
    "us",
    "us-east",
    "us-central",
    "us-west",
    "eu",
    "eu-west",
    "eu-north",
    "uk",
    "ap",
    "ap-northeast",
    "ap-southeast",
    "ap-south",
    "jp",
    "ca",
];

/// Sandboxes on Modal, through Modal's own gRPC protocol.
pub struct ModalProvider {
    settings: Settings,
    control_plane: Arc<ControlPlane>,
    capabilities: Capabilities,
    app_id: OnceCell<String>,
    builder_version: OnceCell<String>,
    /// What this instance knows about sandboxes beyond what Modal reports.
    known: Mutex<HashMap<String, Known>>,
}

#[derive(Default, Clone)]
struct Known {
    router: Option<Arc<Router>>,
    /// The working directory commands start in; passed explicitly with every command so
    /// it holds whatever the server's default is.
    workdir: Option<String>,
    /// What the spec asked for, to fill what a listing leaves out.
    placement: Option<Placement>,
}

/// The parts of a spec a listing may not report.
#[derive(Clone, Default)]
struct Placement {
    name: Option<String>,
    cpu: Option<f64>,
    memory_mib: Option<u64>,
    gpu: Option<GpuRequest>,
    region: Option<String>,
}

impl std::fmt::Debug for ModalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModalProvider")
            .field("server_url", &self.settings.server_url)
            .field("environment", &self.settings.environment)
            .field("app_name", &self.settings.app_name)
            .finish_non_exhaustive()
    }
}

/// What Modal offers, per its documentation and the issue's capability table.
pub fn capabilities() -> Capabilities {
    Capabilities {
        transport: Transport::DialIn,
        isolation: Isolation::UserSpaceKernel,
        fs_snapshot: true,
        // Modal's pause is a preview of V2 "persistent" sandboxes, which take no tags or
        // names and get a new sandbox id on every resume; sandkit's ownership tags and
        // stable ids cannot ride on that, so pause is not offered.
        pause: PauseSupport::No,
        pause_keeps_memory: false,
        capacity_query: false,
        max_concurrent: None,
        max_lifetime_secs: Some(MAX_LIFETIME_SECS),
        default_lifetime_secs: Some(DEFAULT_LIFETIME_SECS),
        idle_timeout: true,
        // No call extends a running sandbox's timeout, so a lease cannot be renewed.
        client_lease: false,
        os: vec![Os::Linux],
        arch: vec![Arch::X86_64, Arch::Aarch64],
        regions: DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        cpu_limit: true,
        memory_limit: true,
        max_cpu: None,
        max_memory_mib: None,
        gpu_kinds: vec![
            GpuKind::T4,
            GpuKind::L4,
            GpuKind::A10G,
            GpuKind::L40S,
            GpuKind::A100_40GB,
            GpuKind::A100_80GB,
            GpuKind::H100,
            GpuKind::H200,
        ],
        max_gpu_count: 8,
        network_block_all: true,
        network_cidr_allowlist: true,
        network_domain_allowlist: false,
        egress_default: EgressDefault::AllowAll,
        idle_cost: IdleCost::Metered,
        billing: BillingModel::WallClock,
        price_sheet: Some(price_sheet()),
        image_registry: true,
        image_dockerfile: false,
        entrypoint: true,
        exec_stdin: true,
        exec_pty: false,
        exec_run_as_user: false,
        exec_timeout: TimeoutEnforcement::Server,
        exec_separate_stderr: true,
        files: true,
        container_paths: true,
        read_only_base: false,
        batch_transfer: false,
        tunnels: true,
        volumes: true,
        secrets: true,
        tags: true,
        list_by_tags: true,
        lookup_by_name: true,
    }
}

/// Modal's public prices (USD). Only GPU prices with a source are listed.
pub fn price_sheet() -> PriceSheet {
    PriceSheet {
        currency: "USD".to_owned(),
        cpu_core_second: 0.000_039_4,
        memory_gib_second: 0.000_006_72,
        gpu_second: BTreeMap::from([(GpuKind::A100_40GB, 0.001_036)]),
        region_multipliers: BTreeMap::from([("us".to_owned(), 1.25), ("eu".to_owned(), 1.25)]),
        source: "modal.com/pricing, as quoted in sandkit issue 4 (2026-11)".to_owned(),
    }
}

/// Modal mints V1 sandbox ids as `sb-` and 22 base62 characters; other shapes belong to
/// APIs this provider does not speak, so they cannot be ours.
fn is_v1_sandbox_id(id: &str) -> bool {
    id.strip_prefix("sb-")
        .is_some_and(|rest| rest.len() == 22 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn subject(id: &str) -> String {
    format!("sandbox `{id}`")
}

/// Whether a finished result is a failure to run rather than an exit.
fn state_of_result(result: &pb::GenericResult) -> Option<SandboxState> {
    let status = GenericStatus::try_from(result.status).unwrap_or(GenericStatus::Unspecified);
    Some(match status {
        GenericStatus::Unspecified => return None,
        GenericStatus::Success | GenericStatus::Failure | GenericStatus::IdleTimeout => {
            SandboxState::Terminated {
                exit_code: Some(result.exitcode),
            }
        }
        GenericStatus::Timeout => SandboxState::Terminated {
            exit_code: Some(124),
        },
        GenericStatus::Terminated => SandboxState::Terminated {
            exit_code: Some(137),
        },
        GenericStatus::InitFailure
        | GenericStatus::InternalFailure
        | GenericStatus::MemoryManagerEviction
        | GenericStatus::MemoryThrashingEviction
        | GenericStatus::KernelOomKill => SandboxState::Failed {
            reason: if result.exception.is_empty() {
                status.as_str_name().to_owned()
            } else {
                result.exception.clone()
            },
        },
    })
}

fn is_finished(result: Option<&pb::GenericResult>) -> bool {
    result.is_some_and(|result| result.status != GenericStatus::Unspecified as i32)
}

/// Where a sandbox's task stands.
enum Task {
    Running(String),
    Finished(pb::GenericResult),
}

impl ModalProvider {
    /// Builds a provider from resolved settings. Connects lazily: nothing is sent until the
    /// first operation.
    fn new(settings: Settings, regions: Option<Vec<String>>) -> Result<Self> {
        let control_plane = ControlPlane::new(
            &settings.server_url,
            &settings.token_id,
            &settings.token_secret,
            settings.max_throttle_wait,
        )
        .map_err(|reason| Error::InvalidConfig {
            provider: NAME.to_owned(),
            reason,
        })?;
        let mut capabilities = capabilities();
        if let Some(regions) = regions {
            capabilities.regions = regions;
        }
        Ok(Self {
            settings,
            control_plane: Arc::new(control_plane),
            capabilities,
            app_id: OnceCell::new(),
            builder_version: OnceCell::new(),
            known: Mutex::new(HashMap::new()),
        })
    }

    fn known(&self, id: &str) -> Known {
        self.known
            .lock()
            .expect("cache lock")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn remember(&self, id: &str, update: impl FnOnce(&mut Known)) {
        update(
            self.known
                .lock()
                .expect("cache lock")
                .entry(id.to_owned())
                .or_default(),
        );
    }

    fn forget(&self, id: &str) {
        self.known.lock().expect("cache lock").remove(id);
    }

    /// The app that owns our sandboxes, created on first use.
    async fn app_id(&self) -> Result<String> {
        self.app_id
            .get_or_try_init(|| async {
                let request = pb::AppGetOrCreateRequest {
                    app_name: self.settings.app_name.clone(),
                    environment_name: self.settings.environment.clone(),
                    object_creation_type: pb::ObjectCreationType::CreateIfMissing as i32,
                };
                let response = self
                    .control_plane
                    .unary(request, |mut stub, request| async move {
                        stub.app_get_or_create(request).await
                    })
                    .await
                    .map_err(|status| {
                        from_status(&status, &format!("app `{}`", self.settings.app_name))
                    })?;
                Ok(response.app_id)
            })
            .await
            .cloned()
    }

    /// The image builder version: configured, or the environment's setting.
    async fn builder_version(&self) -> Result<String> {
        if let Some(version) = &self.settings.image_builder_version {
            return Ok(version.clone());
        }
        self.builder_version
            .get_or_try_init(|| async {
                let request = pb::EnvironmentGetOrCreateRequest {
                    deployment_name: self.settings.environment.clone(),
                    object_creation_type: pb::ObjectCreationType::Unspecified as i32,
                };
                let response = self
                    .control_plane
                    .unary(request, |mut stub, mut request| async move {
                        request.set_timeout(Duration::from_secs(30));
                        stub.environment_get_or_create(request).await
                    })
                    .await
                    .map_err(|status| {
                        from_status(
                            &status,
                            &format!("environment `{}`", self.settings.environment),
                        )
                    })?;
                Ok(response
                    .metadata
                    .and_then(|metadata| metadata.settings)
                    .map(|settings| settings.image_builder_version)
                    .unwrap_or_default())
            })
            .await
            .cloned()
    }

    /// The image for `spec`: its id and, when the image says, its working directory.
    async fn image(&self, app_id: &str, spec: &SandboxSpec) -> Result<(String, Option<String>)> {
        let reference = match &spec.image {
            Some(ImageSource::Snapshot { id }) => return self.image_from_id(id).await,
            Some(ImageSource::Dockerfile { .. }) => {
                return Err(Error::unsupported(NAME, "images built from a Dockerfile"));
            }
            Some(ImageSource::Registry { reference }) => reference.clone(),
            None => self.settings.default_image.clone(),
        };
        if reference.is_empty()
            || reference
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid_spec(
                "image.reference",
                format!("`{reference}` is not an image reference"),
            ));
        }
        let builder_version = self.builder_version().await?;
        let request = pb::ImageGetOrCreateRequest {
            app_id: app_id.to_owned(),
            image: Some(pb::Image {
                dockerfile_commands: vec![format!("FROM {reference}")],
                ..Default::default()
            }),
            builder_version,
            ..Default::default()
        };
        let what = format!("image `{reference}`");
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.image_get_or_create(request).await
            })
            .await
            .map_err(|status| from_status(&status, &what))?;
        let (result, metadata) = if is_finished(response.result.as_ref()) {
            (response.result.unwrap_or_default(), response.metadata)
        } else {
            self.join_image_build(&response.image_id, &what).await?
        };
        if result.status != GenericStatus::Success as i32 {
            let status = GenericStatus::try_from(result.status).unwrap_or(GenericStatus::Failure);
            return Err(Error::CreationFailed {
                message: format!(
                    "{what} did not build ({}){}",
                    status.as_str_name(),
                    if result.exception.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", result.exception)
                    }
                ),
            });
        }
        Ok((
            response.image_id,
            metadata.and_then(|metadata| metadata.workdir),
        ))
    }

    /// Follows an image build until it has a result, reconnecting from the last log entry
    /// when a stream ends early.
    async fn join_image_build(
        &self,
        image_id: &str,
        what: &str,
    ) -> Result<(pb::GenericResult, Option<pb::ImageMetadata>)> {
        let deadline = Instant::now() + IMAGE_BUILD_TIMEOUT;
        let mut last_entry_id = String::new();
        let mut failures = 0u32;
        let policy = RetryPolicy::control_plane(self.settings.max_throttle_wait);
        while Instant::now() < deadline {
            let request = pb::ImageJoinStreamingRequest {
                image_id: image_id.to_owned(),
                timeout: LONG_POLL_SECS,
                last_entry_id: last_entry_id.clone(),
                include_logs_for_finished: false,
            };
            let opened = self
                .control_plane
                .server_stream(request, |mut stub, request| async move {
                    stub.image_join_streaming(request).await
                })
                .await;
            let failure = match opened {
                Ok(mut stream) => loop {
                    match stream.message().await {
                        Ok(Some(item)) => {
                            failures = 0;
                            if !item.entry_id.is_empty() {
                                last_entry_id = item.entry_id;
                            }
                            if is_finished(item.result.as_ref()) {
                                return Ok((item.result.unwrap_or_default(), item.metadata));
                            }
                        }
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                },
                Err(status) => Some(status),
            };
            if let Some(status) = failure {
                failures += 1;
                let transient = policy.retryable.contains(&status.code());
                if !transient || failures > 10 {
                    return Err(from_status(&status, what));
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
            }
        }
        Err(Error::Timeout {
            operation: format!("building {what}"),
            timeout: IMAGE_BUILD_TIMEOUT,
        })
    }

    async fn image_from_id(&self, image_id: &str) -> Result<(String, Option<String>)> {
        let request = pb::ImageFromIdRequest {
            image_id: image_id.to_owned(),
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.image_from_id(request).await
            })
            .await
            .map_err(|status| match status.code() {
                Code::NotFound | Code::InvalidArgument => Error::NotFound {
                    what: format!("snapshot `{image_id}`"),
                },
                _ => from_status(&status, &format!("snapshot `{image_id}`")),
            })?;
        Ok((
            response.image_id,
            response.metadata.and_then(|metadata| metadata.workdir),
        ))
    }

    /// An ephemeral secret carrying the spec's environment and secrets.
    async fn environment_secret(&self, spec: &SandboxSpec) -> Result<Option<String>> {
        if spec.env.is_empty() && spec.secrets.is_empty() {
            return Ok(None);
        }
        let env_dict = spec
            .env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .chain(
                spec.secrets
                    .iter()
                    .map(|(name, value)| (name.clone(), value.expose().to_owned())),
            )
            .collect();
        let request = pb::SecretGetOrCreateRequest {
            object_creation_type: pb::ObjectCreationType::Ephemeral as i32,
            environment_name: self.settings.environment.clone(),
            env_dict,
            ..Default::default()
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.secret_get_or_create(request).await
            })
            .await
            .map_err(|status| from_status(&status, "the sandbox's environment"))?;
        Ok(Some(response.secret_id))
    }

    async fn volume_mounts(&self, spec: &SandboxSpec) -> Result<Vec<pb::VolumeMount>> {
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
                .unary(request, |mut stub, request| async move {
                    stub.volume_get_or_create(request).await
                })
                .await
                .map_err(|status| Error::Volume {
                    message: from_status(&status, &format!("volume `{}`", volume.name)).to_string(),
                })?;
            mounts.push(pb::VolumeMount {
                volume_id: response.volume_id,
                mount_path: volume.mount_path.clone(),
                allow_background_commits: true,
                read_only: volume.read_only,
                sub_path: None,
            });
        }
        Ok(mounts)
    }

    /// The sandbox definition for `spec`, checking Modal's own limits.
    fn definition(
        &self,
        spec: &SandboxSpec,
        image_id: String,
        secret_ids: Vec<String>,
        volume_mounts: Vec<pb::VolumeMount>,
    ) -> Result<pb::Sandbox> {
        let lifetime_secs = spec.lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
        if lifetime_secs > MAX_LIFETIME_SECS {
            return Err(Error::invalid_spec(
                "lifetime_secs",
                format!("Modal allows at most {MAX_LIFETIME_SECS} s, got {lifetime_secs}"),
            ));
        }
        let idle_timeout_secs = spec
            .idle_timeout_secs
            .map(|secs| {
                u32::try_from(secs).map_err(|_| {
                    Error::invalid_spec("idle_timeout_secs", "must fit in 32 bits of seconds")
                })
            })
            .transpose()?;
        if let Some(name) = &spec.name
            && (name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Error::invalid_spec(
                "name",
                "Modal names are at most 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
            ));
        }
        let milli_cpu = match spec.cpu {
            Some(cores) => {
                let milli = (cores * 1000.0).round();
                if !(1.0..=f64::from(u32::MAX)).contains(&milli) {
                    return Err(Error::invalid_spec(
                        "cpu",
                        format!("{cores} cores is out of range"),
                    ));
                }
                milli as u32
            }
            None => 0,
        };
        let memory_mb = match spec.memory_mib {
            Some(mib) => u32::try_from(mib)
                .map_err(|_| Error::invalid_spec("memory_mib", "is out of range"))?,
            None => 0,
        };
        let network_access = match &spec.network {
            None | Some(NetworkPolicy::AllowAll) => pb::NetworkAccess {
                network_access_type: pb::network_access::NetworkAccessType::Open as i32,
                ..Default::default()
            },
            Some(NetworkPolicy::BlockAll) => pb::NetworkAccess {
                network_access_type: pb::network_access::NetworkAccessType::Blocked as i32,
                ..Default::default()
            },
            Some(NetworkPolicy::AllowList { domains, .. }) if !domains.is_empty() => {
                return Err(Error::unsupported(NAME, "domain allowlists for egress"));
            }
            Some(NetworkPolicy::AllowList { cidrs, .. }) if cidrs.is_empty() => pb::NetworkAccess {
                network_access_type: pb::network_access::NetworkAccessType::Blocked as i32,
                ..Default::default()
            },
            Some(NetworkPolicy::AllowList { cidrs, .. }) => pb::NetworkAccess {
                network_access_type: pb::network_access::NetworkAccessType::Allowlist as i32,
                allowed_cidrs: cidrs.clone(),
                ..Default::default()
            },
        };
        Ok(pb::Sandbox {
            entrypoint_args: spec.entrypoint.clone(),
            image_id,
            secret_ids,
            resources: Some(pb::Resources {
                milli_cpu,
                // Request and limit are equal, so the limits are enforced.
                milli_cpu_max: milli_cpu,
                memory_mb,
                memory_mb_max: memory_mb,
                gpu_config: Some(match spec.gpu {
                    Some(gpu) => pb::GpuConfig {
                        count: gpu.count,
                        gpu_type: gpu.kind.as_str().to_owned(),
                        ..Default::default()
                    },
                    None => pb::GpuConfig::default(),
                }),
                ..Default::default()
            }),
            timeout_secs: lifetime_secs as u32,
            idle_timeout_secs,
            workdir: spec.workdir.clone(),
            volume_mounts,
            scheduler_placement: spec.region.as_ref().map(|region| pb::SchedulerPlacement {
                regions: vec![region.clone()],
                ..Default::default()
            }),
            open_ports_oneof: Some(pb::sandbox::OpenPortsOneof::OpenPorts(pb::PortSpecs {
                ports: spec
                    .ports
                    .iter()
                    .map(|port| pb::PortSpec {
                        port: u32::from(*port),
                        unencrypted: false,
                        tunnel_type: None,
                    })
                    .collect(),
            })),
            network_access: Some(network_access),
            name: spec.name.clone(),
            ..Default::default()
        })
    }

    /// Where the sandbox's task stands, polling until it is scheduled or `timeout` passes.
    async fn wait_for_task(&self, id: &str, timeout: Duration) -> Result<Task> {
        let deadline = Instant::now() + timeout;
        loop {
            let request = pb::SandboxGetTaskIdRequest {
                sandbox_id: id.to_owned(),
                ..Default::default()
            };
            let response = self
                .control_plane
                .unary(request, |mut stub, request| async move {
                    stub.sandbox_get_task_id(request).await
                })
                .await
                .map_err(|status| from_status(&status, &subject(id)))?;
            if let Some(task_id) = response.task_id.filter(|task_id| !task_id.is_empty()) {
                return Ok(Task::Running(task_id));
            }
            if let Some(result) = response.task_result {
                return Ok(Task::Finished(result));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    operation: format!("waiting for {} to be scheduled", subject(id)),
                    timeout,
                });
            }
            tokio::time::sleep(TASK_POLL_INTERVAL).await;
        }
    }

    /// The command router of a running sandbox, opened once and cached.
    async fn router(&self, id: &SandboxId) -> Result<Arc<Router>> {
        if !is_v1_sandbox_id(id.as_str()) {
            return Err(Error::sandbox_not_found(id));
        }
        if let Some(router) = self.known(id.as_str()).router {
            return Ok(router);
        }
        let task_id = match self
            .wait_for_task(id.as_str(), self.settings.schedule_timeout)
            .await?
        {
            Task::Running(task_id) => task_id,
            Task::Finished(_) => return Err(Error::sandbox_not_found(id)),
        };
        let router = Arc::new(
            self.control_plane
                .router(&task_id)
                .await
                .map_err(|status| from_status(&status, &subject(id.as_str())))?,
        );
        self.remember(id.as_str(), |known| {
            known.router = Some(Arc::clone(&router))
        });
        Ok(router)
    }

    /// The sandbox's result when it has finished; `None` while it runs. Unknown ids are
    /// [`Error::NotFound`].
    async fn poll(&self, id: &str) -> Result<Option<pb::GenericResult>> {
        let request = pb::SandboxWaitRequest {
            sandbox_id: id.to_owned(),
            timeout: 0.0,
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_wait(request).await
            })
            .await
            .map_err(|status| from_status(&status, &subject(id)))?;
        Ok(response.result.filter(|result| is_finished(Some(result))))
    }

    /// Whether the sandbox has ended or never existed; asked after a failure, so an
    /// operation on a vanished sandbox reports it as not found.
    async fn gone(&self, id: &SandboxId) -> bool {
        let gone = matches!(
            self.poll(id.as_str()).await,
            Ok(Some(_)) | Err(Error::NotFound { .. })
        );
        if gone {
            self.forget(id.as_str());
        }
        gone
    }

    /// `error` from an operation through the router, or not found when the sandbox ended.
    async fn router_failure(&self, id: &SandboxId, error: Error) -> Error {
        if self.gone(id).await {
            Error::sandbox_not_found(id)
        } else {
            error
        }
    }

    async fn files(&self, id: &SandboxId) -> Result<Files> {
        let router = self.router(id).await?;
        Ok(Files {
            router,
            workdir: self.workdir(id),
        })
    }

    fn workdir(&self, id: &SandboxId) -> String {
        self.known(id.as_str())
            .workdir
            .unwrap_or_else(|| "/".to_owned())
    }

    /// Runs a file operation, mapping a vanished sandbox to not found.
    async fn with_files<T, F, Fut>(&self, id: &SandboxId, operation: F) -> Result<T>
    where
        F: FnOnce(Files) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let files = self.files(id).await?;
        match operation(files).await {
            Ok(value) => Ok(value),
            // A file error is the file's; anything else may be the sandbox ending.
            Err(error @ (Error::FileOperation { .. } | Error::InvalidSpec { .. })) => Err(error),
            Err(error) => Err(self.router_failure(id, error).await),
        }
    }

    /// Waits after `SandboxCreate` until commands can run, then writes the initial files.
    async fn finish_create(&self, id: &SandboxId, spec: &SandboxSpec) -> Result<()> {
        match self
            .wait_for_task(id.as_str(), self.settings.schedule_timeout)
            .await?
        {
            Task::Running(_) => {}
            Task::Finished(result) => {
                let state = state_of_result(&result);
                return Err(Error::CreationFailed {
                    message: format!(
                        "{} ended before it could run commands ({})",
                        subject(id.as_str()),
                        state.map_or_else(|| "no result".to_owned(), |s| s.to_string())
                    ),
                });
            }
        }
        for file in &spec.files {
            self.write_file(id, &file.path, Bytes::from(file.contents.clone()))
                .await?;
        }
        Ok(())
    }

    /// Converts Modal's listing entry into sandkit's.
    fn info_from(&self, entry: pb::SandboxInfo) -> SandboxInfo {
        let task = entry.task_info.unwrap_or_default();
        let state =
            task.result
                .as_ref()
                .and_then(state_of_result)
                .unwrap_or(if task.id.is_empty() {
                    SandboxState::Provisioning
                } else {
                    SandboxState::Running
                });
        let tags: BTreeMap<String, String> = entry
            .tags
            .into_iter()
            .map(|tag| (tag.tag_name, tag.tag_value))
            .collect();
        // sandkit's own tags agree with each other to the second; prefer them.
        let created_at_unix_secs = tags
            .get(TAG_CREATED_AT)
            .and_then(|value| value.parse().ok())
            .unwrap_or(entry.created_at.max(0.0) as u64);
        let expires_at_unix_secs =
            sandkit_core::ownership::expires_at(&tags)
                .or((entry.timeout_secs > 0 && created_at_unix_secs > 0)
                    .then(|| created_at_unix_secs + u64::from(entry.timeout_secs)));
        let resources = entry.resource_info.unwrap_or_default();
        let gpu = task.gpu_config.and_then(|gpu| {
            let kind = gpu.gpu_type.parse::<GpuKind>().ok()?;
            Some(GpuRequest {
                kind,
                count: gpu.count.max(1),
            })
        });
        let workdir = self.workdir(&SandboxId(entry.id.clone()));
        let mut info = SandboxInfo {
            id: SandboxId(entry.id),
            provider: NAME.to_owned(),
            name: Some(entry.name).filter(|name| !name.is_empty()),
            state,
            tags,
            created_at_unix_secs,
            expires_at_unix_secs,
            workdir,
            cpu: resources
                .milli_cpu
                .map(|value| value.value)
                .filter(|milli| *milli > 0)
                .map(|milli| f64::from(milli) / 1000.0),
            memory_mib: resources
                .memory_mb
                .map(|value| u64::from(value.value))
                .filter(|mib| *mib > 0),
            gpu,
            region: entry.regions.into_iter().next(),
        };
        self.fill_from_spec(&mut info);
        info
    }

    /// Fills what Modal did not report from the spec this instance created the sandbox with.
    fn fill_from_spec(&self, info: &mut SandboxInfo) {
        let Some(placement) = self.known(info.id.as_str()).placement else {
            return;
        };
        if info.name.is_none() {
            info.name = placement.name;
        }
        if info.cpu.is_none() {
            info.cpu = placement.cpu;
        }
        if info.memory_mib.is_none() {
            info.memory_mib = placement.memory_mib;
        }
        if info.gpu.is_none() {
            info.gpu = placement.gpu;
        }
        if info.region.is_none() {
            info.region = placement.region;
        }
    }

    /// One page of `SandboxList`.
    async fn list_page(
        &self,
        tags: &BTreeMap<String, String>,
        include_finished: bool,
        before_timestamp: f64,
    ) -> Result<Vec<pb::SandboxInfo>> {
        let request = pb::SandboxListRequest {
            app_id: self.app_id().await?,
            before_timestamp,
            environment_name: self.settings.environment.clone(),
            include_finished,
            tags: tags
                .iter()
                .map(|(name, value)| pb::SandboxTag {
                    tag_name: name.clone(),
                    tag_value: value.clone(),
                })
                .collect(),
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_list(request).await
            })
            .await
            .map_err(|status| from_status(&status, "sandbox list"))?;
        Ok(response.sandboxes)
    }

    /// Every sandbox matching, following `before_timestamp` pages until an empty one.
    async fn list_all(
        &self,
        tags: &BTreeMap<String, String>,
        include_finished: bool,
        mut stop: impl FnMut(&pb::SandboxInfo) -> bool,
    ) -> Result<Vec<pb::SandboxInfo>> {
        let mut all = Vec::new();
        let mut seen = HashSet::new();
        let mut before = 0.0;
        loop {
            let page = self.list_page(tags, include_finished, before).await?;
            let Some(last) = page.last() else { break };
            let next = last.created_at;
            let mut progressed = false;
            for entry in page {
                if seen.insert(entry.id.clone()) {
                    progressed = true;
                    let done = stop(&entry);
                    all.push(entry);
                    if done {
                        return Ok(all);
                    }
                }
            }
            // A server that repeats a page would loop forever; the cursor must move.
            if !progressed || next <= 0.0 {
                break;
            }
            before = next;
        }
        Ok(all)
    }

    /// Replaces the tags of a sandbox (Modal's `SandboxTagsSet`); an empty map clears them.
    pub async fn set_tags(&self, id: &SandboxId, tags: &BTreeMap<String, String>) -> Result<()> {
        if !is_v1_sandbox_id(id.as_str()) {
            return Err(Error::sandbox_not_found(id));
        }
        let request = pb::SandboxTagsSetRequest {
            environment_name: self.settings.environment.clone(),
            sandbox_id: id.0.clone(),
            tags: tags
                .iter()
                .map(|(name, value)| pb::SandboxTag {
                    tag_name: name.clone(),
                    tag_value: value.clone(),
                })
                .collect(),
        };
        self.control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_tags_set(request).await
            })
            .await
            .map(drop)
            .map_err(|status| from_status(&status, &subject(id.as_str())))
    }

    /// The tags of a sandbox (Modal's `SandboxTagsGet`).
    pub async fn tags(&self, id: &SandboxId) -> Result<BTreeMap<String, String>> {
        if !is_v1_sandbox_id(id.as_str()) {
            return Err(Error::sandbox_not_found(id));
        }
        let request = pb::SandboxTagsGetRequest {
            sandbox_id: id.0.clone(),
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_tags_get(request).await
            })
            .await
            .map_err(|status| from_status(&status, &subject(id.as_str())))?;
        Ok(response
            .tags
            .into_iter()
            .map(|tag| (tag.tag_name, tag.tag_value))
            .collect())
    }
}

#[async_trait]
impl SandboxProvider for ModalProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo> {
        spec.validate_with_ownership_tags()?;
        self.check_provider_options(&spec.provider_options)?;
        let app_id = self.app_id().await?;
        let (image_id, image_workdir) = self.image(&app_id, spec).await?;
        let secret_ids = self.environment_secret(spec).await?.into_iter().collect();
        let volume_mounts = self.volume_mounts(spec).await?;
        let definition = self.definition(spec, image_id, secret_ids, volume_mounts)?;
        let lifetime_secs = u64::from(definition.timeout_secs);
        let request = pb::SandboxCreateRequest {
            app_id,
            definition: Some(definition),
            tags: spec
                .tags
                .iter()
                .map(|(name, value)| pb::SandboxTag {
                    tag_name: name.clone(),
                    tag_value: value.clone(),
                })
                .collect(),
            ..Default::default()
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_create(request).await
            })
            .await
            .map_err(|status| match (status.code(), &spec.name) {
                (Code::AlreadyExists, Some(name)) => Error::AlreadyExists {
                    what: format!("sandbox named `{name}` in app `{}`", self.settings.app_name),
                },
                _ => from_status(&status, "the new sandbox"),
            })?;
        let id = SandboxId(response.sandbox_id);
        let workdir = spec
            .workdir
            .clone()
            .or(image_workdir)
            .filter(|workdir| workdir.starts_with('/'))
            .unwrap_or_else(|| "/".to_owned());
        self.remember(id.as_str(), |known| {
            known.workdir = Some(workdir.clone());
            known.placement = Some(Placement {
                name: spec.name.clone(),
                cpu: spec.cpu,
                memory_mib: spec.memory_mib,
                gpu: spec.gpu,
                region: spec.region.clone(),
            });
        });
        // From here on a failure must not leave the sandbox running.
        if let Err(error) = self.finish_create(&id, spec).await {
            if let Err(cleanup) = self.terminate(&id).await {
                tracing::warn!(sandbox = %id, error = %cleanup, "terminating a sandbox whose creation failed");
            }
            return Err(error);
        }
        let created_at_unix_secs = spec
            .tags
            .get(TAG_CREATED_AT)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(unix_now);
        Ok(SandboxInfo {
            id,
            provider: NAME.to_owned(),
            name: spec.name.clone(),
            state: SandboxState::Running,
            tags: spec.tags.clone(),
            created_at_unix_secs,
            expires_at_unix_secs: Some(created_at_unix_secs + lifetime_secs),
            workdir,
            cpu: spec.cpu,
            memory_mib: spec.memory_mib,
            gpu: spec.gpu,
            region: spec.region.clone(),
        })
    }

    async fn info(&self, id: &SandboxId) -> Result<SandboxInfo> {
        if !is_v1_sandbox_id(id.as_str()) {
            return Err(Error::sandbox_not_found(id));
        }
        if self.poll(id.as_str()).await?.is_some() {
            return Err(Error::sandbox_not_found(id));
        }
        let tags = self.tags(id).await?;
        // The listing carries creation time, resources and the task; filtering by the
        // sandbox's own tags keeps the search short.
        let found = self
            .list_all(&tags, false, |entry| entry.id == id.as_str())
            .await?
            .into_iter()
            .find(|entry| entry.id == id.as_str());
        let mut info = match found {
            Some(entry) => self.info_from(entry),
            None => {
                let running = matches!(
                    self.wait_for_task(id.as_str(), Duration::ZERO).await,
                    Ok(Task::Running(_))
                );
                let created_at_unix_secs = tags
                    .get(TAG_CREATED_AT)
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0);
                SandboxInfo {
                    id: id.clone(),
                    provider: NAME.to_owned(),
                    name: None,
                    state: if running {
                        SandboxState::Running
                    } else {
                        SandboxState::Provisioning
                    },
                    tags: BTreeMap::new(),
                    created_at_unix_secs,
                    expires_at_unix_secs: sandkit_core::ownership::expires_at(&tags),
                    workdir: self.workdir(id),
                    cpu: None,
                    memory_mib: None,
                    gpu: None,
                    region: None,
                }
            }
        };
        info.tags = tags;
        self.fill_from_spec(&mut info);
        Ok(info)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>> {
        let entries = self
            .list_all(&filter.tags, filter.include_finished, |_| false)
            .await?;
        Ok(entries
            .into_iter()
            .map(|entry| self.info_from(entry))
            .filter(|info| filter.matches(info))
            .collect())
    }

    async fn exec(&self, id: &SandboxId, request: ExecRequest) -> Result<ExecProcess> {
        request.validate()?;
        if request.pty {
            return Err(Error::unsupported(NAME, "pseudo-terminals"));
        }
        if request.user.is_some() {
            return Err(Error::unsupported(NAME, "running commands as another user"));
        }
        let router = self.router(id).await?;
        // The working directory goes with every command, so commands start in the
        // directory `info` reports whatever the server's default is.
        let known_workdir = self.known(id.as_str()).workdir;
        let workdir = match (&request.cwd, known_workdir) {
            (Some(cwd), _) if cwd.starts_with('/') => Some(cwd.clone()),
            (Some(cwd), base) => Some(format!(
                "{}/{cwd}",
                base.as_deref().unwrap_or("/").trim_end_matches('/')
            )),
            (None, base) => base,
        };
        let start = Start {
            argv: request.argv.clone(),
            workdir,
            env: request.env.clone(),
            timeout: request.timeout,
        };
        let exec = match exec::start(router, start).await {
            Ok(exec) => exec,
            Err(status) => return Err(self.exec_start_failure(id, &request, &status).await),
        };
        let stdin = if request.stdin {
            Some(exec.stdin())
        } else {
            exec.close_stdin();
            None
        };
        Ok(ExecProcess::new(
            &request,
            exec.output(TaskExecStdioFileDescriptor::Stdout),
            exec.output(TaskExecStdioFileDescriptor::Stderr),
            stdin,
            Box::new(Control::new(exec)),
        ))
    }

    async fn read_file(&self, id: &SandboxId, path: &str) -> Result<Bytes> {
        self.with_files(id, |files| async move { files.read(path).await })
            .await
    }

    async fn write_file(&self, id: &SandboxId, path: &str, contents: Bytes) -> Result<()> {
        self.with_files(id, |files| async move { files.write(path, contents).await })
            .await
    }

    async fn read_file_stream(&self, id: &SandboxId, path: &str) -> Result<ByteStream> {
        self.with_files(id, |files| async move { files.read_stream(path).await })
            .await
    }

    async fn write_file_stream(
        &self,
        id: &SandboxId,
        path: &str,
        contents: ByteStream,
    ) -> Result<()> {
        self.with_files(id, |files| async move {
            files.write_stream(path, contents).await
        })
        .await
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileStat> {
        self.with_files(id, |files| async move { files.stat(path).await })
            .await
    }

    async fn list_dir(&self, id: &SandboxId, path: &str) -> Result<Vec<DirEntry>> {
        self.with_files(id, |files| async move { files.list(path).await })
            .await
    }

    async fn make_dir(&self, id: &SandboxId, path: &str) -> Result<()> {
        self.with_files(id, |files| async move { files.make_dir(path).await })
            .await
    }

    async fn remove(&self, id: &SandboxId, path: &str, recursive: bool) -> Result<()> {
        self.with_files(
            id,
            |files| async move { files.remove(path, recursive).await },
        )
        .await
    }

    async fn terminate(&self, id: &SandboxId) -> Result<()> {
        if !is_v1_sandbox_id(id.as_str()) {
            return Ok(());
        }
        self.forget(id.as_str());
        let request = pb::SandboxTerminateRequest {
            sandbox_id: id.0.clone(),
        };
        match self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_terminate(request).await
            })
            .await
        {
            Ok(response) if is_finished(response.existing_result.as_ref()) => return Ok(()),
            Ok(_) => {}
            Err(status) if status.code() == Code::NotFound => return Ok(()),
            Err(status) => return Err(from_status(&status, &subject(id.as_str()))),
        }
        // Termination is asynchronous at Modal; wait until it is reported, so the sandbox
        // is really gone when this returns.
        let deadline = Instant::now() + TERMINATE_WAIT;
        while Instant::now() < deadline {
            let request = pb::SandboxWaitRequest {
                sandbox_id: id.0.clone(),
                timeout: 10.0,
            };
            match self
                .control_plane
                .unary(request, |mut stub, mut request| async move {
                    request.set_timeout(Duration::from_secs(20));
                    stub.sandbox_wait(request).await
                })
                .await
            {
                Ok(response) if is_finished(response.result.as_ref()) => return Ok(()),
                Ok(_) => {}
                Err(status) if status.code() == Code::NotFound => return Ok(()),
                Err(status) => return Err(from_status(&status, &subject(id.as_str()))),
            }
        }
        Err(Error::Timeout {
            operation: format!("terminating {}", subject(id.as_str())),
            timeout: TERMINATE_WAIT,
        })
    }

    async fn snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        let router = self.router(id).await?;
        let request = TaskSnapshotFilesystemRequest {
            task_id: router.task_id().to_owned(),
            snapshot_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        // A snapshot attempt that timed out may still be running; retrying it would only
        // queue another behind it.
        let policy = RetryPolicy {
            retryable: &[Code::Unavailable, Code::Internal, Code::Unknown],
            ..RetryPolicy::router(self.settings.max_throttle_wait)
        };
        let started = Instant::now();
        let result = router
            .unary_with(
                &policy,
                request,
                Some(SNAPSHOT_TIMEOUT),
                |mut stub, request| async move { stub.task_snapshot_filesystem(request).await },
            )
            .await;
        let response = match result {
            Ok(response) => response,
            Err(status) if status.code() == Code::DeadlineExceeded => {
                return Err(Error::Timeout {
                    operation: format!("snapshotting {}", subject(id.as_str())),
                    timeout: started.elapsed().max(SNAPSHOT_TIMEOUT),
                });
            }
            Err(status) => {
                let error = from_status(&status, &subject(id.as_str()));
                return Err(self.router_failure(id, error).await);
            }
        };
        if response.image_id.is_empty() {
            return Err(Error::provider(NAME, "the snapshot returned no image id"));
        }
        Ok(Snapshot {
            id: response.image_id,
            source: id.clone(),
        })
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        let request = pb::ImageDeleteRequest {
            image_id: snapshot_id.to_owned(),
        };
        match self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.image_delete(request).await
            })
            .await
        {
            Ok(_) => Ok(()),
            // An unknown (or malformed, hence unknown) id is already gone.
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                Ok(())
            }
            Err(status) => Err(from_status(&status, &format!("snapshot `{snapshot_id}`"))),
        }
    }

    async fn tunnels(&self, id: &SandboxId) -> Result<Vec<Tunnel>> {
        if !is_v1_sandbox_id(id.as_str()) {
            return Err(Error::sandbox_not_found(id));
        }
        let request = pb::SandboxGetTunnelsRequest {
            sandbox_id: id.0.clone(),
            timeout: 50.0,
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, mut request| async move {
                request.set_timeout(Duration::from_secs(70));
                stub.sandbox_get_tunnels(request).await
            })
            .await
            .map_err(|status| from_status(&status, &subject(id.as_str())))?;
        if response
            .result
            .as_ref()
            .is_some_and(|result| result.status == GenericStatus::Timeout as i32)
        {
            return Err(Error::Timeout {
                operation: format!("waiting for the tunnels of {}", subject(id.as_str())),
                timeout: Duration::from_secs(50),
            });
        }
        let mut tunnels: Vec<Tunnel> = response
            .tunnels
            .into_iter()
            .filter_map(|tunnel| {
                let port = u16::try_from(tunnel.container_port).ok()?;
                let url = match (tunnel.unencrypted_host, tunnel.unencrypted_port) {
                    (Some(host), Some(port)) if tunnel.host.is_empty() => format!("{host}:{port}"),
                    _ if tunnel.port == 443 || tunnel.port == 0 => {
                        format!("https://{}", tunnel.host)
                    }
                    _ => format!("https://{}:{}", tunnel.host, tunnel.port),
                };
                Some(Tunnel { port, url })
            })
            .collect();
        tunnels.sort_by_key(|tunnel| tunnel.port);
        Ok(tunnels)
    }

    async fn find_by_name(&self, name: &str) -> Result<SandboxInfo> {
        let request = pb::SandboxGetFromNameRequest {
            sandbox_name: name.to_owned(),
            environment_name: self.settings.environment.clone(),
            app_name: self.settings.app_name.clone(),
            include_terminated: false,
        };
        let response = self
            .control_plane
            .unary(request, |mut stub, request| async move {
                stub.sandbox_get_from_name(request).await
            })
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => Error::NotFound {
                    what: format!("sandbox named `{name}` in app `{}`", self.settings.app_name),
                },
                _ => from_status(&status, &format!("sandbox named `{name}`")),
            })?;
        let mut info = self.info(&SandboxId(response.sandbox_id)).await?;
        info.name.get_or_insert_with(|| name.to_owned());
        Ok(info)
    }
}

impl ModalProvider {
    /// Why a command did not start: the sandbox is gone, or the program could not run.
    async fn exec_start_failure(
        &self,
        id: &SandboxId,
        request: &ExecRequest,
        status: &Status,
    ) -> Error {
        if self.gone(id).await {
            return Error::sandbox_not_found(id);
        }
        match status.code() {
            Code::NotFound
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::PermissionDenied => Error::ExecFailed {
                program: request.argv.first().cloned().unwrap_or_default(),
                reason: status.message().to_owned(),
            },
            _ => from_status(status, &subject(id.as_str())),
        }
    }
}

impl ProviderFactory for ModalProvider {
    const NAME: &'static str = NAME;
    const SUMMARY: &'static str =
        "Modal Sandboxes (gVisor, GPUs, snapshots) through Modal's gRPC API";
    type Config = ModalConfig;

    fn static_capabilities() -> Capabilities {
        capabilities()
    }

    async fn from_config(config: ModalConfig) -> Result<Self> {
        let settings = config.resolve()?;
        Self::new(settings, config.regions.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_ids_are_recognised() {
        assert!(is_v1_sandbox_id("sb-nGEijt9WbBMlGrsPH9FOaC"));
        assert!(!is_v1_sandbox_id("sb-short"));
        assert!(!is_v1_sandbox_id("sb-nGEijt9WbBMlGrsPH9FOa-"));
        assert!(!is_v1_sandbox_id("ta-nGEijt9WbBMlGrsPH9FOaC"));
    }

    #[test]
    fn results_map_to_states() {
        let result = |status: GenericStatus, exitcode| pb::GenericResult {
            status: status as i32,
            exitcode,
            ..Default::default()
        };
        assert_eq!(
            state_of_result(&result(GenericStatus::Unspecified, 0)),
            None
        );
        assert_eq!(
            state_of_result(&result(GenericStatus::Success, 3)),
            Some(SandboxState::Terminated { exit_code: Some(3) })
        );
        assert_eq!(
            state_of_result(&result(GenericStatus::Timeout, 0)),
            Some(SandboxState::Terminated {
                exit_code: Some(124)
            })
        );
        assert_eq!(
            state_of_result(&result(GenericStatus::Terminated, 0)),
            Some(SandboxState::Terminated {
                exit_code: Some(137)
            })
        );
        assert!(matches!(
            state_of_result(&result(GenericStatus::InitFailure, 0)),
            Some(SandboxState::Failed { .. })
        ));
    }

    #[test]
    fn capabilities_match_the_issue() {
        let caps = capabilities();
        assert_eq!(caps.max_lifetime_secs, Some(86_400));
        assert_eq!(caps.default_lifetime_secs, Some(300));
        assert!(caps.offers_gpu(GpuKind::H100, 8));
        assert!(!caps.offers_gpu(GpuKind::B200, 1));
        assert_eq!(caps.isolation, Isolation::UserSpaceKernel);
        let prices = caps.price_sheet.unwrap();
        assert_eq!(prices.gpu_second[&GpuKind::A100_40GB], 0.001_036);
    }
}
