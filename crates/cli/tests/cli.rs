//! The `sandkit` binary, run as a user runs it, against the embedded local-process
//! provider with a private state directory per test.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A private local-process state directory, and the binary pointed at it.
struct Sandkit {
    state: tempfile::TempDir,
}

impl Sandkit {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().expect("a temporary state directory"),
        }
    }

    fn command(&self) -> Command {
        let config = serde_json::json!({ "state_dir": self.state.path() }).to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandkit"));
        command
            .env("SANDKIT_PROVIDER", "local-process")
            .env_remove("SANDKIT_CONFIG")
            .env_remove("RUST_LOG")
            .args(["--config", &config])
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("the sandkit binary runs")
    }

    fn json(&self, args: &[&str]) -> (Value, Output) {
        let output = self.run(&[&["--json"], args].concat());
        let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "`sandkit --json {}` printed no JSON ({error}): {}\nstderr: {}",
                args.join(" "),
                text(&output.stdout),
                text(&output.stderr)
            )
        });
        (value, output)
    }

    /// Ids of the sandboxes the provider lists.
    fn listed(&self) -> Vec<String> {
        let (value, output) = self.json(&["ls"]);
        assert!(output.status.success(), "ls: {}", text(&output.stderr));
        value
            .as_array()
            .expect("ls --json is an array")
            .iter()
            .map(|entry| entry["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    fn create(&self) -> String {
        let output = self.run(&["create", "--lifetime-secs", "600"]);
        assert_eq!(code(&output), 0, "create: {}", text(&output.stderr));
        let id = text(&output.stdout).trim().to_owned();
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "create printed `{id}`"
        );
        id
    }

    /// Asserts that no sandbox is listed, none is left in the state directory, and no
    /// process still runs from it.
    fn assert_clean(&self) {
        assert_eq!(self.listed(), Vec::<String>::new(), "sandboxes left behind");
        let sandboxes = self.state.path().join("sandboxes");
        if let Ok(entries) = std::fs::read_dir(&sandboxes) {
            let left: Vec<_> = entries.flatten().map(|entry| entry.file_name()).collect();
            assert!(left.is_empty(), "left in {}: {left:?}", sandboxes.display());
        }
        let state = self.state.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stray = processes_mentioning(&state);
            if stray.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left running: {stray:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("exited, not killed by a signal")
}

/// Command lines of running processes that contain `needle` (excluding zombies).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        if status
            .lines()
            .any(|line| line.starts_with("State:") && line.contains('Z'))
        {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(path.join("cmdline")) {
            let cmdline = text(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn run_prints_the_output_and_exits_0() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["run", "--", "echo", "hello"]);
    assert_eq!(text(&output.stdout), "hello\n");
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    sandkit.assert_clean();
}

#[test]
fn run_exits_with_the_commands_exit_code() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&output), 3);
    assert_eq!(text(&output.stdout), "out\n");
    assert!(
        text(&output.stderr).contains("err\n"),
        "{}",
        text(&output.stderr)
    );
    sandkit.assert_clean();
}

#[test]
fn run_of_a_missing_program_fails_clearly_and_leaves_nothing() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["run", "--", "/no/such/binary"]);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output), 127, "stderr: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("/no/such/binary"),
        "{stderr}"
    );
    sandkit.assert_clean();
}

#[test]
fn run_with_json_prints_one_document() {
    let sandkit = Sandkit::new();
    let (value, output) = sandkit.json(&["run", "--", "sh", "-c", "printf hi; exit 4"]);
    assert_eq!(code(&output), 4);
    assert_eq!(value["exit_code"], 4);
    assert_eq!(value["stdout"], "hi");
    assert_eq!(value["provider"], "local-process");
    sandkit.assert_clean();
}

#[test]
fn run_kills_a_command_past_its_timeout() {
    let sandkit = Sandkit::new();
    let started = Instant::now();
    let output = sandkit.run(&["run", "--timeout-secs", "1", "--", "sleep", "30"]);
    assert_eq!(code(&output), 124, "stderr: {}", text(&output.stderr));
    assert!(started.elapsed() < Duration::from_secs(25));
    assert!(text(&output.stderr).contains("timed out"));
    sandkit.assert_clean();
}

