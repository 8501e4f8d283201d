//! `sandkit pools`: the pools of a `sandkit.toml`, built and checked, with what each can do.

use std::path::PathBuf;

use clap::Args;
use sandkit::Capabilities;
use sandkit::layers::LayerOptions;
use sandkit_orchestrate::PoolsFile;
use serde::Serialize;

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::{Table, label, print_json, yes_no};

/// Flags of `sandkit pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    /// The pools file.
    #[arg(long, env = "SANDKIT_POOLS", default_value = "sandkit.toml")]
    pub file: PathBuf,

    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Serialize)]
struct PoolEntry {
    name: String,
    provider: String,
    max_concurrent: Option<u32>,
    warm: u32,
    capabilities: Capabilities,
}

/// Loads the file, builds every pool (an unknown provider, a bad config or a default spec
/// the provider cannot honour is an error naming the pool), and prints them in order.
pub async fn run(context: &Context, args: PoolsArgs) -> Result<i32, CliError> {
    let pools = PoolsFile::read(&args.file)?
        .build(LayerOptions::default())
        .await?;
    let entries: Vec<PoolEntry> = pools
        .iter()
        .map(|pool| PoolEntry {
            name: pool.name.clone(),
            provider: pool.provider.name().to_owned(),
            max_concurrent: pool.max_concurrent(),
            warm: pool.warm,
            capabilities: pool.capabilities().clone(),
        })
        .collect();
    if context.json {
        print_json(&entries)?;
        return Ok(0);
    }
    let mut table = Table::new(&[
        "POOL",
        "PROVIDER",
        "MAX",
        "WARM",
        "ISOLATION",
        "SNAPSHOT",
        "GPU",
        "NET-BLOCK",
        "MAX-LIFETIME",
    ]);
    for entry in &entries {
        let caps = &entry.capabilities;
        table.row(vec![
            entry.name.clone(),
            entry.provider.clone(),
            entry
                .max_concurrent
                .map_or("-".to_owned(), |n| n.to_string()),
            entry.warm.to_string(),
            label(&caps.isolation),
            yes_no(caps.fs_snapshot).to_owned(),
            if caps.gpu_kinds.is_empty() {
                "-".to_owned()
            } else {
                caps.gpu_kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            yes_no(caps.network_block_all).to_owned(),
            caps.max_lifetime_secs
                .map_or("-".to_owned(), |s| format!("{s}s")),
        ]);
    }
    table.print();
    Ok(0)
}
