//! `sandkit conformance`: the shared conformance suite against one provider.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use sandkit::{ListFilter, SandboxProvider};
use sandkit_conformance::{CaseResult, Options, Outcome, TAG_RUN};

use super::Context;
use crate::args::SpecArgs;
use crate::error::CliError;
use crate::output::{ProgressBar, print_json};
use crate::stream::Interrupts;

/// Flags of `sandkit conformance`. The provider comes from `--provider` and `--config`.
#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// Write the JSON report to FILE (the table still goes to stdout); `--json` alone
    /// prints only the JSON report.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,

    /// Run only the cases whose name contains this.
    #[arg(long, value_name = "S")]
    pub filter: Option<String>,

    /// How many cases run at once (1 to 256).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4,
        allow_negative_numbers = true,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256)
    )]
    pub concurrency: usize,

    /// Seconds one case may take before it fails and its sandboxes are terminated (1 to
    /// 86400).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 300,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub case_timeout_secs: u64,

    /// The spec every case starts from (e.g. `--image` for a provider that needs one).
    #[command(flatten)]
    pub spec: SpecArgs,
}

impl ConformanceArgs {
    /// `--json` without a file: the report is the output.
    pub fn json_on_stdout(&self) -> bool {
        self.json.as_deref() == Some(Path::new("-"))
    }
}

/// Runs the suite, prints the table (or the JSON report), and exits 1 unless every
/// executed case passed and at least one was executed.
pub async fn run(context: &Context, args: ConformanceArgs) -> Result<i32, CliError> {
    let base_spec = args.spec.to_spec()?;
    base_spec.validate()?;
    let options = Options {
        base_spec,
        filter: args.filter.clone(),
        case_timeout: Duration::from_secs(args.case_timeout_secs),
        concurrency: args.concurrency,
        ..Options::default()
    };

    let mut interrupts = Interrupts::catch()?;
    // The suite applies the standard layers itself: hand it the bare provider.
    let registration = sandkit::registry::find(&context.provider)?;
    let provider = registration.build(context.config.clone()).await?;

    let selected = sandkit_conformance::cases()
        .iter()
        .filter(|case| options.selects(case))
        .count();
    let bar = ProgressBar::new(selected as u64, context.json);
    let progress = |result: &CaseResult| {
        if let Outcome::Failed { .. } = result.outcome {
            bar.println(format!("FAILED {}", result.name));
        }
        bar.advance(&result.name);
    };
    let suite = sandkit_conformance::run(provider.clone(), &options, &progress);
    let report = tokio::select! {
        report = suite => report,
        signal = interrupts.recv() => {
            drop(bar);
            let cleanup = sweep(provider.as_ref(), &options.run_id).await;
            return Err(CliError::Interrupted { signal, cleanup: Some(cleanup) });
        }
    };
    drop(bar);

    if args.json_on_stdout() {
        print_json(&report)?;
    } else {
        print!("{}", report.table());
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|error| CliError::Failed(format!("cannot encode the report: {error}")))?;
            std::fs::write(path, text + "\n").map_err(|error| CliError::io(path, error))?;
        }
    }
    Ok(if report.is_success() { 0 } else { 1 })
}

/// Terminates the sandboxes of an interrupted run: every case tags its sandboxes with the
/// run id (where the provider has tags), and each has a lifetime where it has none.
async fn sweep(provider: &dyn SandboxProvider, run_id: &str) -> String {
    let filter = ListFilter::all().tag(TAG_RUN, run_id);
    match provider.list(&filter).await {
        Ok(leftovers) => {
            for info in &leftovers {
                crate::stream::terminate_or_warn(provider, &info.id).await;
            }
            format!("{} sandboxes of this run terminated", leftovers.len())
        }
        Err(error) => format!(
            "the sandboxes of this run (tag {TAG_RUN}={run_id}) could not be listed: {error}"
        ),
    }
}
