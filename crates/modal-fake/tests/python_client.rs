//! The official Modal Python client (`modal==1.6.4`) runs a sandbox flow
//! (`tests/python/flow.py`) against the emulator over local processes, twice: in the
//! client's default mode (V2 sandboxes: `SandboxCreateV2`, `SandboxWaitV2`, ...) and with
//! `MODAL_SANDBOX_V2=0` (V1 sandboxes: `SandboxCreate`, `SandboxWait`, ...).
//!
//! The client lives in a virtual environment: `$SANDKIT_MODAL_VENV`, or `.venv/modal` at
//! the workspace root. Create it with
//! `python3 -m venv .venv/modal && .venv/modal/bin/pip install modal==1.6.4`.
//! A missing environment fails this test; it is never skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sandkit_modal_fake::{EmulatorOptions, serve_emulator};
use sandkit_provider_local_process as _;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SANDKIT_MODAL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/modal"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the Modal Python client is missing: no {} (set SANDKIT_MODAL_VENV, or run \
         `python3 -m venv .venv/modal && .venv/modal/bin/pip install modal==1.6.4` at the \
         workspace root)",
        python.display()
    );
    python
}

/// Runs one flow at a time: each starts sandboxes and a Python interpreter, and the two
/// runs competing for a small machine's cores would only make both slower and flakier.
static ONE_FLOW_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The client's default mode: no `MODAL_SANDBOX_V2` at all, so 1.6.4 creates V2 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_client_runs_a_sandbox_flow_on_v2_sandboxes() {
    run_flow(None).await;
}

/// `MODAL_SANDBOX_V2=0`: the client creates V1 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_client_runs_a_sandbox_flow_on_v1_sandboxes() {
    run_flow(Some("0")).await;
}

/// Runs `flow.py` against a fresh emulator, with `MODAL_SANDBOX_V2` set to `sandbox_v2`
/// (or absent).
async fn run_flow(sandbox_v2: Option<&str>) {
    let _one_at_a_time = ONE_FLOW_AT_A_TIME.lock().await;
    let python = venv_python();
    let state = tempfile::tempdir().unwrap();
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": state.path().join("sandboxes") }),
    )
    .await
    .unwrap();
    let server = serve_emulator(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::new(backend),
    )
    .await
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/flow.py");
    let home = state.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("MODAL_CONFIG_PATH", home.join("modal.toml"))
        .env("MODAL_SERVER_URL", server.url())
        .env("MODAL_TOKEN_ID", "ak-test")
        .env("MODAL_TOKEN_SECRET", "as-test")
        .kill_on_drop(true);
    if let Some(value) = sandbox_v2 {
        command.env("MODAL_SANDBOX_V2", value);
    }
    let run = command.output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the Python flow finished within 5 minutes")
        .expect("the Python interpreter started");
    server.shutdown().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("python flow: ok"),
        "the Python flow (MODAL_SANDBOX_V2={sandbox_v2:?}) failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // The flow checks the id shapes itself; this checks it ran in the mode meant.
    let mode = if sandbox_v2 == Some("0") { "V1" } else { "V2" };
    assert!(
        stdout.contains(&format!("mode: {mode} sandboxes")),
        "the Python flow did not run on {mode} sandboxes:\n{stdout}"
    );
}
