//! `sandkit`: create sandboxes, run commands in them, choose providers and check them,
//! from the command line. Every provider the facade links is available by name.

mod args;
mod commands;
mod error;
mod output;
mod stream;
mod terminal;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::commands::Context;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the operation failed (provider error, `select` chose nothing, conformance failures)
  2    bad usage: a bad flag value, an invalid spec or configuration, an unknown provider
  124  `run`/`exec`: the command ran past --timeout-secs and was killed
  126  `run`/`exec`: the command could not be started
  127  `run`/`exec`: the program does not exist
  130  interrupted by Ctrl-C (143 for SIGTERM); the command was killed and a sandbox
       created by `run` was terminated
  `run` and `exec` otherwise exit with the command's own exit code (128+N when a signal
  N killed it).";

/// Create sandboxes, run commands in them, and choose between sandbox providers.
#[derive(Debug, Parser)]
#[command(name = "sandkit", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    /// Machine output: one JSON document on stdout (errors as {"error": {...}}).
    #[arg(long)]
    json: bool,

    #[command(subcommand)]
    command: commands::Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// The provider to use, by registry name (see `sandkit providers`).
    #[arg(
        long,
        global = true,
        env = "SANDKIT_PROVIDER",
        default_value = sandkit::DEFAULT_PROVIDER,
        value_name = "NAME"
    )]
    provider: String,

    /// Provider configuration: inline JSON, or @FILE to read it from a file
    /// (`sandkit schema config` shows the fields).
    #[arg(long, global = true, env = "SANDKIT_CONFIG", value_name = "JSON|@FILE")]
    config: Option<String>,

    /// Log to stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let json = cli.json || cli.command.json();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let context = Context::new(cli.global.provider, cli.global.config.as_deref(), json)?;
        cli.command.run(&context).await
    });
    // A thread blocked reading our stdin (forwarded to a command) must not keep us alive.
    runtime.shutdown_background();

    let code = match code {
        Ok(code) => code,
        Err(error) => {
            output::print_error(&error, json);
            error.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Crates that carry request and response bodies (container configs with their
/// environment, hence secrets) in their debug and trace output: the Docker client, the
/// HTTP and gRPC stacks. Their events are capped at INFO whatever `-v` or `RUST_LOG`
/// ask for, so a secret can never reach a log line through them.
const TRANSPORT_TARGETS: &[&str] = &[
    "bollard",
    "bollard_stubs",
    "hyper",
    "hyper_util",
    "hyperlocal",
    "hyper_timeout",
    "h2",
    "tonic",
    "tower",
    "tower_http",
    "reqwest",
    "rustls",
    "http_body_util",
];

/// Whether an event or span of `target` at `level` may be logged at all.
fn transport_allows(target: &str, level: &tracing::Level) -> bool {
    let transport = TRANSPORT_TARGETS.iter().any(|crate_name| {
        target
            .strip_prefix(crate_name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    !transport || *level <= tracing::Level::INFO
}

/// Logs go to stderr so stdout stays clean for command output and `--json`.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;

    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose > 1)
        .with_filter(filter)
        .with_filter(filter_fn(|meta| {
            transport_allows(meta.target(), meta.level())
        }));
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_accepted_before_and_after_the_subcommand() {
        let before = Cli::try_parse_from(["sandkit", "--json", "providers"]).unwrap();
        assert!(before.json);
        let after = Cli::try_parse_from(["sandkit", "providers", "--json"]).unwrap();
        assert!(after.command.json());
    }

    #[test]
    fn transport_crates_never_log_below_info() {
        use tracing::Level;
        for target in [
            "bollard",
            "bollard::docker",
            "hyper_util::client",
            "h2",
            "tonic",
        ] {
            assert!(!transport_allows(target, &Level::DEBUG), "{target}");
            assert!(!transport_allows(target, &Level::TRACE), "{target}");
            assert!(transport_allows(target, &Level::INFO), "{target}");
        }
        assert!(transport_allows("sandkit::layers", &Level::TRACE));
        assert!(transport_allows("hyperfine_like", &Level::TRACE));
    }

    #[test]
    fn run_takes_the_command_after_a_double_dash() {
        let cli = Cli::try_parse_from(["sandkit", "run", "--cpu", "1", "--", "sh", "-c", "exit 3"])
            .unwrap();
        match cli.command {
            commands::Command::Run(run) => assert_eq!(run.argv, ["sh", "-c", "exit 3"]),
            other => panic!("expected run, got {other:?}"),
        }
    }
}
