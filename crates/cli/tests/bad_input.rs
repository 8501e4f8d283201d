//! Every bad input the command line can be given is refused before anything is created:
//! exit 2, and a message naming the flag or the spec field. The table below is the list
//! of bad inputs; the test counts them and fails under 100.

use std::process::{Command, Output, Stdio};

/// One bad input: the arguments after `sandkit`, and what the message must name.
struct Case {
    args: Vec<String>,
    names: &'static str,
}

fn case(args: &[&str], names: &'static str) -> Case {
    Case {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        names,
    }
}

/// Bad values of the spec flags `run`, `create`, `select` and `conformance` share:
/// (flag, value, what the message names).
fn bad_spec_flags() -> Vec<(&'static str, String, &'static str)> {
    let long_key = format!("{}=v", "k".repeat(129));
    let long_value = format!("k={}", "v".repeat(257));
    let long_name = "n".repeat(65);
    let mut flags: Vec<(&'static str, String, &'static str)> = Vec::new();
    let mut add = |flag: &'static str, value: &str, names: &'static str| {
        flags.push((flag, value.to_owned(), names));
    };
    // Lifetimes: at least 1 s, at most 30 days; nothing the supervisor cannot represent.
    add("--lifetime-secs", "0", "lifetime_secs");
    add("--lifetime-secs", "2592001", "lifetime_secs");
    add("--lifetime-secs", "99999999999", "lifetime_secs");
    add("--lifetime-secs", "18446744073709551615", "lifetime_secs");
    add("--lifetime-secs", "18446744073709551616", "--lifetime-secs");
    add("--lifetime-secs", "-5", "--lifetime-secs");
    add("--lifetime-secs", "1.5", "--lifetime-secs");
    add("--lifetime-secs", "soon", "--lifetime-secs");
    add("--idle-timeout-secs", "0", "idle_timeout_secs");
    add("--idle-timeout-secs", "2592001", "idle_timeout_secs");
    add("--idle-timeout-secs", "-1", "--idle-timeout-secs");
    add("--idle-timeout-secs", "x", "--idle-timeout-secs");
    // Resources.
    add("--memory-mib", "0", "memory_mib");
    add("--memory-mib", "-5", "--memory-mib");
    add("--memory-mib", "1.5", "--memory-mib");
    add("--memory-mib", "lots", "--memory-mib");
    add("--cpu", "0", "cpu");
    add("--cpu", "-1", "cpu");
    add("--cpu", "NaN", "cpu");
    add("--cpu", "inf", "cpu");
    add("--cpu", "two", "--cpu");
    add("--gpu", "H1000", "--gpu");
    add("--gpu", "H100:0", "gpu.count");
    add("--gpu", "H100:x", "--gpu");
    add("--gpu", "H100:-1", "--gpu");
    // Environment names: [A-Za-z_][A-Za-z0-9_]*.
    add("--env", "A B=x", "--env");
    add("--env", "1A=x", "--env");
    add("--env", "A-B=x", "--env");
    add("--env", "A.B=x", "--env");
    add("--env", "=x", "--env");
    add("--env", "novalue", "--env");
    add("--env", "\u{c4}=x", "--env");
    add("--env", "-A=x", "--env");
    add("--secret", "A B=x", "secrets.A B");
    add("--secret", "1A=x", "secrets.1A");
    add("--secret", "A-B=x", "secrets.A-B");
    add("--secret", "=x", "secrets.");
    add("--secret", "-A=x", "secrets.-A");
    add("--secret", "SANDKIT_TEST_SURELY_UNSET_VARIABLE", "--secret");
    // Tag keys: a letter or digit, then letters, digits, `.`, `_`, `-`, `/`.
    add("--tag", "a b=1", "--tag");
    add("--tag", "-a=1", "--tag");
    add("--tag", "a:b=1", "--tag");
    add("--tag", "a,b=1", "--tag");
    add("--tag", "=1", "--tag");
    add("--tag", "novalue", "--tag");
    add("--tag", &long_key, "--tag");
    add("--tag", &long_value, "--tag");
    add("--tag", "k=a\nb", "--tag");
    add("--tag", "sandkit.owner=me", "tags.sandkit.owner");
    add("--tag", "sandkit.anything=x", "tags.sandkit.anything");
    // Paths, names, network, ports, images.
    add("--workdir", "relative/dir", "workdir");
    add("--workdir", "", "workdir");
    add("--name", "has space", "name");
    add("--name", "", "name");
    add("--name", &long_name, "name");
    add("--region", "", "region");
    add("--region", " ", "region");
    add("--allow-cidr", "10.0.0.0/33", "network.cidrs[0]");
    add("--allow-cidr", "10.0.0.0", "network.cidrs[0]");
    add("--allow-cidr", "not-an-address/8", "network.cidrs[0]");
    add("--allow-domain", "a b", "network.domains[0]");
    add("--allow-domain", "", "network.domains[0]");
    add("--port", "0", "ports[0]");
    add("--port", "-1", "--port");
    add("--port", "70000", "--port");
    add("--port", "http", "--port");
    add("--image", "", "image.reference");
    add("--image", "a b", "image.reference");
    add("--snapshot", "", "image.id");
    add("--provider-option", "=x", "--provider-option");
    add("--provider-option", "novalue", "--provider-option");
    add(
        "--spec",
        "/nonexistent/sandkit-spec.json",
        "/nonexistent/sandkit-spec.json",
    );
    flags
}

