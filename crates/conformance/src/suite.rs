//! Running the case table: as a library call that returns a [`Report`], or as a
//! libtest-mimic test binary.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ListFilter, Ownership, SandboxProvider, SandboxSpec};

use crate::case::{Case, Cx, Skip, TAG_RUN};
use crate::report::{CaseResult, Outcome, Report};

/// Lifetime given to every sandbox the suite creates when the base spec sets none (capped
/// by the provider's maximum), so that even a sandbox whose termination failed ends.
pub(crate) const DEFAULT_LIFETIME_SECS: u64 = 600;

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// The spec every case starts from (a Docker provider passes its test image here).
    /// Cases add tags, a lifetime when it has none, and what they test.
    pub base_spec: SandboxSpec,
    /// Run only the cases whose name contains this.
    pub filter: Option<String>,
    /// How long one case may take, creating and checking included; a case still running
    /// then fails, and its sandboxes are terminated.
    pub case_timeout: Duration,
    /// How many cases [`run`] runs at once. ([`test_main`] uses libtest's
    /// `--test-threads`.)
    pub concurrency: usize,
    /// Tags every sandbox of this run carries under `conformance-run`, so leftovers can
    /// be found (a fresh random id by default).
    pub run_id: String,
    /// Ownership tags given by the standard layers (from `SANDKIT_OWNER` and
    /// `SANDKIT_RUN_ID` by default).
    pub ownership: Ownership,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            base_spec: SandboxSpec::default(),
            filter: None,
            case_timeout: Duration::from_secs(300),
            concurrency: 4,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            ownership: Ownership::from_env(),
        }
    }
}

impl Options {
    /// Whether `case` passes the name filter.
    pub fn selects(&self, case: &Case) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|filter| case.name.contains(filter))
    }
}

/// What every case of one run shares.
pub(crate) struct Suite {
    /// The provider in the standard layers, applied exactly once.
    pub provider: Arc<dyn SandboxProvider>,
    /// The provider with no layers.
    pub bare: Arc<dyn SandboxProvider>,
    pub options: Options,
    pub run_id: String,
    /// Settings of the security attacks (defaults for an ordinary conformance run).
    pub security: Arc<crate::security::SecurityOptions>,
}

impl Suite {
    /// Peels any layers off `provider` and wraps the bare provider in the standard layers
    /// once, so a caller that passes an already layered provider gets the same run.
    pub(crate) fn new(provider: Arc<dyn SandboxProvider>, options: Options) -> Arc<Self> {
        Self::with_security(provider, options, Arc::default())
    }

    /// [`Suite::new`] for the security attacks, which read their settings from it.
    pub(crate) fn with_security(
        provider: Arc<dyn SandboxProvider>,
        options: Options,
        security: Arc<crate::security::SecurityOptions>,
    ) -> Arc<Self> {
        let bare = layers::bare(&provider);
        let layered = layers::standard(
            Arc::clone(&bare),
            LayerOptions {
                ownership: options.ownership.clone(),
                ..LayerOptions::default()
            },
        );
        Arc::new(Self {
            provider: layered,
            bare,
            run_id: options.run_id.clone(),
            options,
            security,
        })
    }

