//! `sandkit schema`: JSON Schemas of the documents sandkit reads and writes.

use clap::{Args, ValueEnum};
use sandkit::{Capabilities, ExecRequest, Requirements, SandboxSpec};

use super::Context;
use crate::error::CliError;
use crate::output::print_json;

/// Flags of `sandkit schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which document.
    #[arg(value_enum)]
    pub document: Document,
}

/// The documents with a schema.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Document {
    /// A SandboxSpec (`--spec FILE`).
    Spec,
    /// A provider's Capabilities (`providers --json`).
    Capabilities,
    /// Requirements for `select`.
    Requirements,
    /// An ExecRequest.
    Exec,
    /// The configuration of the provider named by `--provider` (`--config`).
    Config,
    /// The pools file (`sandkit.toml`).
    Pools,
}

/// Prints the schema as JSON.
pub fn run(context: &Context, args: SchemaArgs) -> Result<i32, CliError> {
    let schema = match args.document {
        Document::Spec => schemars::schema_for!(SandboxSpec),
        Document::Capabilities => Capabilities::json_schema(),
        Document::Requirements => schemars::schema_for!(Requirements),
        Document::Exec => schemars::schema_for!(ExecRequest),
        Document::Config => sandkit::registry::find(&context.provider)?.config_schema(),
        Document::Pools => sandkit_orchestrate::PoolsFile::json_schema(),
    };
    print_json(&schema)?;
    Ok(0)
}
