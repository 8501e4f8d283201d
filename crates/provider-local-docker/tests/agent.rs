//! local-docker on sandkit's agent: what the container's own processes can do to it.
//! Needs the engine that `scripts/docker-engine.sh` starts.

use sandkit_core::{Error, ExecRequest, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

const TEST_IMAGE: &str = "sandkit-test-busybox:latest";

async fn provider() -> LocalDockerProvider {
    let provider = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    assert_eq!(
        provider.agent_fallback(),
        None,
        "this engine runs the agent"
    );
    provider
}

/// A provider on the agent and a new sandbox of the test image (a failed test leaves it
/// to its lifetime).
async fn sandbox() -> (LocalDockerProvider, sandkit_core::SandboxId) {
    let provider = provider().await;
    let spec = SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(120)
        .tag("suite", "local-docker-agent");
    let id = provider.create(&spec).await.expect("create").id;
    (provider, id)
}

/// Runs `script` in sandbox `id`, which must succeed.
async fn sh(provider: &LocalDockerProvider, id: &sandkit_core::SandboxId, script: &str) {
    let done = provider
        .run(id, ExecRequest::new(["sh", "-c", script]))
        .await
        .expect("run");
    assert!(done.status.success(), "{script}: {done:?}");
}

/// The socket's directory is the container's to write: a process in it that puts a
/// link to another socket there (the engine's own, here) or listens itself is not
/// talked to, because the host checks who serves the socket.
#[tokio::test]
async fn a_socket_planted_in_the_agents_directory_is_refused() {
    let (provider, id) = sandbox().await;
    sh(
        &provider,
        &id,
        "rm /.sandkit/run/agent.sock && ln -s /var/run/docker.sock /.sandkit/run/agent.sock",
    )
    .await;
    let next = provider.run(&id, ExecRequest::new(["true"])).await;
    let refused = matches!(
        &next,
        Err(Error::Unavailable { message }) if message.contains("not by the sandbox's agent")
    );
    provider.terminate(&id).await.expect("terminate");
    assert!(refused, "an exec after the socket was replaced: {next:?}");
}

/// Files go through the agent: a listing larger than one frame of entries comes whole
/// and sorted, with each entry's size; a file larger than a pipe streams both ways
/// intact; a kernel filesystem's file and a path the container swapped for a symlink
/// to `/proc` are refused, as local-process refuses them.
#[tokio::test]
async fn files_through_the_agent_hold_at_size() {
    use futures::StreamExt;
    use sandkit_core::FileErrorKind;

    let (provider, id) = sandbox().await;
    sh(
        &provider,
        &id,
        "mkdir /many && cd /many && i=0; while [ $i -lt 5000 ]; do echo -n $i > f$i; i=$((i+1)); done; ln -s /proc/self /many/zz-proc",
    )
    .await;
    let entries = provider.list_dir(&id, "/many").await.expect("list_dir");
    assert_eq!(entries.len(), 5001, "every entry, past one frame's worth");
    assert!(entries.windows(2).all(|w| w[0].name < w[1].name), "sorted");
    let f4321 = entries.iter().find(|e| e.name == "f4321").expect("f4321");
    assert_eq!(f4321.size_bytes, 4);

    // 24 MiB of a pattern that a dropped or reordered chunk would break.
    let contents: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<sandkit_core::Result<bytes::Bytes>> = contents
        .chunks(3 << 20)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    provider
        .write_file_stream(
            &id,
            "deep/new/big.bin",
            Box::pin(futures::stream::iter(chunks)),
        )
        .await
        .expect("write_file_stream");
    let mut read = Vec::new();
    let mut stream = provider
        .read_file_stream(&id, "deep/new/big.bin")
        .await
        .expect("read_file_stream");
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(
        read == contents,
        "read back {} bytes, not what was written",
        read.len()
    );

    for path in ["/proc/self/status", "/many/zz-proc/environ"] {
        let refused = provider.read_file(&id, path).await;
        assert!(
            matches!(
                &refused,
                Err(Error::FileOperation {
                    kind: FileErrorKind::PermissionDenied,
                    ..
                })
            ),
            "{path}: {refused:?}"
        );
    }
    provider.terminate(&id).await.expect("terminate");
}

/// A sandbox's info says when it is not on the agent, and why; one on it says nothing.
#[tokio::test]
async fn info_says_when_a_sandbox_is_not_on_the_agent() {
    let (provider, id) = sandbox().await;
    let on_agent = provider.info(&id).await.expect("info");
    provider.terminate(&id).await.expect("terminate");
    assert_eq!(on_agent.notes, Vec::<String>::new());

    let config = LocalDockerConfig {
        agent: false,
        ..LocalDockerConfig::default()
    };
    let engine_only = LocalDockerProvider::connect(config).await.expect("connect");
    let spec = SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(120)
        .tag("suite", "local-docker-agent");
    let id = engine_only.create(&spec).await.expect("create").id;
    let info = engine_only.info(&id).await.expect("info");
    engine_only.terminate(&id).await.expect("terminate");
    assert!(
        info.notes.len() == 1 && info.notes[0].contains("`agent: false`"),
        "{:?}",
        info.notes
    );
}