fn cases(spec_dir: &std::path::Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for (flag, value, names) in bad_spec_flags() {
        for prefix in [&["create"][..], &["run"][..]] {
            let mut args: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
            args.extend([flag.to_owned(), value.clone()]);
            if prefix == ["run"] {
                args.extend(["--".to_owned(), "true".to_owned()]);
            }
            cases.push(Case { args, names });
        }
    }
    // The same refusals through `select` and `conformance`, which take the spec flags too.
    for (flag, value, names) in [
        ("--lifetime-secs", "99999999999", "lifetime_secs"),
        ("--env", "A B=x", "--env"),
        ("--tag", "a b=1", "--tag"),
        ("--memory-mib", "-5", "--memory-mib"),
        ("--cpu", "0", "cpu"),
    ] {
        cases.push(case(&["select", flag, value], names));
        cases.push(case(&["conformance", flag, value], names));
    }
    cases.push(case(&["select", "--needs", "no.such"], "--needs"));

    // Spec files: missing, not JSON, unknown fields, bad values.
    let write = |name: &str, text: &str| {
        let path = spec_dir.join(name);
        std::fs::write(&path, text).expect("write a spec file");
        path.to_string_lossy().into_owned()
    };
    let not_json = write("not-json.json", "{nope");
    let unknown = write("unknown.json", r#"{"cpus": 2}"#);
    let lifetime = write("lifetime.json", r#"{"lifetime_secs": 99999999999}"#);
    let env = write("env.json", r#"{"env": {"A B": "x"}}"#);
    let tag = write("tag.json", r#"{"tags": {"a b": "1"}}"#);
    let negative = write("negative.json", r#"{"memory_mib": -5}"#);
    cases.push(case(&["create", "--spec", &not_json], "--spec"));
    cases.push(case(&["create", "--spec", &unknown], "cpus"));
    cases.push(case(&["create", "--spec", &lifetime], "lifetime_secs"));
    cases.push(case(&["create", "--spec", &env], "env.A B"));
    cases.push(case(&["create", "--spec", &tag], "tags.a b"));
    cases.push(case(&["create", "--spec", &negative], "--spec"));

    // Commands in a sandbox.
    for command in [&["exec", "sb-none"][..], &["run"][..]] {
        let with = |extra: &[&str], tail: &[&str]| -> Vec<String> {
            command
                .iter()
                .chain(extra)
                .chain(["--"].iter())
                .chain(tail)
                .map(|s| (*s).to_owned())
                .collect()
        };
        cases.push(Case {
            args: with(&["--timeout-secs", "0"], &["true"]),
            names: "timeout",
        });
        cases.push(Case {
            args: with(&["--timeout-secs", "-1"], &["true"]),
            names: "timeout",
        });
        cases.push(Case {
            args: with(&["--timeout-secs", "NaN"], &["true"]),
            names: "timeout",
        });
        cases.push(Case {
            args: with(&["--timeout-secs", "later"], &["true"]),
            names: "--timeout-secs",
        });
        cases.push(Case {
            args: with(&["--cwd", ""], &["true"]),
            names: "cwd",
        });
        cases.push(Case {
            args: with(&[], &[""]),
            names: "argv[0]",
        });
    }
    cases.push(case(
        &["exec", "sb-none", "--env", "A B=x", "--", "true"],
        "--env",
    ));
    cases.push(case(
        &["exec", "sb-none", "--env", "1A=x", "--", "true"],
        "--env",
    ));
    cases.push(case(
        &["exec", "sb-none", "--env", "=x", "--", "true"],
        "--env",
    ));

    // Listing and reaping.
    cases.push(case(&["ls", "--tag", "a b=1"], "--tag"));
    cases.push(case(&["ls", "--tag", "novalue"], "--tag"));
    cases.push(case(&["ls", "--tag", "a:b=1"], "--tag"));
    cases.push(case(&["reap", "--dry-run", "--owner", ""], "--owner"));
    cases.push(case(&["reap", "--dry-run", "--owner", " "], "--owner"));
    cases.push(case(&["reap", "--dry-run", "--run-id", ""], "--run-id"));
    cases.push(case(&["reap", "--owner", ""], "--owner"));

    // The conformance suite's own flags.
    for (flag, value) in [
        ("--concurrency", "0"),
        ("--concurrency", "-1"),
        ("--concurrency", "257"),
        ("--concurrency", "many"),
        ("--case-timeout-secs", "0"),
        ("--case-timeout-secs", "-5"),
        ("--case-timeout-secs", "86401"),
    ] {
        cases.push(Case {
            args: vec!["conformance".into(), flag.into(), value.into()],
            names: match flag {
                "--concurrency" => "--concurrency",
                _ => "--case-timeout-secs",
            },
        });
    }

    // Global flags: the provider and its configuration.
    cases.push(case(
        &["--config", "@/nonexistent/config.json", "ls"],
        "/nonexistent/config.json",
    ));
    cases.push(case(
        &["--config", "@/nonexistent/config.json", "create"],
        "/nonexistent/config.json",
    ));
    cases.push(case(&["--config", "{nope", "ls"], "--config"));
    cases.push(case(
        &["--provider", "no-such-provider", "ls"],
        "no-such-provider",
    ));
    cases.push(case(
        &["--provider", "no-such-provider", "create"],
        "no-such-provider",
    ));
    cases
}

fn sandkit(state: &std::path::Path, args: &[String]) -> Output {
    let config = serde_json::json!({ "state_dir": state }).to_string();
    let uses_own_config = args.iter().any(|arg| arg == "--config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandkit"));
    command
        .env("SANDKIT_PROVIDER", "local-process")
        .env_remove("SANDKIT_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    if !uses_own_config {
        command.args(["--config", &config]);
    }
    command
        .args(args)
        .output()
        .expect("the sandkit binary runs")
}

#[test]
fn every_bad_input_exits_2_naming_the_field() {
    let state = tempfile::tempdir().expect("a state directory");
    let specs = tempfile::tempdir().expect("a spec directory");
    let cases = cases(specs.path());
    assert!(
        cases.len() >= 100,
        "only {} bad inputs are tried",
        cases.len()
    );
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        // Every other case also with --json: the exit code and the naming must not change.
        let mut args = case.args.clone();
        if index % 2 == 1 {
            args.insert(0, "--json".to_owned());
        }
        let output = sandkit(state.path(), &args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code();
        if code != Some(2) || !(stdout.contains(case.names) || stderr.contains(case.names)) {
            failures.push(format!(
                "sandkit {:?}: exit {code:?}, expected 2 naming `{}`\n  stdout: {}\n  stderr: {}",
                args,
                case.names,
                stdout.trim(),
                stderr.trim()
            ));
        }
    }
    // Nothing was created along the way.
    let sandboxes = state.path().join("sandboxes");
    let left: Vec<_> = std::fs::read_dir(&sandboxes)
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sandboxes created by bad input: {left:?}");
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not refused properly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} bad inputs refused with exit 2", cases.len());
}
