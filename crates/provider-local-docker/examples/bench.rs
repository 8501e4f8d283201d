//! The local-docker provider against raw `bollard` calls on the same engine, in one run.
//!
//! ```text
//! cargo run --release -p sandkit-provider-local-docker --example bench [-- --json FILE]
//! ```
//!
//! Every figure is measured both ways, alternating sandkit and raw runs so that drift of
//! the machine hits both alike, and printed with the sandkit/raw ratio. Targets: at most
//! 1.10 for latencies, at least 0.90 for throughput; the library's own memory with 100
//! live sandboxes under 20 MiB. Needs the engine and image of `scripts/docker-engine.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use futures::StreamExt;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ExecRequest, SandboxId, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};
use serde::Serialize;

#[path = "common/raw.rs"]
mod raw;
use raw::Raw;

#[derive(Parser, Debug)]
#[command(about = "Benchmark local-docker against raw bollard calls")]
struct Args {
    /// Image for every sandbox and container.
    #[arg(long, default_value = "sandkit-test-busybox:latest")]
    image: String,
    /// Round trips of `true` per side.
    #[arg(long, default_value_t = 200)]
    exec_iterations: usize,
    /// Creates (and terminates) per side.
    #[arg(long, default_value_t = 10)]
    create_iterations: usize,
    /// Sandboxes created, exec'd and terminated at once.
    #[arg(long, default_value_t = 32)]
    concurrent: usize,
    /// Live sandboxes for the memory figure.
    #[arg(long, default_value_t = 100)]
    memory_sandboxes: usize,
    /// Also write the results as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<String>,
}

/// One measured figure.
#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    unit: &'static str,
    sandkit: f64,
    raw: Option<f64>,
    /// sandkit / raw.
    ratio: Option<f64>,
    /// `latency` (lower is better), `throughput` (higher is better) or `memory`.
    kind: &'static str,
    target: String,
    met: bool,
}

#[derive(Default)]
struct Figures(Vec<Figure>);

impl Figures {
    fn latency(&mut self, name: &str, sandkit: f64, raw: f64) {
        let ratio = sandkit / raw;
        self.push(Figure {
            name: name.to_owned(),
            unit: "ms",
            sandkit,
            raw: Some(raw),
            ratio: Some(ratio),
            kind: "latency",
            target: "ratio <= 1.10".to_owned(),
            met: ratio <= 1.10,
        });
    }

    fn throughput(&mut self, name: &str, sandkit: f64, raw: f64) {
        let ratio = sandkit / raw;
        self.push(Figure {
            name: name.to_owned(),
            unit: "MiB/s",
            sandkit,
            raw: Some(raw),
            ratio: Some(ratio),
            kind: "throughput",
            target: "ratio >= 0.90".to_owned(),
            met: ratio >= 0.90,
        });
    }

    fn push(&mut self, figure: Figure) {
        let raw = figure.raw.map_or("-".to_owned(), |r| format!("{r:.2}"));
        let ratio = figure.ratio.map_or("-".to_owned(), |r| format!("{r:.3}"));
        println!(
            "{:<44} {:>12.2} {:>12} {:<6} {:>7} {:<14} {}",
            figure.name,
            figure.sandkit,
            raw,
            figure.unit,
            ratio,
            figure.target,
            if figure.met { "ok" } else { "MISSED" }
        );
        self.0.push(figure);
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

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Files through the archive API, as sandkit's Engine path moves them.
trait RawFiles {
    async fn write(&self, id: &str, name: &str, contents: &[u8]) -> Result<()>;
    async fn read(&self, id: &str, path: &str) -> Result<Bytes>;
}

impl RawFiles for Raw {
    async fn write(&self, id: &str, name: &str, contents: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        let mut builder = tar::Builder::new(Vec::with_capacity(contents.len() + 2048));
        builder.append_data(&mut header, name, contents)?;
        let tar = builder.into_inner()?;
        let options = UploadToContainerOptionsBuilder::default()
            .path("/tmp")
            .build();
        self.docker
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await?;
        Ok(())
    }

    async fn read(&self, id: &str, path: &str) -> Result<Bytes> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut archive = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk?);
        }
        Ok(archive.freeze())
    }
}

fn run_id() -> String {
    sandkit_core::Ownership::from_env().run_id
}

struct Bench {
    provider: Arc<dyn SandboxProvider>,
    raw: Raw,
    spec: SandboxSpec,
    args: Args,
    figures: Figures,
}

