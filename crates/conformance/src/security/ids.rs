//! Sandbox ids shaped like paths: every operation is `NotFound`, terminate is `Ok`, and
//! nothing on the host is touched: not the decoy (which looks like a sandbox directory,
//! with a `root/`), not a real sandbox the id aliases, and no file named after the id.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use futures::FutureExt;
use sandkit_core::{Error, ExecRequest, PauseSupport, SandboxId, SandboxProvider, SandboxState};

use super::escapes::guarded;
use super::{Decoy, note, one_file_tar};
use crate::case::{Cx, shorten};

/// The ids to try, given the decoy, a stray-file token and a real sandbox's id.
fn hostile_ids(decoy: &Decoy, stray: &str, real: &str) -> Vec<String> {
    let climb = "../".repeat(16);
    vec![
        "../../etc".to_owned(),
        "lp-../../x".to_owned(),
        "/etc/passwd".to_owned(),
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        format!("lp-{}", "a".repeat(5000)),
        "lp-\0x".to_owned(),
        "\0".to_owned(),
        format!("{climb}{}", decoy.dir_relative()),
        decoy.dir_str(),
        format!("lp-{climb}{}", decoy.dir_relative()),
        format!("../../{stray}"),
        format!("lp-../../{stray}"),
        format!("/tmp/{stray}/x"),
        format!("{stray}/../../{stray}"),
        format!("{real}/../{real}"),
        format!("./{real}"),
        format!("{real}/."),
        format!("../sandboxes/{real}"),
        format!("../containers/{real}"),
        format!("{real}/"),
        format!("{real}\0"),
        format!("{real}?all=1"),
        format!("{real}#x"),
    ]
}

/// Runs every operation on `id`; returns what was wrong.
/// `terminate` is skipped when `terminate` is false (see [`spares_terminate`]).
async fn probe(
    p: &dyn SandboxProvider,
    id: &SandboxId,
    terminate: bool,
    problems: &mut Vec<String>,
) -> usize {
    let caps = p.capabilities().clone();
    let tar = one_file_tar("x.txt", b"x").unwrap_or_default();
    let mut results: Vec<(&str, Result<sandkit_core::Result<()>, String>)> = vec![
        ("info", guarded(p.info(id).map(|r| r.map(drop))).await),
        (
            "exec",
            guarded(async {
                match p.exec(id, ExecRequest::new(["true"])).await {
                    Ok(process) => process.output().await.map(drop),
                    Err(error) => Err(error),
                }
            })
            .await,
        ),
    ];
    if caps.files {
        results.extend([
            (
                "read_file",
                guarded(p.read_file(id, "f").map(|r| r.map(drop))).await,
            ),
            (
                "write_file",
                guarded(p.write_file(id, "f", Bytes::from_static(b"x"))).await,
            ),
            ("stat", guarded(p.stat(id, "f").map(|r| r.map(drop))).await),
            (
                "list_dir",
                guarded(p.list_dir(id, ".").map(|r| r.map(drop))).await,
            ),
            ("make_dir", guarded(p.make_dir(id, "made")).await),
            ("remove", guarded(p.remove(id, "f", true)).await),
        ]);
    }
    if caps.batch_transfer {
        results.push((
            "upload_archive",
            guarded(p.upload_archive(id, ".", tar)).await,
        ));
        results.push((
            "download_archive",
            guarded(p.download_archive(id, ".").map(|r| r.map(drop))).await,
        ));
    }
    if caps.fs_snapshot {
        results.push((
            "snapshot",
            guarded(p.snapshot(id).map(|r| r.map(drop))).await,
        ));
    }
    if caps.pause != PauseSupport::No {
        results.push(("pause", guarded(p.pause(id)).await));
        results.push(("resume", guarded(p.resume(id)).await));
    }
    let shown = shorten(&format!("{:?}", id.as_str()), 60);
    let calls = results.len() + usize::from(terminate);
    for (op, result) in results {
        match result {
            Err(panic) => problems.push(format!("{op} on id {shown} panicked: {panic}")),
            Ok(Err(Error::NotFound { .. })) => {}
            Ok(Ok(())) => problems.push(format!("{op} on id {shown} succeeded")),
            Ok(Err(error)) => problems.push(format!(
                "{op} on id {shown}: expected NotFound, got {} error: {}",
                error.kind(),
                shorten(&error.to_string(), 100)
            )),
        }
    }
    if !terminate {
        return calls;
    }
    match guarded(p.terminate(id)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => problems.push(format!(
            "terminate on id {shown}: expected Ok, got {} error: {}",
            error.kind(),
            shorten(&error.to_string(), 100)
        )),
        Err(panic) => problems.push(format!("terminate on id {shown} panicked: {panic}")),
    }
    calls
}

