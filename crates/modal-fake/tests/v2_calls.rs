//! Modal's V2 sandbox calls against the emulator over local processes, at the wire level:
//! V2 ids and tokens, which calls reach which family's sandboxes, the checks of the
//! headers V2 clients send, and the entrypoint's streams (output served, stdin refused).

mod common;

use sandkit_modal_fake::ServerHandle;
use sandkit_modal_proto::client::{
    self as pb, modal_client_client::ModalClientClient,
    sandbox_get_command_router_access_request::Target,
};
use sandkit_modal_proto::task_command_router::{
    self as tcr, task_command_router_client::TaskCommandRouterClient,
};
use tonic::transport::Channel;
use tonic::{Code, Request};

const APP: &str = "v2-calls";

struct Fixture {
    server: ServerHandle,
    control: ModalClientClient<Channel>,
}

async fn fixture() -> Fixture {
    let server = common::emulator("v2-calls", Default::default())
        .await
        .unwrap();
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Fixture {
        server,
        control: ModalClientClient::new(channel),
    }
}

/// A request with the token headers every control-plane call carries, plus `extra`.
fn authed<T>(message: T, extra: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-modal-client-type", "1".parse().unwrap());
    metadata.insert("x-modal-client-version", "1.6.4".parse().unwrap());
    metadata.insert("x-modal-token-id", "ak-test".parse().unwrap());
    metadata.insert("x-modal-token-secret", "as-test".parse().unwrap());
    for (name, value) in extra {
        metadata.insert(*name, value.parse().unwrap());
    }
    request
}

fn bearer<T>(message: T, jwt: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    request
}

fn definition(name: &str) -> pb::Sandbox {
    pb::Sandbox {
        name: Some(name.to_owned()),
        timeout_secs: 120,
        ..Default::default()
    }
}

fn tag(name: &str, value: &str) -> pb::SandboxTag {
    pb::SandboxTag {
        tag_name: name.to_owned(),
        tag_value: value.to_owned(),
    }
}

