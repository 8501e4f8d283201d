//! Ownership tags on every sandbox, and reaping the ones left behind.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::provider::{ListFilter, SandboxId, SandboxInfo, SandboxProvider};
use crate::spec::SandboxSpec;

/// Tag keys starting with this are sandkit's; users may not set them.
pub const RESERVED_TAG_PREFIX: &str = "sandkit.";
/// Marks a sandbox as created through sandkit; value [`MANAGED_BY_VALUE`].
pub const TAG_MANAGED_BY: &str = "sandkit.managed-by";
/// The value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "sandkit";
/// Who created the sandbox (`SANDKIT_OWNER`, or `user@host`).
pub const TAG_OWNER: &str = "sandkit.owner";
/// Which run created it (`SANDKIT_RUN_ID`, or one random id per process).
pub const TAG_RUN_ID: &str = "sandkit.run-id";
/// Creation time, Unix seconds.
pub const TAG_CREATED_AT: &str = "sandkit.created-at";
/// End of lifetime, Unix seconds.
pub const TAG_EXPIRES_AT: &str = "sandkit.expires-at";

/// Every ownership tag key.
pub const OWNERSHIP_TAGS: [&str; 5] = [
    TAG_MANAGED_BY,
    TAG_OWNER,
    TAG_RUN_ID,
    TAG_CREATED_AT,
    TAG_EXPIRES_AT,
];

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Who owns the sandboxes this process creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ownership {
    /// The owner, e.g. `alice@build-7`.
    pub owner: String,
    /// The run, shared by every sandbox one process (or CI job) creates.
    pub run_id: String,
}

impl Default for Ownership {
    fn default() -> Self {
        Self::from_env()
    }
}

impl Ownership {
    /// From `SANDKIT_OWNER` and `SANDKIT_RUN_ID`, falling back to `user@host` and a random
    /// id that stays the same for the life of this process.
    pub fn from_env() -> Self {
        static RUN_ID: OnceLock<String> = OnceLock::new();
        let owner = std::env::var("SANDKIT_OWNER").unwrap_or_else(|_| {
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            format!("{user}@{host}")
        });
        let run_id = std::env::var("SANDKIT_RUN_ID").unwrap_or_else(|_| {
            RUN_ID
                .get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned())
                .clone()
        });
        Self { owner, run_id }
    }

    /// Adds the ownership tags to `spec`, computing expiry from its lifetime.
    pub fn apply(&self, spec: &mut SandboxSpec, now_unix_secs: u64) {
        spec.tags
            .insert(TAG_MANAGED_BY.into(), MANAGED_BY_VALUE.into());
        spec.tags.insert(TAG_OWNER.into(), self.owner.clone());
        spec.tags.insert(TAG_RUN_ID.into(), self.run_id.clone());
        spec.tags
            .insert(TAG_CREATED_AT.into(), now_unix_secs.to_string());
        if let Some(lifetime) = spec.lifetime_secs {
            spec.tags.insert(
                TAG_EXPIRES_AT.into(),
                now_unix_secs.saturating_add(lifetime).to_string(),
            );
        }
    }
}

/// Reads the expiry tag of a sandbox, if it has one.
pub fn expires_at(tags: &BTreeMap<String, String>) -> Option<u64> {
    tags.get(TAG_EXPIRES_AT).and_then(|v| v.parse().ok())
}

/// Which sandboxes [`reap`] removes. Only sandkit-managed sandboxes are ever considered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ReapFilter {
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only this run's.
    pub run_id: Option<String>,
    /// Also those whose lifetime has not ended yet (by default only expired or finished
    /// ones).
    pub include_unexpired: bool,
}

/// What [`reap`] found and did.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct ReapReport {
    /// Sandboxes matching the filter.
    pub matched: Vec<SandboxInfo>,
    /// Ids terminated (empty on a dry run).
    pub terminated: Vec<SandboxId>,
    /// Ids that could not be terminated, with the error.
    pub failed: Vec<(SandboxId, String)>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Finds sandkit-managed sandboxes matching `filter` and, unless `dry_run`, terminates them.
/// Finished sandboxes the provider still lists count as leftovers whatever their expiry.
pub async fn reap(
    provider: &dyn SandboxProvider,
    filter: &ReapFilter,
    dry_run: bool,
) -> Result<ReapReport> {
    let mut list_filter = ListFilter::all().tag(TAG_MANAGED_BY, MANAGED_BY_VALUE);
    // A finished sandbox the provider still holds (a stopped container, say) is a
    // leftover too.
    list_filter.include_finished = true;
    if let Some(owner) = &filter.owner {
        list_filter = list_filter.tag(TAG_OWNER, owner);
    }
    if let Some(run_id) = &filter.run_id {
        list_filter = list_filter.tag(TAG_RUN_ID, run_id);
    }
    let now = unix_now();
    let matched: Vec<SandboxInfo> = provider
        .list(&list_filter)
        .await?
        .into_iter()
        .filter(|info| {
            filter.include_unexpired
                || info.state.is_finished()
                || expires_at(&info.tags)
                    .or(info.expires_at_unix_secs)
                    .is_some_and(|at| at <= now)
        })
        .collect();
    let mut report = ReapReport {
        dry_run,
        ..Default::default()
    };
    if !dry_run {
        for info in &matched {
            match provider.terminate(&info.id).await {
                Ok(()) => report.terminated.push(info.id.clone()),
                Err(error) => report.failed.push((info.id.clone(), error.to_string())),
            }
        }
    }
    report.matched = matched;
    Ok(report)
}

/// How long ago `created_at_unix_secs` was.
pub fn age(created_at_unix_secs: u64) -> Duration {
    Duration::from_secs(unix_now().saturating_sub(created_at_unix_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_adds_every_ownership_tag() {
        let ownership = Ownership {
            owner: "alice@host".into(),
            run_id: "run-1".into(),
        };
        let mut spec = SandboxSpec::new().lifetime_secs(60).tag("team", "x");
        ownership.apply(&mut spec, 1000);
        assert_eq!(spec.tags[TAG_MANAGED_BY], "sandkit");
        assert_eq!(spec.tags[TAG_OWNER], "alice@host");
        assert_eq!(spec.tags[TAG_RUN_ID], "run-1");
        assert_eq!(spec.tags[TAG_CREATED_AT], "1000");
        assert_eq!(expires_at(&spec.tags), Some(1060));
        assert_eq!(spec.tags["team"], "x");
    }
}