/// Whether terminate must not be tried on `id`: an absolute host path outside the decoy
/// and the stray-file names (`/etc/passwd`), which a broken provider could delete. The same
/// shape is tried through the decoy's own absolute path, where damage is seen and harmless.
fn spares_terminate(id: &str, decoy: &Decoy, stray: &str) -> bool {
    id.starts_with('/') && !id.starts_with(&decoy.dir_str()) && !id.contains(stray)
}

/// Paths containing `stray` under `dir`, at most `depth` levels down (symlinks not
/// followed).
fn find_named(dir: &Path, stray: &str, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(stray) {
            found.push(path.clone());
        }
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if depth > 0 && is_dir {
            find_named(&path, stray, depth - 1, found);
        }
    }
}

pub(crate) async fn path_shaped_ids_not_found(cx: Cx) -> Result<()> {
    let settings = cx.suite().security.clone();
    let decoy = Decoy::create(&settings.decoy_parent)?;
    let stray = format!("sandkit-id-{}", &decoy.name()[..12]);
    let real = cx.sandbox().await?;
    let files = cx.caps().files;
    if files {
        cx.bare()
            .write_file(&real, "keep.txt", Bytes::from_static(b"still here"))
            .await
            .map_err(|e| anyhow::anyhow!("write_file in the real sandbox: {e}"))?;
    }
    let mut problems = Vec::new();
    let mut calls = 0;
    let mut spared = Vec::new();
    for id in hostile_ids(&decoy, &stray, real.as_str()) {
        let terminate = !spares_terminate(&id, &decoy, &stray);
        if !terminate {
            spared.push(id.clone());
        }
        calls += probe(cx.bare().as_ref(), &SandboxId(id), terminate, &mut problems).await;
    }

    // The real sandbox the aliases pointed at is untouched.
    match cx.bare().info(&real).await {
        Ok(info) if info.state == SandboxState::Running => {}
        Ok(info) => problems.push(format!(
            "the real sandbox {real} is {} after the aliased ids were terminated",
            info.state
        )),
        Err(error) => problems.push(format!(
            "the real sandbox {real} is gone after the aliased ids were terminated: {error}"
        )),
    }
    if files {
        match cx.bare().read_file(&real, "keep.txt").await {
            Ok(bytes) if bytes == "still here" => {}
            other => problems.push(format!(
                "the real sandbox's file changed after the aliased ids: {other:?}"
            )),
        }
    }

    // Nothing named after an id appeared on the host.
    let mut stray_found = Vec::new();
    let mut roots: Vec<(PathBuf, usize)> = vec![
        (std::env::temp_dir(), 3),
        (settings.decoy_parent.clone(), 3),
        (PathBuf::from("/"), 1),
    ];
    for dir in &settings.watch_dirs {
        roots.push((dir.clone(), 6));
        let mut parent = dir.parent();
        for _ in 0..3 {
            let Some(p) = parent else { break };
            roots.push((p.to_path_buf(), 2));
            parent = p.parent();
        }
    }
    for (dir, depth) in &roots {
        find_named(dir, &stray, *depth, &mut stray_found);
    }
    stray_found.sort();
    stray_found.dedup();
    if !stray_found.is_empty() {
        problems.push(format!(
            "path-shaped ids created host paths: {:?}",
            stray_found
        ));
        for path in &stray_found {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
    }
    note(
        &cx,
        format!(
            "{calls} calls with path-shaped ids (terminate not tried on {spared:?}: absolute \
             host paths; the decoy's absolute path stands in for them)"
        ),
    );
    let untouched = decoy.check_untouched().context("after the path-shaped ids");
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    untouched
}
