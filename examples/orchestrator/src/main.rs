//! An example orchestrator: loads pools from a `sandkit.toml`-style file, routes jobs with
//! mixed requirements (GPU, no network, a 6 h lifetime, snapshots), runs each, and prints
//! the routing decisions and a cost summary built from lifecycle events.
//!
//! `cargo run -p sandkit-example-orchestrator -- --pools examples/orchestrator/pools-local.toml`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use futures::StreamExt;
use sandkit::layers::LayerOptions;
use sandkit::{Error, ExecRequest, Feature, GpuKind, NetworkPolicy, Requirements, SandboxSpec};
use sandkit_orchestrate::{CostReport, Router};
use tokio::sync::broadcast;

#[derive(Parser)]
#[command(about = "Route jobs over pools and report decisions and cost")]
struct Args {
    /// The pools file.
    #[arg(long, default_value = "examples/orchestrator/pools-local.toml")]
    pools: PathBuf,
    /// How many jobs.
    #[arg(long, default_value_t = 100)]
    jobs: usize,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The kinds of job the example mixes, each with what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum JobKind {
    Plain,
    NoNetwork,
    Gpu,
    SixHours,
    Snapshot,
}

impl JobKind {
    fn of(index: usize) -> Self {
        [
            Self::Plain,
            Self::NoNetwork,
            Self::Gpu,
            Self::SixHours,
            Self::Snapshot,
        ][index % 5]
    }

    fn spec_and_requirements(self, index: usize) -> (SandboxSpec, Requirements) {
        let spec = SandboxSpec::new().tag("job", index.to_string());
        match self {
            Self::Plain => (spec, Requirements::default()),
            Self::NoNetwork => (
                spec.network(NetworkPolicy::BlockAll),
                Requirements::default(),
            ),
            Self::Gpu => (spec.gpu(GpuKind::H100, 1), Requirements::default()),
            Self::SixHours => (spec.lifetime_secs(6 * 3600), Requirements::default()),
            Self::Snapshot => (spec, Requirements::new().with(Feature::FsSnapshot)),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct JobResult {
    index: usize,
    kind: JobKind,
    pool: Option<String>,
    outcome: String,
    /// Pools rejected for this job, with the rule ids.
    rejected: BTreeMap<String, Vec<String>>,
}

async fn run_job(router: &Router, index: usize) -> JobResult {
    let kind = JobKind::of(index);
    let (spec, requirements) = kind.spec_and_requirements(index);
    let rejected_of = |rejections: &[sandkit::Rejection]| {
        rejections
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.unmet.iter().map(|u| u.rule.clone()).collect(),
                )
            })
            .collect()
    };
    let (lease, decision) = match router.create(&spec, &requirements).await {
        Ok(routed) => routed,
        Err(Error::NoPoolAvailable { rejected, failed }) => {
            return JobResult {
                index,
                kind,
                pool: None,
                outcome: if failed.is_empty() {
                    "unroutable".into()
                } else {
                    format!("all pools failed: {failed:?}")
                },
                rejected: rejected_of(&rejected),
            };
        }
        // The chosen pool's provider turned the job down (the Modal emulator has no GPUs
        // to give, say): an honest answer, reported, not an orchestrator failure.
        Err(error @ Error::Unsupported { .. }) => {
            return JobResult {
                index,
                kind,
                pool: None,
                outcome: format!("refused: {error}"),
                rejected: BTreeMap::new(),
            };
        }
        Err(error) => {
            return JobResult {
                index,
                kind,
                pool: None,
                outcome: format!("error: {error}"),
                rejected: BTreeMap::new(),
            };
        }
    };
    let mut outcome = match lease
        .run(ExecRequest::new(["echo", &format!("job {index}")]))
        .await
    {
        Ok(output) if output.status.success() && output.stdout == format!("job {index}\n") => {
            "ok".to_owned()
        }
        Ok(output) => format!("unexpected output: {:?} {}", output.stdout, output.status),
        Err(error) => format!("exec failed: {error}"),
    };
    if kind == JobKind::Snapshot && outcome == "ok" {
        outcome = match lease.snapshot().await {
            Ok(snapshot) => {
                let _ = lease.provider().delete_snapshot(&snapshot.id).await;
                "ok".to_owned()
            }
            Err(error) => format!("snapshot failed: {error}"),
        };
    }
    if let Err(error) = lease.terminate().await {
        outcome = format!("terminate failed: {error}");
    }
    JobResult {
        index,
        kind,
        pool: decision.chosen,
        outcome,
        rejected: rejected_of(&decision.rejected),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (events, mut received) = broadcast::channel(4 * args.jobs + 16);
    let options = LayerOptions {
        events: Some(events),
        ..LayerOptions::default()
    };
    let router = match Router::from_file(&args.pools, options).await {
        Ok(router) => router,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };

    // Ctrl-C stops launching jobs; jobs in flight finish and terminate their sandboxes,
    // so nothing is left behind.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the jobs in flight");
                interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let results: Vec<JobResult> = futures::stream::iter(0..args.jobs)
        .take_while(|_| {
            let go_on = !interrupted.load(std::sync::atomic::Ordering::SeqCst);
            async move { go_on }
        })
        .map(|index| run_job(&router, index))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    watcher.abort();
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("interrupted after {} jobs", results.len());
        return ExitCode::from(130);
    }

