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

/// The socket's directory is the container's to write: a process in it that puts a
/// link to another socket there (the engine's own, here) or listens itself is not
/// talked to, because the host checks who serves the socket.
#[tokio::test]
async fn a_socket_planted_in_the_agents_directory_is_refused() {
    let provider = provider().await;
    let spec = SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(120)
        .tag("suite", "local-docker-agent");
    let id = provider.create(&spec).await.expect("create").id;
    let planted = provider
        .run(
            &id,
            ExecRequest::new([
                "sh",
                "-c",
                "rm /.sandkit/run/agent.sock && ln -s /var/run/docker.sock /.sandkit/run/agent.sock",
            ]),
        )
        .await
        .expect("run");
    assert!(planted.status.success(), "{planted:?}");
    let next = provider.run(&id, ExecRequest::new(["true"])).await;
    let refused = matches!(
        &next,
        Err(Error::Unavailable { message }) if message.contains("not by the sandbox's agent")
    );
    provider.terminate(&id).await.expect("terminate");
    assert!(refused, "an exec after the socket was replaced: {next:?}");
}
