//! The security referee (`sandkit_conformance::security`) against local-process, with
//! bubblewrap and with plain processes (`isolation: none`, where the attacks from inside
//! are skipped: "no isolation"), each on its own state directory. Plus one case only this
//! provider has: a sandbox created with bubblewrap never runs its commands unisolated,
//! even through a provider instance that cannot use bubblewrap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sandkit_conformance::security::{
    Failed, SecurityOptions, Trial, security_main, security_trials,
};
use sandkit_core::{Error, ExecRequest, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_process::{Isolation, LocalProcessConfig, LocalProcessProvider};

fn state_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("local-process-security-{name}"))
}

fn provider(isolation: Isolation, dir: &Path) -> sandkit_core::Result<Arc<dyn SandboxProvider>> {
    let config = LocalProcessConfig {
        state_dir: Some(dir.to_path_buf()),
        isolation,
        ..LocalProcessConfig::default()
    };
    Ok(Arc::new(LocalProcessProvider::new(config)?))
}

fn main() {
    security_main(|| async {
        let mut trials = Vec::new();
        for (prefix, isolation, name) in [
            ("bubblewrap::", Isolation::Bubblewrap, "bwrap"),
            ("plain::", Isolation::None, "plain"),
        ] {
            let dir = state_dir(name);
            let options = SecurityOptions {
                name_prefix: prefix.to_owned(),
                watch_dirs: vec![dir.clone()],
                ..SecurityOptions::default()
            };
            trials.extend(security_trials(provider(isolation, &dir)?, options));
        }
        let handle = tokio::runtime::Handle::current();
        trials.push(Trial::test(
            "local_process::bubblewrap_sandbox_never_runs_unisolated",
            move || handle.block_on(bubblewrap_sandbox_never_runs_unisolated()),
        ));
        Ok(trials)
    })
}

/// What `ls /tmp` inside the sandbox says through `provider`: `Ok(listing)`, or the error
/// (a clear refusal is fine; running unisolated is not).
async fn tmp_listing(
    provider: &Arc<dyn SandboxProvider>,
    id: &sandkit_core::SandboxId,
) -> sandkit_core::Result<String> {
    let output = provider
        .run(id, ExecRequest::new(["ls", "-a", "/tmp"]))
        .await?;
    Ok(output.stdout_lossy())
}

/// A sandbox made with bubblewrap, then a second provider instance on the same state
/// directory that cannot use bubblewrap: commands still run isolated, or fail with a clear
/// error. A decoy file in the host's /tmp must never show in the sandbox's /tmp.
async fn bubblewrap_sandbox_never_runs_unisolated() -> Result<(), Failed> {
    let dir = state_dir("record");
    let first =
        provider(Isolation::Bubblewrap, &dir).map_err(|e| format!("bubblewrap provider: {e}"))?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let decoy = std::env::temp_dir().join(format!("sandkit-lp-decoy-{token}"));
    std::fs::write(&decoy, "host /tmp").map_err(|e| format!("writing {}: {e}", decoy.display()))?;
    let name = decoy
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spec = SandboxSpec::new().lifetime_secs(300);
    let id = first
        .create(&spec)
        .await
        .map_err(|e| format!("create: {e}"))?
        .id;

    let mut problems = Vec::new();
    match tmp_listing(&first, &id).await {
        Ok(listing) if listing.contains(&name) => {
            problems.push("even the bubblewrap provider shows the host's /tmp".to_owned())
        }
        Ok(_) => {}
        Err(error) => problems.push(format!("ls /tmp through the bubblewrap provider: {error}")),
    }

    // A configuration naming a bwrap binary that does not exist. The field is
    // `bwrap_path`; a build without that field rejects it by name.
    let missing_bwrap = serde_json::json!({
        "state_dir": dir,
        "isolation": "auto",
        "bwrap_path": "/nonexistent/sandkit/bwrap",
    });
    match serde_json::from_value::<LocalProcessConfig>(missing_bwrap) {
        Err(error) => problems.push(format!(
            "LocalProcessConfig has no `bwrap_path` field to point at a missing bwrap ({error})"
        )),
        Ok(config) => match LocalProcessProvider::new(config) {
            Err(error) => eprintln!("security: a provider without bwrap refused to build: {error}"),
            Ok(second) => {
                let second: Arc<dyn SandboxProvider> = Arc::new(second);
                check_second(
                    &second,
                    &id,
                    &name,
                    "with `bwrap_path` missing",
                    &mut problems,
                )
                .await;
            }
        },
    }

    // A configuration that does not use bubblewrap at all.
    match provider(Isolation::None, &dir) {
        Err(error) => eprintln!("security: a plain provider refused to build: {error}"),
        Ok(second) => {
            check_second(&second, &id, &name, "with `isolation: none`", &mut problems).await;
        }
    }

    let _ = first.terminate(&id).await;
    let _ = std::fs::remove_file(&decoy);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

async fn check_second(
    second: &Arc<dyn SandboxProvider>,
    id: &sandkit_core::SandboxId,
    decoy_name: &str,
    how: &str,
    problems: &mut Vec<String>,
) {
    match tmp_listing(second, id).await {
        Ok(listing) if listing.contains(decoy_name) => problems.push(format!(
            "a provider {how} ran the bubblewrap sandbox's command unisolated: its /tmp shows the host's decoy {decoy_name}"
        )),
        Ok(_) => eprintln!("security: a provider {how} still ran the command isolated"),
        Err(error @ (Error::NotFound { .. } | Error::Provider { .. })) => problems.push(format!(
            "a provider {how} answered with an unclear error (expected isolation or a clear refusal): {} error: {error}",
            error.kind()
        )),
        Err(error) => eprintln!("security: a provider {how} refused clearly: {error}"),
    }
}
