//! sandkit's `modal` provider against the official Python client (`modal==1.6.4`), on one
//! emulator over local processes, in one run:
//!
//! ```text
//! cargo run --release -p sandkit-modal-fake --example sdk_bench [-- --creates 10 --execs 100]
//! ```
//!
//! Figures: create to first exec (create, then `true` waited for) and the exec round trip
//! of `true`, the median of each. The backend alone (the emulator's own local-process
//! provider, called directly) is the floor every client pays; a client's overhead is its
//! figure less that floor. Target: sandkit's overhead at most a third of the Python
//! client's. The client runs in the default mode (V2 sandboxes) and with
//! `MODAL_SANDBOX_V2=0` (V1, the calls sandkit makes today). It comes from the virtual
//! environment `--python` names, else `$SANDKIT_MODAL_VENV`, else `.venv/modal` at the
//! workspace root (`python3 -m venv .venv/modal && .venv/modal/bin/pip install
//! modal==1.6.4`). A benchmark, not a test: a missed target prints MISS and exits 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::registry::ProviderFactory as _;
use sandkit_core::{SandboxProvider, SandboxProviderExt, SandboxSpec, SecretString};
use sandkit_modal_fake::{EmulatorOptions, serve_emulator};
use sandkit_provider_local_process as _;
use sandkit_provider_modal::{ModalConfig, ModalProvider};

