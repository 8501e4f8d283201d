//! `sandkit run`: create a sandbox, run one command with live output, terminate.

use std::sync::Arc;

use clap::Args;
use sandkit::{ExecRequest, SandboxInfo, SandboxProvider};

use super::exec::{CommandArgs, report};
use super::{Context, JsonFlag};
use crate::args::SpecArgs;
use crate::error::CliError;
use crate::output::Spinner;
use crate::stream::{Interrupts, create_interruptible, terminate_or_warn};

/// Flags of `sandkit run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Keep the sandbox after the command ends (its id is printed on stderr).
    #[arg(long)]
    pub keep: bool,

    #[command(flatten)]
    pub output: JsonFlag,

    #[command(flatten)]
    pub spec: SpecArgs,

    #[command(flatten)]
    pub command: CommandArgs,

    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// The lease `run` takes on providers that offer one.
const RUN_LEASE_SECS: u64 = 15;

/// Creates, runs, terminates; exits with the command's exit code.
pub async fn run(context: &Context, args: RunArgs) -> Result<i32, CliError> {
    // Bad flags are reported before anything is built or created.
    let spec = args.spec.to_spec()?;
    spec.validate()?;
    let request = args.command.request(args.argv.clone());
    args.command.check_json(context)?;
    request.validate()?;

    let mut interrupts = Interrupts::catch()?;
    let provider = context.open().await?;
    let mut spec = spec;
    // The sandbox lives only as long as this process: killed, it leaves nothing behind
    // for long.
    if !args.keep && spec.lease_secs.is_none() && provider.capabilities().client_lease {
        spec.lease_secs = Some(RUN_LEASE_SECS);
    }
    let info = {
        let _spinner = Spinner::start(
            format!("creating a sandbox on {}", provider.name()),
            context.json,
        );
        create_interruptible(&provider, &spec, &mut interrupts).await?
    };
    tracing::info!(sandbox = %info.id, "created");

    let result = exec_in(context, &provider, &info, request, &mut interrupts).await;
    if args.keep {
        eprintln!("sandbox {} kept", info.id);
    } else {
        terminate_or_warn(provider.as_ref(), &info.id).await;
    }
    match result {
        Err(CliError::Interrupted { signal, cleanup: _ }) => Err(CliError::Interrupted {
            signal,
            cleanup: Some(if args.keep {
                format!("command killed; sandbox {} kept", info.id)
            } else {
                format!("command killed and sandbox {} terminated", info.id)
            }),
        }),
        other => other,
    }
}

async fn exec_in(
    context: &Context,
    provider: &Arc<dyn SandboxProvider>,
    info: &SandboxInfo,
    request: ExecRequest,
    interrupts: &mut Interrupts,
) -> Result<i32, CliError> {
    let process = provider.exec(&info.id, request).await?;
    report(context, provider, &info.id, process, interrupts).await
}
