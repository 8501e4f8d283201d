//! `sandkit select`: which providers meet the requirements, and why the others do not.

use clap::Args;
use sandkit::layers::LayerOptions;
use sandkit::{Capabilities, Isolation, Requirements, select};
use sandkit_orchestrate::{Decision, PoolsFile, Router};

use super::{Context, JsonFlag};
use crate::args::SpecArgs;
use crate::error::CliError;
use crate::output::{Table, print_json};

/// Flags of `sandkit select`: the spec flags of `run` (which imply requirements) plus the
/// orchestrator's own needs.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Consider only these providers, in this order of preference (comma-separated);
    /// by default every registered provider, by name.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub among: Vec<String>,

    /// Choose among the pools of this file instead of providers: each pool's default
    /// spec is merged under the flags, as the router does.
    #[arg(long, value_name = "FILE", conflicts_with = "among")]
    pub pools: Option<std::path::PathBuf>,

    /// Print the decision record: every candidate in order, chosen or rejected, and each
    /// rule it failed.
    #[arg(long)]
    pub explain: bool,

    /// With `--pools`: also build each fitting pool's provider and ask it for free
    /// capacity (this connects to the providers). Without it the plan comes from the
    /// providers' registered capabilities alone.
    #[arg(long, requires = "pools")]
    pub check_capacity: bool,

    #[command(flatten)]
    pub output: JsonFlag,

    #[command(flatten)]
    pub spec: SpecArgs,

    #[command(flatten)]
    pub needs: NeedArgs,
}

/// Requirements that no spec field implies.
#[derive(Debug, Args)]
#[command(next_help_heading = "Requirements")]
pub struct NeedArgs {
    /// Filesystem snapshots that can be restored.
    #[arg(long)]
    pub snapshots: bool,
    /// Pause and resume (a preview counts).
    #[arg(long)]
    pub pause: bool,
    /// A pause that keeps memory (processes survive), not only disk.
    #[arg(long)]
    pub pause_keeps_memory: bool,
    /// At least this isolation: none, namespaces, container, user-space-kernel, micro-vm.
    #[arg(long, value_name = "LEVEL")]
    pub min_isolation: Option<Isolation>,
    /// An idle sandbox must cost nothing.
    #[arg(long)]
    pub zero_idle_cost: bool,
    /// File operations.
    #[arg(long)]
    pub files: bool,
    /// Standard input for commands.
    #[arg(long)]
    pub stdin: bool,
    /// Pseudo-terminals.
    #[arg(long)]
    pub pty: bool,
    /// Commands as another user.
    #[arg(long)]
    pub run_as_user: bool,
    /// Exec timeouts enforced by the provider, not only by the client.
    #[arg(long)]
    pub server_timeouts: bool,
    /// Listing sandboxes by tags.
    #[arg(long)]
    pub list_by_tags: bool,
    /// Capacity queries.
    #[arg(long)]
    pub capacity_query: bool,
}

impl SelectArgs {
    /// The requirements: those the spec implies, plus the flags.
    fn requirements(&self) -> Result<Requirements, CliError> {
        let spec = self.spec.to_spec()?;
        spec.validate()?;
        let needs = &self.needs;
        let mut requirements = Requirements::from_spec(&spec);
        requirements.fs_snapshot |= needs.snapshots;
        requirements.pause |= needs.pause || needs.pause_keeps_memory;
        requirements.pause_keeps_memory |= needs.pause_keeps_memory;
        requirements.min_isolation = needs.min_isolation.or(requirements.min_isolation);
        requirements.zero_idle_cost |= needs.zero_idle_cost;
        requirements.files |= needs.files;
        requirements.exec_stdin |= needs.stdin;
        requirements.exec_pty |= needs.pty;
        requirements.exec_run_as_user |= needs.run_as_user;
        requirements.server_enforced_timeouts |= needs.server_timeouts;
        requirements.list_by_tags |= needs.list_by_tags;
        requirements.capacity_query |= needs.capacity_query;
        Ok(requirements)
    }
}

/// Prints the selection; exits 1 when no provider is chosen.
pub async fn run(context: &Context, args: SelectArgs) -> Result<i32, CliError> {
    let requirements = args.requirements()?;
    if let Some(file) = &args.pools {
        return select_pools(context, &args, file, &requirements).await;
    }
    let registrations = sandkit::providers()?;
    let candidates: Vec<(&str, Capabilities)> = if args.among.is_empty() {
        registrations
            .iter()
            .map(|registration| (registration.name, registration.capabilities()))
            .collect()
    } else {
        args.among
            .iter()
            .map(|name| {
                let registration = sandkit::registry::find(name)?;
                Ok((registration.name, registration.capabilities()))
            })
            .collect::<Result<_, sandkit::Error>>()?
    };
    let selection = select(
        &requirements,
        candidates.iter().map(|(name, caps)| (*name, caps)),
    );

    if context.json {
        print_json(&selection)?;
    } else if args.explain {
        let decision = Decision {
            considered: selection.chosen.clone(),
            chosen: selection.chosen.first().cloned(),
            rejected: selection.rejected.clone(),
            failed: Vec::new(),
        };
        print!("{}", decision.table());
    } else {
        if !selection.chosen.is_empty() {
            println!("chosen: {}", selection.chosen.join(", "));
        }
        if !selection.rejected.is_empty() {
            println!("rejected:");
            let mut table = Table::new(&["  PROVIDER", "RULE", "REASON"]);
            for rejection in &selection.rejected {
                for unmet in &rejection.unmet {
                    table.row(vec![
                        format!("  {}", rejection.name),
                        unmet.rule.clone(),
                        unmet.reason.clone(),
                    ]);
                }
            }
            table.print();
        }
    }
    if selection.chosen.is_empty() {
        if !context.json {
            eprintln!(
                "error: no provider meets the requirements ({} considered)",
                candidates.len()
            );
        }
        return Ok(1);
    }
    Ok(0)
}

/// `select --pools FILE`: the router's plan over the file's pools, without creating
/// anything. The first pool that fits is the one `Router::create` would try first. Only
/// `--check-capacity` builds providers (and so connects to them).
async fn select_pools(
    context: &Context,
    args: &SelectArgs,
    file: &std::path::Path,
    requirements: &Requirements,
) -> Result<i32, CliError> {
    let pools = PoolsFile::read(file)?;
    let spec = args.spec.to_spec()?;
    let mut decision = if args.check_capacity {
        Router::new(pools.build(LayerOptions::default()).await?)
            .plan_with_capacity(&spec, requirements)
            .await
    } else {
        pools.plan(&spec, requirements)?
    };
    decision.chosen = decision.considered.first().cloned();
    if context.json {
        print_json(&decision)?;
    } else {
        print!("{}", decision.table());
    }
    Ok(if decision.chosen.is_some() { 0 } else { 1 })
}
