//! The emulator: Modal's control plane and command router served over any sandkit
//! provider (the "backend"). Sandboxes, execs and files go to the backend; what Modal keeps
//! on its side (apps, names, tags, images, secrets, lifetimes, results) is kept here.
//!
//! Limits, all reported to clients as errors rather than pretended:
//! - images: registry images run as the backend's default image unless
//!   [`RegistryImages::Pull`] is chosen and the backend pulls images; filesystem snapshots
//!   are the backend's snapshots; build steps are not run; an image's working directory is
//!   the backend's, learned once per image;
//! - the entrypoint's own stdout/stderr/stdin (`SandboxGetLogs`, `SandboxStdinWrite`) are
//!   not reachable through the provider API: logs end at once, stdin is unimplemented;
//! - CPU and memory requests are passed on when the backend enforces limits and only
//!   recorded otherwise; GPUs, PTY entrypoints and anything else the backend cannot do fail
//!   with the backend's `Unsupported` error as `UNIMPLEMENTED`;
//! - the entrypoint's streams of V2 sandboxes (`SandboxStdioReadV2`, `SandboxStdinWriteV2`)
//!   are `UNIMPLEMENTED`: as with V1's logs and stdin, the provider API does not reach
//!   them.
//!
//! V1 and V2 sandboxes are the same backend sandboxes behind differently shaped ids: clients
//! pick V1 or V2 calls by the shape of the id, and each call family finds only its own
//! sandboxes, except `SandboxListV2`, which lists both (as Modal's does).

mod control;
mod entrypoint;
pub mod exec;
pub mod fs_tools;
mod headers;
mod images;
mod lifecycle;
mod router;
mod spec;
mod v2;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{Error as CoreError, SandboxId, SandboxProvider};
use sandkit_modal_proto::client::{
    GenericResult, SandboxTag, generic_result::GenericStatus,
    modal_client_server::ModalClientServer,
};
use sandkit_modal_proto::task_command_router::task_command_router_server::TaskCommandRouterServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::service::interceptor::InterceptedService;

use crate::codec::MAX_MESSAGE_BYTES;
use crate::error::Result;
use crate::faults::{FaultConfig, FaultLayer};
use crate::ids;
use crate::listener::{self, ServerHandle};

use exec::ExecSession;

/// How often the emulator asks the backend whether a sandbox's main process ended.
const MONITOR_INTERVAL: Duration = Duration::from_millis(500);
/// The image builder version announced to clients.
pub const IMAGE_BUILDER_VERSION: &str = "2025.06";
/// The subject of the auth tokens `AuthTokenGet` hands out (router JWTs name a task).
pub(crate) const AUTH_TOKEN_SUBJECT: &str = "client";

/// The scheme of the router URL handed to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterScheme {
    /// `https://127.0.0.1:PORT`, as Modal's clients expect; the port answers both TLS
    /// (Python) and plaintext (Go, JS, sandkit).
    #[default]
    Https,
    /// `http://127.0.0.1:PORT`, which only localhost clients accept.
    Http,
}

impl RouterScheme {
    fn as_str(self) -> &'static str {
        match self {
            RouterScheme::Https => "https",
            RouterScheme::Http => "http",
        }
    }
}

impl std::str::FromStr for RouterScheme {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "https" => Ok(RouterScheme::Https),
            "http" => Ok(RouterScheme::Http),
            other => Err(format!(
                "router scheme must be `https` or `http`, got `{other}`"
            )),
        }
    }
}

/// What a sandbox whose Modal image starts from a registry tag (`FROM debian:bookworm-slim`,
/// Modal's `debian_slim()`, ...) runs at the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistryImages {
    /// The backend's default image, whatever the tag (the tag is only recorded): no network
    /// is needed, so Modal code runs offline. Local processes run the host's system
    /// directories (read-only under bubblewrap); Docker runs its configured default image.
    #[default]
    BackendDefault,
    /// The tag itself, pulled by the backend (`image_registry`); a backend that cannot
    /// pull images runs its default image.
    Pull,
}

impl RegistryImages {
    fn as_str(self) -> &'static str {
        match self {
            RegistryImages::BackendDefault => "default",
            RegistryImages::Pull => "pull",
        }
    }
}