impl Bench {
    async fn exec_round_trips(&mut self) -> Result<()> {
        let id = self.provider.create(&self.spec).await?.id;
        let raw_id = self.raw.create().await?;
        let (mut sandkit, mut raw) = (Vec::new(), Vec::new());
        // Warm both paths up.
        for _ in 0..5 {
            self.provider.run(&id, ExecRequest::new(["true"])).await?;
            self.raw.exec(&raw_id, &["true"]).await?;
        }
        for round in 0..self.args.exec_iterations {
            // Alternate who goes first, so neither side always follows the other.
            for side in [round % 2, 1 - round % 2] {
                let started = Instant::now();
                if side == 0 {
                    let output = self.provider.run(&id, ExecRequest::new(["true"])).await?;
                    sandkit.push(millis(started.elapsed()));
                    anyhow::ensure!(output.status.success(), "true failed: {output:?}");
                } else {
                    let code = self.raw.exec(&raw_id, &["true"]).await?.code;
                    raw.push(millis(started.elapsed()));
                    anyhow::ensure!(code == 0, "raw true exited {code}");
                }
            }
        }
        for p in [50.0, 90.0, 99.0] {
            self.figures.latency(
                &format!("exec `true` round trip p{p}"),
                percentile(&mut sandkit, p),
                percentile(&mut raw, p),
            );
        }
        self.provider.terminate(&id).await?;
        self.raw.remove(&raw_id).await?;
        Ok(())
    }

    async fn create_and_terminate(&mut self) -> Result<()> {
        let (mut create_s, mut create_r, mut term_s, mut term_r) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.args.create_iterations {
            let started = Instant::now();
            let id = self.provider.create(&self.spec).await?.id;
            self.provider.run(&id, ExecRequest::new(["true"])).await?;
            create_s.push(millis(started.elapsed()));

            let started = Instant::now();
            let raw_id = self.raw.create().await?;
            self.raw.exec(&raw_id, &["true"]).await?;
            create_r.push(millis(started.elapsed()));

            let started = Instant::now();
            self.provider.terminate(&id).await?;
            term_s.push(millis(started.elapsed()));

            let started = Instant::now();
            self.raw.remove(&raw_id).await?;
            term_r.push(millis(started.elapsed()));
        }
        self.figures.latency(
            "create to first exec (p50)",
            percentile(&mut create_s, 50.0),
            percentile(&mut create_r, 50.0),
        );
        self.figures.latency(
            "terminate (p50)",
            percentile(&mut term_s, 50.0),
            percentile(&mut term_r, 50.0),
        );
        Ok(())
    }

    async fn files(&mut self) -> Result<()> {
        let id = self.provider.create(&self.spec).await?.id;
        let raw_id = self.raw.create().await?;
        for (label, size, rounds) in [("1 MiB", 1usize << 20, 30), ("64 MiB", 64usize << 20, 5)] {
            let contents = Bytes::from(vec![0xa5u8; size]);
            let (mut write_s, mut write_r, mut read_s, mut read_r) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..=rounds {
                // Alternate who goes first; round 0 warms up.
                for side in [round % 2, 1 - round % 2] {
                    let started = Instant::now();
                    if side == 0 {
                        self.provider
                            .write_file(&id, "/tmp/bench.bin", contents.clone())
                            .await?;
                    } else {
                        self.raw.write(&raw_id, "bench.bin", &contents).await?;
                    }
                    let write = millis(started.elapsed());
                    let started = Instant::now();
                    let read = if side == 0 {
                        self.provider.read_file(&id, "/tmp/bench.bin").await?.len()
                    } else {
                        self.raw.read(&raw_id, "/tmp/bench.bin").await?.len()
                    };
                    let read_ms = millis(started.elapsed());
                    anyhow::ensure!(read >= size, "read {read} bytes");
                    if round > 0 {
                        let (writes, reads) = if side == 0 {
                            (&mut write_s, &mut read_s)
                        } else {
                            (&mut write_r, &mut read_r)
                        };
                        writes.push(write);
                        reads.push(read_ms);
                    }
                }
            }
            self.figures.latency(
                &format!("write {label} file (p50)"),
                percentile(&mut write_s, 50.0),
                percentile(&mut write_r, 50.0),
            );
            self.figures.latency(
                &format!("read {label} file (p50)"),
                percentile(&mut read_s, 50.0),
                percentile(&mut read_r, 50.0),
            );
        }
        self.provider.terminate(&id).await?;
        self.raw.remove(&raw_id).await?;
        Ok(())
    }

