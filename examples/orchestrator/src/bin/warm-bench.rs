//! Benchmark, not a test: acquire latency from a warm pool against a cold create, on one
//! provider, measured in one run.
//!
//! `cargo run --release -p sandkit-example-orchestrator --bin warm-bench -- --provider local-process`

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sandkit::{Result, Sandbox, SandboxSpec};
use sandkit_orchestrate::{Pool, WarmPool};

#[derive(Parser)]
#[command(about = "Warm-pool acquire latency against cold create")]
struct Args {
    /// Provider to measure.
    #[arg(long, default_value = "local-process")]
    provider: String,
    /// Provider configuration (JSON).
    #[arg(long, default_value = "null")]
    config: String,
    /// Image for providers that need one (e.g. `sandkit-test-busybox:latest` for
    /// local-docker).
    #[arg(long)]
    image: Option<String>,
    /// Samples of each.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Ready sandboxes kept by the warm pool.
    #[arg(long, default_value_t = 4)]
    warm: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config: serde_json::Value = serde_json::from_str(&args.config)
        .map_err(|error| sandkit::Error::invalid_spec("--config", error.to_string()))?;
    let provider = sandkit::Provider::named(&args.provider)
        .config(config)
        .open()
        .await?;
    let mut spec = SandboxSpec::new().lifetime_secs(600);
    if let Some(image) = &args.image {
        spec = spec.image(image.clone());
    }

    // Cold: create (timed) then terminate (untimed).
    let mut cold = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let started = Instant::now();
        let sandbox = Sandbox::create(provider.clone(), &spec).await?;
        cold.push(started.elapsed());
        sandbox.terminate().await?;
    }

    // Warm: wait until the pool is full, then time one acquire (a hit).
    let pool = Arc::new(Pool::new("bench", provider.clone(), spec.clone(), None)?);
    let warm_pool = WarmPool::start(pool, SandboxSpec::new(), args.warm);
    let mut warm = Vec::with_capacity(args.samples);
    let measured = async {
        for _ in 0..args.samples {
            warm_pool.wait_filled(Duration::from_secs(120)).await;
            let started = Instant::now();
            let lease = warm_pool.acquire().await?;
            warm.push(started.elapsed());
            lease.terminate().await?;
        }
        Ok::<_, sandkit::Error>(())
    };
    // Ctrl-C drains the warm pool before exiting: no ready sandbox is left behind.
    let interrupted = tokio::select! {
        result = measured => { result?; false }
        _ = tokio::signal::ctrl_c() => true,
    };
    let stats = warm_pool.stats();
    warm_pool.shutdown().await?;
    if interrupted {
        eprintln!("interrupted; the warm pool was drained");
        std::process::exit(130);
    }

    let (cold_p50, cold_p90) = (percentile(&mut cold, 0.5), percentile(&mut cold, 0.9));
    let (warm_p50, warm_p90) = (percentile(&mut warm, 0.5), percentile(&mut warm, 0.9));
    let speedup = cold_p50.as_secs_f64() / warm_p50.as_secs_f64().max(1e-9);
    if args.json {
        let report = serde_json::json!({
            "provider": args.provider,
            "samples": args.samples,
            "cold_create_ms": {"p50": ms(cold_p50), "p90": ms(cold_p90)},
            "warm_acquire_ms": {"p50": ms(warm_p50), "p90": ms(warm_p90)},
            "cold_over_warm_p50": speedup,
            "warm_hits": stats.hits,
            "warm_misses": stats.misses,
            "target_warm_p50_ms": 5.0,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        println!("provider {}: {} samples each", args.provider, args.samples);
        println!("{:<22} {:>10} {:>10}", "", "p50 ms", "p90 ms");
        println!(
            "{:<22} {:>10.3} {:>10.3}",
            "cold create",
            ms(cold_p50),
            ms(cold_p90)
        );
        println!(
            "{:<22} {:>10.3} {:>10.3}",
            "warm acquire",
            ms(warm_p50),
            ms(warm_p90)
        );
        println!(
            "cold/warm p50 ratio {speedup:.0}x; hits {} misses {}; target warm p50 < 5 ms: {}",
            stats.hits,
            stats.misses,
            if ms(warm_p50) < 5.0 { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