impl std::fmt::Display for RegistryImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RegistryImages {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "default" => Ok(RegistryImages::BackendDefault),
            "pull" => Ok(RegistryImages::Pull),
            other => Err(format!(
                "registry images must be `default` or `pull`, got `{other}`"
            )),
        }
    }
}

/// The token id and secret the emulator insists on; without them any are accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `MODAL_TOKEN_ID`.
    pub token_id: String,
    /// `MODAL_TOKEN_SECRET`.
    pub token_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token_id", &self.token_id)
            .field("token_secret", &"[redacted]")
            .finish()
    }
}

/// How the emulator runs.
#[derive(Clone)]
pub struct EmulatorOptions {
    /// The provider sandboxes really run on, usually wrapped in [`layers::standard`].
    pub backend: Arc<dyn SandboxProvider>,
    /// Faults to inject.
    pub faults: FaultConfig,
    /// Scheme of the router URL handed out.
    pub router_scheme: RouterScheme,
    /// Sandboxes per `SandboxList` page (small, so clients really page).
    pub list_page_size: usize,
    /// Credentials to insist on.
    pub credentials: Option<Credentials>,
    /// Lifetime of the JWTs handed out (auth tokens and router tokens).
    pub jwt_lifetime: Duration,
    /// What registry-tag images run as.
    pub registry_images: RegistryImages,
    /// How long after its create a V1 sandbox's task id stays unavailable
    /// (`SandboxGetTaskId` answers without one), as while Modal schedules it.
    pub task_start_delay: Duration,
    /// How long after its create a sandbox's command router answers `UNAVAILABLE`, as a
    /// router whose task is still starting on its worker refuses connections.
    pub router_ready_delay: Duration,
    /// Serve TLS with a certificate from a fresh CA, and write the CA's certificate (PEM)
    /// to this file for clients that verify the server (sandkit's `ca_file`). Without it
    /// the certificate is self-signed. Plaintext is served on the same port either way.
    pub tls_ca_file: Option<PathBuf>,
}

impl EmulatorOptions {
    /// Options with defaults over `backend`.
    pub fn new(backend: Arc<dyn SandboxProvider>) -> Self {
        Self {
            backend,
            faults: FaultConfig::default(),
            router_scheme: RouterScheme::default(),
            list_page_size: 10,
            credentials: None,
            jwt_lifetime: Duration::from_secs(3600),
            registry_images: RegistryImages::default(),
            task_start_delay: Duration::ZERO,
            router_ready_delay: Duration::ZERO,
            tls_ca_file: None,
        }
    }
}

impl std::fmt::Debug for EmulatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorOptions")
            .field("backend", &self.backend.name())
            .field("faults", &self.faults)
            .field("router_scheme", &self.router_scheme)
            .field("list_page_size", &self.list_page_size)
            .field("credentials", &self.credentials)
            .field("registry_images", &self.registry_images)
            .field("task_start_delay", &self.task_start_delay)
            .field("router_ready_delay", &self.router_ready_delay)
            .finish_non_exhaustive()
    }
}

/// Builds the registered provider `name` from its JSON configuration (`null` = defaults)
/// and wraps it in sandkit's standard layers. The provider's crate must be linked.
pub async fn backend(
    name: &str,
    config: serde_json::Value,
) -> std::result::Result<Arc<dyn SandboxProvider>, CoreError> {
    let registration = sandkit_core::registry::find(name)?;
    let bare = registration.build(config).await?;
    Ok(layers::standard(bare, LayerOptions::default()))
}