    /// Runs one case: skipped with its reason when the provider lacks what it needs;
    /// otherwise run under the case timeout, with panics caught, and its sandboxes
    /// terminated afterwards whatever happened.
    pub(crate) async fn run_case(self: &Arc<Self>, case: &'static Case) -> CaseResult {
        let started = Instant::now();
        let outcome = if !case.needs.met_by(self.provider.capabilities()) {
            Outcome::Skipped {
                reason: case.needs.reason(),
            }
        } else {
            let cx = Cx::new(Arc::clone(self), case.name);
            let check = AssertUnwindSafe((case.run)(cx.clone())).catch_unwind();
            let outcome = match tokio::time::timeout(self.options.case_timeout, check).await {
                Err(_) => Outcome::Failed {
                    message: format!(
                        "did not finish within the case timeout of {:?}",
                        self.options.case_timeout
                    ),
                },
                Ok(Err(panic)) => Outcome::Failed {
                    message: format!("panicked: {}", panic_message(&*panic)),
                },
                Ok(Ok(Ok(()))) => Outcome::Passed,
                Ok(Ok(Err(error))) => match error.downcast_ref::<Skip>() {
                    Some(Skip(reason)) => Outcome::Skipped {
                        reason: reason.clone(),
                    },
                    None => Outcome::Failed {
                        message: format!("{error:#}"),
                    },
                },
            };
            match (cx.cleanup().await, outcome) {
                (Err(problem), Outcome::Failed { message }) => Outcome::Failed {
                    message: format!("{message}; cleanup also failed: {problem}"),
                },
                (Err(problem), _) => Outcome::Failed {
                    message: format!("cleanup failed: {problem}"),
                },
                (Ok(()), outcome) => outcome,
            }
        };
        CaseResult {
            name: case.name.to_owned(),
            outcome,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Terminates any sandbox of this run still listed (a case's guard failed, or a
    /// create was cut off by the case timeout). Returns how many were found.
    pub(crate) async fn sweep(&self) -> usize {
        let caps = self.provider.capabilities();
        if !(caps.tags && caps.list_by_tags) {
            return 0;
        }
        let filter = ListFilter::all().tag(TAG_RUN, &self.run_id);
        let Ok(Ok(leftovers)) =
            tokio::time::timeout(Duration::from_secs(60), self.provider.list(&filter)).await
        else {
            tracing::warn!(run = %self.run_id, "could not list this run's sandboxes to sweep them");
            return 0;
        };
        for info in &leftovers {
            tracing::warn!(sandbox = %info.id, "terminating a sandbox a case left behind");
            let _ =
                tokio::time::timeout(Duration::from_secs(60), self.provider.terminate(&info.id))
                    .await;
        }
        leftovers.len()
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

/// Runs every case (or those `options.filter` selects), `options.concurrency` at a time,
/// calling `progress` as each one ends, and returns the report in table order.
///
/// Pass the bare provider: the suite wraps it in [`sandkit_core::layers::standard`]
/// itself. A provider already in the standard layers is peeled first (see
/// [`sandkit_core::layers::bare`]), so it is never wrapped twice.
pub async fn run(
    provider: Arc<dyn SandboxProvider>,
    options: &Options,
    progress: &(dyn Fn(&CaseResult) + Send + Sync),
) -> Report {
    let suite = Suite::new(provider, options.clone());
    let selected: Vec<(usize, &'static Case)> = crate::cases()
        .iter()
        .enumerate()
        .filter(|(_, case)| options.selects(case))
        .collect();
    let mut results: Vec<(usize, CaseResult)> = futures::stream::iter(selected)
        .map(|(index, case)| {
            let suite = Arc::clone(&suite);
            async move {
                // Each case in its own task, so one case's blocking or panicking cannot
                // stall the others.
                let result = tokio::spawn(async move { suite.run_case(case).await })
                    .await
                    .unwrap_or_else(|error| CaseResult {
                        name: case.name.to_owned(),
                        outcome: Outcome::Failed {
                            message: format!("the case's task ended abnormally: {error}"),
                        },
                        duration_ms: 0,
                    });
                progress(&result);
                (index, result)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    suite.sweep().await;
    results.sort_by_key(|(index, _)| *index);
    Report::new(
        suite.provider.name(),
        suite.provider.capabilities().clone(),
        results.into_iter().map(|(_, result)| result).collect(),
    )
}

/// The `main` of a `harness = false` test target: parses libtest's arguments, builds a
/// tokio multi-thread runtime, calls `build` inside it for the bare provider, wraps it in
/// [`sandkit_core::layers::standard`] (once, as [`run`] does), runs every case as a trial
/// and exits with the result.
///
/// A case the provider cannot run is reported as ignored, with the reason. A run in which
/// no case executed exits non-zero and says so, unless a libtest filter (or `--ignored`)
/// selected no case at all, which happens when `cargo test NAME` targets other tests.
///
/// ```no_run
/// // tests/conformance.rs, with `[[test]] name = "conformance" harness = false`
/// use std::sync::Arc;
/// use sandkit_core::SandboxProvider;
///
/// # async fn build_my_provider() -> sandkit_core::Result<Arc<dyn SandboxProvider>> {
/// #     Err(sandkit_core::Error::unsupported("example", "everything"))
/// # }
/// fn main() {
///     sandkit_conformance::test_main(Default::default(), build_my_provider)
/// }
/// ```
pub fn test_main<F, Fut>(options: Options, build: F) -> !
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = sandkit_core::Result<Arc<dyn SandboxProvider>>>,
{
    let args = Arguments::from_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("conformance: cannot start a tokio runtime: {error}");
            std::process::exit(1);
        }
    };
    let provider = match runtime.block_on(build()) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("conformance: cannot build the provider: {error}");
            std::process::exit(1);
        }
    };
    let suite = runtime.block_on(async { Suite::new(provider, options.clone()) });
    let trials: Vec<Trial> = crate::cases()
        .iter()
        .filter(|case| options.selects(case))
        .map(|case| {
            let suite = Arc::clone(&suite);
            let handle = runtime.handle().clone();
            Trial::ignorable_test(case.name, move || {
                let result = handle.block_on(suite.run_case(case));
                match result.outcome {
                    Outcome::Passed => Ok(Completion::Completed),
                    Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
                    Outcome::Failed { message } => Err(Failed::from(message)),
                }
            })
        })
        .collect();
    let total = trials.len();
    let conclusion = libtest_mimic::run(&args, trials);
    let leftovers = runtime.block_on(suite.sweep());
    if leftovers > 0 {
        eprintln!("conformance: terminated {leftovers} sandbox(es) the cases left behind");
    }
    if args.list {
        std::process::exit(0);
    }
    let executed = conclusion.num_passed + conclusion.num_failed;
    // `cargo test NAME` passes its filter to every test binary; one that selects none of
    // the cases here is not a run of this suite.
    let nothing_selected = total > 0 && conclusion.num_filtered_out as usize == total;
    if executed == 0 && !nothing_selected {
        eprintln!(
            "conformance: no case was executed for provider `{}` ({} skipped), so nothing was proven; failing the run",
            suite.provider.name(),
            conclusion.num_ignored
        );
        std::process::exit(1);
    }
    conclusion.exit()
}
