//! `sandkit select`: which providers meet the requirements, and why the others do not.

use clap::Args;
use sandkit::layers::LayerOptions;
use sandkit::{Capabilities, Feature, Isolation, Requirements, select};
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
    /// Features the provider must offer, by rule id (comma-separated), e.g.
    /// `fs_snapshot,pause.keeps_memory,exec.stdin`.
    #[arg(long, value_name = "FEATURE,...", value_delimiter = ',', value_parser = feature_parser())]
    pub needs: Vec<Feature>,
    /// At least this isolation: none, namespaces, container, user-space-kernel, micro-vm.
    #[arg(long, value_name = "LEVEL")]
    pub min_isolation: Option<Isolation>,
}

/// Parses a feature's rule id, offering every rule id as a possible value.
fn feature_parser() -> impl clap::builder::TypedValueParser<Value = Feature> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Feature::ALL.iter().map(|f| f.rule()))
        .try_map(|rule| rule.parse::<Feature>())
}

impl SelectArgs {
    /// The requirements: those the spec implies, plus the flags.
    fn requirements(&self) -> Result<Requirements, CliError> {
        let spec = self.spec.to_spec()?;
        spec.validate()?;
        let mut requirements = Requirements::from_spec(&spec);
        requirements
            .features
            .extend(self.needs.needs.iter().copied());
        requirements.min_isolation = self.needs.min_isolation.or(requirements.min_isolation);
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