/// Serves the emulator on `addr` (port 0 picks a free port; read it from the handle).
/// Shutting the handle down terminates every sandbox still running and deletes the
/// snapshots it took.
pub async fn serve_emulator(addr: SocketAddr, options: EmulatorOptions) -> Result<ServerHandle> {
    options.faults.validate()?;
    let listener = listener::bind(addr).await?;
    let dial = listener::dial_addr(&listener)?;
    let router_url = format!("{}://{dial}", options.router_scheme.as_str());
    let emulator = Emulator(Arc::new(Shared {
        backend: Arc::clone(&options.backend),
        router_url,
        list_page_size: options.list_page_size.max(1),
        credentials: options.credentials.clone(),
        jwt_lifetime: options.jwt_lifetime,
        registry_images: options.registry_images,
        task_start_delay: options.task_start_delay,
        router_ready_delay: options.router_ready_delay,
        state: Mutex::new(State::default()),
        issued_jwts: Mutex::new(HashSet::new()),
        image_workdirs: Mutex::new(HashMap::new()),
    }));
    let routes = tonic::service::Routes::new(InterceptedService::new(
        ModalClientServer::new(emulator.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        headers::check_client_headers,
    ))
    .add_service(
        TaskCommandRouterServer::new(emulator.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    );
    let service = tower::Layer::layer(&FaultLayer::new(options.faults.clone()), routes);
    let cleanup = Box::pin(async move { emulator.cleanup().await });
    listener::serve(
        listener,
        service,
        Some(cleanup),
        options.tls_ca_file.as_deref(),
    )
    .await
}

/// Where a Modal image's filesystem comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ImageSource {
    /// The backend's default image; `registry` is the tag the client asked for.
    Default { registry: Option<String> },
    /// A backend snapshot; `workdir` is the one of the sandbox it was taken from.
    Snapshot {
        backend_id: String,
        workdir: Option<String>,
    },
}

/// Which family of Modal's sandbox calls a sandbox is managed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxVersion {
    /// `SandboxCreate`, `SandboxWait`, ...: ids `sb-` + 22 base62.
    V1,
    /// `SandboxCreateV2`, `SandboxWaitV2`, ...: longer ids, task ids ending in `V`.
    V2,
}

impl SandboxVersion {
    /// The suffix of the call family's RPC names, for messages.
    pub fn rpc_suffix(self) -> &'static str {
        match self {
            SandboxVersion::V1 => "",
            SandboxVersion::V2 => "V2",
        }
    }
}

/// A sandbox as Modal knows it.
pub(crate) struct SandboxRecord {
    pub id: String,
    pub version: SandboxVersion,
    /// What V2 clients send back as `x-modal-sandbox-token` (V2 sandboxes only).
    pub sandbox_token: Option<String>,
    pub task_id: String,
    pub app_id: String,
    /// Set at creation, or later once by `SandboxSetName`.
    pub name: Mutex<Option<String>>,
    pub image_id: String,
    pub backend_id: SandboxId,
    pub created_at: f64,
    pub timeout_secs: u32,
    pub idle_timeout_secs: Option<u32>,
    pub regions: Vec<String>,
    pub has_ports: bool,
    /// Where Modal's `/` lies at the backend, for backends whose file operations take
    /// paths inside a private root (local-process); `None` when paths are native.
    pub path_root: Option<String>,
    /// The working directory commands start in, as a Modal path.
    pub workdir: String,
    /// The idle timeout the emulator enforces itself (the backend has none).
    pub emulated_idle_timeout: Option<u32>,
    /// Last activity (an exec starting or ending, stdin written), for the idle timeout.
    pub activity: Mutex<std::time::Instant>,
    /// When it was created, for the task-start and router-ready delays.
    pub created: std::time::Instant,
    /// Commands running now; a sandbox running one is never idle.
    pub running_execs: std::sync::atomic::AtomicUsize,
    pub tags: Mutex<Vec<SandboxTag>>,
    pub result: watch::Sender<Option<GenericResult>>,
    pub finished_at: Mutex<Option<f64>>,
    pub watchers: Mutex<Vec<JoinHandle<()>>>,
    /// The entrypoint's output, when the backend offers it.
    pub output: Option<Arc<entrypoint::EntrypointOutput>>,
    /// Where V1 writes to the entrypoint's stdin stand.
    pub stdin: tokio::sync::Mutex<entrypoint::StdinCursor>,
}

impl SandboxRecord {
    /// Its name, if it has one.
    pub fn name(&self) -> Option<String> {
        lock(&self.name).clone()
    }

    /// Whether it is a running sandbox of app `app_id` named `name`.
    pub fn holds_name(&self, app_id: &str, name: &str) -> bool {
        self.app_id == app_id && self.is_running() && lock(&self.name).as_deref() == Some(name)
    }

    /// The final result, once the sandbox ended.
    pub fn result(&self) -> Option<GenericResult> {
        self.result.borrow().clone()
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.result.borrow().is_none()
    }

    pub fn tags(&self) -> Vec<SandboxTag> {
        lock(&self.tags).clone()
    }

