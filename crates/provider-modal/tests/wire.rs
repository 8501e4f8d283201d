//! The provider against a small in-process server that serves just the calls each test
//! needs, with scripted failures: headers, retries, throttling, stream resume, router
//! re-authentication, timeouts and fs-tools errors. Full conformance runs against
//! `sandkit-modal-fake`'s emulator (in that crate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sandkit_core::registry::ProviderFactory;
use sandkit_core::{
    Error, ExecRequest, FileErrorKind, SandboxId, SandboxProvider, SandboxProviderExt, SecretString,
};
use sandkit_provider_modal::proto::client::modal_client_server::{ModalClient, ModalClientServer};
use sandkit_provider_modal::proto::client::{
    AppGetOrCreateRequest, AppGetOrCreateResponse, AuthTokenGetRequest, AuthTokenGetResponse,
    EnvironmentGetOrCreateRequest, EnvironmentGetOrCreateResponse, EnvironmentMetadata,
    EnvironmentSettings, GenericResult, ImageGetOrCreateRequest, ImageGetOrCreateResponse,
    ImageJoinStreamingRequest, ImageJoinStreamingResponse, ImageMetadata, SandboxCreateRequest,
    SandboxCreateResponse, SandboxGetTaskIdRequest, SandboxGetTaskIdResponse,
    SandboxTerminateRequest, SandboxTerminateResponse, SandboxWaitRequest, SandboxWaitResponse,
    SecretGetOrCreateRequest, SecretGetOrCreateResponse, TaskGetCommandRouterAccessRequest,
    TaskGetCommandRouterAccessResponse, generic_result::GenericStatus,
};
use sandkit_provider_modal::proto::task_command_router::task_command_router_server::{
    TaskCommandRouter, TaskCommandRouterServer,
};
use sandkit_provider_modal::proto::task_command_router::{
    TaskExecStartRequest, TaskExecStartResponse, TaskExecStdinWriteRequest,
    TaskExecStdinWriteResponse, TaskExecStdioReadRequest, TaskExecStdioReadResponse,
    TaskExecWaitRequest, TaskExecWaitResponse, task_exec_wait_response::ExitStatus,
};
use sandkit_provider_modal::{FS_TOOLS_PATH, ModalConfig, ModalProvider, retry_policy_details};
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

const SANDBOX: &str = "sb-AAAAAAAAAAAAAAAAAAAAAA";
const TASK: &str = "ta-test";
const SECRET: &str = "as-do-not-print";

/// What the server has seen and what it should do next.
#[derive(Default)]
struct State {
    /// Metadata of every control-plane call, by method.
    calls: Vec<(&'static str, MetadataMap)>,
    /// `SandboxTerminate` answers UNAVAILABLE this many times first.
    terminate_unavailable: u32,
    /// `SandboxTerminate` answers RESOURCE_EXHAUSTED with a retry policy this many times.
    terminate_throttled: u32,
    /// The router answers UNAUTHENTICATED to a JWT older than this generation.
    jwt_generation: u32,
    access_fetches: u32,
    /// The first read of each stream is cut (UNAVAILABLE) after this many bytes.
    cut_after: Option<usize>,
    cut_done: HashMap<(String, i32), bool>,
    execs: HashMap<String, Vec<String>>,
    stdio_offsets: Vec<u64>,
    /// `last_entry_id` of every `ImageJoinStreaming` call.
    image_joins: Vec<String>,
    secrets: Vec<SecretGetOrCreateRequest>,
    images: Vec<ImageGetOrCreateRequest>,
    created: Vec<SandboxCreateRequest>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    router_url: Arc<Mutex<String>>,
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
                match command["ReadFile"]["path"].as_str() {
                    Some("/hello") => (b"hi".to_vec(), Vec::new(), ExitStatus::Code(0)),
                    _ => (
                        Vec::new(),
                        br#"{"version":1,"error_kind":"NotFound","message":"No such file"}"#
                            .to_vec(),
                        ExitStatus::Code(1),
                    ),
                }
            }
            _ => (Vec::new(), b"unknown".to_vec(), ExitStatus::Code(127)),
        }
    }

    fn check_jwt<T>(&self, request: &Request<T>) -> Result<(), Status> {
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
        self.state
            .lock()
            .unwrap()
            .created
            .push(request.into_inner());
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

    async fn sandbox_get_task_id(
        &self,
        request: Request<SandboxGetTaskIdRequest>,
    ) -> Result<Response<SandboxGetTaskIdResponse>, Status> {
        self.record("SandboxGetTaskId", request.metadata());
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

#[tonic::async_trait]
impl TaskCommandRouter for Fake {
    async fn task_exec_start(
        &self,
        request: Request<TaskExecStartRequest>,
    ) -> Result<Response<TaskExecStartResponse>, Status> {
        self.check_jwt(&request)?;
        let request = request.into_inner();
        self.state
            .lock()
            .unwrap()
            .execs
            .insert(request.exec_id, request.command_args);
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
            .chunks(1000)
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

    async fn task_exec_wait(
        &self,
        request: Request<TaskExecWaitRequest>,
    ) -> Result<Response<TaskExecWaitResponse>, Status> {
        self.check_jwt(&request)?;
        let argv = self.state.lock().unwrap().execs[&request.get_ref().exec_id].clone();
        let (_, _, status) = Self::script(&argv);
        if argv[0] == "hang" {
            // The server kills the command at its timeout.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        Ok(Response::new(TaskExecWaitResponse {
            exit_status: Some(status),
        }))
    }
}

async fn serve(state: State) -> (ModalProvider, Fake) {
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
        ..Default::default()
    };
    (ModalProvider::from_config(config).await.unwrap(), fake)
}

