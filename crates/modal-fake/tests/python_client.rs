//! The official Modal Python client (`modal==1.6.4`) runs a sandbox flow
//! (`tests/python/flow.py`) against the emulator over local processes, twice: in the
//! client's default mode (V2 sandboxes: `SandboxCreateV2`, `SandboxWaitV2`, ...) and with
//! `MODAL_SANDBOX_V2=0` (V1 sandboxes: `SandboxCreate`, `SandboxWait`, ...).
//!
//! The client lives in a virtual environment: `$SANDKIT_MODAL_VENV`, or `.venv/modal` at
//! the workspace root. Create it with
//! `python3 -m venv .venv/modal && .venv/modal/bin/pip install modal==1.6.4`.
//! A missing environment fails this test; it is never skipped.

use std::path::PathBuf;

mod common;
mod sdk_flow;

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

/// The client's default mode: no `MODAL_SANDBOX_V2` at all, so 1.6.4 creates V2 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_client_runs_a_sandbox_flow_on_v2_sandboxes() {
    sdk_flow::run(flow(&venv_python()), None).await;
}

/// `MODAL_SANDBOX_V2=0`: the client creates V1 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_client_runs_a_sandbox_flow_on_v1_sandboxes() {
    sdk_flow::run(flow(&venv_python()), Some("0")).await;
}

fn flow(python: &std::path::Path) -> sdk_flow::Flow<'_> {
    sdk_flow::Flow {
        language: "python",
        interpreter: python,
        script: "python/flow.py",
        env: Vec::new(),
    }
}