    /// Notes activity, which postpones the idle timeout.
    pub fn touch(&self) {
        *lock(&self.activity) = std::time::Instant::now();
    }

    /// The backend path for a Modal path. Absolute paths are taken inside the backend's
    /// root when the backend has one (paths already inside it pass unchanged); relative
    /// paths pass unchanged and resolve against the working directory at the backend.
    pub fn backend_path(&self, path: &str) -> String {
        map_path(self.path_root.as_deref(), path)
    }
}

pub(crate) fn map_path(root: Option<&str>, path: &str) -> String {
    match root {
        Some(root) if path.starts_with('/') => {
            let root = root.trim_end_matches('/');
            if path == root || path.starts_with(&format!("{root}/")) {
                path.to_owned()
            } else if path == "/" {
                root.to_owned()
            } else {
                format!("{root}{path}")
            }
        }
        _ => path.to_owned(),
    }
}

/// Everything the control plane remembers.
#[derive(Default)]
pub(crate) struct State {
    pub environments: HashMap<String, String>,
    pub apps: HashMap<(String, String), String>,
    pub app_names: HashMap<String, String>,
    pub images: HashMap<String, ImageSource>,
    pub secrets: HashMap<String, BTreeMap<String, String>>,
    pub named_secrets: HashMap<(String, String), String>,
    pub volumes: HashMap<String, String>,
    pub named_volumes: HashMap<(String, String), String>,
    pub sandboxes: HashMap<String, Arc<SandboxRecord>>,
    pub tasks: HashMap<String, String>,
    pub reserved_names: HashSet<(String, String)>,
    pub execs: HashMap<String, Arc<ExecSession>>,
    pub fs_snapshots: HashMap<String, String>,
    pub backend_snapshots: Vec<String>,
    pub create_keys: HashMap<String, String>,
    pub last_created_at: f64,
}

pub(crate) struct Shared {
    pub backend: Arc<dyn SandboxProvider>,
    pub router_url: String,
    pub list_page_size: usize,
    pub credentials: Option<Credentials>,
    pub jwt_lifetime: Duration,
    pub registry_images: RegistryImages,
    pub task_start_delay: Duration,
    pub router_ready_delay: Duration,
    pub state: Mutex<State>,
    pub issued_jwts: Mutex<HashSet<String>>,
    /// The working directory of each image kind the backend was asked about (`""`: its
    /// default image; otherwise a registry reference); `None` when it could not say.
    pub image_workdirs: Mutex<HashMap<String, Option<String>>>,
}

/// The emulator; cheap to clone.
#[derive(Clone)]
pub(crate) struct Emulator(pub Arc<Shared>);

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state stays
/// consistent because no lock is held across a step that can panic halfway).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The environment name clients mean by "" (their server default).
pub(crate) fn environment_name(name: &str) -> String {
    if name.is_empty() {
        "main".to_owned()
    } else {
        name.to_owned()
    }
}

/// The gRPC status a backend error is reported as.
pub(crate) fn status_of(error: CoreError) -> Status {
    let message = error.to_string();
    match error {
        CoreError::InvalidSpec { .. } | CoreError::InvalidConfig { .. } => {
            Status::invalid_argument(message)
        }
        CoreError::Unsupported { .. } => Status::unimplemented(message),
        CoreError::AuthenticationFailed { .. } => Status::unauthenticated(message),
        CoreError::PermissionDenied { .. } => Status::permission_denied(message),
        CoreError::NotFound { .. } => Status::not_found(message),
        CoreError::AlreadyExists { .. } => Status::already_exists(message),
        CoreError::RateLimited { .. } | CoreError::ResourceLimitExceeded { .. } => {
            Status::resource_exhausted(message)
        }
        CoreError::Unavailable { .. } => Status::unavailable(message),
        CoreError::Timeout { .. } | CoreError::CommandTimeout { .. } => {
            Status::deadline_exceeded(message)
        }
        CoreError::ExecFailed { .. } | CoreError::CreationFailed { .. } => {
            Status::failed_precondition(message)
        }
        _ => Status::internal(message),
    }
}