    // Cost per provider, from the terminate events (usage over each sandbox's whole life).
    let mut costs = CostReport::new();
    while let Ok(event) = received.try_recv() {
        costs.record(&event);
    }

    // Decision table: (kind, where it went) -> count; rejections by pool and rule.
    let mut table: BTreeMap<(JobKind, String), usize> = BTreeMap::new();
    let mut rejections: BTreeMap<(String, String), usize> = BTreeMap::new();
    for result in &results {
        let place = match (&result.pool, result.outcome.as_str()) {
            (Some(pool), "ok") => pool.clone(),
            (Some(pool), _) => format!("{pool} (failed)"),
            (None, outcome) => outcome.split(':').next().unwrap_or(outcome).to_owned(),
        };
        *table.entry((result.kind, place)).or_default() += 1;
        for (pool, rules) in &result.rejected {
            for rule in rules {
                *rejections.entry((pool.clone(), rule.clone())).or_default() += 1;
            }
        }
    }
    let failures: Vec<&JobResult> = results
        .iter()
        .filter(|r| {
            r.outcome != "ok" && r.outcome != "unroutable" && !r.outcome.starts_with("refused")
        })
        .collect();

    if args.json {
        let summary = serde_json::json!({
            "jobs": results.len(),
            "decisions": table.iter().map(|((kind, place), n)| serde_json::json!({"kind": kind, "placed": place, "jobs": n})).collect::<Vec<_>>(),
            "rejections": rejections.iter().map(|((pool, rule), n)| serde_json::json!({"pool": pool, "rule": rule, "jobs": n})).collect::<Vec<_>>(),
            "cost": costs,
            "failures": failures,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serialises")
        );
    } else {
        println!("{:<12} {:<24} {:>5}", "job kind", "placed on", "jobs");
        for ((kind, place), count) in &table {
            let kind = serde_json::to_value(kind).expect("kind serialises");
            println!(
                "{:<12} {:<24} {:>5}",
                kind.as_str().unwrap_or_default(),
                place,
                count
            );
        }
        println!("\n{:<12} {:<28} {:>5}", "pool", "rejected by rule", "jobs");
        for ((pool, rule), count) in &rejections {
            println!("{pool:<12} {rule:<28} {count:>5}");
        }
        print!("\n{}", costs.table());
        for failure in &failures {
            eprintln!(
                "job {} ({:?}) failed: {}",
                failure.index, failure.kind, failure.outcome
            );
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
