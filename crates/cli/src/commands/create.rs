//! `sandkit create`: create a sandbox and print its id.

use clap::Args;

use super::{Context, JsonFlag};
use crate::args::SpecArgs;
use crate::error::CliError;
use crate::output::{Spinner, print_json};
use crate::stream::{Interrupts, create_interruptible};

/// Flags of `sandkit create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub output: JsonFlag,

    #[command(flatten)]
    pub spec: SpecArgs,
}

/// Prints the new sandbox's id (the whole SandboxInfo with `--json`).
pub async fn run(context: &Context, args: CreateArgs) -> Result<i32, CliError> {
    let spec = args.spec.to_spec()?;
    spec.validate()?;
    let mut interrupts = Interrupts::catch()?;
    let provider = context.open().await?;
    let info = {
        let _spinner = Spinner::start(
            format!("creating a sandbox on {}", provider.name()),
            context.json,
        );
        create_interruptible(&provider, &spec, &mut interrupts).await?
    };
    if context.json {
        print_json(&info)?;
    } else {
        println!("{}", info.id);
        for note in &info.notes {
            eprintln!("sandkit: note: {note}");
        }
    }
    Ok(0)
}
