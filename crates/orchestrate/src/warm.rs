//! Warm pools: sandboxes created ahead of time for one (pool, spec), handed out without
//! waiting, refilled in the background, drained on shutdown.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::pool::{Admission, Pool};
use crate::router::Lease;
use sandkit::error::Result;
use sandkit::provider::Sandbox;
use sandkit::spec::SandboxSpec;
use sandkit::usage::Usage;

/// Counters of a warm pool.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct WarmStats {
    /// Sandboxes ready now.
    pub ready: usize,
    /// Acquisitions served from a ready sandbox.
    pub hits: u64,
    /// Acquisitions that had to create cold.
    pub misses: u64,
    /// Sandboxes created by the refiller.
    pub created: u64,
    /// Refill attempts that failed.
    pub refill_failures: u64,
    /// Resources held by sandboxes while they waited, ready and unused.
    pub idle_usage: Usage,
    /// Estimated cost of that idle time, when the provider has a price sheet.
    pub idle_cost: f64,
}

struct Ready {
    sandbox: Sandbox,
    admission: Admission,
    since: Instant,
}

struct Shared {
    pool: Arc<Pool>,
    spec: SandboxSpec,
    target: usize,
    ready: Mutex<VecDeque<Ready>>,
    stats: Mutex<WarmStats>,
    wake: Notify,
}

impl Shared {
    /// Adds the idle time of a sandbox leaving the ready queue to the stats.
    fn account_idle(&self, ready: &Ready) {
        let idle_secs = ready.since.elapsed().as_secs_f64();
        let info = ready.sandbox.info();
        // The allocation held over the idle period only, not the sandbox's whole life.
        let idle = Usage {
            wall_secs: idle_secs,
            cpu_core_secs: info.cpu.unwrap_or(0.0) * idle_secs,
            memory_gib_secs: info.memory_mib.unwrap_or(0) as f64 / 1024.0 * idle_secs,
            gpu_secs: info.gpu.map_or(0.0, |g| f64::from(g.count)) * idle_secs,
        };
        let cost = self
            .pool
            .capabilities()
            .price_sheet
            .as_ref()
            .map_or(0.0, |sheet| sheet.estimate(&idle, info));
        let mut stats = self.stats.lock().expect("stats lock");
        stats.idle_usage.add(&idle);
        stats.idle_cost += cost;
    }
}

/// Keeps `target` ready sandboxes of one spec on one pool.
pub struct WarmPool {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    refiller: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("pool", &self.shared.pool.name)
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl WarmPool {
    /// Starts filling a warm pool of `target` sandboxes of `spec` (merged over the pool's
    /// default spec). Must be called inside a tokio runtime.
    pub fn start(pool: Arc<Pool>, spec: SandboxSpec, target: usize) -> Self {
        let spec = spec.merged_over(&pool.spec);
        let shared = Arc::new(Shared {
            pool,
            spec,
            target,
            ready: Mutex::new(VecDeque::new()),
            stats: Mutex::new(WarmStats::default()),
            wake: Notify::new(),
        });
        let (stop, stopped) = watch::channel(false);
        let refiller = tokio::spawn(refill(shared.clone(), stopped));
        Self {
            shared,
            stop,
            refiller: Mutex::new(Some(refiller)),
        }
    }

    /// A sandbox: a ready one without waiting when there is one, otherwise a cold create.
    pub async fn acquire(&self) -> Result<Lease> {
        let ready = self.shared.ready.lock().expect("ready lock").pop_front();
        self.shared.wake.notify_one();
        if let Some(ready) = ready {
            self.shared.account_idle(&ready);
            self.shared.stats.lock().expect("stats lock").hits += 1;
            return Ok(Lease::new(
                ready.sandbox,
                self.shared.pool.name.clone(),
                ready.admission,
            ));
        }
        self.shared.stats.lock().expect("stats lock").misses += 1;
        let pool = &self.shared.pool;
        let admission = pool.admit(Duration::from_secs(30)).await.ok_or_else(|| {
            sandkit::Error::ResourceLimitExceeded {
                message: format!("pool `{}` is full", pool.name),
            }
        })?;
        let sandbox = Sandbox::create(pool.provider.clone(), &self.shared.spec).await?;
        Ok(Lease::new(sandbox, pool.name.clone(), admission))
    }

    /// Waits until `target` sandboxes are ready, or `timeout` passes; returns how many are.
    pub async fn wait_filled(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.ready_count();
            if ready >= self.shared.target || Instant::now() >= deadline {
                return ready;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sandboxes ready now.
    pub fn ready_count(&self) -> usize {
        self.shared.ready.lock().expect("ready lock").len()
    }

    /// Counters, including idle usage and its estimated cost.
    pub fn stats(&self) -> WarmStats {
        let mut stats = *self.shared.stats.lock().expect("stats lock");
        stats.ready = self.ready_count();
        stats
    }

    /// Stops refilling and terminates every ready sandbox. Leases already handed out are
    /// their holders' to end.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        let refiller = self.refiller.lock().expect("refiller lock").take();
        if let Some(refiller) = refiller {
            let _ = refiller.await;
        }
        let drained: Vec<Ready> = self
            .shared
            .ready
            .lock()
            .expect("ready lock")
            .drain(..)
            .collect();
        let mut first_error = None;
        for ready in drained {
            self.shared.account_idle(&ready);
            if let Err(error) = ready.sandbox.terminate().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let drained: Vec<Ready> = match self.shared.ready.lock() {
            Ok(mut ready) => ready.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        if drained.is_empty() {
            return;
        }
        // No I/O here: the terminations run on a background task.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for ready in drained {
                    if let Err(error) = ready.sandbox.terminate().await {
                        tracing::warn!(%error, "terminating a dropped warm pool's sandbox failed");
                    }
                }
            });
        } else {
            tracing::warn!(
                sandboxes = drained.len(),
                "warm pool dropped outside a runtime; its ready sandboxes end at their lifetime"
            );
        }
    }
}

async fn refill(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        let short = shared.ready.lock().expect("ready lock").len() < shared.target;
        let admission = if short { shared.pool.try_admit() } else { None };
        match admission {
            Some(admission) => {
                let created = tokio::select! {
                    created = Sandbox::create(shared.pool.provider.clone(), &shared.spec) => created,
                    _ = stopped.changed() => return,
                };
                match created {
                    Ok(sandbox) => {
                        backoff = Duration::from_millis(100);
                        shared.stats.lock().expect("stats lock").created += 1;
                        let ready = Ready {
                            sandbox,
                            admission,
                            since: Instant::now(),
                        };
                        if *stopped.borrow() {
                            let _ = ready.sandbox.terminate().await;
                            return;
                        }
                        shared.ready.lock().expect("ready lock").push_back(ready);
                    }
                    Err(error) => {
                        shared.stats.lock().expect("stats lock").refill_failures += 1;
                        let wait = error.retry_after().unwrap_or(backoff);
                        tracing::warn!(pool = %shared.pool.name, %error, ?wait, "warm pool refill failed");
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stopped.changed() => return,
                        }
                    }
                }
            }
            None => {
                // Full, or no free slot: wait for an acquisition or a periodic recheck.
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stopped.changed() => return,
                }
            }
        }
    }
}
