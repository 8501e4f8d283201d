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

use std::path::PathBuf;

mod common;
mod sdk_flow;

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

/// The SDK's default mode: no `MODAL_SANDBOX_V2` at all, so 0.11.1 creates V2 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_js_sdk_runs_a_sandbox_flow_on_v2_sandboxes() {
    sdk_flow::run(flow(&sdk_dir()), None).await;
}

/// `MODAL_SANDBOX_V2=0`: the SDK creates V1 sandboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_js_sdk_runs_a_sandbox_flow_on_v1_sandboxes() {
    sdk_flow::run(flow(&sdk_dir()), Some("0")).await;
}

fn flow(sdk: &std::path::Path) -> sdk_flow::Flow<'static> {
    sdk_flow::Flow {
        language: "js",
        interpreter: std::path::Path::new("node"),
        script: "js/flow.mjs",
        env: vec![("SANDKIT_MODAL_JS_DIR", sdk.as_os_str().to_owned())],
    }
}
