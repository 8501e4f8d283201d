//! Running an official Modal SDK's sandbox flow against a fresh emulator over local
//! processes (`common::emulator`): shared by the Python and the JavaScript referees.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs one flow at a time: each starts sandboxes and an interpreter, and two competing
/// for a small machine's cores would only make both slower and flakier.
static ONE_FLOW_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One SDK's flow.
pub struct Flow<'a> {
    /// The SDK's language, as the flow prints it (`python flow: ok`).
    pub language: &'static str,
    /// The interpreter.
    pub interpreter: &'a Path,
    /// The script, under `tests/`.
    pub script: &'static str,
    /// More environment for the interpreter.
    pub env: Vec<(&'static str, OsString)>,
}

/// Runs `flow` with `MODAL_SANDBOX_V2` set to `sandbox_v2` (or absent), and checks that
/// it passed on sandboxes of the mode meant.
pub async fn run(flow: Flow<'_>, sandbox_v2: Option<&str>) {
    let _one_at_a_time = ONE_FLOW_AT_A_TIME.lock().await;
    let state = tempfile::tempdir().unwrap();
    let server = crate::common::emulator(&format!("{}-flow", flow.language), Default::default())
        .await
        .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(flow.script);
    let home = state.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = tokio::process::Command::new(flow.interpreter);
    command
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        // A config file that does not exist: the SDK then reads no profile at all, so
        // nothing from a developer's own Modal configuration leaks in.
        .env("MODAL_CONFIG_PATH", home.join("modal.toml"))
        .env("MODAL_SERVER_URL", server.url())
        .env("MODAL_TOKEN_ID", "ak-test")
        .env("MODAL_TOKEN_SECRET", "as-test")
        .envs(flow.env)
        .kill_on_drop(true);
    if let Some(value) = sandbox_v2 {
        command.env("MODAL_SANDBOX_V2", value);
    }
    let language = flow.language;
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .unwrap_or_else(|_| panic!("the {language} flow did not finish within 5 minutes"))
        .unwrap_or_else(|e| panic!("the {language} interpreter did not start: {e}"));
    server.shutdown().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(&format!("{language} flow: ok")),
        "the {language} flow (MODAL_SANDBOX_V2={sandbox_v2:?}) failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // The flow checks the id shapes itself; this checks it ran in the mode meant.
    let mode = if sandbox_v2 == Some("0") { "V1" } else { "V2" };
    assert!(
        stdout.contains(&format!("mode: {mode} sandboxes")),
        "the {language} flow did not run on {mode} sandboxes:\n{stdout}"
    );
}
