//! Plans: which pools could take a job, and the [`Decision`] record of where it went.

use sandkit::Capabilities;
use sandkit::requirements::{Rejection, Requirements};
use sandkit::spec::SandboxSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool that was tried and failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoolFailure {
    /// The pool.
    pub pool: String,
    /// The error kind ([`Error::kind`](sandkit::Error::kind)), or `full` when no slot was free.
    pub kind: String,
    /// The error message.
    pub message: String,
}

/// Why a job went where it went: every pool considered, rejected (with the rules) or
/// tried and failed, and the one chosen.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Pools meeting the requirements, in preference order.
    pub considered: Vec<String>,
    /// Pools not meeting them, with the unmet rules.
    pub rejected: Vec<Rejection>,
    /// Pools tried that failed.
    pub failed: Vec<PoolFailure>,
    /// The pool the sandbox was created on.
    pub chosen: Option<String>,
}

impl Decision {
    /// A table a person can read: one line per pool.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for name in &self.considered {
            let status = if self.chosen.as_deref() == Some(name) {
                "chosen".to_owned()
            } else if let Some(failure) = self.failed.iter().find(|f| &f.pool == name) {
                format!("failed: {} ({})", failure.kind, failure.message)
            } else {
                "fits (not tried)".to_owned()
            };
            out.push_str(&format!("{name:<20} {status}\n"));
        }
        for rejection in &self.rejected {
            for (index, unmet) in rejection.unmet.iter().enumerate() {
                let name = if index == 0 {
                    rejection.name.as_str()
                } else {
                    ""
                };
                out.push_str(&format!("{name:<20} rejected: {unmet}\n"));
            }
        }
        out
    }

    pub(crate) fn log(&self) {
        tracing::info!(
            target: "sandkit::routing",
            chosen = self.chosen.as_deref().unwrap_or(""),
            considered = ?self.considered,
            rejected = ?self.rejected.iter().map(|r| (&r.name, r.unmet.iter().map(|u| &u.rule).collect::<Vec<_>>())).collect::<Vec<_>>(),
            failed = ?self.failed.iter().map(|f| (&f.pool, &f.kind)).collect::<Vec<_>>(),
            "routing decision"
        );
    }
}

/// The plan over pools given as (name, default spec, capabilities), in preference order:
/// the one rule the router and [`PoolsFile::plan`](crate::PoolsFile::plan) share.
pub(crate) fn plan_over<'a>(
    pools: impl IntoIterator<Item = (&'a str, &'a SandboxSpec, &'a Capabilities)>,
    spec: &SandboxSpec,
    requirements: &Requirements,
) -> Decision {
    let mut decision = Decision::default();
    for (name, default_spec, capabilities) in pools {
        let merged = spec.merged_over(default_spec);
        let needs = Requirements::from_spec(&merged).union(requirements);
        let unmet = needs.check(capabilities);
        if unmet.is_empty() {
            decision.considered.push(name.to_owned());
        } else {
            decision.rejected.push(Rejection {
                name: name.to_owned(),
                unmet,
            });
        }
    }
    decision
}
