//! `sandkit exec`: run a command in an existing sandbox with live output.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sandkit::{ExecProcess, ExecRequest, SandboxId, SandboxProvider};
use serde::Serialize;

use super::{Context, JsonFlag};
use crate::args::parse_env;
use crate::error::CliError;
use crate::output::print_json;
use crate::stream::{COLLECT_LIMIT_BYTES, Interrupts, Outcome, Sink, drive};

/// How the command runs; shared by `run` and `exec`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Command", after_help = JSON_OUTPUT_HELP)]
pub struct CommandArgs {
    /// Working directory: absolute, or relative to the sandbox's working directory.
    #[arg(long, value_name = "PATH")]
    pub cwd: Option<String>,

    /// Kill the command's whole process tree after this many seconds (exit 124).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub timeout_secs: Option<f64>,

    /// Forward this process's standard input to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,

    /// Run as this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Run on a pseudo-terminal attached to ours (raw mode, keys and size passed on;
    /// stderr comes on the terminal too). Cannot be combined with --json.
    #[arg(short = 't', long)]
    pub tty: bool,
}

impl CommandArgs {
    /// `--tty` is interactive: no `--json` with it.
    pub fn check_json(&self, context: &Context) -> Result<(), CliError> {
        if self.tty && context.json {
            return Err(CliError::usage(
                "--tty attaches the command to this terminal: it cannot be combined with --json",
            ));
        }
        Ok(())
    }

    /// The exec request for `argv`.
    pub fn request(&self, argv: Vec<String>) -> ExecRequest {
        let mut request = ExecRequest::new(argv);
        request.cwd = self.cwd.clone();
        request.stdin = self.stdin;
        request.user = self.user.clone();
        if self.tty {
            request.pty = true;
            request.pty_size = crate::terminal::size();
            request.env.insert("TERM".into(), super::shell::term());
            // The terminal is the input.
            request.stdin = false;
        }
        // Zero and negative values are passed on as zero, which validation rejects by
        // name; a value too large for a Duration is as good as no timeout.
        request.timeout = self
            .timeout_secs
            .map(|secs| Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX));
        request
    }
}

/// What `--help` of `run` and `exec` says about `--json` output (keep in step with
/// [`COLLECT_LIMIT_BYTES`]).
const JSON_OUTPUT_HELP: &str = "With --json, the output is one JSON document after the command ends, holding at \
most the first 16 MiB of each of stdout and stderr; `stdout_truncated`/`stderr_truncated` \
say when more came and `stdout_bytes`/`stderr_bytes` count all of it. Without --json, \
output streams live with no limit.";
const _: () = assert!(
    COLLECT_LIMIT_BYTES == 16 << 20,
    "JSON_OUTPUT_HELP names 16 MiB"
);

/// Flags of `sandkit exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The sandbox.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Environment variable for this command (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env, allow_hyphen_values = true)]
    pub env: Vec<(String, String)>,

    #[command(flatten)]
    pub output: JsonFlag,

    #[command(flatten)]
    pub command: CommandArgs,

    /// Start it detached and print its id: it runs on without this process; see
    /// `sandkit commands` and `sandkit attach`.
    #[arg(short = 'd', long, conflicts_with_all = ["stdin", "tty"])]
    pub detach: bool,

    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// Runs the command; exits with its exit code.
pub async fn run(context: &Context, args: ExecArgs) -> Result<i32, CliError> {
    let mut request = args.command.request(args.argv);
    request.env.extend(args.env);
    args.command.check_json(context)?;
    request.validate()?;
    let mut interrupts = Interrupts::catch()?;
    let provider = context.open().await?;
    let id = SandboxId::from(args.id);
    if args.detach {
        let started = provider.start_detached(&id, request).await?;
        if context.json {
            print_json(&started)?;
        } else {
            println!("{}", started.id);
        }
        return Ok(0);
    }
    let process = provider.exec(&id, request).await?;
    match report(context, &provider, &id, process, &mut interrupts).await {
        Err(CliError::Interrupted { signal, .. }) => Err(CliError::Interrupted {
            signal,
            cleanup: Some(format!("command killed; sandbox {id} still runs")),
        }),
        other => other,
    }
}

/// The `--json` result of `run` and `exec`. Output is text with invalid UTF-8 replaced,
/// at most [`COLLECT_LIMIT_BYTES`] of each stream; use the human mode (raw bytes on
/// stdout, no limit) for binary or larger output.
#[derive(Serialize)]
struct ExecReport<'a> {
    provider: &'a str,
    sandbox: &'a SandboxId,
    exit_code: i32,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// Whether stdout went past what is kept ([`COLLECT_LIMIT_BYTES`]).
    stdout_truncated: bool,
    /// Whether stderr went past what is kept.
    stderr_truncated: bool,
    /// All the bytes stdout carried.
    stdout_bytes: u64,
    /// All the bytes stderr carried.
    stderr_bytes: u64,
}

/// Drives a started command to its end and reports it: output streamed live (or one
/// JSON document with `--json`). Returns the command's exit code.
pub async fn report(
    context: &Context,
    provider: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    mut process: ExecProcess,
    interrupts: &mut Interrupts,
) -> Result<i32, CliError> {
    if process.pty() {
        return crate::terminal::attach(&mut process, interrupts).await;
    }
    let sink = if context.json {
        Sink::Collect
    } else {
        Sink::Terminal
    };
    match drive(&mut process, sink, interrupts).await? {
        Outcome::Interrupted { signal } => Err(CliError::Interrupted {
            signal,
            cleanup: None,
        }),
        Outcome::Exited {
            status,
            stdout,
            stderr,
        } => {
            if context.json {
                print_json(&ExecReport {
                    provider: provider.name(),
                    sandbox: id,
                    exit_code: status.code,
                    signal: status.signal,
                    stdout: String::from_utf8_lossy(&stdout.kept).into_owned(),
                    stderr: String::from_utf8_lossy(&stderr.kept).into_owned(),
                    stdout_truncated: stdout.truncated(),
                    stderr_truncated: stderr.truncated(),
                    stdout_bytes: stdout.total_bytes,
                    stderr_bytes: stderr.total_bytes,
                })?;
            }
            // Exit codes are 0..=255 on every platform we run on.
            Ok(status.code.clamp(0, 255))
        }
    }
}
