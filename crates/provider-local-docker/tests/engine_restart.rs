//! A Docker Engine restart in the middle of a run: sandboxes keep running (the engine
//! runs with live-restore, as `scripts/docker-engine.sh` starts it) and the same
//! provider finds them again by their labels.
//!
//! Its own test binary, so no other test of this crate runs while dockerd is down.

use std::sync::Arc;

use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ExecRequest, ListFilter, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

const TEST_IMAGE: &str = "sandkit-test-busybox:latest";

/// Restarts dockerd: only with `SANDKIT_DOCKER_RESTART_TEST=1`, as it disturbs everyone
/// using the engine. The test script sets it when it owns the engine.
#[tokio::test]
async fn sandboxes_survive_an_engine_restart() {
    if std::env::var("SANDKIT_DOCKER_RESTART_TEST").as_deref() != Ok("1") {
        eprintln!("SANDKIT_DOCKER_RESTART_TEST is not 1: not restarting dockerd");
        return;
    }
    // What the test needs, checked first: without live-restore every container stops
    // with dockerd, and the test would fail with a bare "0 sandboxes found".
    let live_restore = std::process::Command::new("docker")
        .args(["info", "--format", "{{json .LiveRestoreEnabled}}"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker info` ({e}); run scripts/docker-engine.sh"));
    assert!(
        live_restore.status.success(),
        "`docker info` failed: {}; run scripts/docker-engine.sh",
        String::from_utf8_lossy(&live_restore.stderr).trim()
    );
    assert_eq!(
        String::from_utf8_lossy(&live_restore.stdout).trim(),
        "true",
        "this test needs a Docker Engine with live-restore (`dockerd --live-restore`, or \
         \"live-restore\": true in daemon.json), as scripts/docker-engine.sh starts it; \
         the running engine has it off, so its containers would stop with it"
    );
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    let provider: Arc<dyn SandboxProvider> =
        layers::standard(Arc::new(bare), LayerOptions::default());
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let spec = SandboxSpec::new()
        .image(TEST_IMAGE)
        .lifetime_secs(300)
        .tag("restart-marker", &marker);
    let id = provider.create(&spec).await.expect("create").id;
    provider
        .write_file(&id, "/tmp/before.txt", "kept".into())
        .await
        .expect("write");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/docker-engine.sh"
    );
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "pid=$(pgrep -x dockerd) && kill $pid && while kill -0 $pid 2>/dev/null; do sleep 0.2; done; {script}"
            ),
        ])
        .status()
        .expect("restart dockerd");
    assert!(status.success(), "restarting dockerd failed");

    // The same provider instance keeps working: every request opens a new connection.
    let found = provider
        .list(&ListFilter::all().tag("restart-marker", &marker))
        .await
        .expect("list after restart");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, id);
    let kept = provider
        .read_to_string(&id, "/tmp/before.txt")
        .await
        .expect("read after restart");
    assert_eq!(kept, "kept");
    let echoed = provider
        .run(&id, ExecRequest::new(["echo", "alive"]))
        .await
        .expect("exec after restart");
    assert_eq!(echoed.stdout_lossy(), "alive\n");
    provider.terminate(&id).await.expect("terminate");
}
