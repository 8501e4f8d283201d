//! A snapshot carries the sandbox's filesystem and the image's own configuration, and
//! none of the spec's env or secrets: not in `Config`, not in `ContainerConfig`, not in
//! the parent image it is built on. Needs the engine `scripts/docker-engine.sh` starts.

use std::process::Command;
use std::sync::Arc;

use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ExecRequest, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

const TEST_IMAGE: &str = "sandkit-test-busybox:latest";

/// `docker image inspect` of `reference`: the engine's raw JSON, every field of it.
fn inspect_image(reference: &str) -> String {
    let output = Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker image inspect {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 JSON")
}

#[tokio::test]
async fn snapshots_hold_no_env_or_secret_in_any_config_field() {
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    let provider: Arc<dyn SandboxProvider> =
        layers::standard(Arc::new(bare), LayerOptions::default());
    let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let plain = format!("plain-{}", uuid::Uuid::new_v4().simple());
    let spec = SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(300)
        .secret("SANDKIT_TEST_TOKEN", &secret)
        .env("SANDKIT_TEST_PLAIN", &plain);
    let info = provider.create(&spec).await.expect("create");
    let id = info.id.clone();
    provider
        .write_file(&id, "/tmp/kept.txt", "kept".into())
        .await
        .expect("write");
    let snapshot = provider.snapshot(&id).await.expect("snapshot");
    // The sandbox still runs after its snapshot, unpaused.
    let echoed = provider
        .run(&id, ExecRequest::new(["echo", "alive"]))
        .await
        .expect("exec after the snapshot");
    assert_eq!(echoed.stdout_lossy(), "alive\n");
    provider.terminate(&id).await.expect("terminate");

    let inspected = inspect_image(&snapshot.id);
    for (what, value) in [("the secret", &secret), ("the env value", &plain)] {
        assert!(
            !inspected.contains(value.as_str()),
            "{what} is in `docker image inspect {}`:\n{inspected}",
            snapshot.id
        );
    }
    assert!(
        !inspected.contains("SANDKIT_TEST_TOKEN"),
        "the secret's name is in the image:\n{inspected}"
    );
    let image: serde_json::Value = serde_json::from_str(&inspected).expect("JSON");
    let image = &image[0];
    for field in ["Config", "ContainerConfig"] {
        let env = &image[field]["Env"];
        assert!(
            env.as_array().is_none_or(|env| env
                .iter()
                .all(|e| !e.as_str().unwrap_or("").contains("SANDKIT_TEST"))),
            "{field}.Env: {env}"
        );
    }
    // The image it is built on holds nothing either.
    if let Some(parent) = image["Parent"].as_str().filter(|p| !p.is_empty()) {
        let parent = inspect_image(parent);
        assert!(
            !parent.contains(&secret) && !parent.contains(&plain),
            "the parent image holds the environment:\n{parent}"
        );
    }

    // The filesystem came along, and the secret did not.
    let restored = provider
        .create(
            &SandboxSpec::new()
                .from_snapshot(&snapshot.id)
                .lifetime_secs(300),
        )
        .await
        .expect("restore");
    let kept = provider
        .read_to_string(&restored.id, "/tmp/kept.txt")
        .await
        .expect("read the kept file");
    assert_eq!(kept, "kept");
    let env = provider
        .run(&restored.id, ExecRequest::new(["env"]))
        .await
        .expect("env");
    assert!(
        !env.stdout_lossy().contains("SANDKIT_TEST"),
        "{}",
        env.stdout_lossy()
    );
    provider.terminate(&restored.id).await.expect("terminate");
    provider
        .delete_snapshot(&snapshot.id)
        .await
        .expect("delete the snapshot");
    let left = Command::new("docker")
        .args(["image", "inspect", &snapshot.id])
        .output()
        .expect("docker");
    assert!(!left.status.success(), "the snapshot image is still there");
    let base = format!("{}-base", snapshot.id);
    let left = Command::new("docker")
        .args(["image", "inspect", &base])
        .output()
        .expect("docker");
    assert!(
        !left.status.success(),
        "the snapshot's base tag is still there"
    );
}