/// The router the access names: the emulator's own port (served in plaintext too).
async fn router(server: &ServerHandle, access_url: &str) -> TaskCommandRouterClient<Channel> {
    let url = server.url();
    let port = &url[url.rfind(':').unwrap()..];
    assert!(access_url.ends_with(port), "{access_url} is not {url}");
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    TaskCommandRouterClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_calls_serve_v2_sandboxes_beside_v1_ones() {
    let Fixture {
        server,
        mut control,
    } = fixture().await;
    let app_id = control
        .app_get_or_create(authed(
            pb::AppGetOrCreateRequest {
                app_name: APP.to_owned(),
                object_creation_type: pb::ObjectCreationType::CreateIfMissing as i32,
                ..Default::default()
            },
            &[],
        ))
        .await
        .unwrap()
        .into_inner()
        .app_id;
    let auth_token = control
        .auth_token_get(authed(pb::AuthTokenGetRequest {}, &[]))
        .await
        .unwrap()
        .into_inner()
        .token;

    // Creation answers with V2 ids, the task, router access and a sandbox token.
    let created = control
        .sandbox_create_v2(authed(
            pb::SandboxCreateV2Request {
                app_id: app_id.clone(),
                definition: Some(definition("two")),
                tags: vec![tag("family", "v2")],
                secret_sources: vec![pb::SecretSource {
                    source: Some(pb::secret_source::Source::Env(pb::StringMap {
                        contents: [("INLINE".to_owned(), "inline-value".to_owned())].into(),
                    })),
                }],
                ..Default::default()
            },
            &[("x-modal-auth-token", &auth_token)],
        ))
        .await
        .unwrap()
        .into_inner();
    let v2_id = created.sandbox_id.clone();
    let suffix = v2_id.strip_prefix("sb-").unwrap();
    assert!(
        suffix.len() != 22 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{v2_id}"
    );
    assert!(created.task_id.starts_with("ta-") && created.task_id.ends_with('V'));
    let access = created.command_router_access.clone().unwrap();
    assert!(!access.jwt.is_empty() && access.url.starts_with("https://127.0.0.1:"));
    assert!(!created.sandbox_token.is_empty());
    let token = created.sandbox_token.as_str();
    let v2_headers = [
        ("x-modal-auth-token", auth_token.as_str()),
        ("x-modal-sandbox-token", token),
    ];

    // A V1 sandbox beside it, in the same app.
    let v1_id = control
        .sandbox_create(authed(
            pb::SandboxCreateRequest {
                app_id: app_id.clone(),
                definition: Some(definition("one")),
                tags: vec![tag("family", "v1")],
                ..Default::default()
            },
            &[],
        ))
        .await
        .unwrap()
        .into_inner()
        .sandbox_id;
    assert_eq!(v1_id.len(), 25);

    // Each family's calls reach only its own sandboxes, and say which calls would.
    let wrong = control
        .sandbox_wait(authed(
            pb::SandboxWaitRequest {
                sandbox_id: v2_id.clone(),
                timeout: 0.0,
            },
            &[],
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::NotFound);
    assert!(wrong.message().contains("SandboxWaitV2"), "{wrong:?}");
    let wrong = control
        .sandbox_tags_get_v2(authed(
            pb::SandboxTagsGetRequest {
                sandbox_id: v1_id.clone(),
            },
            &[],
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::NotFound);

    // The V2 calls with the issued tokens.
    let task = control
        .sandbox_get_task_id_v2(authed(
            pb::SandboxGetTaskIdRequest {
                sandbox_id: v2_id.clone(),
                ..Default::default()
            },
            &v2_headers,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.task_id.as_deref(), Some(created.task_id.as_str()));
    control
        .sandbox_tags_set_v2(authed(
            pb::SandboxTagsSetRequest {
                sandbox_id: v2_id.clone(),
                tags: vec![tag("family", "v2"), tag("extra", "yes")],
                ..Default::default()
            },
            &v2_headers,
        ))
        .await
        .unwrap();
    let tags = control
        .sandbox_tags_get_v2(authed(
            pb::SandboxTagsGetRequest {
                sandbox_id: v2_id.clone(),
            },
            &v2_headers,
        ))
        .await
        .unwrap()
        .into_inner()
        .tags;
    assert_eq!(tags.len(), 2);

    // Tokens the emulator did not issue are refused.
    let refused = control
        .sandbox_wait_v2(authed(
            pb::SandboxWaitRequest {
                sandbox_id: v2_id.clone(),
                timeout: 0.0,
            },
            &[("x-modal-sandbox-token", "not-the-token")],
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = control
        .sandbox_wait_v2(authed(
            pb::SandboxWaitRequest {
                sandbox_id: v2_id.clone(),
                timeout: 0.0,
            },
            &[("x-modal-auth-token", "eyJhbGciOiJub25lIn0.e30.")],
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // `SandboxListV2` lists both families; `SandboxList` only V1.
    let list = |tags: Vec<pb::SandboxTag>| pb::SandboxListRequest {
        app_id: app_id.clone(),
        tags,
        ..Default::default()
    };
    let all: Vec<String> = control
        .sandbox_list_v2(authed(list(Vec::new()), &[]))
        .await
        .unwrap()
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|info| info.id)
        .collect();
    assert_eq!(all, vec![v1_id.clone(), v2_id.clone()]);
    let v1_only: Vec<String> = control
        .sandbox_list(authed(list(Vec::new()), &[]))
        .await
        .unwrap()
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|info| info.id)
        .collect();
    assert_eq!(v1_only, vec![v1_id.clone()]);
    let extra = control
        .sandbox_list_v2(authed(list(vec![tag("extra", "yes")]), &[]))
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0].id, v2_id);

    // By name: V2 finds V2 sandboxes only (clients fall back to V1 on NOT_FOUND).
    let by_name = |name: &str| pb::SandboxGetFromNameRequest {
        sandbox_name: name.to_owned(),
        app_name: APP.to_owned(),
        ..Default::default()
    };
    let found = control
        .sandbox_get_from_name_v2(authed(by_name("two"), &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.sandbox_id, v2_id);
    let missing = control
        .sandbox_get_from_name_v2(authed(by_name("one"), &[]))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = control
        .sandbox_get_from_name(authed(by_name("two"), &[]))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Names are unique per app across both families.
    let taken = control
        .sandbox_create_v2(authed(
            pb::SandboxCreateV2Request {
                app_id: app_id.clone(),
                definition: Some(definition("one")),
                ..Default::default()
            },
            &[],
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    // The router: execs on the V2 task see the inline secret; the entrypoint's output is
    // served, its stdin refused as unimplemented, not faked.
    let mut router = router(&server, &access.url).await;
    let exec_id = uuid::Uuid::new_v4().to_string();
    router
        .task_exec_start(bearer(
            tcr::TaskExecStartRequest {
                task_id: created.task_id.clone(),
                exec_id: exec_id.clone(),
                command_args: vec!["sh".into(), "-c".into(), "printf %s \"$INLINE\"".into()],
                stdout_config: tcr::TaskExecStdoutConfig::Pipe as i32,
                ..Default::default()
            },
            &access.jwt,
        ))
        .await
        .unwrap();
    let mut stdout = router
        .task_exec_stdio_read(bearer(
            tcr::TaskExecStdioReadRequest {
                task_id: created.task_id.clone(),
                exec_id: exec_id.clone(),
                offset: 0,
                file_descriptor: tcr::TaskExecStdioFileDescriptor::Stdout as i32,
            },
            &access.jwt,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut output = Vec::new();
    while let Some(chunk) = stdout.message().await.unwrap() {
        output.extend(chunk.data);
    }
    assert_eq!(output, b"inline-value");
    // The main process's output (the default main writes none) stays open while it runs.
    let mut main_stdout = router
        .sandbox_stdio_read_v2(bearer(
            tcr::SandboxStdioReadV2Request {
                task_id: created.task_id.clone(),
                ..Default::default()
            },
            &access.jwt,
        ))
        .await
        .unwrap()
        .into_inner();

    // Router access again, by sandbox id, with the sandbox token.
    let again = control
        .sandbox_get_command_router_access(authed(
            pb::SandboxGetCommandRouterAccessRequest {
                target: Some(Target::SandboxId(v2_id.clone())),
            },
            &v2_headers,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.url, access.url);

    // Terminate and wait through V2; stdin of a finished sandbox is a conflict.
    control
        .sandbox_terminate_v2(authed(
            pb::SandboxTerminateRequest {
                sandbox_id: v2_id.clone(),
            },
            &v2_headers,
        ))
        .await
        .unwrap();
    let waited = control
        .sandbox_wait_v2(authed(
            pb::SandboxWaitRequest {
                sandbox_id: v2_id.clone(),
                timeout: 10.0,
            },
            &v2_headers,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        waited.result.unwrap().status,
        pb::generic_result::GenericStatus::Terminated as i32
    );
    // The sandbox's end ends its main process's output.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut data = Vec::new();
        while let Some(chunk) = main_stdout.message().await.unwrap() {
            data.extend(chunk.data);
        }
        data
    })
    .await
    .expect("the output of a terminated sandbox ends");
    assert!(ended.is_empty(), "{ended:?}");
    let finished = router
        .sandbox_stdin_write_v2(bearer(
            tcr::SandboxStdinWriteV2Request {
                task_id: created.task_id.clone(),
                data: b"late".to_vec(),
                ..Default::default()
            },
            &again.jwt,
        ))
        .await
        .unwrap_err();
    assert_eq!(finished.code(), Code::FailedPrecondition);
    server.shutdown().await.unwrap();
}

/// Every control-plane call must say which client sent it and how new it is, as Modal's
/// servers insist; the check comes before credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_client_headers_or_from_old_clients_are_refused() {
    let mut fixture = fixture().await;
    let mut bare = Request::new(());
    bare.metadata_mut()
        .insert("x-modal-client-type", "1".parse().unwrap());
    let refused = fixture.control.client_hello(bare).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("Client version is required"),
        "{refused:?}"
    );
    let mut old = authed((), &[]);
    old.metadata_mut()
        .insert("x-modal-client-version", "0.62.1".parse().unwrap());
    let refused = fixture.control.client_hello(old).await.unwrap_err();
    assert!(refused.message().starts_with("Old client"), "{refused:?}");
    assert!(fixture.control.client_hello(authed((), &[])).await.is_ok());
    fixture.server.shutdown().await.unwrap();
}

/// `SandboxSetName` names a V2 sandbox made without a name, once: the same name again is
/// fine, another is refused, a name another running sandbox holds is taken, and V1
/// sandboxes have no such call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_sandbox_is_named_once_after_its_creation() {
    let Fixture {
        server,
        mut control,
    } = fixture().await;
    let app_id = control
        .app_get_or_create(authed(
            pb::AppGetOrCreateRequest {
                app_name: "set-name".to_owned(),
                object_creation_type: pb::ObjectCreationType::CreateIfMissing as i32,
                ..Default::default()
            },
            &[],
        ))
        .await
        .unwrap()
        .into_inner()
        .app_id;
    let unnamed = || pb::Sandbox {
        timeout_secs: 120,
        ..Default::default()
    };
    let mut create_v2 = async |definition: pb::Sandbox| {
        control
            .sandbox_create_v2(authed(
                pb::SandboxCreateV2Request {
                    app_id: app_id.clone(),
                    definition: Some(definition),
                    ..Default::default()
                },
                &[],
            ))
            .await
            .unwrap()
            .into_inner()
            .sandbox_id
    };
    let first = create_v2(unnamed()).await;
    let second = create_v2(unnamed()).await;
    let set = |sandbox_id: &str, name: &str| {
        authed(
            pb::SandboxSetNameRequest {
                sandbox_id: sandbox_id.to_owned(),
                name: name.to_owned(),
            },
            &[],
        )
    };
    control.sandbox_set_name(set(&first, "late")).await.unwrap();
    // A retry of the same name succeeds; another name does not.
    control.sandbox_set_name(set(&first, "late")).await.unwrap();
    let renamed = control
        .sandbox_set_name(set(&first, "other"))
        .await
        .unwrap_err();
    assert_eq!(renamed.code(), Code::FailedPrecondition, "{renamed:?}");
    let taken = control
        .sandbox_set_name(set(&second, "late"))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let found = control
        .sandbox_get_from_name_v2(authed(
            pb::SandboxGetFromNameRequest {
                sandbox_name: "late".to_owned(),
                app_name: "set-name".to_owned(),
                ..Default::default()
            },
            &[],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.sandbox_id, first);
    let empty = control
        .sandbox_set_name(set(&second, ""))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let v1 = control
        .sandbox_create(authed(
            pb::SandboxCreateRequest {
                app_id: app_id.clone(),
                definition: Some(unnamed()),
                ..Default::default()
            },
            &[],
        ))
        .await
        .unwrap()
        .into_inner()
        .sandbox_id;
    let not_v2 = control
        .sandbox_set_name(set(&v1, "v1-name"))
        .await
        .unwrap_err();
    assert_eq!(not_v2.code(), Code::NotFound, "{not_v2:?}");
    server.shutdown().await.unwrap();
}
