//! A small in-process Modal server for the provider's tests: it serves just the calls the
//! tests need, with scripted commands, fs-tools answers and failures.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sandkit_core::registry::ProviderFactory;
use sandkit_core::{SandboxId, SecretString};
use sandkit_modal_proto::client::modal_client_server::{ModalClient, ModalClientServer};
use sandkit_modal_proto::client::{
    AppGetOrCreateRequest, AppGetOrCreateResponse, AuthTokenGetRequest, AuthTokenGetResponse,
    EnvironmentGetOrCreateRequest, EnvironmentGetOrCreateResponse, EnvironmentMetadata,
    EnvironmentSettings, GenericResult, ImageGetOrCreateRequest, ImageGetOrCreateResponse,
    ImageJoinStreamingRequest, ImageJoinStreamingResponse, ImageMetadata, SandboxCreateRequest,
    SandboxCreateResponse, SandboxGetTaskIdRequest, SandboxGetTaskIdResponse, SandboxInfo,
    SandboxListRequest, SandboxListResponse, SandboxTag, SandboxTagsGetRequest,
    SandboxTagsGetResponse, SandboxTerminateRequest, SandboxTerminateResponse, SandboxWaitRequest,
    SandboxWaitResponse, SecretGetOrCreateRequest, SecretGetOrCreateResponse,
    TaskGetCommandRouterAccessRequest, TaskGetCommandRouterAccessResponse, TaskInfo,
    generic_result::GenericStatus,
};
use sandkit_modal_proto::task_command_router::task_command_router_server::{
    TaskCommandRouter, TaskCommandRouterServer,
};
use sandkit_modal_proto::task_command_router::{
    TaskExecStartRequest, TaskExecStartResponse, TaskExecStdinStatusRequest,
    TaskExecStdinStatusResponse, TaskExecStdinWriteRequest, TaskExecStdinWriteResponse,
    TaskExecStdinWriteStreamRequest, TaskExecStdinWriteStreamResponse, TaskExecStdioReadRequest,
    TaskExecStdioReadResponse, TaskExecWaitRequest, TaskExecWaitResponse,
    TaskSnapshotFilesystemRequest, TaskSnapshotFilesystemResponse,
    task_exec_stdin_write_stream_request::Payload, task_exec_wait_response::ExitStatus,
};
use sandkit_provider_modal::{FS_TOOLS_PATH, ModalConfig, ModalProvider, retry_policy_details};
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

/// Size of `/big`, the large file fs-tools serves.
pub const BIG_BYTES: usize = 64 << 20;
/// Bytes `/flaky` prints before fs-tools fails.
pub const FLAKY_BYTES: usize = 1 << 20;

/// The contents of `/big`: a pattern with no short period.
pub fn big() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..BIG_BYTES)
            .map(|_| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    })
}

/// FNV-1a (64-bit) of everything fed so far; chunking does not change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn of(bytes: &[u8]) -> Self {
        let mut hash = Self::default();
        hash.update(bytes);
        hash
    }
}

/// What the server received on one exec's stdin stream.
#[derive(Default, Debug)]
pub struct StdinRecord {
    /// Bytes accepted, in order.
    pub bytes: u64,
    pub hash: Fnv,
    /// Length of every data message.
    pub chunks: Vec<usize>,
    /// `start.offset` of every stream.
    pub starts: Vec<u64>,
    /// `end` arrived.
    pub closed: bool,
}

