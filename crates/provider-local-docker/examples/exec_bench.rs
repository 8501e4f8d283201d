//! Exec figures of local-docker and local-process against the Docker Engine's own exec,
//! in one run: `scripts/docker-engine.sh` (the engine and `sandkit-test-busybox:latest`),
//! then `cargo run --release -p sandkit-provider-local-docker --example exec_bench [--
//! --json FILE]`. The `docker` CLI gives the CLI column; local-process uses bubblewrap
//! where present (the header says). Both providers go through their public API with the
//! standard layers, against raw `bollard` calls on a container configured like a
//! sandbox, the sides alternating within each round so drift hits all alike; the ratio
//! is sandkit / raw. The defaults take about two minutes on two cores.
//!
//! Targets (a miss prints MISS; the program still exits 0), each against the engine's
//! exec (create_exec + start_exec + inspect_exec; `docker exec`): exec `true` p50 <= 2 ms
//! and p99 <= 5 ms; stdout (`dd if=/dev/zero bs=1048576`) >= 1 GiB/s; 100 concurrent
//! `echo i` in one sandbox all correct with p50 < 20 ms; idle RSS < 5 MiB for process 1,
//! and with its descendants (the container's `State.Pid`, local-process's recorded
//! `init`, read from `/proc`); create to first exec no slower than raw (ratio <= 1).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bollard::Docker;
use clap::Parser;
use futures::StreamExt;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ExecRequest, SandboxId, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};
use sandkit_provider_local_process::{
    LocalProcessConfig, LocalProcessProvider, bubblewrap_available,
};
use serde::Serialize;

#[path = "common/raw.rs"]
mod raw;
use raw::Raw;

#[derive(Parser, Debug)]
#[command(about = "Exec figures of local-docker and local-process against raw bollard")]
struct Args {
    /// Image for the local-docker sandboxes and the raw containers.
    #[arg(long, default_value = "sandkit-test-busybox:latest")]
    image: String,
    /// Round trips of `true` per side (after 5 warm-up rounds), alongside `docker exec`.
    #[arg(long, default_value_t = 150)]
    exec_iterations: usize,
    /// Creates (each followed by `true`, then terminated) per side.
    #[arg(long, default_value_t = 10)]
    create_iterations: usize,
    /// Execs started at once in one sandbox.
    #[arg(long, default_value_t = 100)]
    concurrent: usize,
    /// Batches of concurrent execs per side.
    #[arg(long, default_value_t = 2)]
    concurrent_rounds: usize,
    /// MiB written to stdout per throughput run.
    #[arg(long, default_value_t = 64)]
    stream_mib: u64,
    /// Throughput runs per side (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    stream_rounds: usize,
    /// Seconds a sandbox sits idle before its memory is read.
    #[arg(long, default_value_t = 2)]
    idle_secs: u64,
    /// Also write the results as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<String>,
}

const WARMUP: usize = 5;

/// Who runs a command: a provider through sandkit, or the engine's own exec (the Engine
/// API through bollard, or `docker exec`). The order is [`Trio`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Docker,
    Process,
    Raw,
    Cli,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Docker => "local-docker",
            Side::Process => "local-process",
            Side::Raw => "raw bollard",
            Side::Cli => "docker CLI",
        }
    }
}

/// The providers measured.
const PROVIDERS: [Side; 2] = [Side::Docker, Side::Process];
/// The providers and the raw reference.
const SIDES: [Side; 3] = [Side::Docker, Side::Process, Side::Raw];

/// `sides`, rotated by `round`: drift hits all alike and no side always follows the same.
fn rotated(sides: &[Side], round: usize) -> impl Iterator<Item = Side> + '_ {
    (0..sides.len()).map(move |k| sides[(round + k) % sides.len()])
}

