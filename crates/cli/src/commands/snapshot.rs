//! `sandkit snapshot`: snapshot a sandbox's filesystem.

use clap::Args;
use sandkit_core::SandboxId;

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::{Spinner, print_json};

/// Flags of `sandkit snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The sandbox.
    #[arg(value_name = "ID")]
    pub id: String,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// Prints the snapshot id; restore it with `sandkit create --snapshot ID`.
pub async fn run(context: &Context, args: SnapshotArgs) -> Result<i32, CliError> {
    let provider = context.open().await?;
    let id = SandboxId::from(args.id);
    let snapshot = {
        let _spinner = Spinner::start(format!("snapshotting {id}"), context.json);
        provider.snapshot(&id).await?
    };
    if context.json {
        print_json(&snapshot)?;
    } else {
        println!("{}", snapshot.id);
    }
    Ok(0)
}
