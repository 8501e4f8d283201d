//! Prints the median latency of running `true` in a local-process sandbox.

use std::time::{Duration, Instant};

use sandkit_core::{ExecRequest, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_process::{LocalProcessConfig, LocalProcessProvider};

#[tokio::main]
async fn main() -> sandkit_core::Result<()> {
    let provider = LocalProcessProvider::new(LocalProcessConfig {
        state_dir: Some(std::env::temp_dir().join("sandkit-exec-latency")),
        ..LocalProcessConfig::default()
    })?;
    let started = Instant::now();
    let id = provider.create(&SandboxSpec::new()).await?.id;
    println!("create: {:?}", started.elapsed());
    let mut samples: Vec<Duration> = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        provider.run(&id, ExecRequest::new(["true"])).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    println!("exec `true`: p50 {:?}, p90 {:?}", samples[25], samples[45]);
    provider.terminate(&id).await
}