/// What a figure is held to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// No target: printed for information.
    None,
    AtMost(f64),
    AtLeast(f64),
    Below(f64),
    /// sandkit / raw at most this.
    RatioAtMost(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::None => "-".to_owned(),
            Target::AtMost(v) => format!("<= {v} {unit}"),
            Target::AtLeast(v) => format!(">= {v} {unit}"),
            Target::Below(v) => format!("< {v} {unit}"),
            Target::RatioAtMost(v) => format!("ratio <= {v:.2}"),
        }
    }

    fn met(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::None => None,
            Target::AtMost(v) => Some(value <= v),
            Target::AtLeast(v) => Some(value >= v),
            Target::Below(v) => Some(value < v),
            Target::RatioAtMost(v) => Some(ratio.is_some_and(|r| r <= v)),
        }
    }
}

/// One measured figure.
#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    provider: &'static str,
    unit: &'static str,
    sandkit: f64,
    /// The raw Engine API through bollard.
    raw: Option<f64>,
    /// The `docker` CLI.
    cli: Option<f64>,
    /// sandkit / raw.
    ratio: Option<f64>,
    target: String,
    /// `None` when the figure has no target.
    met: Option<bool>,
    note: String,
}

/// A row's checks besides its target: whether they passed, and what to say.
type Check = (bool, String);

fn passed() -> Check {
    (true, String::new())
}

#[derive(Default)]
struct Figures(Vec<Figure>);

impl Figures {
    fn header() {
        println!(
            "{:<36} {:<13} {:>10} {:>10} {:>10} {:<5} {:>7} {:<15} result note",
            "figure", "provider", "sandkit", "raw API", "docker CLI", "unit", "ratio", "target"
        );
    }

    /// Records and prints a row; `values` are sandkit's, the raw API's and the CLI's.
    fn add(
        &mut self,
        name: String,
        side: Side,
        unit: &'static str,
        (sandkit, raw, cli): (f64, Option<f64>, Option<f64>),
        target: Target,
        (ok, note): Check,
    ) {
        let ratio = raw.map(|raw| sandkit / raw);
        let met = target.met(sandkit, ratio).map(|met| met && ok);
        let num = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        let digits = if unit == "MiB/s" { 0 } else { 2 };
        let result = match met {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "-",
        };
        let (target, provider) = (target.describe(unit), side.name());
        let line = format!(
            "{name:<36} {provider:<13} {:>10} {:>10} {:>10} {unit:<5} {:>7} {target:<15} {result:<6} {note}",
            num(Some(sandkit), digits),
            num(raw, digits),
            num(cli, digits),
            num(ratio, 3),
        );
        println!("{}", line.trim_end());
        let figure = Figure {
            name,
            provider,
            unit,
            sandkit,
            raw,
            cli,
            ratio,
            target,
            met,
            note,
        };
        self.0.push(figure);
    }

