//! Whether ending a sandbox costs more when many others live: terminates a sample of
//! sandboxes among `SMALL`, then among `LARGE` live ones, and prints the per-terminate
//! medians and their ratio (target: about 1, since terminate ends one pid namespace and
//! scans nothing else). Sandboxes have loopback-only networks, so `pasta` is not measured.
//!
//! `cargo run --release -p sandkit-provider-local-process --example terminate_scaling [SMALL LARGE]`

use std::time::{Duration, Instant};

use sandkit_core::{NetworkPolicy, SandboxId, SandboxProvider, SandboxSpec};
use sandkit_provider_local_process::{LocalProcessConfig, LocalProcessProvider};

/// Sandboxes terminated (and timed) at each size.
const SAMPLE: usize = 40;

async fn fill(
    provider: &LocalProcessProvider,
    live: &mut Vec<SandboxId>,
    count: usize,
) -> sandkit_core::Result<()> {
    let spec = SandboxSpec::new()
        .network(NetworkPolicy::BlockAll)
        .lifetime_secs(1800);
    while live.len() < count {
        let batch = (count - live.len()).min(16);
        let created = futures::future::join_all((0..batch).map(|_| provider.create(&spec))).await;
        for info in created {
            live.push(info?.id);
        }
    }
    Ok(())
}

async fn median_terminate(
    provider: &LocalProcessProvider,
    live: &mut Vec<SandboxId>,
) -> sandkit_core::Result<Duration> {
    let mut samples = Vec::new();
    for _ in 0..SAMPLE {
        let id = live.pop().expect("enough sandboxes");
        let started = Instant::now();
        provider.terminate(&id).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

#[tokio::main]
async fn main() -> sandkit_core::Result<()> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(0));
    let small = args.next().unwrap_or(200).max(SAMPLE);
    let large = args.next().unwrap_or(1000).max(small);
    let provider = LocalProcessProvider::new(LocalProcessConfig {
        state_dir: Some(std::env::temp_dir().join("sandkit-terminate-scaling")),
        ..LocalProcessConfig::default()
    })?;
    let mut live = Vec::new();
    fill(&provider, &mut live, small).await?;
    let at_small = median_terminate(&provider, &mut live).await?;
    fill(&provider, &mut live, large).await?;
    let at_large = median_terminate(&provider, &mut live).await?;
    for id in live {
        provider.terminate(&id).await?;
    }
    println!("| live sandboxes | terminate p50 |");
    println!("|---:|---:|");
    println!("| {small} | {at_small:.2?} |");
    println!("| {large} | {at_large:.2?} |");
    println!(
        "ratio ({large} / {small}): {:.2}",
        at_large.as_secs_f64() / at_small.as_secs_f64()
    );
    Ok(())
}
