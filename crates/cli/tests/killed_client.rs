//! A `sandkit run` killed with SIGKILL leaves nothing behind for long: its sandbox holds a
//! lease that only the live process renews, so within 30 s the sandbox, and the command
//! it was running, are gone, on local-process and on local-docker.
//!
//! The local-docker half needs the engine `scripts/docker-engine.sh` starts (and its
//! image `sandkit-test-busybox:latest`); without one it fails saying so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The target: a killed client's sandbox is gone within this long.
const GONE_WITHIN: Duration = Duration::from_secs(30);

fn sandkit(provider: &str, config: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandkit"));
    command
        .args(["--provider", provider, "--config", config])
        .stdin(Stdio::null());
    command
}

/// The ids of the sandboxes tagged `marker=<marker>`, running or finished (a stopped
/// container still counts).
fn sandboxes(provider: &str, config: &str, marker: &str) -> Vec<String> {
    let output = sandkit(provider, config)
        .args([
            "ls",
            "--all",
            "--json",
            "--tag",
            &format!("marker={marker}"),
        ])
        .output()
        .expect("sandkit ls runs");
    assert!(output.status.success(), "{output:?}");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("ls --json is JSON");
    listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|info| info["id"].as_str().map(str::to_owned))
        .collect()
}

/// Starts `sandkit run -- sleep 300` (a marked sandbox), waits until its sandbox exists,
/// SIGKILLs it, and returns how long the sandbox then took to disappear.
fn kill_a_running_client(provider: &str, config: &str, extra: &[&str]) -> Duration {
    let marker = format!("killed-{}", std::process::id());
    let mut client: Child = sandkit(provider, config)
        .args(["run", "--tag", &format!("marker={marker}")])
        .args(extra)
        .args(["--", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandkit run starts");
    let started = Instant::now();
    while sandboxes(provider, config, &marker).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sandkit run made no sandbox within a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the command start inside.
    std::thread::sleep(Duration::from_secs(1));
    client.kill().expect("SIGKILL");
    client.wait().expect("reaped");
    let killed = Instant::now();
    while !sandboxes(provider, config, &marker).is_empty() {
        if killed.elapsed() > GONE_WITHIN + Duration::from_secs(30) {
            // Leave nothing behind even when failing.
            for id in sandboxes(provider, config, &marker) {
                let _ = sandkit(provider, config).args(["rm", &id]).output();
            }
            panic!("the sandbox of a killed `sandkit run` outlived it by over a minute");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    killed.elapsed()
}

#[test]
fn local_process_sandbox_of_a_killed_run_is_gone_within_30_s() {
    let state = tempfile::tempdir().expect("a state directory");
    let config = serde_json::json!({ "state_dir": state.path() }).to_string();
    let gone = kill_a_running_client("local-process", &config, &[]);
    assert!(gone <= GONE_WITHIN, "gone after {gone:?}");
    // The command it ran is gone too: nothing is left in the state directory's sandboxes.
    let left = std::fs::read_dir(state.path().join("sandboxes"))
        .expect("the sandboxes directory")
        .count();
    assert_eq!(left, 0, "{left} sandbox directories left");
}

#[test]
fn local_docker_sandbox_of_a_killed_run_is_gone_within_30_s() {
    let engine = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        engine.is_ok_and(|status| status.success()),
        "this test needs a Docker Engine: run scripts/docker-engine.sh"
    );
    let gone = kill_a_running_client(
        "local-docker",
        "{}",
        &["--image", "sandkit-test-busybox:latest"],
    );
    assert!(gone <= GONE_WITHIN, "gone after {gone:?}");
}
