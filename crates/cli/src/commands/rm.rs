//! `sandkit rm`: terminate sandboxes.

use clap::Args;
use sandkit::SandboxId;
use serde::Serialize;

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::print_json;

/// Flags of `sandkit rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The sandboxes to terminate. An unknown or finished id is not an error.
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,

    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Default, Serialize)]
struct RmReport {
    terminated: Vec<SandboxId>,
    failed: Vec<Failure>,
}

#[derive(Serialize)]
struct Failure {
    id: SandboxId,
    kind: &'static str,
    message: String,
}

/// Terminates every id, going on after a failure; exits 1 when any failed.
pub async fn run(context: &Context, args: RmArgs) -> Result<i32, CliError> {
    let provider = context.open().await?;
    let mut report = RmReport::default();
    for id in args.ids.into_iter().map(SandboxId::from) {
        match provider.terminate(&id).await {
            Ok(()) => {
                if !context.json {
                    println!("{id}");
                }
                report.terminated.push(id);
            }
            Err(error) => {
                if !context.json {
                    eprintln!("error: {id}: {error}");
                }
                report.failed.push(Failure {
                    id,
                    kind: error.kind(),
                    message: error.to_string(),
                });
            }
        }
    }
    if context.json {
        print_json(&report)?;
    }
    Ok(if report.failed.is_empty() { 0 } else { 1 })
}
