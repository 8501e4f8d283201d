//! The official Modal Python client (`modal==1.6.4`) runs a sandbox flow
//! (`tests/python/flow.py`) against the emulator over local processes.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_client_runs_a_sandbox_flow() {
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
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("MODAL_CONFIG_PATH", home.join("modal.toml"))
        .env("MODAL_SERVER_URL", server.url())
        .env("MODAL_TOKEN_ID", "ak-test")
        .env("MODAL_TOKEN_SECRET", "as-test")
        // The emulator serves V1 sandboxes; 1.6.4 defaults to V2 RPCs.
        .env("MODAL_SANDBOX_V2", "0")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the Python flow finished within 5 minutes")
        .expect("the Python interpreter started");
    server.shutdown().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("python flow: ok"),
        "the Python flow failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}
