//! Routing, fallback, admission and warm pools over real local-process sandboxes.
//!
//! Failures are injected by [`Flaky`], a wrapper that makes a real provider's `create`
//! fail a chosen number of times with a chosen error: the rest is the real provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sandkit::layers::{self, LayerOptions};
use sandkit::local_process::{LocalProcessConfig, LocalProcessProvider};
use sandkit::{
    Error, ExecRequest, GpuKind, ListFilter, Requirements, SandboxInfo, SandboxProvider,
    SandboxSpec,
};
use sandkit_orchestrate::{Pool, PoolsFile, Router, WarmPool};

struct Flaky {
    inner: Arc<dyn SandboxProvider>,
    failures_left: AtomicU32,
    error: fn() -> Error,
    creates: AtomicU32,
}

// A provider of its own (it changes what create does), so not one `bare` peels.
sandkit::layer_impl! {
    Flaky => inner forward [
        name, capabilities, check_provider_options, info, list, exec, read_file, write_file,
        stat, list_dir, make_dir, remove, terminate, read_file_stream, write_file_stream,
        download_archive_stream, upload_archive_stream, upload_archive, download_archive,
        snapshot, delete_snapshot, pause, resume, tunnels, capacity, find_by_name, resource_usage, watch,
        entrypoint_output, write_entrypoint_stdin,
    ] {
        fn wrapped(&self) -> Option<&Arc<dyn SandboxProvider>> {
            None
        }
        async fn create(&self, spec: &SandboxSpec) -> sandkit::Result<SandboxInfo> {
            self.creates.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err((self.error)());
            }
            self.inner.create(spec).await
        }
    }
}

struct Fixture {
    _state: tempfile::TempDir,
    bare: Arc<dyn SandboxProvider>,
}

impl Fixture {
    fn new() -> Self {
        let state = tempfile::tempdir().expect("temp dir");
        let provider = LocalProcessProvider::new(LocalProcessConfig {
            state_dir: Some(state.path().to_owned()),
            ..LocalProcessConfig::default()
        })
        .expect("local-process provider");
        Self {
            _state: state,
            bare: Arc::new(provider),
        }
    }

    /// A pool over the real provider whose first `failures` creates fail with `error`.
    fn pool(
        &self,
        name: &str,
        failures: u32,
        error: fn() -> Error,
        max: Option<u32>,
    ) -> (Arc<Pool>, Arc<Flaky>) {
        let flaky = Arc::new(Flaky {
            inner: self.bare.clone(),
            failures_left: AtomicU32::new(failures),
            error,
            creates: AtomicU32::new(0),
        });
        let provider = layers::standard(flaky.clone(), options());
        let spec = SandboxSpec::new().lifetime_secs(120);
        let pool = Pool::new(name, provider, spec, max).expect("pool");
        (Arc::new(pool), flaky)
    }

    async fn live(&self) -> usize {
        self.bare
            .list(&ListFilter::all())
            .await
            .expect("list")
            .len()
    }
}

fn options() -> LayerOptions {
    LayerOptions {
        retry: layers::RetryPolicy::none(),
        ..LayerOptions::default()
    }
}

fn unavailable() -> Error {
    Error::Unavailable {
        message: "injected outage".into(),
    }
}

fn creation_failed() -> Error {
    Error::CreationFailed {
        message: "injected bad image".into(),
    }
}

#[tokio::test]
async fn the_first_pool_that_meets_the_requirements_is_chosen() {
    let fixture = Fixture::new();
    let (a, _) = fixture.pool("a", 0, unavailable, None);
    let (b, _) = fixture.pool("b", 0, unavailable, None);
    let router = Router::new(vec![a, b]);
    let (lease, decision) = router
        .create(&SandboxSpec::new(), &Requirements::default())
        .await
        .expect("routed");
    assert_eq!(decision.chosen.as_deref(), Some("a"));
    assert_eq!(decision.considered, ["a", "b"]);
    let output = lease
        .run(ExecRequest::new(["echo", "routed"]))
        .await
        .expect("run");
    assert_eq!(output.stdout, "routed\n");
    lease.terminate().await.expect("terminate");
    assert_eq!(fixture.live().await, 0);
}

