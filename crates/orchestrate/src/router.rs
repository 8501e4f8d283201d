//! Routing: choose a pool by requirements, create there, fall back on transient failures,
//! and record every decision.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use sandkit::error::{Error, Result};
use sandkit::layers::LayerOptions;
use sandkit::provider::Sandbox;
use sandkit::requirements::Requirements;
use sandkit::spec::SandboxSpec;

use crate::plan::{Decision, PoolFailure, plan_over};
use crate::pool::{Admission, Pool, PoolsFile};

/// A sandbox handed out by a [`Router`] or a warm pool, holding its pool's concurrency
/// slot. Terminate it with [`Lease::terminate`]; a lease dropped without that is
/// terminated in the background so no sandbox outlives its owner by accident.
#[derive(Debug)]
pub struct Lease {
    sandbox: Option<Sandbox>,
    pool: String,
    admission: Option<Admission>,
}

impl Lease {
    pub(crate) fn new(sandbox: Sandbox, pool: String, admission: Admission) -> Self {
        Self {
            sandbox: Some(sandbox),
            pool,
            admission: Some(admission),
        }
    }

    /// The pool it came from.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Terminates the sandbox and frees the slot.
    pub async fn terminate(mut self) -> Result<()> {
        let result = match self.sandbox.take() {
            Some(sandbox) => sandbox.terminate().await,
            None => Ok(()),
        };
        self.admission.take();
        result
    }

    /// Keeps the sandbox running beyond the lease: frees the slot, returns the handle.
    /// The caller now owns its termination.
    pub fn detach(mut self) -> Sandbox {
        self.admission.take();
        self.sandbox
            .take()
            .expect("a live lease always holds its sandbox")
    }
}

impl Deref for Lease {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        self.sandbox
            .as_ref()
            .expect("a live lease always holds its sandbox")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            let admission = self.admission.take();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = sandbox.terminate().await {
                        tracing::warn!(%error, "terminating a dropped lease failed");
                    }
                    drop(admission);
                });
            } else {
                tracing::warn!(sandbox = %sandbox.id(), "lease dropped outside a runtime; the sandbox ends at its lifetime");
            }
        }
    }
}

/// Routes jobs over ordered pools.
///
/// Retries happen in one place: each pool's provider is wrapped in the standard layers,
/// whose `Retrying` layer retries a rate-limited or unavailable create with backoff. The
/// router does not retry a pool; when the layer gives up, it falls back to the next one.
#[derive(Debug, Clone)]
pub struct Router {
    pools: Vec<Arc<Pool>>,
}

impl Router {
    /// A router over `pools`, most preferred first.
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        Self { pools }
    }

    /// Loads a pools file and builds every pool (see [`PoolsFile::build`]).
    pub async fn from_file(path: &Path, options: LayerOptions) -> Result<Self> {
        Ok(Self::new(PoolsFile::read(path)?.build(options).await?))
    }

    /// The pools, in preference order.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|pool| pool.name == name)
    }

    /// Which pools could take `spec` with the extra `requirements`, without creating
    /// anything. The spec is merged over each pool's default spec first.
    pub fn plan(&self, spec: &SandboxSpec, requirements: &Requirements) -> Decision {
        plan_over(
            self.pools
                .iter()
                .map(|pool| (pool.name.as_str(), &pool.spec, pool.capabilities())),
            spec,
            requirements,
        )
    }

    /// [`Router::plan`], then asks each fitting pool that declares `capacity_query` for
    /// its free capacity: a pool reporting none (or failing to answer) moves from
    /// `considered` to `failed`. Connects to those providers; creates nothing.
    pub async fn plan_with_capacity(
        &self,
        spec: &SandboxSpec,
        requirements: &Requirements,
    ) -> Decision {
        let mut decision = self.plan(spec, requirements);
        let mut considered = Vec::with_capacity(decision.considered.len());
        for name in std::mem::take(&mut decision.considered) {
            match self.pool(&name) {
                Some(pool) if pool.capabilities().capacity_query => {
                    match pool.provider.capacity().await {
                        Ok(capacity) if capacity.available_sandboxes == Some(0) => {
                            decision.failed.push(PoolFailure {
                                pool: name,
                                kind: "no_capacity".to_owned(),
                                message: "the provider reports no free capacity".to_owned(),
                            });
                        }
                        Ok(_) => considered.push(name),
                        Err(error) => decision.failed.push(PoolFailure {
                            pool: name,
                            kind: error.kind().to_owned(),
                            message: error.to_string(),
                        }),
                    }
                }
                _ => considered.push(name),
            }
        }
        decision.considered = considered;
        decision
    }

    /// Creates a sandbox on the first pool that meets the requirements and has room,
    /// falling back to the next on a retryable failure (unavailable, rate limited, no
    /// capacity, pool full). A non-retryable failure ends the search with that error.
    /// The decision is logged as a tracing event and returned with the lease.
    pub async fn create(
        &self,
        spec: &SandboxSpec,
        requirements: &Requirements,
    ) -> Result<(Lease, Decision)> {
        let mut decision = self.plan(spec, requirements);
        let candidates: Vec<Arc<Pool>> = decision
            .considered
            .iter()
            .filter_map(|name| self.pool(name).cloned())
            .collect();
        for pool in candidates {
            match self.try_pool(&pool, spec).await {
                Ok(lease) => {
                    decision.chosen = Some(pool.name.clone());
                    decision.log();
                    return Ok((lease, decision));
                }
                Err((kind, error)) => {
                    let retryable = error.as_ref().is_none_or(|e| {
                        e.is_retryable() || matches!(e, Error::ResourceLimitExceeded { .. })
                    });
                    decision.failed.push(PoolFailure {
                        pool: pool.name.clone(),
                        kind,
                        message: error
                            .as_ref()
                            .map_or("no free slot".to_owned(), ToString::to_string),
                    });
                    if !retryable {
                        decision.log();
                        return Err(error.expect("a non-retryable failure carries its error"));
                    }
                }
            }
        }
        decision.log();
        Err(Error::NoPoolAvailable {
            rejected: decision.rejected,
            failed: decision
                .failed
                .into_iter()
                .map(|f| (f.pool, format!("{}: {}", f.kind, f.message)))
                .collect(),
        })
    }

    /// One pool: admission, capacity, then create (the pool's layers retry it).
    async fn try_pool(
        &self,
        pool: &Arc<Pool>,
        spec: &SandboxSpec,
    ) -> std::result::Result<Lease, (String, Option<Error>)> {
        let admission = pool.try_admit().ok_or(("full".to_owned(), None))?;
        if pool.capabilities().capacity_query
            && let Ok(capacity) = pool.provider.capacity().await
            && capacity.available_sandboxes == Some(0)
        {
            return Err((
                "no_capacity".to_owned(),
                Some(Error::ResourceLimitExceeded {
                    message: "the provider reports no free capacity".into(),
                }),
            ));
        }
        let merged = spec.merged_over(&pool.spec);
        match Sandbox::create(pool.provider.clone(), &merged).await {
            Ok(sandbox) => Ok(Lease::new(sandbox, pool.name.clone(), admission)),
            Err(error) => Err((error.kind().to_owned(), Some(error))),
        }
    }
}
