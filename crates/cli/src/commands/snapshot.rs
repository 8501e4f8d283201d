//! `sandkit snapshot`: snapshot a sandbox's filesystem, or delete a snapshot.

use clap::Args;
use sandkit::SandboxId;

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::{Spinner, print_json};

/// Flags of `sandkit snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The sandbox to snapshot (with `--delete`: the snapshot to delete).
    #[arg(value_name = "ID")]
    pub id: String,

    /// Delete snapshot ID instead (an unknown id is not an error).
    #[arg(long)]
    pub delete: bool,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// Prints the snapshot id; restore it with `sandkit create --snapshot ID`.
pub async fn run(context: &Context, args: SnapshotArgs) -> Result<i32, CliError> {
    let provider = context.open().await?;
    if args.delete {
        provider.delete_snapshot(&args.id).await?;
        if context.json {
            print_json(&serde_json::json!({ "deleted": args.id }))?;
        } else {
            println!("{}", args.id);
        }
        return Ok(0);
    }
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
