//! Behaviour only the Docker provider has: what the engine does behind sandkit's back,
//! hardening, images, and lifetimes that outlive their creator. These need the engine
//! that `scripts/docker-engine.sh` starts; without one they fail saying so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{
    Error, ExecRequest, ImageSource, Ownership, ReapFilter, SandboxId, SandboxProvider,
    SandboxProviderExt, SandboxSpec, reap,
};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

const TEST_IMAGE: &str = "sandkit-test-busybox:latest";
/// Set in a child process: create a sandbox, print its id, die without cleaning up.
const CHILD_ENV: &str = "SANDKIT_DOCKER_TEST_CHILD";

async fn provider() -> Arc<dyn SandboxProvider> {
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    layers::standard(Arc::new(bare), LayerOptions::default())
}

fn docker() -> Docker {
    Docker::connect_with_defaults().expect("docker client")
}

fn spec() -> SandboxSpec {
    SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(300)
        .tag("suite", "local-docker-engine")
}

/// Terminates the sandbox when the test ends, whatever happened.
struct Guard(Arc<dyn SandboxProvider>, SandboxId);

impl Drop for Guard {
    fn drop(&mut self) {
        let provider = Arc::clone(&self.0);
        let id = self.1.clone();
        // A plain thread: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(async { provider.terminate(&id).await })
        })
        .join();
    }
}

async fn created(provider: &Arc<dyn SandboxProvider>, spec: SandboxSpec) -> (SandboxId, Guard) {
    let info = provider.create(&spec).await.expect("create");
    (info.id.clone(), Guard(Arc::clone(provider), info.id))
}

