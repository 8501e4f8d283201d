//! The `modal-fake` binary: `emulate` with no flags serves over local processes, and
//! `--backend local-docker` over the Docker Engine (the binary links both providers). Each
//! run creates a sandbox through the `modal` provider and asks it where it is.

mod common;

use std::process::Stdio;
use std::time::Duration;

use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ExecRequest, SandboxProviderExt as _, SandboxSpec};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Starts `modal-fake emulate ARGS` and returns it with the URL it prints.
async fn emulate(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modal-fake"))
        .arg("emulate")
        .args(["--port", "0"])
        .args(args)
        .env("XDG_STATE_HOME", common::state_dir("binary"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("modal-fake starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("modal-fake printed its URL within 60 s")
        .expect("stdout is readable")
        .expect("modal-fake printed a line");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

/// Creates a sandbox through the emulator at `url` with `spec`, returns what `pwd`
/// prints in it and terminates it.
async fn pwd_in_sandbox(url: &str, spec: SandboxSpec) -> String {
    let modal = common::modal_provider(url)
        .await
        .expect("the provider builds");
    // The standard layers add the ownership tags every sandbox carries.
    let modal = layers::standard(modal, LayerOptions::default());
    let info = modal.create(&spec).await.expect("a sandbox is created");
    let output = modal
        .run(&info.id, ExecRequest::new(["pwd"]))
        .await
        .expect("pwd runs");
    modal.terminate(&info.id).await.expect("terminate");
    assert_eq!(output.status.code, 0, "pwd failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        // SIGTERM, so the emulator cleans up its sandboxes.
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("modal-fake exited within 60 s after SIGTERM")
        .expect("modal-fake is waitable");
    assert!(status.success(), "modal-fake exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulate_without_flags_runs_on_local_processes() {
    let (child, url) = emulate(&[]).await;
    let spec = SandboxSpec::new().lifetime_secs(120);
    // Local processes start in their workdir, `/workspace` under bubblewrap and a host
    // directory without it; Docker's busybox image would start in `/`.
    let pwd = pwd_in_sandbox(&url, spec).await;
    assert_ne!(
        pwd, "/",
        "a no-flag emulator ran the sandbox somewhere unexpected"
    );
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulate_with_backend_local_docker_runs_on_the_engine() {
    let config = format!(r#"{{"default_image":"{}"}}"#, common::DOCKER_TEST_IMAGE);
    let (child, url) = emulate(&["--backend", "local-docker", "--backend-config", &config]).await;
    let spec = SandboxSpec::new()
        .image(common::DOCKER_TEST_IMAGE)
        .lifetime_secs(120);
    assert_eq!(pwd_in_sandbox(&url, spec).await, "/");
    stop(child).await;
}
