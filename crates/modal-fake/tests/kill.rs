//! The modal provider's kill command runs for real inside the sandbox, as on Modal: the
//! emulator passes it to the backend like any command. It kills the command, its nested
//! children, and a child that cleared its environment (`env -i`), on Docker and on local
//! processes under bubblewrap.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sandkit_core::{ExecRequest, SandboxProvider, SandboxProviderExt as _, SandboxSpec};

/// Starts a command with three kinds of children, kills it, and returns what of them is
/// left in the sandbox.
async fn survivors_of_a_kill(modal: &Arc<dyn SandboxProvider>, spec: SandboxSpec) -> String {
    let id = modal.create(&spec.lifetime_secs(300)).await.unwrap().id;
    let script = "sleep 301 & env -i sleep 302 & sh -c 'sleep 303 & wait' & wait";
    let mut process = modal
        .exec(&id, ExecRequest::new(["sh", "-c", script]))
        .await
        .unwrap();
    // The children's command lines, as the processes in the sandbox show them.
    let processes = "for p in /proc/[0-9]*; do tr '\\000' ' ' < $p/cmdline 2>/dev/null; echo; \
                     done | grep -E '^sleep 30[123] ?$' || true";
    let mut started = String::new();
    for _ in 0..100 {
        started = modal
            .run(&id, ExecRequest::new(["sh", "-c", processes]))
            .await
            .unwrap()
            .stdout_lossy();
        if ["sleep 301", "sleep 302", "sleep 303"]
            .iter()
            .all(|sleep| started.contains(sleep))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.contains("sleep 302"),
        "the children did not start: {started}"
    );
    process.kill().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), process.wait())
        .await
        .expect("a killed command ends")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let left = modal
        .run(&id, ExecRequest::new(["sh", "-c", processes]))
        .await
        .unwrap()
        .stdout_lossy();
    modal.terminate(&id).await.unwrap();
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_ends_the_whole_tree_on_docker() {
    let (server, _) = common::docker_emulator(Default::default()).await.unwrap();
    let modal = common::modal_provider(&server.url()).await.unwrap();
    let spec = SandboxSpec::new().image(common::DOCKER_TEST_IMAGE);
    let left = survivors_of_a_kill(&modal, spec).await;
    assert_eq!(left.trim(), "", "left after the kill: {left}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_ends_the_whole_tree_on_local_processes() {
    let (server, _) = common::bubblewrap_emulator("kill").await.unwrap();
    let modal = common::modal_provider(&server.url()).await.unwrap();
    let left = survivors_of_a_kill(&modal, SandboxSpec::new()).await;
    assert_eq!(left.trim(), "", "left after the kill: {left}");
    server.shutdown().await.unwrap();
}