#[tokio::test]
async fn a_container_removed_behind_our_back_is_not_found_at_once() {
    let provider = provider().await;
    let (id, _guard) = created(&provider, spec()).await;
    let mut running = provider
        .exec(&id, ExecRequest::new(["sh", "-c", "echo up; sleep 60"]))
        .await
        .expect("exec");
    // Removed once the command surely runs.
    let first = futures::StreamExt::next(&mut running.stdout).await;
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    docker()
        .remove_container(
            id.as_str(),
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .expect("remove behind sandkit's back");

    let started = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("wait must not hang");
    assert!(
        matches!(waited, Err(Error::NotFound { .. })),
        "a command in a removed sandbox: {waited:?}"
    );
    for result in [
        provider.info(&id).await.map(drop),
        provider
            .exec(&id, ExecRequest::new(["true"]))
            .await
            .map(drop),
        provider.read_file(&id, "/etc/passwd").await.map(drop),
        provider.stat(&id, "/etc/passwd").await.map(drop),
        provider.write_file(&id, "x.txt", "x".into()).await,
    ] {
        assert!(
            matches!(result, Err(Error::NotFound { .. })),
            "expected NotFound, got {result:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    provider
        .terminate(&id)
        .await
        .expect("terminate is idempotent");
}

#[tokio::test]
async fn sandboxes_are_hardened() {
    let provider = provider().await;
    let (id, _guard) = created(&provider, spec()).await;
    let status = provider
        .run(&id, ExecRequest::new(["cat", "/proc/self/status"]))
        .await
        .expect("run")
        .stdout_lossy();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:\t"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapEff");
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_MKNOD: u64 = 1 << 27;
    assert_eq!(
        effective & (CAP_NET_RAW | CAP_SYS_ADMIN | CAP_MKNOD),
        0,
        "{effective:#x}"
    );
    assert_ne!(effective, 0, "root keeps a minimal set");

    let inspect = docker()
        .inspect_container(id.as_str(), None)
        .await
        .expect("inspect");
    let host = inspect.host_config.expect("host config");
    assert_eq!(host.pids_limit, Some(512));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
}

#[tokio::test]
async fn the_pids_limit_is_enforced() {
    let config = LocalDockerConfig {
        pids_limit: 16,
        ..LocalDockerConfig::default()
    };
    let bare = LocalDockerProvider::connect(config).await.expect("connect");
    let limited = layers::standard(Arc::new(bare), LayerOptions::default());
    let (id, _guard) = created(&limited, spec()).await;
    // Forty background sleepers: busybox's shell gives up at the first fork the limit
    // refuses.
    let script = "for i in $(seq 40); do sleep 30 & done; echo all forty started";
    let output = limited
        .run(&id, ExecRequest::new(["sh", "-c", script]))
        .await
        .expect("run");
    assert!(!output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(output.stderr_lossy().contains("can't fork"), "{output:?}");
}

#[tokio::test]
async fn out_of_memory_is_resource_limit_exceeded() {
    let provider = provider().await;
    let (id, _guard) = created(&provider, spec().memory_mib(32)).await;
    let result = provider
        .run(
            &id,
            ExecRequest::new(["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"]),
        )
        .await;
    assert!(
        matches!(result, Err(Error::ResourceLimitExceeded { .. })),
        "allocating 128 MiB under a 32 MiB limit: {result:?}"
    );
    // A plain kill afterwards is not mistaken for another out-of-memory kill.
    let killed = provider
        .run(&id, ExecRequest::new(["sh", "-c", "kill -9 $$"]))
        .await
        .expect("run");
    assert_eq!(killed.status.code, 137);
}

#[tokio::test]
async fn a_missing_image_without_a_registry_names_the_image() {
    let provider = provider().await;
    let image = "sandkit-no-such-image-anywhere:0.0.1";
    let result = provider.create(&spec().image(image)).await;
    match result {
        Err(Error::CreationFailed { message }) => assert!(message.contains(image), "{message}"),
        other => panic!("expected CreationFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn images_build_from_a_dockerfile_context_and_go_with_the_sandbox() {
    let provider = provider().await;
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nCOPY greeting.txt /greeting.txt\n"),
    )
    .expect("Dockerfile");
    std::fs::write(context.path().join("greeting.txt"), "built here\n").expect("file");
    let spec = spec().image_source(ImageSource::Dockerfile {
        context_dir: context.path().to_path_buf(),
        dockerfile: None,
    });
    let info = provider
        .create(&spec)
        .await
        .expect("create from a Dockerfile");
    let guard = Guard(Arc::clone(&provider), info.id.clone());
    let greeting = provider
        .read_to_string(&info.id, "/greeting.txt")
        .await
        .expect("read");
    assert_eq!(greeting, "built here\n");
    let image = docker()
        .inspect_container(info.id.as_str(), None)
        .await
        .expect("inspect")
        .config
        .and_then(|c| c.image)
        .expect("image");
    assert!(image.starts_with("sandkit-build:"), "{image}");
    drop(guard);
    let gone = docker().inspect_image(&image).await;
    assert!(gone.is_err(), "the built image outlived its sandbox");
}

#[tokio::test]
async fn a_bad_dockerfile_is_a_creation_failure() {
    let provider = provider().await;
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\nRUN exit 3\n"),
    )
    .expect("Dockerfile");
    let spec = spec().image_source(ImageSource::Dockerfile {
        context_dir: context.path().to_path_buf(),
        dockerfile: None,
    });
    let result = provider.create(&spec).await;
    assert!(
        matches!(result, Err(Error::CreationFailed { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unreachable_engine_says_how_to_start_one() {
    let config = LocalDockerConfig {
        host: Some("unix:///nonexistent/docker.sock".to_owned()),
        ..LocalDockerConfig::default()
    };
    match LocalDockerProvider::connect(config).await {
        Err(error @ Error::Unavailable { .. }) => {
            assert!(error.to_string().contains("docker-engine.sh"), "{error}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_registry_builds_local_docker() {
    let registration = sandkit_core::registry::find("local-docker").expect("registered");
    let provider = registration
        .build(serde_json::Value::Null)
        .await
        .expect("build from {}");
    assert_eq!(provider.name(), "local-docker");
    assert!(provider.capabilities().fs_snapshot);
    let schema = serde_json::to_string(&registration.config_schema()).expect("schema");
    assert!(schema.contains("default_image"), "{schema}");
}

/// Run as a child process by the next test: creates a sandbox with a short lifetime,
/// prints its id and dies without terminating it.
#[tokio::test]
async fn child_creates_a_sandbox_and_dies() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let provider = provider().await;
    let info = provider
        .create(&spec().lifetime_secs(3))
        .await
        .expect("create");
    println!("SANDBOX={}", info.id);
    std::process::abort();
}

#[tokio::test]
async fn the_lifetime_holds_when_the_creator_dies() {
    let child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_creates_a_sandbox_and_dies", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .await
        .expect("child");
    assert!(!child.status.success(), "the child must die, not finish");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("SANDBOX="))
        .unwrap_or_else(|| panic!("no sandbox id from the child: {stdout}"));
    let id = SandboxId(id.trim().to_owned());
    let provider = provider().await;
    let _guard = Guard(Arc::clone(&provider), id.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match provider.info(&id).await {
            Err(Error::NotFound { .. }) => break,
            Ok(info) if info.state.is_finished() => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("the sandbox outlived its 3 s lifetime: {other:?}"),
        }
    }
}

#[tokio::test]
async fn reap_lists_then_removes_an_ended_sandbox() {
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    // An owner of its own, so the reap touches no other test's sandboxes.
    let ownership = Ownership {
        owner: format!("reap-test-{}", uuid::Uuid::new_v4().simple()),
        ..Ownership::from_env()
    };
    let provider = layers::standard(
        Arc::new(bare),
        LayerOptions {
            ownership: ownership.clone(),
            ..LayerOptions::default()
        },
    );
    let (id, _guard) = created(&provider, spec().lifetime_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !provider.info(&id).await.expect("info").state.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the lifetime did not end the sandbox"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let filter = ReapFilter {
        owner: Some(ownership.owner.clone()),
        ..ReapFilter::default()
    };
    let dry = reap(provider.as_ref(), &filter, true)
        .await
        .expect("dry run");
    assert_eq!(dry.matched.len(), 1, "{:?}", dry.matched);
    assert!(dry.terminated.is_empty());
    assert!(
        docker().inspect_container(id.as_str(), None).await.is_ok(),
        "a dry run removed it"
    );

    let done = reap(provider.as_ref(), &filter, false).await.expect("reap");
    assert_eq!(done.terminated, vec![id.clone()]);
    assert!(
        docker().inspect_container(id.as_str(), None).await.is_err(),
        "still there"
    );
}

#[tokio::test]
async fn writing_a_file_over_a_directory_leaves_the_directory() {
    let provider = provider().await;
    let (id, _guard) = created(&provider, spec()).await;
    provider
        .write_file(&id, "/tmp/dir/inside.txt", "kept".into())
        .await
        .expect("write nested");
    let result = provider.write_file(&id, "/tmp/dir", "x".into()).await;
    assert!(
        matches!(
            result,
            Err(Error::FileOperation {
                kind: sandkit_core::FileErrorKind::IsADirectory,
                ..
            })
        ),
        "{result:?}"
    );
    let kept = provider
        .read_to_string(&id, "/tmp/dir/inside.txt")
        .await
        .expect("read");
    assert_eq!(kept, "kept");
}