pub(crate) fn result(
    status: GenericStatus,
    exitcode: i32,
    exception: impl Into<String>,
) -> GenericResult {
    GenericResult {
        status: status as i32,
        exitcode,
        exception: exception.into(),
        ..Default::default()
    }
}

fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Option<&'a str> {
    metadata
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
}

impl Emulator {
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.0.state)
    }

    pub fn backend(&self) -> &Arc<dyn SandboxProvider> {
        &self.0.backend
    }

    /// A new JWT for `subject`, remembered so the router can check it.
    pub fn issue_jwt(&self, subject: &str) -> String {
        let token = ids::mint_jwt(subject, self.0.jwt_lifetime);
        lock(&self.0.issued_jwts).insert(token.clone());
        token
    }

    fn jwt_is_valid(&self, token: &str, subject: Option<&str>) -> bool {
        if !lock(&self.0.issued_jwts).contains(token) {
            return false;
        }
        let Some(claims) = ids::jwt_claims(token) else {
            return false;
        };
        let unexpired = claims["exp"]
            .as_f64()
            .is_some_and(|exp| exp > ids::now_secs_f64());
        let for_subject = subject.is_none_or(|subject| claims["sub"] == subject);
        unexpired && for_subject
    }

    /// Control-plane calls carry a token id and secret, or an auth token from
    /// `AuthTokenGet`. The secret never appears in an error.
    pub fn check_credentials(&self, metadata: &MetadataMap) -> Result<(), Status> {
        if let Some(token) = header(metadata, "x-modal-auth-token")
            && self.jwt_is_valid(token, None)
        {
            return Ok(());
        }
        let (Some(id), Some(secret)) = (
            header(metadata, "x-modal-token-id"),
            header(metadata, "x-modal-token-secret"),
        ) else {
            return Err(Status::unauthenticated(
                "missing credentials: send x-modal-token-id and x-modal-token-secret \
                 (MODAL_TOKEN_ID / MODAL_TOKEN_SECRET)",
            ));
        };
        match &self.0.credentials {
            Some(expected) if expected.token_id != id || expected.token_secret != secret => Err(
                Status::unauthenticated(format!("token `{id}` is not accepted by this server")),
            ),
            _ => Ok(()),
        }
    }

    /// Router calls carry `authorization: Bearer <jwt>` for their task.
    pub fn check_router_token(&self, metadata: &MetadataMap, task_id: &str) -> Result<(), Status> {
        self.check_router_ready(task_id)?;
        let token = header(metadata, "authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer` token"))?;
        if self.jwt_is_valid(token, Some(task_id)) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "command router token is unknown, expired or for another task",
            ))
        }
    }

    pub fn sandbox(&self, sandbox_id: &str) -> Result<Arc<SandboxRecord>, Status> {
        self.state()
            .sandboxes
            .get(sandbox_id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Sandbox `{sandbox_id}` not found")))
    }

    pub fn sandbox_of_task(&self, task_id: &str) -> Result<Arc<SandboxRecord>, Status> {
        let state = self.state();
        state
            .tasks
            .get(task_id)
            .and_then(|sandbox_id| state.sandboxes.get(sandbox_id))
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Task `{task_id}` not found")))
    }

    /// The running sandbox of a task; a finished one is `NOT_FOUND`, as Modal's router says
    /// of a task that shut down.
    pub fn running_sandbox_of_task(&self, task_id: &str) -> Result<Arc<SandboxRecord>, Status> {
        let record = self.sandbox_of_task(task_id)?;
        if record.is_running() {
            Ok(record)
        } else {
            Err(Status::not_found(format!(
                "Task `{task_id}` has finished; its sandbox `{}` is no longer running",
                record.id
            )))
        }
    }

    /// Records the end of a sandbox (the first result wins) and frees it at the backend.
    pub async fn end(&self, record: &Arc<SandboxRecord>, result: GenericResult) {
        let first = record.result.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(result);
                true
            } else {
                false
            }
        });
        if first {
            *lock(&record.finished_at) = Some(ids::now_secs_f64());
        }
        if let Err(error) = self.0.backend.terminate(&record.backend_id).await {
            tracing::warn!(sandbox = %record.id, %error, "backend terminate failed");
        }
    }

    /// Starts the lifetime timer and the monitor of a new sandbox.
    pub fn watch(&self, record: &Arc<SandboxRecord>) {
        let lifetime = {
            let emulator = self.clone();
            let record = Arc::clone(record);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(u64::from(record.timeout_secs))).await;
                let message = format!("Sandbox timed out after {} seconds", record.timeout_secs);
                emulator
                    .end(&record, result(GenericStatus::Timeout, 124, message))
                    .await;
            })
        };
        let monitor = {
            let emulator = self.clone();
            let record = Arc::clone(record);
            tokio::spawn(async move { emulator.monitor(&record).await })
        };
        lock(&record.watchers).extend([lifetime, monitor]);
        if let Some(idle_secs) = record.emulated_idle_timeout {
            let emulator = self.clone();
            let watched = Arc::clone(record);
            let idle = tokio::spawn(async move {
                let record = watched;
                let limit = Duration::from_secs(u64::from(idle_secs));
                loop {
                    let since = lock(&record.activity).elapsed();
                    let busy = record
                        .running_execs
                        .load(std::sync::atomic::Ordering::SeqCst)
                        > 0;
                    if !busy && since >= limit {
                        let message = format!("Sandbox was idle for {idle_secs} seconds");
                        emulator
                            .end(&record, result(GenericStatus::IdleTimeout, 0, message))
                            .await;
                        return;
                    }
                    let wait = if busy { limit } else { limit - since };
                    tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                }
            });
            lock(&record.watchers).push(idle);
        }
    }

    /// Terminates every running sandbox and deletes the snapshots taken (at shutdown).
    async fn cleanup(&self) {
        let (sandboxes, snapshots) = {
            let mut state = self.state();
            let sandboxes: Vec<_> = state.sandboxes.values().cloned().collect();
            (sandboxes, std::mem::take(&mut state.backend_snapshots))
        };
        for record in sandboxes {
            for watcher in lock(&record.watchers).drain(..) {
                watcher.abort();
            }
            if record.is_running() {
                self.end(
                    &record,
                    result(GenericStatus::Terminated, 137, "the emulator shut down"),
                )
                .await;
            }
        }
        for snapshot in snapshots {
            if let Err(error) = self.0.backend.delete_snapshot(&snapshot).await {
                tracing::warn!(%snapshot, %error, "deleting a snapshot failed");
            }
        }
    }

    /// A creation time later than every earlier one, so `before_timestamp` paging never
    /// skips or repeats a sandbox.
    pub fn next_created_at(state: &mut State) -> f64 {
        let now = ids::now_secs_f64();
        let at = if now > state.last_created_at {
            now
        } else {
            state.last_created_at + 1e-6
        };
        state.last_created_at = at;
        at
    }
}