#[test]
fn ctrl_c_kills_the_command_and_terminates_the_sandbox() {
    let sandkit = Sandkit::new();
    let child = sandkit
        .command()
        .args(["run", "--", "sleep", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sandkit starts");
    // Wait until the sandbox exists, so the signal arrives while the command runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandkit.listed().is_empty() {
        assert!(Instant::now() < deadline, "the sandbox never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = child.wait_with_output().expect("sandkit ends");
    assert_eq!(code(&output), 130, "stderr: {}", text(&output.stderr));
    assert!(text(&output.stderr).contains("terminated"));
    sandkit.assert_clean();
}

#[test]
fn a_zero_cpu_names_the_field_and_exits_2() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["run", "--cpu", "0", "--", "true"]);
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("`cpu`"), "{stderr}");

    let (value, output) = sandkit.json(&["create", "--memory-mib", "0"]);
    assert_eq!(code(&output), 2);
    assert_eq!(value["error"]["kind"], "invalid_spec");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory_mib")
    );
    sandkit.assert_clean();
}

#[test]
fn a_bad_flag_value_names_the_flag() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["run", "--gpu", "H1000", "--", "true"]);
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--gpu") && stderr.contains("H100"),
        "{stderr}"
    );

    let output = sandkit.run(&["--config", "{not json", "ls"]);
    assert_eq!(code(&output), 2);
    assert!(text(&output.stderr).contains("--config"));
}

#[test]
fn an_unknown_provider_lists_the_known_ones() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["--provider", "nope", "ls"]);
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("nope") && stderr.contains("local-process"),
        "{stderr}"
    );
}

#[test]
fn providers_lists_local_process() {
    let sandkit = Sandkit::new();
    let (value, output) = sandkit.json(&["providers"]);
    assert!(output.status.success());
    let names: Vec<&str> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"local-process"), "{names:?}");
    let local = &value[names.iter().position(|n| *n == "local-process").unwrap()];
    assert_eq!(local["capabilities"]["transport"], "local");

    let output = sandkit.run(&["providers"]);
    let table = text(&output.stdout);
    assert!(
        table.starts_with("NAME") && table.contains("local-process"),
        "{table}"
    );
}

#[test]
fn select_rejects_local_process_for_a_gpu_with_the_rule() {
    let sandkit = Sandkit::new();
    let (value, output) = sandkit.json(&["select", "--gpu", "H100", "--among", "local-process"]);
    assert_eq!(code(&output), 1, "nothing chosen exits 1");
    assert_eq!(value["chosen"], serde_json::json!([]));
    let rejected = &value["rejected"][0];
    assert_eq!(rejected["name"], "local-process");
    assert_eq!(rejected["unmet"][0]["rule"], "gpu.kind");

    let output = sandkit.run(&["select", "--gpu", "H100"]);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("local-process") && stdout.contains("gpu.kind"),
        "{stdout}"
    );

    let (value, output) = sandkit.json(&["select", "--among", "local-process"]);
    assert_eq!(code(&output), 0);
    assert_eq!(value["chosen"], serde_json::json!(["local-process"]));
}

#[test]
fn schemas_are_json() {
    let sandkit = Sandkit::new();
    for document in ["spec", "capabilities", "requirements", "exec", "config"] {
        let output = sandkit.run(&["schema", document]);
        assert!(
            output.status.success(),
            "{document}: {}",
            text(&output.stderr)
        );
        let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(schema["properties"].is_object(), "{document}: {schema}");
    }
    let output = sandkit.run(&["schema", "config"]);
    let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(schema["properties"]["state_dir"].is_object(), "{schema}");
}