fn id() -> SandboxId {
    SandboxId::from(SANDBOX)
}

fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Option<&'a str> {
    metadata.get(name).map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn unary_calls_carry_modal_headers_and_retry_with_one_idempotency_key() {
    let (provider, fake) = serve(State {
        terminate_unavailable: 2,
        ..Default::default()
    })
    .await;
    provider.terminate(&id()).await.unwrap();

    let state = fake.state.lock().unwrap();
    let attempts: Vec<&MetadataMap> = state
        .calls
        .iter()
        .filter(|(method, _)| *method == "SandboxTerminate")
        .map(|(_, metadata)| metadata)
        .collect();
    assert_eq!(attempts.len(), 3);
    let keys: Vec<_> = attempts
        .iter()
        .map(|m| header(m, "x-idempotency-key").unwrap())
        .collect();
    assert!(keys.iter().all(|key| *key == keys[0]), "{keys:?}");
    let numbers: Vec<_> = attempts
        .iter()
        .map(|m| header(m, "x-retry-attempt").unwrap())
        .collect();
    assert_eq!(numbers, ["0", "1", "2"]);
    for metadata in attempts {
        assert_eq!(header(metadata, "x-modal-client-type"), Some("9"));
        assert_eq!(header(metadata, "x-modal-token-id"), Some("ak-test"));
        assert_eq!(header(metadata, "x-modal-token-secret"), Some(SECRET));
        assert!(header(metadata, "x-modal-auth-token").is_some());
    }
    let auth = state
        .calls
        .iter()
        .find(|(method, _)| *method == "AuthTokenGet")
        .unwrap();
    assert!(header(&auth.1, "x-modal-auth-token").is_none());
}

#[tokio::test]
async fn server_directed_delays_do_not_use_up_the_retry_budget() {
    // Five throttles and three outages: more than the 3-retry budget, but the throttles
    // are the server's call and do not count.
    let (provider, fake) = serve(State {
        terminate_throttled: 5,
        terminate_unavailable: 3,
        ..Default::default()
    })
    .await;
    provider.terminate(&id()).await.unwrap();
    let attempts = fake
        .state
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(method, _)| *method == "SandboxTerminate")
        .count();
    assert_eq!(attempts, 9);
}

#[tokio::test]
async fn persistent_outages_surface_as_unavailable_without_secrets() {
    let (provider, _fake) = serve(State {
        terminate_unavailable: 100,
        ..Default::default()
    })
    .await;
    let error = provider.terminate(&id()).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(!format!("{error:?}").contains(SECRET));
}

#[tokio::test]
async fn cut_output_streams_resume_at_their_offset() {
    let (provider, fake) = serve(State {
        cut_after: Some(2500),
        ..Default::default()
    })
    .await;
    let output = provider
        .run(&id(), ExecRequest::new(["emit", "10000"]))
        .await
        .unwrap();
    let expected: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
    assert_eq!(output.stdout, Bytes::from(expected));
    assert!(output.status.success());
    let offsets = fake.state.lock().unwrap().stdio_offsets.clone();
    assert!(offsets.contains(&2500), "{offsets:?}");
}

#[tokio::test]
async fn an_expired_router_jwt_is_fetched_again_once() {
    let (provider, fake) = serve(State::default()).await;
    provider
        .run(&id(), ExecRequest::new(["emit", "10"]))
        .await
        .unwrap();
    fake.state.lock().unwrap().jwt_generation = 1;
    let output = provider
        .run(&id(), ExecRequest::new(["emit", "10"]))
        .await
        .unwrap();
    assert_eq!(output.stdout.len(), 10);
    assert_eq!(fake.state.lock().unwrap().access_fetches, 2);
}