    async fn streaming(&mut self) -> Result<()> {
        const BYTES: u64 = 256 << 20;
        let id = self.provider.create(&self.spec).await?.id;
        let raw_id = self.raw.create().await?;
        let argv = ["head", "-c", "268435456", "/dev/zero"];
        let (mut sandkit, mut raw) = (Vec::new(), Vec::new());
        for round in 0..5 {
            for side in [round % 2, 1 - round % 2] {
                let started = Instant::now();
                let seen = if side == 0 {
                    let mut process = self.provider.exec(&id, ExecRequest::new(argv)).await?;
                    let mut seen = 0u64;
                    while let Some(chunk) = process.stdout.next().await {
                        seen += chunk?.len() as u64;
                    }
                    process.wait().await?;
                    seen
                } else {
                    self.raw.exec(&raw_id, &argv).await?.bytes
                };
                let elapsed = started.elapsed().as_secs_f64();
                anyhow::ensure!(seen == BYTES, "streamed {seen} bytes");
                let rate = BYTES as f64 / (1 << 20) as f64 / elapsed;
                if side == 0 {
                    sandkit.push(rate)
                } else {
                    raw.push(rate)
                }
            }
        }
        self.figures.throughput(
            "stdout streaming over 256 MiB (median of 5)",
            percentile(&mut sandkit, 50.0),
            percentile(&mut raw, 50.0),
        );
        self.provider.terminate(&id).await?;
        self.raw.remove(&raw_id).await?;
        Ok(())
    }

    async fn concurrent(&mut self) -> Result<()> {
        let n = self.args.concurrent;
        let started = Instant::now();
        let runs = (0..n).map(|_| {
            let provider = Arc::clone(&self.provider);
            let spec = self.spec.clone();
            async move {
                let id = provider.create(&spec).await?.id;
                provider.run(&id, ExecRequest::new(["true"])).await?;
                provider.terminate(&id).await?;
                anyhow::Ok(())
            }
        });
        for result in futures::future::join_all(runs).await {
            result?;
        }
        let sandkit = millis(started.elapsed());

        let started = Instant::now();
        let raw = &self.raw;
        let runs = (0..n).map(|_| async move {
            let id = raw.create().await?;
            raw.exec(&id, &["true"]).await?;
            raw.remove(&id).await?;
            anyhow::Ok(())
        });
        for result in futures::future::join_all(runs).await {
            result?;
        }
        let raw = millis(started.elapsed());
        self.figures.latency(
            &format!("{n} sandboxes created, exec'd, terminated at once (wall)"),
            sandkit,
            raw,
        );
        Ok(())
    }

    async fn memory(&mut self) -> Result<()> {
        let n = self.args.memory_sandboxes;
        let before = rss_kib();
        let mut ids: Vec<SandboxId> = Vec::with_capacity(n);
        let created: Vec<_> = futures::stream::iter(0..n)
            .map(|_| {
                let provider = Arc::clone(&self.provider);
                let spec = self.spec.clone();
                async move { provider.create(&spec).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut failure = None;
        for result in created {
            match result {
                Ok(info) => ids.push(info.id),
                Err(e) => failure = Some(e),
            }
        }
        // One command in each, so every sandbox is known to the provider.
        for id in &ids {
            self.provider.run(id, ExecRequest::new(["true"])).await?;
        }
        let after = rss_kib();
        for id in &ids {
            self.provider.terminate(id).await?;
        }
        if let Some(e) = failure {
            bail!("creating {n} sandboxes: {e}");
        }
        let delta_mib = after.saturating_sub(before) as f64 / 1024.0;
        self.figures.push(Figure {
            name: format!("library RSS growth with {n} live sandboxes"),
            unit: "MiB",
            sandkit: delta_mib,
            raw: None,
            ratio: None,
            kind: "memory",
            target: "< 20 MiB".to_owned(),
            met: delta_mib < 20.0,
        });
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .context("connecting to the Docker Engine (scripts/docker-engine.sh starts one)")?;
    let engine_line = format!("engine API {} at {}", bare.api_version(), bare.host());
    let provider = layers::standard(Arc::new(bare), LayerOptions::default());
    let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
    let spec = SandboxSpec::new()
        .image(&args.image)
        .lifetime_secs(600)
        .tag("bench", "local-docker");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "local-docker vs raw bollard; {engine_line}; {cpus} cpus; image {}",
        args.image
    );
    println!(
        "{:<44} {:>12} {:>12} {:<6} {:>7} {:<14}",
        "figure", "sandkit", "raw", "unit", "ratio", "target"
    );
    let mut bench = Bench {
        provider,
        raw: Raw {
            docker,
            image: args.image.clone(),
            run_id: run_id(),
            prefix: "sandkit-bench-raw",
        },
        spec,
        figures: Figures::default(),
        args,
    };
    let started = Instant::now();
    // Memory first, before large buffers make the allocator's footprint noisy.
    bench.memory().await?;
    bench.exec_round_trips().await?;
    bench.create_and_terminate().await?;
    bench.files().await?;
    bench.streaming().await?;
    bench.concurrent().await?;
    println!("finished in {:.0} s", started.elapsed().as_secs_f64());
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
