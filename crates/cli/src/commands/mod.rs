//! One module per subcommand; each has its flags (`...Args`) and a `run` returning the
//! process exit code.

mod conformance;
mod cp;
mod create;
mod detached;
mod exec;
mod logs;
mod ls;
mod pools;
mod providers;
mod reap;
mod rm;
mod run;
mod schema;
mod select;
mod shell;
mod snapshot;

use std::sync::Arc;

use clap::{Args, Subcommand};
use sandkit::SandboxProvider;

use crate::error::CliError;

/// What every subcommand gets: the provider to use and how to print.
pub struct Context {
    /// Registry name from `--provider`.
    pub provider: String,
    /// Provider configuration from `--config` (`Null` for the defaults).
    pub config: serde_json::Value,
    /// `--json`: one JSON document on stdout, no spinners.
    pub json: bool,
}

impl Context {
    /// Reads the global flags.
    pub fn new(provider: String, config: Option<&str>, json: bool) -> Result<Self, CliError> {
        Ok(Self {
            provider,
            config: crate::args::parse_config(config)?,
            json,
        })
    }

    /// Builds the provider named by `--provider`, with the standard layers.
    pub async fn open(&self) -> Result<Arc<dyn SandboxProvider>, CliError> {
        Ok(sandkit::Provider::named(&self.provider)
            .config(&self.config)
            .open()
            .await?)
    }
}

/// `--json` after the subcommand; the same flag before it works too.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonFlag {
    /// Machine output: one JSON document on stdout (errors as {"error": {...}}).
    #[arg(long)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List registered providers and their key capabilities.
    Providers(providers::ProvidersArgs),
    /// Choose providers (or pools) by requirements; explain every rejection.
    Select(select::SelectArgs),
    /// List the pools of a sandkit.toml with their capabilities.
    Pools(pools::PoolsArgs),
    /// Create a sandbox, run one command in it with live output, terminate it.
    Run(run::RunArgs),
    /// Create a sandbox and print its id.
    Create(create::CreateArgs),
    /// Run a command in an existing sandbox, with live output.
    Exec(exec::ExecArgs),
    /// Start an interactive shell in a sandbox, on a pseudo-terminal.
    Shell(shell::ShellArgs),
    /// List a sandbox's detached commands (`exec --detach`).
    Commands(detached::CommandsArgs),
    /// Attach to a detached command: its output replayed from an offset, to its end.
    Attach(detached::AttachArgs),
    /// Print a sandbox's entrypoint output (stdout, or --stderr), following it to its end.
    Logs(logs::LogsArgs),
    /// Copy files or directories to or from a sandbox (one side is ID:PATH).
    Cp(cp::CpArgs),
    /// List sandboxes with their state, age and estimated cost.
    Ls(ls::LsArgs),
    /// Terminate sandboxes.
    Rm(rm::RmArgs),
    /// Snapshot a sandbox's filesystem and print the snapshot id.
    Snapshot(snapshot::SnapshotArgs),
    /// Terminate sandboxes sandkit created that were left behind.
    Reap(reap::ReapArgs),
    /// Print a JSON Schema (spec, capabilities, requirements, exec, config).
    Schema(schema::SchemaArgs),
    /// Run the conformance suite against the provider and print a report.
    Conformance(conformance::ConformanceArgs),
}

impl Command {
    /// Whether `--json` was given after the subcommand.
    pub fn json(&self) -> bool {
        match self {
            Self::Providers(args) => args.output.json,
            Self::Select(args) => args.output.json,
            Self::Pools(args) => args.output.json,
            Self::Run(args) => args.output.json,
            Self::Create(args) => args.output.json,
            Self::Exec(args) => args.output.json,
            Self::Shell(_) => false,
            Self::Commands(args) => args.output.json,
            Self::Attach(args) => args.output.json,
            Self::Logs(_) => false,
            Self::Cp(args) => args.output.json,
            Self::Ls(args) => args.output.json,
            Self::Rm(args) => args.output.json,
            Self::Snapshot(args) => args.output.json,
            Self::Reap(args) => args.output.json,
            Self::Schema(_) => false,
            Self::Conformance(args) => args.json_on_stdout(),
        }
    }

    /// Runs the subcommand; the result is the process exit code.
    pub async fn run(self, context: &Context) -> Result<i32, CliError> {
        match self {
            Self::Providers(args) => providers::run(context, args),
            Self::Select(args) => select::run(context, args).await,
            Self::Pools(args) => pools::run(context, args).await,
            Self::Run(args) => run::run(context, args).await,
            Self::Create(args) => create::run(context, args).await,
            Self::Exec(args) => exec::run(context, args).await,
            Self::Shell(args) => shell::run(context, args).await,
            Self::Commands(args) => detached::list(context, args).await,
            Self::Attach(args) => detached::attach(context, args).await,
            Self::Logs(args) => logs::run(context, args).await,
            Self::Cp(args) => cp::run(context, args).await,
            Self::Ls(args) => ls::run(context, args).await,
            Self::Rm(args) => rm::run(context, args).await,
            Self::Snapshot(args) => snapshot::run(context, args).await,
            Self::Reap(args) => reap::run(context, args).await,
            Self::Schema(args) => schema::run(context, args),
            Self::Conformance(args) => conformance::run(context, args).await,
        }
    }
}
