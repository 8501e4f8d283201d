//! `sandkit reap`: terminate sandboxes sandkit created and nobody cleaned up.

use clap::Args;
use sandkit::{ReapFilter, reap};

use super::{Context, JsonFlag};
use crate::args::parse_non_empty;
use crate::error::CliError;
use crate::output::{Table, print_json};

/// Flags of `sandkit reap`. Only sandboxes carrying sandkit's ownership tags are ever
/// considered; by default only those whose lifetime has ended.
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Show what would be terminated; terminate nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Only sandboxes of this owner (the `sandkit.owner` tag, e.g. alice@build-7).
    #[arg(long, value_name = "OWNER", value_parser = parse_non_empty)]
    pub owner: Option<String>,

    /// Only sandboxes of this run (the `sandkit.run-id` tag).
    #[arg(long, value_name = "RUN_ID", value_parser = parse_non_empty)]
    pub run_id: Option<String>,

    /// Also sandboxes whose lifetime has not ended yet.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// Reaps and prints what was found and done; exits 1 when a termination failed.
pub async fn run(context: &Context, args: ReapArgs) -> Result<i32, CliError> {
    let provider = context.open().await?;
    let filter = ReapFilter {
        owner: args.owner,
        run_id: args.run_id,
        include_unexpired: args.all,
    };
    let report = reap(provider.as_ref(), &filter, args.dry_run).await?;
    if context.json {
        print_json(&report)?;
    } else if report.matched.is_empty() {
        eprintln!("nothing to reap");
    } else {
        let mut table = Table::new(&["ID", "OWNER", "STATE", "ACTION"]);
        for info in &report.matched {
            let action = if report.dry_run {
                "would terminate".to_owned()
            } else if let Some((_, error)) = report.failed.iter().find(|(id, _)| *id == info.id) {
                format!("failed: {error}")
            } else {
                "terminated".to_owned()
            };
            table.row(vec![
                info.id.to_string(),
                info.tags
                    .get(sandkit::ownership::TAG_OWNER)
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned()),
                info.state.to_string(),
                action,
            ]);
        }
        table.print();
    }
    Ok(if report.failed.is_empty() { 0 } else { 1 })
}