    /// p50, p90 and p99 of each provider's samples, beside the raw and CLI ones.
    fn latencies(
        &mut self,
        figure: &str,
        samples: &mut HashMap<Side, Vec<f64>>,
        targets: [Target; 3],
        check: impl Fn(Side) -> Check,
    ) {
        for (p, target) in [50.0, 90.0, 99.0].into_iter().zip(targets) {
            let mut at = |side| samples.get_mut(&side).map(|s| percentile(s, p));
            let (raw, cli) = (at(Side::Raw), at(Side::Cli));
            for side in PROVIDERS {
                let (name, values) = (format!("{figure} p{p}"), (at(side).unwrap(), raw, cli));
                self.add(name, side, "ms", values, target, check(side));
            }
        }
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (samples.len() as f64 - 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A sandbox on each provider and a raw container: ids in [`SIDES`] order.
struct Trio(Vec<String>);

impl Trio {
    fn id(&self, side: Side) -> &str {
        &self.0[(side as usize).min(2)]
    }
}

struct Bench {
    docker: Arc<dyn SandboxProvider>,
    process: Arc<dyn SandboxProvider>,
    raw: Raw,
    docker_spec: SandboxSpec,
    process_spec: SandboxSpec,
    process_state_dir: PathBuf,
    /// Whether the `docker` CLI answers (its column is empty otherwise).
    cli: bool,
    args: Args,
    figures: Figures,
    /// What this program created and has not removed yet.
    live: Mutex<Vec<(Side, String)>>,
}

impl Bench {
    fn provider(&self, side: Side) -> &Arc<dyn SandboxProvider> {
        match side {
            Side::Docker => &self.docker,
            _ => &self.process,
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<(Side, String)>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sandbox on `side`'s provider, or a raw container.
    async fn create(&self, side: Side) -> Result<String> {
        let id = match side {
            Side::Docker => self.docker.create(&self.docker_spec).await?.id.0,
            Side::Process => self.process.create(&self.process_spec).await?.id.0,
            Side::Raw | Side::Cli => self.raw.create().await?,
        };
        self.live().push((side, id.clone()));
        Ok(id)
    }

    async fn remove(&self, side: Side, id: &str) -> Result<()> {
        match side {
            Side::Raw | Side::Cli => self.raw.remove(id).await?,
            _ => self.provider(side).terminate(&SandboxId::from(id)).await?,
        }
        self.live().retain(|(_, i)| i != id);
        Ok(())
    }

    async fn trio(&self) -> Result<Trio> {
        let mut trio = Trio(Vec::new());
        for side in SIDES {
            trio.0.push(self.create(side).await?);
        }
        Ok(trio)
    }

    async fn remove_trio(&self, trio: Trio) -> Result<()> {
        for side in SIDES {
            self.remove(side, trio.id(side)).await?;
        }
        Ok(())
    }

    /// Best effort: removes whatever is still live, reporting failures on stderr.
    async fn cleanup(&self) {
        let live = self.live().clone();
        for (side, id) in live {
            if let Err(e) = self.remove(side, &id).await {
                eprintln!("cleanup: removing {} {id}: {e:#}", side.name());
            }
        }
    }

    /// Runs `true` on `side` in sandbox or container `id`.
    async fn run_true(&self, side: Side, id: &str) -> Result<()> {
        let (ok, what) = match side {
            Side::Raw => {
                let code = self.raw.exec(id, &["true"]).await?.code;
                (code == 0, format!("exit {code}"))
            }
            Side::Cli => {
                let output = tokio::process::Command::new("docker")
                    .args(["exec", id, "true"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .context("running `docker exec`")?;
                let stderr = String::from_utf8_lossy(&output.stderr);
                let what = format!("{}: {}", output.status, stderr.trim());
                (output.status.success(), what)
            }
            _ => {
                let request = ExecRequest::new(["true"]);
                let output = self
                    .provider(side)
                    .run(&SandboxId::from(id), request)
                    .await?;
                (output.status.success(), format!("{output:?}"))
            }
        };
        ensure!(ok, "{}: `true` failed: {what}", side.name());
        Ok(())
    }

    async fn exec_round_trips(&mut self) -> Result<()> {
        let trio = self.trio().await?;
        let all = [Side::Docker, Side::Process, Side::Raw, Side::Cli];
        let all = &all[..if self.cli { 4 } else { 3 }];
        let targets = [Target::AtMost(2.0), Target::None, Target::AtMost(5.0)];
        let mut samples: HashMap<Side, Vec<f64>> = HashMap::new();
        // Interleaved with the engine's execs, then the providers alone: dockerd's work
        // after each raw or CLI exec competes with the next exec (raw and CLI repeat).
        let rounds = [
            ("exec `true` round trip", all),
            ("exec `true` providers alone", &PROVIDERS[..]),
        ];
        for (figure, sides) in rounds {
            for side in sides {
                samples.remove(side);
            }
            for round in 0..WARMUP + self.args.exec_iterations {
                for side in rotated(sides, round) {
                    let started = Instant::now();
                    self.run_true(side, trio.id(side)).await?;
                    if round >= WARMUP {
                        let ms = millis(started.elapsed());
                        samples.entry(side).or_default().push(ms);
                    }
                }
            }
            self.figures
                .latencies(figure, &mut samples, targets, |_| passed());
        }
        self.remove_trio(trio).await
    }

    /// Runs `argv` on `side`, returning the bytes its stdout brought.
    async fn stdout_bytes(&self, side: Side, id: &str, argv: &[&str]) -> Result<u64> {
        if side == Side::Raw {
            return Ok(self.raw.exec(id, argv).await?.bytes);
        }
        let request = ExecRequest::new(argv.iter().copied());
        let mut process = self
            .provider(side)
            .exec(&SandboxId::from(id), request)
            .await?;
        let mut seen = 0u64;
        while let Some(chunk) = process.stdout.next().await {
            seen += chunk?.len() as u64;
        }
        let status = process.wait().await?;
        ensure!(status.success(), "{}: {argv:?}: {status}", side.name());
        Ok(seen)
    }

    async fn throughput(&mut self) -> Result<()> {
        let bytes = self.args.stream_mib << 20;
        // 1 MiB writes: the transport is measured, not a producer's small buffer.
        let count = format!("count={}", self.args.stream_mib);
        let argv = ["dd", "if=/dev/zero", "bs=1048576", count.as_str()];
        let trio = self.trio().await?;
        let mut rates: HashMap<Side, Vec<f64>> = HashMap::new();
        // Round 0 warms up.
        for round in 0..=self.args.stream_rounds {
            for side in rotated(&SIDES, round) {
                let started = Instant::now();
                let seen = self.stdout_bytes(side, trio.id(side), &argv).await?;
                let secs = started.elapsed().as_secs_f64();
                ensure!(seen == bytes, "{side:?}: streamed {seen} of {bytes} bytes");
                if round > 0 {
                    let rate = bytes as f64 / f64::from(1u32 << 20) / secs;
                    rates.entry(side).or_default().push(rate);
                }
            }
        }
        let raw = rates.get_mut(&Side::Raw).map(|r| percentile(r, 50.0));
        for side in PROVIDERS {
            let sandkit = percentile(rates.get_mut(&side).expect("measured"), 50.0);
            let figure = format!("stdout {} MiB, median", self.args.stream_mib);
            let target = Target::AtLeast(1024.0);
            let note = format!("of {} runs", self.args.stream_rounds);
            let (values, figures) = ((sandkit, raw, None), &mut self.figures);
            figures.add(figure, side, "MiB/s", values, target, (true, note));
        }
        self.remove_trio(trio).await
    }

    /// Starts `n` `echo i` at once in one sandbox, each in its own task: each one's
    /// latency, and for each that did not answer exactly `i\n` with exit 0, what it did.
    async fn batch(&self, side: Side, id: &str, n: usize) -> Result<(Vec<f64>, Vec<String>)> {
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let (raw, id) = (self.raw.clone(), id.to_owned());
            let provider = Arc::clone(self.provider(side));
            tasks.push(tokio::spawn(async move {
                // What each side reports, as it would for a right answer.
                let expected = format!("exit 0, {:?}", format!("{i}\n"));
                let started = Instant::now();
                let seen = if side == Side::Raw {
                    let out = raw.exec(&id, &["echo", &i.to_string()]).await;
                    out.map(|o| format!("exit {}, {:?}", o.code, String::from_utf8_lossy(&o.head)))
                } else {
                    let request = ExecRequest::new(["echo".to_owned(), i.to_string()]);
                    let out = provider.run(&SandboxId(id), request).await;
                    out.map(|o| format!("{}, {:?}", o.status, o.stdout_lossy()))
                        .map_err(Into::into)
                };
                let failure = match seen {
                    Ok(seen) if seen == expected => None,
                    Ok(seen) => Some(format!("echo {i}: {seen}")),
                    Err(e) => Some(format!("echo {i}: {e:#}")),
                };
                (millis(started.elapsed()), failure)
            }));
        }
        let (mut latencies, mut failures) = (Vec::with_capacity(n), Vec::new());
        for task in tasks {
            let (ms, failure) = task.await.context("an exec task panicked")?;
            latencies.push(ms);
            failures.extend(failure);
        }
        Ok((latencies, failures))
    }

    async fn concurrent(&mut self) -> Result<()> {
        let (n, rounds) = (self.args.concurrent, self.args.concurrent_rounds);
        let trio = self.trio().await?;
        for side in SIDES {
            self.run_true(side, trio.id(side)).await?; // warm-up
        }
        let mut latencies: HashMap<Side, Vec<f64>> = HashMap::new();
        let mut failures: HashMap<Side, Vec<String>> = HashMap::new();
        for round in 0..rounds {
            for side in rotated(&SIDES, round) {
                let (ms, failed) = self.batch(side, trio.id(side), n).await?;
                latencies.entry(side).or_default().extend(ms);
                failures.entry(side).or_default().extend(failed);
            }
        }
        let check = |side| {
            let failed = failures.get(&side).map_or(&[][..], Vec::as_slice);
            let mut note = format!("{}/{} correct", n * rounds - failed.len(), n * rounds);
            if let Some(first) = failed.first() {
                note.push_str(&format!("; first wrong: {first}"));
            }
            (failed.is_empty(), note)
        };
        if let (false, note) = check(Side::Raw) {
            println!("note: raw bollard, {n} concurrent execs: {note}");
        }
        let targets = [Target::Below(20.0), Target::None, Target::None];
        let figure = format!("{n} concurrent execs");
        let figures = &mut self.figures;
        figures.latencies(&figure, &mut latencies, targets, check);
        self.remove_trio(trio).await
    }

    async fn create_to_first_exec(&mut self) -> Result<()> {
        let mut samples: HashMap<Side, Vec<f64>> = HashMap::new();
        // Round 0 warms up.
        for round in 0..=self.args.create_iterations {
            for side in rotated(&SIDES, round) {
                let started = Instant::now();
                let id = self.create(side).await?;
                self.run_true(side, &id).await?;
                let ms = millis(started.elapsed());
                self.remove(side, &id).await?;
                if round > 0 {
                    samples.entry(side).or_default().push(ms);
                }
            }
        }
        let targets = [Target::RatioAtMost(1.0), Target::None, Target::None];
        let figure = "create to first exec";
        let figures = &mut self.figures;
        figures.latencies(figure, &mut samples, targets, |_| passed());
        Ok(())
    }

    /// The host pid of a sandbox's process 1.
    async fn init_pid(&self, side: Side, id: &str) -> Result<i32> {
        if side == Side::Docker {
            let inspect = self.raw.docker.inspect_container(id, None).await?;
            let pid = inspect.state.and_then(|s| s.pid).filter(|pid| *pid > 0);
            let pid = i32::try_from(pid.ok_or_else(|| anyhow!("the engine reports no pid"))?)?;
            // The engine may see another pid namespace than ours: the process must be
            // in the container's cgroup.
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .with_context(|| format!("reading /proc/{pid}/cgroup"))?;
            ensure!(
                cgroup.contains(id),
                "host process {pid} is not in the container's cgroup (engine in another pid namespace?)"
            );
            return Ok(pid);
        }
        // local-process records its init, with its start time, in the sandbox's state.
        let path = self
            .process_state_dir
            .join(format!("sandboxes/{id}/state.json"));
        let state = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let init = &serde_json::from_slice::<serde_json::Value>(&state)?["init"];
        let (Some(pid), Some(start)) = (init["pid"].as_i64(), init["start_time"].as_u64()) else {
            bail!("no init in {}", path.display());
        };
        let pid = i32::try_from(pid)?;
        let running = stat(pid).is_some_and(|(_, started)| started == start);
        ensure!(running, "the recorded init {pid} is not running");
        Ok(pid)
    }

    async fn memory(&mut self) -> Result<()> {
        for side in PROVIDERS {
            let id = self.create(side).await?;
            self.run_true(side, &id).await?;
            tokio::time::sleep(Duration::from_secs(self.args.idle_secs)).await;
            match self.init_pid(side, &id).await {
                Ok(pid) => {
                    let (own, tree, comms) = tree_rss_kib(pid);
                    let mib = |kib: u64| (kib as f64 / 1024.0, None, None);
                    let target = Target::Below(5.0);
                    let note = format!("pid 1: {}", comms[0]);
                    let (figure, figures) = ("idle RSS of pid 1".to_owned(), &mut self.figures);
                    figures.add(figure, side, "MiB", mib(own), target, (true, note));
                    let figure = "idle RSS of pid 1 + descendants".to_owned();
                    let note = (true, comms.join(", "));
                    figures.add(figure, side, "MiB", mib(tree), target, note);
                }
                Err(e) => println!("{:<36} {:<13} not measured: {e:#}", "idle RSS", side.name()),
            }
            self.remove(side, &id).await?;
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<()> {
        self.memory().await?;
        self.exec_round_trips().await?;
        self.throughput().await?;
        self.concurrent().await?;
        self.create_to_first_exec().await
    }
}

/// The parent pid and start time of `pid`, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
    rss.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or("?".into(), |c| c.trim().into())
}

/// VmRSS of `root`, of `root` and every descendant (summed, so shared pages count more
/// than once), and the commands of those processes, `root`'s first.
fn tree_rss_kib(root: i32) -> (u64, u64, Vec<String>) {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok())
            && let Some((ppid, _)) = stat(pid)
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (mut pending, mut seen) = (vec![root], HashSet::new());
    let (mut total, mut comms) = (0, Vec::new());
    while let Some(pid) = pending.pop() {
        if seen.insert(pid) {
            total += rss_kib(pid);
            comms.push(comm(pid));
            pending.extend(children.get(&pid).into_iter().flatten());
        }
    }
    (rss_kib(root), total, comms)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .context("connecting to the Docker Engine (scripts/docker-engine.sh starts one)")?;
    let engine_line = format!("engine API {} at {}", bare.api_version(), bare.host());
    let docker = layers::standard(Arc::new(bare), LayerOptions::default());
    let process_state_dir = std::env::temp_dir().join("sandkit-exec-bench");
    let process = LocalProcessProvider::new(LocalProcessConfig {
        state_dir: Some(process_state_dir.clone()),
        ..LocalProcessConfig::default()
    })?;
    let process = layers::standard(Arc::new(process), LayerOptions::default());
    let client = Docker::connect_with_defaults()?.negotiate_version().await?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let isolation = ["plain processes", "bubblewrap"][usize::from(bubblewrap_available())];
    println!(
        "exec bench: local-docker ({engine_line}, image {}) and local-process ({isolation}) vs raw bollard; {cpus} cpus",
        args.image
    );
    let cli = tokio::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .await
        .is_ok_and(|output| output.status.success());
    if !cli {
        println!("note: the `docker` CLI does not answer: no CLI column");
    }
    let spec = SandboxSpec::new()
        .lifetime_secs(600)
        .tag("bench", "exec-bench");
    let mut bench = Bench {
        docker,
        process,
        raw: Raw {
            docker: client,
            image: args.image.clone(),
            run_id: sandkit_core::Ownership::from_env().run_id,
            prefix: "sandkit-exec-bench-raw",
        },
        docker_spec: spec.clone().image(&args.image),
        process_spec: spec,
        process_state_dir,
        cli,
        args,
        figures: Figures::default(),
        live: Mutex::new(Vec::new()),
    };
    Figures::header();
    let started = Instant::now();
    let result = tokio::select! {
        result = bench.run() => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    bench.cleanup().await;
    result?;
    let figures = &bench.figures.0;
    let missed = figures.iter().filter(|f| f.met == Some(false)).count();
    let targets = figures.iter().filter(|f| f.met.is_some()).count();
    let secs = started.elapsed().as_secs_f64();
    println!("finished in {secs:.0} s; {missed} of {targets} targets missed");
    if let Some(path) = &bench.args.json {
        let json = serde_json::to_string_pretty(&bench.figures.0)?;
        if path == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json).with_context(|| format!("writing {path}"))?;
        }
    }
    Ok(())
}