#[derive(Parser, Debug)]
#[command(about = "sandkit's modal provider against the official Python client")]
struct Args {
    /// Creates (each followed by `true`, then terminated) per client, after one warm-up.
    #[arg(long, default_value_t = 10)]
    creates: usize,
    /// Round trips of `true` per client, after five warm-up ones.
    #[arg(long, default_value_t = 100)]
    execs: usize,
    /// The Python interpreter that has `modal==1.6.4`.
    #[arg(long)]
    python: Option<PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The medians of one client.
#[derive(Debug, Clone, Copy)]
struct Medians {
    create_ms: f64,
    exec_ms: f64,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

async fn run_true(
    provider: &dyn SandboxProvider,
    id: &sandkit_core::SandboxId,
) -> Result<(), BoxError> {
    let done = provider
        .run(id, sandkit_core::ExecRequest::new(["true"]))
        .await?;
    if !done.status.success() {
        return Err(format!("`true` ended with {}", done.status).into());
    }
    Ok(())
}

/// Times `provider` as the Python script times the official client.
async fn through(provider: &dyn SandboxProvider, args: &Args) -> Result<Medians, BoxError> {
    let spec = SandboxSpec::new().lifetime_secs(300);
    let mut creates = Vec::new();
    for round in 0..=args.creates {
        let started = Instant::now();
        let id = provider.create(&spec).await?.id;
        run_true(provider, &id).await?;
        if round > 0 {
            creates.push(millis(started.elapsed()));
        }
        provider.terminate(&id).await?;
    }
    let id = provider.create(&spec).await?.id;
    let mut execs = Vec::new();
    for round in 0..args.execs + 5 {
        let started = Instant::now();
        run_true(provider, &id).await?;
        if round >= 5 {
            execs.push(millis(started.elapsed()));
        }
    }
    provider.terminate(&id).await?;
    Ok(Medians {
        create_ms: median(creates),
        exec_ms: median(execs),
    })
}

fn venv_python(args: &Args) -> PathBuf {
    args.python.clone().unwrap_or_else(|| {
        std::env::var_os("SANDKIT_MODAL_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/modal"))
            .join("bin/python")
    })
}

/// Times the official client against `server_url`, with `MODAL_SANDBOX_V2` as given.
async fn python_client(
    python: &std::path::Path,
    server_url: &str,
    sandbox_v2: Option<&str>,
    args: &Args,
) -> Result<(String, Medians), BoxError> {
    let home = tempfile::tempdir()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sdk_bench.py");
    let mut command = tokio::process::Command::new(python);
    command
        .arg(&script)
        .arg(args.creates.to_string())
        .arg(args.execs.to_string())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        // A config file that does not exist: no developer's profile leaks in.
        .env("MODAL_CONFIG_PATH", home.path().join("modal.toml"))
        .env("MODAL_SERVER_URL", server_url)
        .env("MODAL_TOKEN_ID", "ak-bench")
        .env("MODAL_TOKEN_SECRET", "as-bench")
        .kill_on_drop(true);
    if let Some(value) = sandbox_v2 {
        command.env("MODAL_SANDBOX_V2", value);
    }
    let output = command
        .output()
        .await
        .map_err(|e| format!("{} did not start: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the Python client's run failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("the Python client printed no report ({e}): {stdout}"))?;
    let samples = |key: &str| -> Vec<f64> {
        report[key]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mode = report["mode"].as_str().unwrap_or("?").to_owned();
    Ok((
        mode,
        Medians {
            create_ms: median(samples("create_ms")),
            exec_ms: median(samples("exec_ms")),
        },
    ))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let python = venv_python(&args);
    if !python.exists() {
        return Err(format!(
            "no {}: make the environment with `python3 -m venv .venv/modal && \
             .venv/modal/bin/pip install modal==1.6.4`, or pass --python",
            python.display()
        )
        .into());
    }
    let state = tempfile::tempdir()?;
    let backend = sandkit_modal_fake::backend(
        "local-process",
        serde_json::json!({ "state_dir": state.path() }),
    )
    .await?;
    let server = serve_emulator(
        ([127, 0, 0, 1], 0).into(),
        EmulatorOptions::new(backend.clone()),
    )
    .await?;
    let url = server.url();
    let modal = ModalProvider::from_config(ModalConfig {
        server_url: Some(url.clone()),
        token_id: Some("ak-bench".to_owned()),
        token_secret: Some(SecretString::new("as-bench")),
        config_path: Some(state.path().join("absent.toml")),
        ..ModalConfig::default()
    })
    .await?;
    let sandkit = layers::standard(Arc::new(modal), LayerOptions::default());

    println!(
        "sdk bench: emulator at {url} over local-process; {} creates and {} execs per client; {} cpus",
        args.creates,
        args.execs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let floor = through(backend.as_ref(), &args).await?;
    let ours = through(sandkit.as_ref(), &args).await?;
    let mut theirs = Vec::new();
    for sandbox_v2 in [None, Some("0")] {
        theirs.push(python_client(&python, &url, sandbox_v2, &args).await?);
    }
    server.shutdown().await?;

    println!(
        "{:<22} {:>9} {:>9} {:>15} {:>15} {:>7} {:<8} result",
        "figure", "backend", "sandkit", "python", "python ovh", "ratio", "target"
    );
    let mut missed = 0;
    for (figure, pick) in [
        (
            "create to first exec",
            (|m: Medians| m.create_ms) as fn(Medians) -> f64,
        ),
        ("exec `true` round trip", |m: Medians| m.exec_ms),
    ] {
        let ours_overhead = pick(ours) - pick(floor);
        for (mode, medians) in &theirs {
            let their_overhead = pick(*medians) - pick(floor);
            let ratio = ours_overhead / their_overhead;
            let met = ratio <= 1.0 / 3.0;
            missed += usize::from(!met);
            println!(
                "{:<22} {:>7.2}ms {:>7.2}ms {:>8.2}ms ({mode}) {:>13.2}ms {:>7.3} {:<8} {}",
                figure,
                pick(floor),
                pick(ours),
                pick(*medians),
                their_overhead,
                ratio,
                "<= 0.333",
                if met { "PASS" } else { "MISS" }
            );
        }
        println!(
            "{:<22} sandkit's overhead over the backend: {ours_overhead:.2} ms",
            ""
        );
    }
    println!("{missed} of 4 targets missed");
    Ok(())
}