fn fs_tools_error(kind: &str) -> Vec<u8> {
    format!(r#"{{"version":1,"error_kind":"{kind}","message":"scripted"}}"#).into_bytes()
}

pub const SANDBOX: &str = "sb-AAAAAAAAAAAAAAAAAAAAAA";
pub const TASK: &str = "ta-test";
pub const SECRET: &str = "as-do-not-print";

/// What the server has seen and what it should do next.
#[derive(Default)]
pub struct State {
    /// Metadata of every control-plane call, by method.
    pub calls: Vec<(&'static str, MetadataMap)>,
    /// `SandboxTerminate` answers UNAVAILABLE this many times first.
    pub terminate_unavailable: u32,
    /// `SandboxTerminate` answers RESOURCE_EXHAUSTED with a retry policy this many times.
    pub terminate_throttled: u32,
    /// The router answers UNAUTHENTICATED to a JWT older than this generation.
    pub jwt_generation: u32,
    pub access_fetches: u32,
    /// The first read of each stream is cut (UNAVAILABLE) after this many bytes.
    pub cut_after: Option<usize>,
    pub cut_done: HashMap<(String, i32), bool>,
    pub execs: HashMap<String, Vec<String>>,
    /// Every `TaskExecStart`, as sent.
    pub exec_starts: Vec<TaskExecStartRequest>,
    pub stdio_offsets: Vec<u64>,
    /// `last_entry_id` of every `ImageJoinStreaming` call.
    pub image_joins: Vec<String>,
    /// Largest stdout/stderr message; 1000 bytes when unset.
    pub stdio_chunk: Option<usize>,
    /// The first stdin stream accepts this many bytes, then breaks (UNAVAILABLE).
    pub stdin_cut_after: Option<u64>,
    pub stdin_cut_done: bool,
    /// Stdin streams by exec id.
    pub stdin: HashMap<String, StdinRecord>,
    pub secrets: Vec<SecretGetOrCreateRequest>,
    pub images: Vec<ImageGetOrCreateRequest>,
    pub created: Vec<SandboxCreateRequest>,
    /// The sandbox's tags: those it was created with, unless a test changes them.
    pub tags: Vec<SandboxTag>,
    /// `SandboxGetTaskId` answers UNAVAILABLE this many times first (`u32::MAX`: always).
    pub task_id_unavailable: u32,
    /// The router answers UNAVAILABLE this many times first (`u32::MAX`: always), as a
    /// router whose task is still starting.
    pub router_unavailable: u32,
    /// Every `TaskSnapshotFilesystem` request.
    pub snapshots: Vec<TaskSnapshotFilesystemRequest>,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<State>>,
    pub router_url: Arc<Mutex<String>>,
}

impl Fake {
    fn record(&self, method: &'static str, metadata: &MetadataMap) {
        self.state
            .lock()
            .unwrap()
            .calls
            .push((method, metadata.clone()));
    }

    /// Output of an exec on `fd` (0 stdout, 1 stderr), and its exit status.
    fn script(argv: &[String]) -> (Vec<u8>, Vec<u8>, ExitStatus) {
        match argv.first().map(String::as_str) {
            Some("emit") => {
                let n: usize = argv[1].parse().unwrap();
                let data = (0..n).map(|i| (i % 251) as u8).collect();
                (data, Vec::new(), ExitStatus::Code(0))
            }
            Some("hang") => (b"started\n".to_vec(), Vec::new(), ExitStatus::Signal(9)),
            Some(path) if path == FS_TOOLS_PATH => {
                let command: serde_json::Value = serde_json::from_str(&argv[1]).unwrap();
                if let Some(path) = command["WriteFile"]["path"].as_str() {
                    return match path {
                        "/dir" => (
                            Vec::new(),
                            fs_tools_error("IsDirectory"),
                            ExitStatus::Code(1),
                        ),
                        _ => (Vec::new(), Vec::new(), ExitStatus::Code(0)),
                    };
                }
                match command["ReadFile"]["path"].as_str() {
                    Some("/hello") => (b"hi".to_vec(), Vec::new(), ExitStatus::Code(0)),
                    Some("/big") => (big().to_vec(), Vec::new(), ExitStatus::Code(0)),
                    // Data, then a failure (a read error half way).
                    Some("/flaky") => (
                        big()[..FLAKY_BYTES].to_vec(),
                        fs_tools_error("Io"),
                        ExitStatus::Code(1),
                    ),
                    _ => (Vec::new(), fs_tools_error("NotFound"), ExitStatus::Code(1)),
                }
            }
            _ => (Vec::new(), b"unknown".to_vec(), ExitStatus::Code(127)),
        }
    }

    fn check_jwt<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if countdown(&mut self.state.lock().unwrap().router_unavailable) {
            return Err(Status::unavailable("connection refused"));
        }
        let wanted = format!("Bearer jwt-{}", self.state.lock().unwrap().jwt_generation);
        match request.metadata().get("authorization") {
            Some(value) if value.to_str().unwrap() == wanted => Ok(()),
            _ => Err(Status::unauthenticated("stale jwt")),
        }
    }
}

#[tonic::async_trait]
impl ModalClient for Fake {
    async fn auth_token_get(
        &self,
        request: Request<AuthTokenGetRequest>,
    ) -> Result<Response<AuthTokenGetResponse>, Status> {
        self.record("AuthTokenGet", request.metadata());
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"exp":{}}}"#, u64::MAX / 2));
        Ok(Response::new(AuthTokenGetResponse {
            token: format!("e30.{claims}.sig"),
        }))
    }

    async fn app_get_or_create(
        &self,
        request: Request<AppGetOrCreateRequest>,
    ) -> Result<Response<AppGetOrCreateResponse>, Status> {
        assert_eq!(request.get_ref().app_name, "sandkit");
        Ok(Response::new(AppGetOrCreateResponse {
            app_id: "ap-test".into(),
            ..Default::default()
        }))
    }

    async fn environment_get_or_create(
        &self,
        _request: Request<EnvironmentGetOrCreateRequest>,
    ) -> Result<Response<EnvironmentGetOrCreateResponse>, Status> {
        Ok(Response::new(EnvironmentGetOrCreateResponse {
            environment_id: "en-test".into(),
            metadata: Some(EnvironmentMetadata {
                settings: Some(EnvironmentSettings {
                    image_builder_version: "2025.06".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
    }

    async fn image_get_or_create(
        &self,
        request: Request<ImageGetOrCreateRequest>,
    ) -> Result<Response<ImageGetOrCreateResponse>, Status> {
        self.state.lock().unwrap().images.push(request.into_inner());
        // No result yet: the client must join the build.
        Ok(Response::new(ImageGetOrCreateResponse {
            image_id: "im-built".into(),
            ..Default::default()
        }))
    }

    async fn image_join_streaming(
        &self,
        request: Request<ImageJoinStreamingRequest>,
    ) -> Result<Response<BoxStream<ImageJoinStreamingResponse>>, Status> {
        let last = request.into_inner().last_entry_id;
        self.state.lock().unwrap().image_joins.push(last.clone());
        let items = if last.is_empty() {
            // Logs, then the stream ends early without a result.
            vec![Ok(ImageJoinStreamingResponse {
                entry_id: "1-0".into(),
                ..Default::default()
            })]
        } else {
            vec![Ok(ImageJoinStreamingResponse {
                entry_id: "2-0".into(),
                result: Some(GenericResult {
                    status: GenericStatus::Success as i32,
                    ..Default::default()
                }),
                metadata: Some(ImageMetadata {
                    workdir: Some("/app".into()),
                    ..Default::default()
                }),
                ..Default::default()
            })]
        };
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn secret_get_or_create(
        &self,
        request: Request<SecretGetOrCreateRequest>,
    ) -> Result<Response<SecretGetOrCreateResponse>, Status> {
        self.state
            .lock()
            .unwrap()
            .secrets
            .push(request.into_inner());
        Ok(Response::new(SecretGetOrCreateResponse {
            secret_id: "st-env".into(),
            ..Default::default()
        }))
    }

    async fn sandbox_create(
        &self,
        request: Request<SandboxCreateRequest>,
    ) -> Result<Response<SandboxCreateResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.state.lock().unwrap();
        state.tags = request.tags.clone();
        state.created.push(request);
        Ok(Response::new(SandboxCreateResponse {
            sandbox_id: SANDBOX.into(),
            ..Default::default()
        }))
    }

    async fn sandbox_terminate(
        &self,
        request: Request<SandboxTerminateRequest>,
    ) -> Result<Response<SandboxTerminateResponse>, Status> {
        self.record("SandboxTerminate", request.metadata());
        let mut state = self.state.lock().unwrap();
        if state.terminate_throttled > 0 {
            state.terminate_throttled -= 1;
            return Err(Status::with_details(
                Code::ResourceExhausted,
                "slow down",
                retry_policy_details(
                    Code::ResourceExhausted,
                    "slow down",
                    Duration::from_millis(10),
                )
                .into(),
            ));
        }
        if state.terminate_unavailable > 0 {
            state.terminate_unavailable -= 1;
            return Err(Status::unavailable("try again"));
        }
        Ok(Response::new(SandboxTerminateResponse {
            existing_result: Some(GenericResult {
                status: GenericStatus::Terminated as i32,
                ..Default::default()
            }),
        }))
    }

    async fn sandbox_wait(
        &self,
        request: Request<SandboxWaitRequest>,
    ) -> Result<Response<SandboxWaitResponse>, Status> {
        self.record("SandboxWait", request.metadata());
        Ok(Response::new(SandboxWaitResponse::default()))
    }

    async fn sandbox_tags_get(
        &self,
        request: Request<SandboxTagsGetRequest>,
    ) -> Result<Response<SandboxTagsGetResponse>, Status> {
        self.record("SandboxTagsGet", request.metadata());
        Ok(Response::new(SandboxTagsGetResponse {
            tags: self.state.lock().unwrap().tags.clone(),
        }))
    }

    /// The one sandbox, running, when it has every tag asked for; one page.
    async fn sandbox_list(
        &self,
        request: Request<SandboxListRequest>,
    ) -> Result<Response<SandboxListResponse>, Status> {
        self.record("SandboxList", request.metadata());
        let request = request.into_inner();
        let tags = self.state.lock().unwrap().tags.clone();
        let matches = request.before_timestamp == 0.0
            && request.tags.iter().all(|wanted| tags.contains(wanted));
        let sandboxes = if matches {
            vec![SandboxInfo {
                id: SANDBOX.into(),
                created_at: 1_700_000_000.0,
                task_info: Some(TaskInfo {
                    id: TASK.into(),
                    ..Default::default()
                }),
                tags,
                timeout_secs: 300,
                ..Default::default()
            }]
        } else {
            Vec::new()
        };
        Ok(Response::new(SandboxListResponse { sandboxes }))
    }

    async fn sandbox_get_task_id(
        &self,
        request: Request<SandboxGetTaskIdRequest>,
    ) -> Result<Response<SandboxGetTaskIdResponse>, Status> {
        self.record("SandboxGetTaskId", request.metadata());
        if countdown(&mut self.state.lock().unwrap().task_id_unavailable) {
            return Err(Status::unavailable("scheduler busy"));
        }
        Ok(Response::new(SandboxGetTaskIdResponse {
            task_id: Some(TASK.to_owned()),
            task_result: None,
        }))
    }

    async fn task_get_command_router_access(
        &self,
        request: Request<TaskGetCommandRouterAccessRequest>,
    ) -> Result<Response<TaskGetCommandRouterAccessResponse>, Status> {
        self.record("TaskGetCommandRouterAccess", request.metadata());
        let mut state = self.state.lock().unwrap();
        state.access_fetches += 1;
        Ok(Response::new(TaskGetCommandRouterAccessResponse {
            jwt: format!("jwt-{}", state.jwt_generation),
            url: self.router_url.lock().unwrap().clone(),
        }))
    }
}

/// Counts a scripted failure down; `u32::MAX` never runs out.
fn countdown(remaining: &mut u32) -> bool {
    match *remaining {
        0 => false,
        u32::MAX => true,
        _ => {
            *remaining -= 1;
            true
        }
    }
}

#[tonic::async_trait]
impl TaskCommandRouter for Fake {
    async fn task_snapshot_filesystem(
        &self,
        request: Request<TaskSnapshotFilesystemRequest>,
    ) -> Result<Response<TaskSnapshotFilesystemResponse>, Status> {
        self.check_jwt(&request)?;
        self.state
            .lock()
            .unwrap()
            .snapshots
            .push(request.into_inner());
        Ok(Response::new(TaskSnapshotFilesystemResponse {
            image_id: "im-snapshot".into(),
        }))
    }

    async fn task_exec_start(
        &self,
        request: Request<TaskExecStartRequest>,
    ) -> Result<Response<TaskExecStartResponse>, Status> {
        self.check_jwt(&request)?;
        let request = request.into_inner();
        let mut state = self.state.lock().unwrap();
        state.exec_starts.push(request.clone());
        state.execs.insert(request.exec_id, request.command_args);
        Ok(Response::new(TaskExecStartResponse {}))
    }

    async fn task_exec_stdio_read(
        &self,
        request: Request<TaskExecStdioReadRequest>,
    ) -> Result<Response<BoxStream<TaskExecStdioReadResponse>>, Status> {
        self.check_jwt(&request)?;
        let request = request.into_inner();
        let mut state = self.state.lock().unwrap();
        state.stdio_offsets.push(request.offset);
        let argv = state.execs[&request.exec_id].clone();
        let (stdout, stderr, _) = Self::script(&argv);
        let data = if request.file_descriptor == 0 {
            stdout
        } else {
            stderr
        };
        let rest = data[request.offset as usize..].to_vec();
        let key = (request.exec_id.clone(), request.file_descriptor);
        let cut = match state.cut_after {
            Some(n) if !state.cut_done.contains_key(&key) && rest.len() > n => {
                state.cut_done.insert(key, true);
                Some(n)
            }
            _ => None,
        };
        let sent = cut.unwrap_or(rest.len());
        let mut items: Vec<Result<TaskExecStdioReadResponse, Status>> = rest[..sent]
            .chunks(state.stdio_chunk.unwrap_or(1000))
            .map(|chunk| {
                Ok(TaskExecStdioReadResponse {
                    data: chunk.to_vec(),
                })
            })
            .collect();
        if cut.is_some() {
            items.push(Err(Status::unavailable("stream cut")));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(items))))
    }

    async fn task_exec_stdin_write(
        &self,
        request: Request<TaskExecStdinWriteRequest>,
    ) -> Result<Response<TaskExecStdinWriteResponse>, Status> {
        self.check_jwt(&request)?;
        Ok(Response::new(TaskExecStdinWriteResponse {}))
    }

    async fn task_exec_stdin_write_stream(
        &self,
        request: Request<Streaming<TaskExecStdinWriteStreamRequest>>,
    ) -> Result<Response<TaskExecStdinWriteStreamResponse>, Status> {
        self.check_jwt(&request)?;
        let mut stream = request.into_inner();
        let Some(Payload::Start(start)) = stream.message().await?.and_then(|m| m.payload) else {
            return Err(Status::invalid_argument("the first message must be start"));
        };
        let exec_id = start.exec_id;
        {
            let mut state = self.state.lock().unwrap();
            let argv = state.execs[&exec_id].clone();
            let record = state.stdin.entry(exec_id.clone()).or_default();
            if start.offset != record.bytes {
                return Err(Status::invalid_argument(
                    "start.offset is not the bytes written",
                ));
            }
            record.starts.push(start.offset);
            if Self::script(&argv).2 != ExitStatus::Code(0) {
                // The helper failed at once and reads no stdin.
                return Err(Status::failed_precondition("the command has exited"));
            }
        }
        while let Some(message) = stream.message().await? {
            let mut state = self.state.lock().unwrap();
            let cut = match state.stdin_cut_after {
                Some(cut) if !state.stdin_cut_done => Some(cut),
                _ => None,
            };
            let record = state.stdin.get_mut(&exec_id).unwrap();
            match message.payload {
                Some(Payload::Data(data)) => {
                    record.chunks.push(data.len());
                    let accepted = match cut {
                        Some(cut) => data.len().min(cut.saturating_sub(record.bytes) as usize),
                        None => data.len(),
                    };
                    record.hash.update(&data[..accepted]);
                    record.bytes += accepted as u64;
                    if accepted < data.len() {
                        state.stdin_cut_done = true;
                        return Err(Status::unavailable("stdin stream cut"));
                    }
                }
                Some(Payload::End(_)) => {
                    record.closed = true;
                    return Ok(Response::new(TaskExecStdinWriteStreamResponse {}));
                }
                _ => return Err(Status::invalid_argument("a second start")),
            }
        }
        // Broken off before `end`: stdin stays open for a resume.
        Ok(Response::new(TaskExecStdinWriteStreamResponse {}))
    }

    async fn task_exec_stdin_status(
        &self,
        request: Request<TaskExecStdinStatusRequest>,
    ) -> Result<Response<TaskExecStdinStatusResponse>, Status> {
        self.check_jwt(&request)?;
        let state = self.state.lock().unwrap();
        let record = state.stdin.get(&request.get_ref().exec_id);
        Ok(Response::new(TaskExecStdinStatusResponse {
            num_bytes_written: record.map_or(0, |record| record.bytes),
            closed: record.is_some_and(|record| record.closed),
        }))
    }

    async fn task_exec_wait(
        &self,
        request: Request<TaskExecWaitRequest>,
    ) -> Result<Response<TaskExecWaitResponse>, Status> {
        self.check_jwt(&request)?;
        let exec_id = request.get_ref().exec_id.clone();
        let argv = self.state.lock().unwrap().execs[&exec_id].clone();
        let (_, _, status) = Self::script(&argv);
        let writes = argv
            .get(1)
            .is_some_and(|command| command.contains("WriteFile"));
        if writes && status == ExitStatus::Code(0) {
            // A write ends once its stdin is closed.
            while !self
                .state
                .lock()
                .unwrap()
                .stdin
                .get(&exec_id)
                .is_some_and(|record| record.closed)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if argv[0] == "hang" {
            // The server kills the command at its timeout.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        Ok(Response::new(TaskExecWaitResponse {
            exit_status: Some(status),
        }))
    }
}

pub async fn serve(state: State) -> (ModalProvider, Fake) {
    serve_with(state, |config| config).await
}

/// [`serve`] with the provider's configuration adjusted by `configure`.
pub async fn serve_with(
    state: State,
    configure: impl FnOnce(ModalConfig) -> ModalConfig,
) -> (ModalProvider, Fake) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let fake = Fake {
        state: Arc::new(Mutex::new(state)),
        // Modal's clients get https router URLs from local fakes and connect in plaintext.
        router_url: Arc::new(Mutex::new(format!("https://127.0.0.1:{}", address.port()))),
    };
    let server = tonic::transport::Server::builder()
        .add_service(ModalClientServer::new(fake.clone()))
        .add_service(TaskCommandRouterServer::new(fake.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    let config = ModalConfig {
        server_url: Some(format!("http://{address}")),
        token_id: Some("ak-test".into()),
        token_secret: Some(SecretString::new(SECRET)),
        config_path: Some("/nonexistent/modal.toml".into()),
        // This fake serves V1 sandbox calls only.
        protocol: Some(sandkit_provider_modal::Protocol::V1),
        ..Default::default()
    };
    (
        ModalProvider::from_config(configure(config)).await.unwrap(),
        fake,
    )
}

pub fn id() -> SandboxId {
    SandboxId::from(SANDBOX)
}

pub fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Option<&'a str> {
    metadata.get(name).map(|value| value.to_str().unwrap())
}
