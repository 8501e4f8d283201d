//! A secret given to `sandkit` never leaves the process unredacted: every command, at
//! `-vvv` and with `--json`, on local-process and on local-docker, and its errors, keep
//! it off stdout and stderr, out of every file sandkit writes and out of snapshot
//! images. The one documented exception is local-process's `secrets.json` (mode 0600),
//! where the sandbox's secrets are kept for the commands that run in it.
//!
//! The local-docker half needs the engine `scripts/docker-engine.sh` starts (and its
//! image `sandkit-test-busybox:latest`); without one it fails saying so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const TEST_IMAGE: &str = "sandkit-test-busybox:latest";
const SECRET_NAME: &str = "SANDKIT_TEST_TOKEN";

/// A random token: found anywhere, it leaked.
fn token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("tok{hex}")
}

struct Harness {
    provider: &'static str,
    config: String,
    /// The local-process state directory, when there is one.
    state: Option<tempfile::TempDir>,
    token: String,
    /// Local files the commands wrote (cp destinations).
    written: Vec<PathBuf>,
    commands: usize,
    /// Commands whose stderr had debug or trace lines.
    logged: usize,
    /// Sandboxes and snapshots to remove should the test fail half-way.
    cleanup: Vec<Vec<String>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for args in self.cleanup.drain(..).rev() {
            let _ = Command::new(env!("CARGO_BIN_EXE_sandkit"))
                .args(["--provider", self.provider, "--config", &self.config])
                .args(&args)
                .stdin(Stdio::null())
                .output();
        }
    }
}

impl Harness {
    fn local_process() -> Self {
        let state = tempfile::tempdir().expect("a state directory");
        let config = serde_json::json!({ "state_dir": state.path() }).to_string();
        Self {
            provider: "local-process",
            config,
            state: Some(state),
            token: token(),
            written: Vec::new(),
            commands: 0,
            logged: 0,
            cleanup: Vec::new(),
        }
    }

    fn local_docker() -> Self {
        let engine = Command::new("docker")
            .args(["image", "inspect", TEST_IMAGE])
            .output();
        assert!(
            engine.is_ok_and(|output| output.status.success()),
            "no Docker Engine with {TEST_IMAGE}; run scripts/docker-engine.sh"
        );
        Self {
            provider: "local-docker",
            config: serde_json::json!({ "default_image": TEST_IMAGE }).to_string(),
            state: None,
            token: token(),
            written: Vec::new(),
            commands: 0,
            logged: 0,
            cleanup: Vec::new(),
        }
    }

    fn secret_flag(&self) -> String {
        format!("{SECRET_NAME}={}", self.token)
    }

    /// Runs `sandkit -vvv --provider P --config C <args>` and asserts the token is on
    /// neither stream. Returns the output.
    fn run(&mut self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_sandkit"))
            .env_remove("SANDKIT_PROVIDER")
            .env_remove("SANDKIT_CONFIG")
            .env_remove("RUST_LOG")
            .args([
                "-vvv",
                "--provider",
                self.provider,
                "--config",
                &self.config,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the sandkit binary runs");
        self.commands += 1;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stdout.contains(&self.token),
            "{}: `sandkit {}` printed the secret on stdout:\n{stdout}",
            self.provider,
            args.join(" ")
        );
        assert!(
            !stderr.contains(&self.token),
            "{}: `sandkit -vvv {}` printed the secret on stderr:\n{}",
            self.provider,
            args.join(" "),
            stderr
                .lines()
                .filter(|line| line.contains(&self.token))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The logs really are on: counted, and checked once every command ran.
        if stderr.contains("DEBUG") || stderr.contains("TRACE") {
            self.logged += 1;
        }
        output
    }

    fn ok(&mut self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: sandkit {}: {}",
            self.provider,
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn json(&mut self, args: &[&str]) -> Value {
        let stdout = self.ok(&[&["--json"], args].concat());
        serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!(
                "`sandkit --json {}`: no JSON ({error}): {stdout}",
                args.join(" ")
            )
        })
    }

    /// Asserts the token is in no file under the state directory, except the sandbox's
    /// `secrets.json`, which must be mode 0600. Returns how many files were read.
    fn check_state_files(&self) -> usize {
        let Some(state) = &self.state else {
            return 0;
        };
        let mut checked = 0;
        let mut stack = vec![state.path().to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                checked += 1;
                if !contains(&bytes, self.token.as_bytes()) {
                    continue;
                }
                let exception = path.file_name().is_some_and(|name| name == "secrets.json");
                assert!(exception, "the secret is in {}", path.display());
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(
                    mode,
                    0o600,
                    "{} holds the secret with mode {mode:o}",
                    path.display()
                );
            }
        }
        checked
    }

