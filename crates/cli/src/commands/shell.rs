//! `sandkit shell`: an interactive shell in a sandbox, on a pseudo-terminal.

use clap::Args;
use sandkit::{ExecRequest, SandboxId};

use super::Context;
use crate::error::CliError;
use crate::stream::Interrupts;

/// Flags of `sandkit shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The sandbox.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Run the shell as this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// The shell to start.
    #[arg(long, value_name = "PROGRAM", default_value = "sh")]
    pub shell: String,
}

/// Runs the shell until it exits; exits with its exit code.
pub async fn run(context: &Context, args: ShellArgs) -> Result<i32, CliError> {
    if context.json {
        return Err(CliError::usage(
            "`shell` is interactive: it cannot be combined with --json",
        ));
    }
    let mut request = ExecRequest::new([args.shell]);
    request.user = args.user;
    request.pty = true;
    request.pty_size = crate::terminal::size();
    request.env.insert("TERM".into(), term());
    request.validate()?;
    let mut interrupts = Interrupts::catch()?;
    let provider = context.open().await?;
    let mut process = provider.exec(&SandboxId::from(args.id), request).await?;
    crate::terminal::attach(&mut process, &mut interrupts).await
}

/// Our `TERM`, so programs inside draw for the terminal they are shown on.
pub fn term() -> String {
    std::env::var("TERM")
        .ok()
        .filter(|term| !term.is_empty() && term.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "xterm".into())
}