#[tokio::test]
async fn a_retryable_failure_falls_back_to_the_next_pool() {
    let fixture = Fixture::new();
    let (a, flaky_a) = fixture.pool("a", 1, unavailable, None);
    let (b, _) = fixture.pool("b", 0, unavailable, None);
    let router = Router::new(vec![a, b]);
    let (lease, decision) = router
        .create(&SandboxSpec::new(), &Requirements::default())
        .await
        .expect("fell back");
    assert_eq!(decision.chosen.as_deref(), Some("b"));
    assert_eq!(decision.failed.len(), 1);
    assert_eq!(decision.failed[0].pool, "a");
    assert_eq!(decision.failed[0].kind, "unavailable");
    assert!(
        decision.table().contains("failed: unavailable"),
        "{}",
        decision.table()
    );
    assert_eq!(flaky_a.creates.load(Ordering::SeqCst), 1);
    lease.terminate().await.expect("terminate");
}

/// Retries happen once, in the pool's `Retrying` layer: a pool that stays rate limited
/// sees 1 + max_retries creates, not that times the router's own attempts.
#[tokio::test]
async fn a_rate_limited_create_is_retried_by_the_layer_alone() {
    let fixture = Fixture::new();
    let rate_limited = || Error::RateLimited {
        retry_after: Some(Duration::from_millis(1)),
    };
    let flaky = Arc::new(Flaky {
        inner: fixture.bare.clone(),
        failures_left: AtomicU32::new(u32::MAX),
        error: rate_limited,
        creates: AtomicU32::new(0),
    });
    let retry = layers::RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    };
    let provider = layers::standard(
        flaky.clone(),
        LayerOptions {
            retry,
            ..LayerOptions::default()
        },
    );
    let pool = Arc::new(Pool::new("limited", provider, SandboxSpec::new(), None).expect("pool"));
    let (b, _) = fixture.pool("b", 0, unavailable, None);
    let router = Router::new(vec![pool, b]);
    let (lease, decision) = router
        .create(&SandboxSpec::new(), &Requirements::default())
        .await
        .expect("fell back to b");
    assert_eq!(decision.chosen.as_deref(), Some("b"));
    assert_eq!(decision.failed[0].kind, "rate_limited");
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 3);
    lease.terminate().await.expect("terminate");
    assert_eq!(fixture.live().await, 0);
}

#[tokio::test]
async fn a_non_retryable_failure_stops_the_search() {
    let fixture = Fixture::new();
    let (a, _) = fixture.pool("a", 1, creation_failed, None);
    let (b, flaky_b) = fixture.pool("b", 0, unavailable, None);
    let router = Router::new(vec![a, b]);
    let error = router
        .create(&SandboxSpec::new(), &Requirements::default())
        .await
        .expect_err("must fail");
    assert!(matches!(error, Error::CreationFailed { .. }), "{error:?}");
    assert_eq!(
        flaky_b.creates.load(Ordering::SeqCst),
        0,
        "no fallback after a hard failure"
    );
}

#[tokio::test]
async fn a_full_pool_is_skipped_and_its_slot_returns_on_terminate() {
    let fixture = Fixture::new();
    let (a, _) = fixture.pool("a", 0, unavailable, Some(1));
    let (b, _) = fixture.pool("b", 0, unavailable, None);
    let router = Router::new(vec![a.clone(), b]);
    let (first, _) = router
        .create(&SandboxSpec::new(), &Requirements::default())
        .await
        .unwrap();
    let (second, decision) = router
        .create(&SandboxSpec::new(), &Requirements::default())
        .await
        .unwrap();
    assert_eq!(first.pool(), "a");
    assert_eq!(decision.chosen.as_deref(), Some("b"));
    assert_eq!(decision.failed[0].kind, "full");
    first.terminate().await.unwrap();
    assert_eq!(a.available_permits(), Some(1));
    second.terminate().await.unwrap();
}

