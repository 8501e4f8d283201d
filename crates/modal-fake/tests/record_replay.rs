//! Recording through the proxy keeps every secret out of the cassette and records router
//! traffic too; replaying the cassette serves the same session with no upstream, and an
//! unseen request is refused naming the nearest recorded one and the differing fields.

mod common;

use std::sync::Arc;

use sandkit_core::registry::ProviderFactory as _;
use sandkit_core::{
    Error, ExecRequest, SandboxProvider, SandboxProviderExt as _, SandboxSpec, SecretString,
};
use sandkit_modal_fake::{
    Cassette, Credentials, EmulatorOptions, RecordOptions, ReplayOptions, serve_emulator,
    serve_recorder, serve_replayer,
};
use sandkit_provider_modal::{ModalConfig, ModalProvider};

const TOKEN_ID: &str = "ak-record-test-id";
const TOKEN_SECRET: &str = "as-record-test-secret-value";
const SANDBOX_SECRET: &str = "sandbox-secret-value-42";

async fn provider(url: &str, token_secret: &str) -> Arc<dyn SandboxProvider> {
    let config = ModalConfig {
        server_url: Some(url.to_owned()),
        token_id: Some(TOKEN_ID.to_owned()),
        token_secret: Some(SecretString::new(token_secret)),
        config_path: Some(common::state_dir("no-config").join("absent.toml")),
        environment: Some("main".to_owned()),
        ..ModalConfig::default()
    };
    Arc::new(ModalProvider::from_config(config).await.unwrap())
}

/// The session recorded and replayed: a sandbox with a secret, a command, a file.
async fn session(provider: &Arc<dyn SandboxProvider>) -> Result<String, Error> {
    let spec = SandboxSpec::new()
        .secret("API_KEY", SANDBOX_SECRET)
        .lifetime_secs(120);
    let info = provider.create(&spec).await?;
    let output = provider
        .run(
            &info.id,
            ExecRequest::new(["sh", "-c", "echo hello; echo oops >&2"]),
        )
        .await?;
    provider
        .write_file(&info.id, "note.txt", "written".into())
        .await?;
    let note = provider.read_to_string(&info.id, "note.txt").await?;
    provider.terminate(&info.id).await?;
    Ok(format!(
        "{}|{}|{}",
        output.stdout_lossy(),
        output.stderr_lossy(),
        note
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_session_replays_without_its_upstream_and_leaks_no_secret() {
    let directory = tempfile::tempdir().unwrap();
    let cassette_path = directory.path().join("session.json");

    // Record: provider → recorder → emulator (which insists on the credentials).
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": directory.path().join("sandboxes") }),
    )
    .await
    .unwrap();
    let mut options = EmulatorOptions::new(backend);
    options.credentials = Some(Credentials {
        token_id: TOKEN_ID.to_owned(),
        token_secret: TOKEN_SECRET.to_owned(),
    });
    let emulator = serve_emulator(common::any_port(), options).await.unwrap();
    let recorder = serve_recorder(
        common::any_port(),
        RecordOptions::new(emulator.url(), &cassette_path),
    )
    .await
    .unwrap();
    let live = session(&provider(&recorder.url(), TOKEN_SECRET).await)
        .await
        .unwrap();
    assert_eq!(live, "hello\n|oops\n|written");
    recorder.shutdown().await.unwrap();
    emulator.shutdown().await.unwrap();

    // The cassette: readable, marked as recorded from the emulator, router calls included,
    // and no credential, JWT or secret value in it.
    let text = std::fs::read_to_string(&cassette_path).unwrap();
    let cassette = Cassette::load(&cassette_path).unwrap();
    assert_eq!(cassette.recorded_from, "emulator");
    let methods: Vec<&str> = cassette
        .exchanges
        .iter()
        .map(|e| e.method.as_str())
        .collect();
    // A V2 sandbox (the provider's default): its router access came with its creation,
    // and its secret went inline, in `secret_sources`.
    for method in [
        "AuthTokenGet",
        "SandboxCreateV2",
        "TaskExecStart",
        "TaskExecStdioRead",
        "TaskExecWait",
        "SandboxTerminateV2",
    ] {
        assert!(
            methods.contains(&method),
            "{method} missing from {methods:?}"
        );
    }
    for secret in [TOKEN_SECRET, TOKEN_ID, SANDBOX_SECRET] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into the cassette"
        );
    }
    let stand_in = {
        // The only JWT-shaped strings left are the stand-in (whose payload says "redacted").
        let token = cassette
            .exchanges
            .iter()
            .find(|e| e.method == "AuthTokenGet")
            .and_then(|e| e.response.first())
            .and_then(|r| r["token"].as_str())
            .unwrap()
            .to_owned();
        assert!(
            token.ends_with('.'),
            "the auth token was not replaced: {token}"
        );
        token
    };
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut strings = Vec::new();
    collect_strings(&value, &mut strings);
    for string in strings {
        assert!(
            !string.contains("eyJ") || string == stand_in,
            "a JWT other than the stand-in is in the cassette: {string}"
        );
    }

    // Replay: the same session, with no upstream and other credentials.
    let replayer = serve_replayer(
        common::any_port(),
        ReplayOptions::from_file(&cassette_path).unwrap(),
    )
    .await
    .unwrap();
    let replaying = provider(&replayer.url(), "as-some-other-secret").await;
    assert_eq!(session(&replaying).await.unwrap(), live);

    // A request the cassette never saw is refused with the nearest recorded one.
    let info = replaying
        .create(&SandboxSpec::new().secret("API_KEY", "x").lifetime_secs(120))
        .await
        .unwrap();
    let unseen = replaying
        .run(&info.id, ExecRequest::new(["echo", "never recorded"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unseen.contains("nearest recorded request") && unseen.contains("command_args"),
        "{unseen}"
    );
    replayer.shutdown().await.unwrap();

    // Faults work in replay mode too: the provider retries through them.
    let mut options = ReplayOptions::from_file(&cassette_path).unwrap();
    options.faults = "unavailable=0.3,exhausted=0.1,retry-after=0.01,cut-stream=1,seed=5"
        .parse()
        .unwrap();
    let faulty = serve_replayer(common::any_port(), options).await.unwrap();
    let through_faults = provider(&faulty.url(), "as-some-other-secret").await;
    assert_eq!(session(&through_faults).await.unwrap(), live);
    faulty.shutdown().await.unwrap();
}

fn collect_strings<'a>(value: &'a serde_json::Value, into: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(text) => into.push(text),
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| collect_strings(item, into))
        }
        serde_json::Value::Object(map) => map.values().for_each(|item| collect_strings(item, into)),
        _ => {}
    }
}