#[tokio::test]
async fn a_command_killed_at_its_timeout_is_command_timeout_with_its_output() {
    let (provider, _fake) = serve(State::default()).await;
    let result = provider
        .run(
            &id(),
            ExecRequest::new(["hang"]).timeout(Duration::from_millis(1000)),
        )
        .await;
    match result {
        Err(Error::CommandTimeout {
            timeout, stdout, ..
        }) => {
            assert_eq!(timeout, Duration::from_millis(1000));
            assert_eq!(stdout, "started\n");
        }
        other => panic!("expected CommandTimeout, got {other:?}"),
    }
}

#[tokio::test]
async fn fs_tools_results_and_errors_map_to_files() {
    let (provider, _fake) = serve(State::default()).await;
    assert_eq!(provider.read_file(&id(), "/hello").await.unwrap(), "hi");
    match provider.read_file(&id(), "/missing").await {
        Err(Error::FileOperation { path, kind }) => {
            assert_eq!(path, "/missing");
            assert_eq!(kind, FileErrorKind::NotFound);
        }
        other => panic!("expected a NotFound file error, got {other:?}"),
    }
}

#[tokio::test]
async fn ids_modal_never_minted_are_not_found_without_a_call() {
    let (provider, fake) = serve(State::default()).await;
    let bogus = SandboxId::from("not-a-sandbox");
    assert!(matches!(
        provider.info(&bogus).await,
        Err(Error::NotFound { .. })
    ));
    provider.terminate(&bogus).await.unwrap();
    assert!(fake.state.lock().unwrap().calls.is_empty());
}

#[tokio::test]
async fn create_builds_the_image_and_sends_the_whole_definition() {
    use sandkit_core::{GpuKind, NetworkPolicy, SandboxSpec};
    use sandkit_provider_modal::proto::client::network_access::NetworkAccessType;
    use sandkit_provider_modal::proto::client::sandbox::OpenPortsOneof;

    let (provider, fake) = serve(State::default()).await;
    let spec = SandboxSpec::new()
        .image("alpine:3.21")
        .env("PLAIN", "1")
        .secret("TOKEN", "hunter2")
        .cpu(0.5)
        .memory_mib(512)
        .gpu(GpuKind::A100_80GB, 2)
        .lifetime_secs(600)
        .idle_timeout_secs(60)
        .network(NetworkPolicy::AllowList {
            cidrs: vec!["10.0.0.0/8".into()],
            domains: vec![],
        })
        .region("us-east")
        .port(8080)
        .name("box-1")
        .tag("team", "evals");
    let info = provider.create(&spec).await.unwrap();
    assert_eq!(info.id.as_str(), SANDBOX);
    assert_eq!(info.workdir, "/app", "the image's workdir is the sandbox's");
    assert_eq!(
        info.expires_at_unix_secs,
        Some(info.created_at_unix_secs + 600)
    );

    let state = fake.state.lock().unwrap();
    assert_eq!(
        state.image_joins,
        ["", "1-0"],
        "the build is joined, then resumed"
    );
    let image = &state.images[0];
    assert_eq!(image.builder_version, "2025.06");
    assert_eq!(
        image.image.as_ref().unwrap().dockerfile_commands,
        ["FROM alpine:3.21"]
    );
    let secret = &state.secrets[0];
    assert_eq!(secret.object_creation_type, 5, "EPHEMERAL");
    assert_eq!(secret.env_dict["PLAIN"], "1");
    assert_eq!(secret.env_dict["TOKEN"], "hunter2");

    let request = &state.created[0];
    assert_eq!(request.app_id, "ap-test");
    assert_eq!(request.tags[0].tag_name, "team");
    let definition = request.definition.as_ref().unwrap();
    assert_eq!(definition.image_id, "im-built");
    assert_eq!(definition.secret_ids, ["st-env"]);
    assert_eq!(definition.timeout_secs, 600);
    assert_eq!(definition.idle_timeout_secs, Some(60));
    assert_eq!(definition.name.as_deref(), Some("box-1"));
    let resources = definition.resources.as_ref().unwrap();
    assert_eq!((resources.milli_cpu, resources.memory_mb), (500, 512));
    let gpu = resources.gpu_config.as_ref().unwrap();
    assert_eq!((gpu.gpu_type.as_str(), gpu.count), ("A100-80GB", 2));
    let network = definition.network_access.as_ref().unwrap();
    assert_eq!(
        network.network_access_type,
        NetworkAccessType::Allowlist as i32
    );
    assert_eq!(network.allowed_cidrs, ["10.0.0.0/8"]);
    assert_eq!(
        definition.scheduler_placement.as_ref().unwrap().regions,
        ["us-east"]
    );
    match &definition.open_ports_oneof {
        Some(OpenPortsOneof::OpenPorts(ports)) => assert_eq!(ports.ports[0].port, 8080),
        other => panic!("{other:?}"),
    }
}