#[tokio::test]
async fn requirements_no_pool_meets_give_every_reason() {
    let fixture = Fixture::new();
    let (a, flaky) = fixture.pool("a", 0, unavailable, None);
    let router = Router::new(vec![a]);
    let spec = SandboxSpec::new().gpu(GpuKind::H100, 1);
    let error = router
        .create(&spec, &Requirements::default())
        .await
        .expect_err("no GPU");
    match &error {
        Error::NoPoolAvailable { rejected, failed } => {
            assert_eq!(rejected.len(), 1);
            assert_eq!(rejected[0].name, "a");
            assert_eq!(rejected[0].unmet[0].rule, "gpu.kind");
            assert!(failed.is_empty());
        }
        other => panic!("expected NoPoolAvailable, got {other:?}"),
    }
    assert!(error.to_string().contains("gpu.kind"), "{error}");
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_warm_pool_hands_out_ready_sandboxes_refills_and_drains() {
    let fixture = Fixture::new();
    let (pool, flaky) = fixture.pool("warm", 0, unavailable, None);
    let warm = WarmPool::start(pool, SandboxSpec::new(), 2);
    assert_eq!(warm.wait_filled(Duration::from_secs(30)).await, 2);

    let lease = warm.acquire().await.expect("hit");
    let output = lease.run(ExecRequest::new(["echo", "warm"])).await.unwrap();
    assert_eq!(output.stdout, "warm\n");
    assert_eq!(warm.stats().hits, 1);

    // The refiller replaces what was taken.
    assert_eq!(warm.wait_filled(Duration::from_secs(30)).await, 2);
    assert_eq!(flaky.creates.load(Ordering::SeqCst), 3);
    assert!(warm.stats().idle_usage.wall_secs > 0.0);

    lease.terminate().await.unwrap();
    warm.shutdown().await.expect("drain");
    assert_eq!(warm.ready_count(), 0);
    assert_eq!(
        fixture.live().await,
        0,
        "drain terminates every ready sandbox"
    );
}

#[tokio::test]
async fn a_warm_pool_miss_falls_back_to_a_cold_create() {
    let fixture = Fixture::new();
    let (pool, _) = fixture.pool("cold", 0, unavailable, None);
    let warm = WarmPool::start(pool, SandboxSpec::new(), 0);
    let lease = warm.acquire().await.expect("cold create");
    assert_eq!(warm.stats().misses, 1);
    lease.terminate().await.unwrap();
    warm.shutdown().await.unwrap();
    assert_eq!(fixture.live().await, 0);
}

#[tokio::test]
async fn a_pools_file_with_an_unknown_provider_names_the_pool() {
    let file = PoolsFile::parse(
        "[[pool]]\nname = \"gpu\"\nprovider = \"no-such-provider\"\n",
        "sandkit.toml",
    )
    .unwrap();
    let error = file.build(options()).await.expect_err("unknown provider");
    let message = error.to_string();
    assert!(
        message.contains("pool `gpu`") && message.contains("no-such-provider"),
        "{message}"
    );
    assert!(
        message.contains("local-process"),
        "lists known providers: {message}"
    );
}

#[tokio::test]
async fn a_pool_whose_spec_its_provider_cannot_honour_is_rejected_at_load() {
    let file = PoolsFile::parse(
        "[[pool]]\nname = \"needs-gpu\"\nprovider = \"local-process\"\n[pool.spec.gpu]\nkind = \"H100\"\ncount = 1\n",
        "sandkit.toml",
    )
    .unwrap();
    let error = file.build(options()).await.expect_err("cannot honour");
    let message = error.to_string();
    assert!(
        message.contains("needs-gpu") && message.contains("gpu.kind"),
        "{message}"
    );
}