/// The sandbox's addressable socket for tunnels, from a provider tunnel URL such as
/// `127.0.0.1:49153` or `https://host:443`.
pub(crate) fn host_and_port(url: &str) -> Option<(String, u32)> {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = without_scheme.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_urls_split_into_host_and_port() {
        assert_eq!(
            host_and_port("127.0.0.1:49153"),
            Some(("127.0.0.1".into(), 49153))
        );
        assert_eq!(
            host_and_port("https://abc.modal.host:443/x"),
            Some(("abc.modal.host".into(), 443))
        );
        assert_eq!(host_and_port("nonsense"), None);
    }

    #[test]
    fn modal_paths_map_into_a_private_root() {
        let root = Some("/state/sb-1/root");
        assert_eq!(map_path(root, "/tmp/a"), "/state/sb-1/root/tmp/a");
        assert_eq!(map_path(root, "/"), "/state/sb-1/root");
        assert_eq!(map_path(root, "/state/sb-1/root/x"), "/state/sb-1/root/x");
        assert_eq!(map_path(root, "rel/x"), "rel/x");
        assert_eq!(map_path(None, "/tmp/a"), "/tmp/a");
    }

    #[test]
    fn backend_errors_map_to_the_codes_clients_expect() {
        use tonic::Code;
        assert_eq!(
            status_of(CoreError::sandbox_not_found("x")).code(),
            Code::NotFound
        );
        assert_eq!(
            status_of(CoreError::unsupported("local-process", "GPUs")).code(),
            Code::Unimplemented
        );
        assert_eq!(
            status_of(CoreError::invalid_spec("cpu", "bad")).code(),
            Code::InvalidArgument
        );
    }
}
