//! `sandkit ls`: sandboxes with their state, age and estimated cost.

use clap::Args;
use sandkit::ownership::{age, unix_now};
use sandkit::{ListFilter, SandboxInfo, Usage};
use serde::Serialize;

use super::{Context, JsonFlag};
use crate::args::parse_tag;
use crate::error::CliError;
use crate::output::{Table, print_json};

/// Flags of `sandkit ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only sandboxes with this tag (repeatable; all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag, allow_hyphen_values = true)]
    pub tags: Vec<(String, String)>,

    /// Also finished sandboxes the provider still remembers.
    #[arg(short, long)]
    pub all: bool,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// One sandbox in `--json` output.
#[derive(Serialize)]
struct Entry {
    #[serde(flatten)]
    info: SandboxInfo,
    usage: Usage,
    /// From the provider's public price sheet; absent when it has none.
    estimated_cost: Option<Cost>,
}

#[derive(Serialize)]
struct Cost {
    amount: f64,
    currency: String,
}

/// Prints the sandboxes, oldest first.
pub async fn run(context: &Context, args: LsArgs) -> Result<i32, CliError> {
    let provider = context.open().await?;
    let filter = ListFilter {
        tags: args.tags.into_iter().collect(),
        include_finished: args.all,
    };
    let mut sandboxes = provider.list(&filter).await?;
    sandboxes.sort_by(|a, b| (a.created_at_unix_secs, &a.id).cmp(&(b.created_at_unix_secs, &b.id)));
    let now = unix_now();
    let price_sheet = provider.capabilities().price_sheet.clone();
    let entries: Vec<Entry> = sandboxes
        .into_iter()
        .map(|info| {
            let usage = Usage::of(&info, now);
            let estimated_cost = price_sheet.as_ref().map(|sheet| Cost {
                amount: sheet.estimate(&usage, &info),
                currency: sheet.currency.clone(),
            });
            Entry {
                info,
                usage,
                estimated_cost,
            }
        })
        .collect();

    if context.json {
        print_json(&entries)?;
        return Ok(0);
    }
    let mut table = Table::new(&["ID", "NAME", "STATE", "AGE", "COST"]);
    for entry in &entries {
        let info = &entry.info;
        table.row(vec![
            info.id.to_string(),
            info.name.clone().unwrap_or_else(|| "-".to_owned()),
            info.state.to_string(),
            crate::output::age(age(info.created_at_unix_secs)),
            entry.estimated_cost.as_ref().map_or_else(
                || "-".to_owned(),
                |cost| format!("{:.4} {}", cost.amount, cost.currency),
            ),
        ]);
    }
    table.print();
    Ok(0)
}
