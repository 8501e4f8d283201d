//! `sandkit commands` and `sandkit attach`: a sandbox's detached commands (started with
//! `sandkit exec --detach`), listed, and re-attached with their output replayed.

use clap::Args;
use sandkit::{AttachFrom, SandboxId};

use super::{Context, JsonFlag};
use crate::error::CliError;
use crate::output::print_json;
use crate::stream::Interrupts;

/// Flags of `sandkit commands`.
#[derive(Debug, Args)]
pub struct CommandsArgs {
    /// The sandbox.
    #[arg(value_name = "ID")]
    pub id: String,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// Lists the detached commands: id, state, bytes written, argv.
pub async fn list(context: &Context, args: CommandsArgs) -> Result<i32, CliError> {
    let provider = context.open().await?;
    let commands = provider.commands(&SandboxId::from(args.id)).await?;
    if context.json {
        print_json(&commands)?;
        return Ok(0);
    }
    println!(
        "{:<8} {:<12} {:>12} {:>12}  COMMAND",
        "ID", "STATE", "STDOUT", "STDERR"
    );
    for command in commands {
        let state = match command.exit {
            None => "running".to_owned(),
            Some(status) => format!("exited {}", status.code),
        };
        println!(
            "{:<8} {:<12} {:>12} {:>12}  {}",
            command.id,
            state,
            command.stdout_bytes,
            command.stderr_bytes,
            command.argv.join(" ")
        );
    }
    Ok(0)
}

/// Flags of `sandkit attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The sandbox.
    #[arg(value_name = "ID")]
    pub id: String,

    /// The detached command's id (from `sandkit exec --detach` or `sandkit commands`).
    #[arg(value_name = "COMMAND")]
    pub command: String,

    /// Replay standard output from this byte offset (output older than what the
    /// provider keeps is gone).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub stdout_from: u64,

    /// Replay standard error from this byte offset.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub stderr_from: u64,

    #[command(flatten)]
    pub output: JsonFlag,
}

/// Streams the command's output to its end and exits with its exit code; Ctrl-C kills
/// it, as for `sandkit exec`.
pub async fn attach(context: &Context, args: AttachArgs) -> Result<i32, CliError> {
    let mut interrupts = Interrupts::catch()?;
    let provider = context.open().await?;
    let id = SandboxId::from(args.id);
    let from = AttachFrom {
        stdout: args.stdout_from,
        stderr: args.stderr_from,
    };
    let process = provider.attach(&id, &args.command, from).await?;
    super::exec::report(context, &provider, &id, process, &mut interrupts).await
}