/// `exec --detach` in one process, `commands` and `attach` in others: the command
/// outlives the process that started it, and its output is replayed from an offset.
#[test]
fn detached_commands_outlive_their_starter() {
    let sandkit = Sandkit::new();
    let id = sandkit.create();
    let output = sandkit.run(&[
        "exec",
        &id,
        "--detach",
        "--",
        "sh",
        "-c",
        "echo one; while [ ! -e go ]; do sleep 0.1; done; echo two; exit 4",
    ]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    let command = text(&output.stdout).trim().to_owned();
    let (listed, _) = sandkit.json(&["commands", &id]);
    let listed = listed.as_array().expect("commands --json is an array");
    assert!(
        listed
            .iter()
            .any(|c| c["id"] == command.as_str() && c["exit"].is_null()),
        "{listed:?}"
    );
    let output = sandkit.run(&["exec", &id, "--", "touch", "go"]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    let output = sandkit.run(&["attach", &id, &command, "--stdout-from", "4"]);
    assert_eq!(code(&output), 4, "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "two\n");
    let output = sandkit.run(&["rm", &id]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
}

#[test]
fn create_exec_cp_ls_rm_round_trip() {
    let sandkit = Sandkit::new();
    let id = sandkit.create();
    assert_eq!(sandkit.listed(), std::slice::from_ref(&id));

    // exec: exit code, env, cwd and stdin.
    let output = sandkit.run(&[
        "exec",
        &id,
        "--env",
        "GREETING=hi",
        "--",
        "sh",
        "-c",
        "echo $GREETING; exit 5",
    ]);
    assert_eq!(code(&output), 5, "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hi\n");
    let mut child = sandkit
        .command()
        .args(["exec", &id, "--stdin", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0);
    assert_eq!(text(&output.stdout), "through stdin\n");

    // cp a file in and out.
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("note.txt");
    std::fs::write(&file, b"a note\n").unwrap();
    let output = sandkit.run(&["cp", path(&file), &format!("{id}:note.txt")]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    let output = sandkit.run(&["exec", &id, "--", "cat", "note.txt"]);
    assert_eq!(text(&output.stdout), "a note\n");
    let back = local.path().join("back.txt");
    let output = sandkit.run(&["cp", &format!("{id}:note.txt"), path(&back)]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), b"a note\n");

    // cp a directory tree in and out.
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::write(tree.join("top.txt"), b"top").unwrap();
    std::fs::write(tree.join("sub/deeper/leaf.bin"), [0u8, 255, 7]).unwrap();
    let (value, output) = sandkit.json(&["cp", path(&tree), &format!("{id}:")]);
    assert_eq!(code(&output), 0, "stdout: {value}");
    assert_eq!(
        (value["files"].as_u64(), value["bytes"].as_u64()),
        (Some(2), Some(6))
    );
    let output = sandkit.run(&["exec", &id, "--", "cat", "tree/top.txt"]);
    assert_eq!(text(&output.stdout), "top");
    let copy = local.path().join("copy");
    let output = sandkit.run(&["cp", &format!("{id}:tree"), path(&copy)]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    assert_eq!(std::fs::read(copy.join("top.txt")).unwrap(), b"top");
    assert_eq!(
        std::fs::read(copy.join("sub/deeper/leaf.bin")).unwrap(),
        [0u8, 255, 7]
    );

    // A missing file in the sandbox names the path.
    let output = sandkit.run(&["cp", &format!("{id}:missing.txt"), path(&back)]);
    assert_eq!(code(&output), 1);
    assert!(text(&output.stderr).contains("missing.txt"));

    // ls shows it running; rm ends it, twice without error.
    let output = sandkit.run(&["ls"]);
    let table = text(&output.stdout);
    assert!(table.contains(&id) && table.contains("running"), "{table}");
    let output = sandkit.run(&["rm", &id]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), id);
    let output = sandkit.run(&["rm", &id]);
    assert_eq!(code(&output), 0, "terminate is idempotent");
    let output = sandkit.run(&["exec", &id, "--", "true"]);
    assert_eq!(code(&output), 1);
    assert!(text(&output.stderr).contains("not found"));
    sandkit.assert_clean();
}

#[test]
fn ls_filters_by_tag_and_reap_ends_what_it_matches() {
    let sandkit = Sandkit::new();
    let output = sandkit.run(&["create", "--tag", "team=evals", "--lifetime-secs", "600"]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    let tagged = text(&output.stdout).trim().to_owned();
    let other = sandkit.create();

    let (value, _) = sandkit.json(&["ls", "--tag", "team=evals"]);
    let ids: Vec<&str> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [tagged.as_str()]);

    // Neither has expired, so a plain reap leaves both; --all --dry-run only reports.
    let (value, _) = sandkit.json(&["reap"]);
    assert_eq!(value["matched"], serde_json::json!([]));
    let (value, _) = sandkit.json(&["reap", "--all", "--dry-run"]);
    assert_eq!(value["matched"].as_array().unwrap().len(), 2);
    assert_eq!(sandkit.listed().len(), 2);

    let (value, output) = sandkit.json(&["reap", "--all"]);
    assert_eq!(code(&output), 0);
    let mut terminated: Vec<&str> = value["terminated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    terminated.sort();
    let mut expected = [tagged.as_str(), other.as_str()];
    expected.sort();
    assert_eq!(terminated, expected);
    sandkit.assert_clean();
}

#[test]
fn a_snapshot_restores_into_a_new_sandbox_and_can_be_deleted() {
    let sandkit = Sandkit::new();
    let source = sandkit.create();
    let output = sandkit.run(&["exec", &source, "--", "sh", "-c", "echo kept > state.txt"]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    let (value, output) = sandkit.json(&["snapshot", &source]);
    assert_eq!(code(&output), 0, "{value}");
    let snapshot = value["id"].as_str().expect("a snapshot id").to_owned();
    assert_eq!(value["source"], source.as_str());

    let output = sandkit.run(&["run", "--snapshot", &snapshot, "--", "cat", "state.txt"]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "kept\n");

    let output = sandkit.run(&["snapshot", "--delete", &snapshot]);
    assert_eq!(code(&output), 0, "stderr: {}", text(&output.stderr));
    let output = sandkit.run(&["run", "--snapshot", &snapshot, "--", "true"]);
    assert_ne!(code(&output), 0, "a deleted snapshot cannot be restored");
    let output = sandkit.run(&["rm", &source]);
    assert_eq!(code(&output), 0);
    sandkit.assert_clean();
    let snapshots = sandkit.state.path().join("snapshots");
    if let Ok(entries) = std::fs::read_dir(&snapshots) {
        assert_eq!(
            entries.count(),
            0,
            "snapshots left in {}",
            snapshots.display()
        );
    }
}

#[test]
fn run_forwards_stdin_when_asked() {
    use std::io::Write;

    let sandkit = Sandkit::new();
    let mut child = sandkit
        .command()
        .args(["run", "--stdin", "--", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Dropping our end after writing sends EOF.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&[7u8; 100_000]).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0);
    assert_eq!(text(&output.stdout).trim(), "100000");
    sandkit.assert_clean();
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Writes a pools file next to the state directory.
fn pools_file(sandkit: &Sandkit, text: &str) -> std::path::PathBuf {
    let path = sandkit.state.path().join("sandkit.toml");
    std::fs::write(&path, text).expect("write the pools file");
    path
}

#[test]
fn pools_lists_the_file_in_order_and_explains_a_routing_plan() {
    let sandkit = Sandkit::new();
    let file = pools_file(
        &sandkit,
        "[[pool]]\nname = \"first\"\nprovider = \"local-process\"\nmax_concurrent = 2\n\
         [[pool]]\nname = \"second\"\nprovider = \"local-process\"\n",
    );
    let (value, output) = sandkit.json(&["pools", "--file", path(&file)]);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let names: Vec<&str> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(value[0]["max_concurrent"], 2);

    let output = sandkit.run(&["select", "--pools", path(&file), "--explain"]);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(
        table.contains("first") && table.contains("chosen"),
        "{table}"
    );

    let output = sandkit.run(&[
        "select",
        "--pools",
        path(&file),
        "--explain",
        "--gpu",
        "H100",
    ]);
    assert_eq!(code(&output), 1, "no pool offers a GPU");
    let table = text(&output.stdout);
    assert!(table.contains("rejected: gpu.kind"), "{table}");
}

#[test]
fn a_wrong_pools_file_names_the_line_and_field() {
    let sandkit = Sandkit::new();
    let file = pools_file(
        &sandkit,
        "[[pool]]\nname = \"a\"\nprovider = \"local-process\"\nwarm = \"x\"\n",
    );
    let output = sandkit.run(&["pools", "--file", path(&file)]);
    assert_eq!(code(&output), 2, "{}", text(&output.stderr));
    let message = text(&output.stderr);
    assert!(
        message.contains("line 4") && message.contains("pool[0].warm"),
        "{message}"
    );

    let file = pools_file(&sandkit, "[[pool]]\nname = \"gpu\"\nprovider = \"nope\"\n");
    let message = text(&sandkit.run(&["pools", "--file", path(&file)]).stderr);
    assert!(
        message.contains("pool `gpu`") && message.contains("local-process"),
        "{message}"
    );
}

#[test]
fn logs_prints_the_entrypoints_output_from_an_offset() {
    let sandkit = Sandkit::new();
    let spec = sandkit.state.path().join("spec.json");
    let entrypoint = serde_json::json!({
        "entrypoint": ["sh", "-c", "echo hello; echo oops >&2; exit 4"],
    });
    std::fs::write(&spec, entrypoint.to_string()).unwrap();
    let output = sandkit.run(&["create", "--spec", spec.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "create: {}", text(&output.stderr));
    let id = text(&output.stdout).trim().to_owned();
    // Each read follows the entrypoint to its end, then exits 0.
    let stdout = sandkit.run(&["logs", &id]);
    assert_eq!(code(&stdout), 0, "logs: {}", text(&stdout.stderr));
    assert_eq!(text(&stdout.stdout), "hello\n");
    let stderr = sandkit.run(&["logs", &id, "--stderr"]);
    assert_eq!(text(&stderr.stderr), "oops\n");
    assert!(stderr.stdout.is_empty());
    assert_eq!(
        text(&sandkit.run(&["logs", &id, "--from", "2"]).stdout),
        "llo\n"
    );
    let unknown = sandkit.run(&["logs", "no-such-sandbox"]);
    assert_ne!(code(&unknown), 0);
    assert!(
        text(&unknown.stderr).contains("no-such-sandbox"),
        "{}",
        text(&unknown.stderr)
    );
    // The ended sandbox is kept until it is removed.
    assert_eq!(code(&sandkit.run(&["rm", &id])), 0);
    sandkit.assert_clean();
}
