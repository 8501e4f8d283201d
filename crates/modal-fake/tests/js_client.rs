//! The official Modal JavaScript SDK (npm `modal`, version 0.11.1) runs a sandbox flow
//! (`tests/js/flow.mjs`) against the emulator over local processes, on Node.js, twice: in
//! the SDK's default mode (no `MODAL_SANDBOX_V2`: 0.11.1 reads the variable and, when it is
//! absent, creates V2 sandboxes with `SandboxCreateV2`) and with `MODAL_SANDBOX_V2=0` (V1
//! sandboxes: `SandboxCreate`, `SandboxGetTaskId`, `SandboxWait`, ...).
//!
//! The SDK lives in `$SANDKIT_MODAL_JS_DIR/node_modules/modal`, the directory defaulting
//! to `.venv/modal-js` at the workspace root. Install it with
//! `npm install --prefix .venv/modal-js modal@0.11.1`. A missing install fails this test;
//! it is never skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sandkit_modal_fake::{EmulatorOptions, serve_emulator};
use sandkit_provider_local_process as _;

/// The install command the failure messages print, so they say exactly how to fix it.
const INSTALL: &str = "npm install --prefix .venv/modal-js modal@0.11.1";

/// The directory holding `node_modules/modal`, after checking the SDK is installed there
/// in the version this test is written against.
fn sdk_dir() -> PathBuf {
    let dir = std::env::var_os("SANDKIT_MODAL_JS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/modal-js"));
    let manifest = dir.join("node_modules/modal/package.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|_| {
        panic!(
            "the Modal JavaScript SDK is missing: no {} (set SANDKIT_MODAL_JS_DIR, or run \
             `{INSTALL}` at the workspace root)",
            manifest.display()
        )
    });
    let package: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        package["version"],
        "0.11.1",
        "{} is not modal 0.11.1 (run `{INSTALL}` at the workspace root)",
        manifest.display()
    );
    dir
}

/// Runs one flow at a time: each starts sandboxes and a Node.js process, and the two runs
/// competing for a small machine's cores would only make both slower and flakier.
static ONE_FLOW_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The SDK's default mode: no `MODAL_SANDBOX_V2` at all, so 0.11.1 creates V2 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_js_sdk_runs_a_sandbox_flow_on_v2_sandboxes() {
    run_flow(None).await;
}

/// `MODAL_SANDBOX_V2=0`: the SDK creates V1 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_js_sdk_runs_a_sandbox_flow_on_v1_sandboxes() {
    run_flow(Some("0")).await;
}

/// Runs `flow.mjs` against a fresh emulator, with `MODAL_SANDBOX_V2` set to `sandbox_v2`
/// (or absent).
async fn run_flow(sandbox_v2: Option<&str>) {
    let _one_at_a_time = ONE_FLOW_AT_A_TIME.lock().await;
    let sdk = sdk_dir();
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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/flow.mjs");
    let home = state.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        // A config file that does not exist: the SDK then reads no profile at all, so
        // nothing from a developer's ~/.modal.toml leaks in.
        .env("MODAL_CONFIG_PATH", home.join("modal.toml"))
        .env("MODAL_SERVER_URL", server.url())
        .env("MODAL_TOKEN_ID", "ak-test")
        .env("MODAL_TOKEN_SECRET", "as-test")
        .env("SANDKIT_MODAL_JS_DIR", &sdk)
        .kill_on_drop(true);
    if let Some(value) = sandbox_v2 {
        command.env("MODAL_SANDBOX_V2", value);
    }
    let run = command.output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the JS flow finished within 5 minutes")
        .expect("node started (Node.js 20 or newer must be on PATH)");
    server.shutdown().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("js flow: ok"),
        "the JS flow (MODAL_SANDBOX_V2={sandbox_v2:?}) failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // The flow checks the id shapes itself; this checks it ran in the mode meant.
    let mode = if sandbox_v2 == Some("0") { "V1" } else { "V2" };
    assert!(
        stdout.contains(&format!("mode: {mode} sandboxes")),
        "the JS flow did not run on {mode} sandboxes:\n{stdout}"
    );
}
