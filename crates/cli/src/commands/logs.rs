//! `sandkit logs`: a sandbox's entrypoint output, from an offset, followed until the
//! entrypoint ends (Ctrl-C stops following and leaves the sandbox running).

use clap::Args;
use futures::StreamExt;
use sandkit::{OutputStream, SandboxId};
use tokio::io::AsyncWriteExt;

use super::Context;
use crate::error::CliError;
use crate::stream::Interrupts;

/// Flags of `sandkit logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The sandbox.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Read standard error instead of standard output.
    #[arg(long)]
    pub stderr: bool,

    /// Start at this byte offset (to resume where an earlier read stopped).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub from: u64,
}

/// Copies the stream's bytes, as they come, to the same stream of ours.
pub async fn run(context: &Context, args: LogsArgs) -> Result<i32, CliError> {
    let mut interrupts = Interrupts::catch()?;
    let provider = context.open().await?;
    let stream = if args.stderr {
        OutputStream::Stderr
    } else {
        OutputStream::Stdout
    };
    let mut output = provider
        .entrypoint_output(&SandboxId::from(args.id), stream, args.from)
        .await?;
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match stream {
        OutputStream::Stdout => Box::new(tokio::io::stdout()),
        OutputStream::Stderr => Box::new(tokio::io::stderr()),
    };
    let written = |error: std::io::Error| CliError::Failed(format!("writing the output: {error}"));
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(chunk) => {
                    out.write_all(&chunk?).await.map_err(written)?;
                    out.flush().await.map_err(written)?;
                }
                None => return Ok(0),
            },
            signal = interrupts.recv() => return Ok(128 + signal),
        }
    }
}