    fn check_written_files(&self) {
        for path in &self.written {
            let mut stack = vec![path.clone()];
            while let Some(path) = stack.pop() {
                if path.is_dir() {
                    stack.extend(
                        std::fs::read_dir(&path)
                            .unwrap()
                            .flatten()
                            .map(|e| e.path()),
                    );
                } else if let Ok(bytes) = std::fs::read(&path) {
                    assert!(
                        !contains(&bytes, self.token.as_bytes()),
                        "the secret is in {}",
                        path.display()
                    );
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Every command, in both output modes, with the secret on the sandbox.
fn every_command(mut h: Harness) {
    let secret = h.secret_flag();
    let local = tempfile::tempdir().expect("a local directory");
    let upload = local.path().join("upload.txt");
    std::fs::write(&upload, "uploaded\n").expect("write");

    // run: the command sees the secret, nobody else does.
    h.ok(&[
        "run",
        "--secret",
        &secret,
        "--",
        "sh",
        "-c",
        &format!("test -n \"${SECRET_NAME}\""),
    ]);
    let report = h.json(&["run", "--secret", &secret, "--", "true"]);
    assert_eq!(report["exit_code"], 0, "{report}");

    // create (plain and JSON), with the secret and a tag.
    let tag = format!(
        "run={}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let id = h
        .ok(&[
            "create",
            "--secret",
            &secret,
            "--lifetime-secs",
            "600",
            "--tag",
            &tag,
        ])
        .trim()
        .to_owned();
    let info = h.json(&["create", "--secret", &secret, "--lifetime-secs", "600"]);
    let second = info["id"].as_str().expect("an id").to_owned();
    h.cleanup.push(vec!["rm".into(), id.clone()]);
    h.cleanup.push(vec!["rm".into(), second.clone()]);
    let files_while_running = h.check_state_files();
    if h.state.is_some() {
        assert!(files_while_running > 0, "the state directory is empty");
    }

    // exec: the secret is there for the command (checked by its length and prefix, so
    // the token itself is not on a command line).
    let check = format!(
        "test \"${{#{SECRET_NAME}}}\" = {} && case \"${SECRET_NAME}\" in tok*) ;; *) exit 1;; esac",
        h.token.len()
    );
    h.ok(&["exec", &id, "--", "sh", "-c", &check]);
    let report = h.json(&["exec", &id, "--", "true"]);
    assert_eq!(report["exit_code"], 0, "{report}");
    // A failing command and a missing program: error paths.
    let output = h.run(&["exec", &id, "--", "/no/such/program"]);
    assert_eq!(output.status.code(), Some(127));
    let output = h.run(&["--json", "exec", &id, "--", "/no/such/program"]);
    assert_eq!(output.status.code(), Some(127));

    // ls, plain and JSON, filtered and not.
    h.ok(&["ls"]);
    let listed = h.json(&["ls", "--tag", &tag]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    h.json(&["ls", "--all"]);

    // cp in and out, plain and JSON.
    h.ok(&["cp", path(&upload), &format!("{id}:up.txt")]);
    let back = local.path().join("back.txt");
    h.json(&["cp", &format!("{id}:up.txt"), path(&back)]);
    h.written.push(back.clone());
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied back"),
        "uploaded\n"
    );
    let tree_in = local.path().join("tree-in");
    std::fs::create_dir_all(tree_in.join("sub")).expect("mkdir");
    std::fs::write(tree_in.join("sub/file.txt"), "in a tree\n").expect("write");
    h.ok(&["cp", path(&tree_in), &format!("{id}:tree")]);
    let tree = local.path().join("tree-out");
    h.json(&["cp", &format!("{id}:tree"), path(&tree)]);
    h.written.push(tree);

    // snapshot, plain and JSON; restore; delete.
    let snapshot = h.ok(&["snapshot", &id]).trim().to_owned();
    let value = h.json(&["snapshot", &second]);
    let second_snapshot = value["id"].as_str().expect("a snapshot id").to_owned();
    h.cleanup
        .push(vec!["snapshot".into(), "--delete".into(), snapshot.clone()]);
    h.cleanup.push(vec![
        "snapshot".into(),
        "--delete".into(),
        second_snapshot.clone(),
    ]);
    if h.provider == "local-docker" {
        for image in [&snapshot, &second_snapshot] {
            let inspect = Command::new("docker")
                .args(["image", "inspect", image])
                .output()
                .expect("docker image inspect");
            assert!(inspect.status.success(), "no image {image}");
            let text = String::from_utf8_lossy(&inspect.stdout);
            assert!(
                !text.contains(&h.token),
                "the secret is in `docker image inspect {image}`:\n{text}"
            );
        }
    }
    h.check_state_files();
    h.ok(&["run", "--snapshot", &snapshot, "--", "cat", "up.txt"]);

    // reap, dry runs only (other tests' sandboxes may be on the same engine).
    h.ok(&["reap", "--dry-run"]);
    h.json(&["reap", "--dry-run", "--all"]);

    // Errors carrying the secret on the command line.
    let output = h.run(&["create", "--secret", &secret, "--cpu", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let output = h.run(&[
        "--json",
        "run",
        "--secret",
        &format!("A B={}", h.token),
        "--",
        "true",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let output = h.run(&["run", "--secret", &format!("={}", h.token), "--", "true"]);
    assert_eq!(output.status.code(), Some(2));
    let output = h.run(&[
        "--json",
        "create",
        "--secret",
        &secret,
        "--lifetime-secs",
        "99999999999",
    ]);
    assert_eq!(output.status.code(), Some(2));

    // rm, plain and JSON; snapshots deleted.
    h.ok(&["snapshot", "--delete", &snapshot]);
    h.json(&["snapshot", "--delete", &second_snapshot]);
    h.ok(&["rm", &id]);
    h.json(&["rm", &second]);
    // rm is idempotent; exec in a removed sandbox is an error (another error path).
    h.ok(&["rm", &id]);
    let output = h.run(&["--json", "exec", &id, "--", "true"]);
    assert_eq!(output.status.code(), Some(1), "a removed sandbox is gone");

    h.check_state_files();
    h.check_written_files();
    eprintln!(
        "{}: {} commands, the secret never showed",
        h.provider, h.commands
    );
}

#[test]
fn no_command_leaks_a_secret_on_local_process() {
    every_command(Harness::local_process());
}

#[test]
fn no_command_leaks_a_secret_on_local_docker() {
    every_command(Harness::local_docker());
}
