//! Path escapes: `..`, absolute paths and symlinks (absolute and relative, as a middle and
//! as a final component) aimed at the host decoy directory, for every file operation and
//! for an exec `cwd`; and malformed paths (NUL bytes, over `PATH_MAX`).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use futures::FutureExt;
use sandkit_core::{Error, ExecRequest, FileKind, SandboxId};

use super::{Decoy, note, one_file_tar};
use crate::case::{Cx, shorten};

/// A future's output, or a description of its panic.
pub(crate) async fn guarded<T>(future: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".to_owned())
        })
}

/// A sandbox with escape symlinks to the decoy: `esc-abs` and `esc-rel` (directories),
/// `esc-file` and `esc-file-rel` (its file `f`).
async fn prepared(cx: &Cx, decoy: &Decoy) -> Result<SandboxId> {
    let id = cx.sandbox().await?;
    let climb = "../".repeat(16);
    let (abs, rel) = (decoy.dir_str(), decoy.dir_relative());
    cx.sh(
        &id,
        &format!(
            "ln -s '{abs}' esc-abs && ln -s '{climb}{rel}' esc-rel && ln -s '{abs}/f' esc-file \
             && ln -s '{climb}{rel}/f' esc-file-rel"
        ),
    )
    .await
    .context("making the escape symlinks")?;
    Ok(id)
}

/// Paths that name the decoy directory (or `suffix` in it) from outside the sandbox.
fn dir_escapes(decoy: &Decoy, suffix: &str) -> Vec<String> {
    let climb = "../".repeat(16);
    let (abs, rel) = (decoy.dir_str(), decoy.dir_relative());
    [
        format!("{climb}{rel}"),
        abs.clone(),
        format!("/{climb}{rel}"),
        format!("./esc-dir-missing/../{climb}{rel}"),
        "esc-abs".to_owned(),
        "esc-rel".to_owned(),
        "esc-abs/.".to_owned(),
    ]
    .into_iter()
    .map(|base| {
        if suffix.is_empty() {
            base
        } else {
            format!("{base}/{suffix}")
        }
    })
    .collect()
}

/// Paths that name the decoy's file `f`, including final symlinks to it.
fn file_escapes(decoy: &Decoy) -> Vec<String> {
    let mut paths = dir_escapes(decoy, "f");
    paths.extend(["esc-file".to_owned(), "esc-file-rel".to_owned()]);
    paths
}

/// What the calls of one attack did.
#[derive(Default)]
struct Findings {
    calls: usize,
    refused: usize,
    problems: Vec<String>,
}

impl Findings {
    fn record<T>(
        &mut self,
        what: String,
        outcome: Result<sandkit_core::Result<T>, String>,
        leaked: impl Fn(&T) -> bool,
    ) {
        self.calls += 1;
        match outcome {
            Err(panic) => self.problems.push(format!("{what} panicked: {panic}")),
            Ok(Err(_)) => self.refused += 1,
            Ok(Ok(value)) if leaked(&value) => {
                self.problems.push(format!("{what} reached the host decoy"))
            }
            Ok(Ok(_)) => {}
        }
    }

    fn finish(self, cx: &Cx, decoy: &Decoy) -> Result<()> {
        note(
            cx,
            format!("{} calls, {} refused", self.calls, self.refused),
        );
        let untouched = decoy.check_untouched();
        ensure!(self.problems.is_empty(), "{}", self.problems.join("; "));
        untouched
    }
}

async fn escape(cx: Cx, op: &'static str) -> Result<()> {
    let decoy = Decoy::create(&cx.suite().security.decoy_parent)?;
    let id = prepared(&cx, &decoy).await?;
    let p = cx.bare();
    let mut found = Findings::default();
    match op {
        "read" => {
            for path in file_escapes(&decoy) {
                let outcome = guarded(p.read_file(&id, &path)).await;
                found.record(format!("read_file `{path}`"), outcome, |b| decoy.leaked(b));
            }
        }
        "write" => {
            let mut paths = file_escapes(&decoy);
            paths.extend(dir_escapes(&decoy, "new-write"));
            for path in paths {
                let outcome = guarded(p.write_file(&id, &path, Bytes::from_static(b"x"))).await;
                found.record(format!("write_file `{path}`"), outcome, |()| false);
            }
        }
        "stat" => {
            let size = decoy.secret().len() as u64;
            for path in file_escapes(&decoy) {
                let outcome = guarded(p.stat(&id, &path)).await;
                found.record(format!("stat `{path}`"), outcome, |s| {
                    s.kind == FileKind::File && s.size_bytes == size
                });
            }
        }
        "list" => {
            let marker = decoy.marker();
            for path in dir_escapes(&decoy, "") {
                let outcome = guarded(p.list_dir(&id, &path)).await;
                found.record(format!("list_dir `{path}`"), outcome, |entries| {
                    entries.iter().any(|e| e.name == marker)
                });
            }
        }
        "mkdir" => {
            for path in dir_escapes(&decoy, "new-dir") {
                let outcome = guarded(p.make_dir(&id, &path)).await;
                found.record(format!("make_dir `{path}`"), outcome, |()| false);
            }
        }
        "remove" => {
            let mut calls: Vec<(String, bool)> = Vec::new();
            calls.extend(file_escapes(&decoy).into_iter().map(|p| (p, false)));
            calls.extend(dir_escapes(&decoy, "sub").into_iter().map(|p| (p, true)));
            calls.extend(dir_escapes(&decoy, "").into_iter().map(|p| (p, true)));
            for (path, recursive) in calls {
                let outcome = guarded(p.remove(&id, &path, recursive)).await;
                found.record(
                    format!("remove `{path}` (recursive {recursive})"),
                    outcome,
                    |()| false,
                );
            }
        }
        "download" => {
            let mut paths = dir_escapes(&decoy, "");
            paths.extend(file_escapes(&decoy));
            for path in paths {
                let outcome = guarded(p.download_archive(&id, &path)).await;
                found.record(format!("download_archive `{path}`"), outcome, |b| {
                    decoy.leaked(b)
                });
            }
        }
        "upload" => {
            let tar = one_file_tar("uploaded-escape.txt", b"x")?;
            for path in dir_escapes(&decoy, "") {
                let outcome = guarded(p.upload_archive(&id, &path, tar.clone())).await;
                found.record(format!("upload_archive `{path}`"), outcome, |()| false);
            }
        }
        _ => {
            for path in dir_escapes(&decoy, "") {
                let script = "cat f marker-* 2>/dev/null; ls; echo x > cwd-probe";
                let request = ExecRequest::new(["sh", "-c", script]).cwd(path.clone());
                let outcome = guarded(async {
                    match p.exec(&id, request).await {
                        Ok(process) => process.output().await,
                        Err(error) => Err(error),
                    }
                })
                .await;
                found.record(format!("exec with cwd `{path}`"), outcome, |output| {
                    decoy.leaked(&output.stdout) || decoy.leaked(&output.stderr)
                });
            }
        }
    }
    found.finish(&cx, &decoy)
}

pub(crate) async fn escape_read_file(cx: Cx) -> Result<()> {
    escape(cx, "read").await
}

pub(crate) async fn escape_write_file(cx: Cx) -> Result<()> {
    escape(cx, "write").await
}

pub(crate) async fn escape_stat(cx: Cx) -> Result<()> {
    escape(cx, "stat").await
}

pub(crate) async fn escape_list_dir(cx: Cx) -> Result<()> {
    escape(cx, "list").await
}

pub(crate) async fn escape_make_dir(cx: Cx) -> Result<()> {
    escape(cx, "mkdir").await
}

pub(crate) async fn escape_remove(cx: Cx) -> Result<()> {
    escape(cx, "remove").await
}

pub(crate) async fn escape_download_archive(cx: Cx) -> Result<()> {
    escape(cx, "download").await
}

pub(crate) async fn escape_upload_archive(cx: Cx) -> Result<()> {
    escape(cx, "upload").await
}

pub(crate) async fn escape_exec_cwd(cx: Cx) -> Result<()> {
    escape(cx, "cwd").await
}

/// Paths no file operation may accept, each with a prefix an error naming it contains.
fn malformed_paths() -> Vec<(String, &'static str)> {
    vec![
        ("nul\0byte".to_owned(), "nul"),
        ("dir/\0/../../../../etc/passwd".to_owned(), "dir/"),
        (format!("long-{}", "a".repeat(5000)), "long-"),
        (format!("{}f", "deep/".repeat(1000)), "deep/"),
    ]
}

/// Whether `error` is a typed refusal that names `path` (by `head`).
fn names_path(error: &Error, head: &str) -> bool {
    match error {
        Error::FileOperation { path, .. } => path.contains(head),
        Error::InvalidSpec { field, reason } => {
            field.contains("path") || field.contains(head) || reason.contains(head)
        }
        _ => false,
    }
}

pub(crate) async fn malformed_paths_are_typed_errors(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let p = cx.bare();
    let batch = cx.caps().batch_transfer;
    let tar = one_file_tar("x.txt", b"x")?;
    let mut problems = Vec::new();
    let mut calls = 0;
    for (path, head) in malformed_paths() {
        let shown = shorten(&format!("{path:?}"), 40);
        let mut results: Vec<(&str, Result<sandkit_core::Result<()>, String>)> = vec![
            (
                "read_file",
                guarded(p.read_file(&id, &path).map(|r| r.map(drop))).await,
            ),
            (
                "write_file",
                guarded(p.write_file(&id, &path, Bytes::from_static(b"x"))).await,
            ),
            (
                "stat",
                guarded(p.stat(&id, &path).map(|r| r.map(drop))).await,
            ),
            (
                "list_dir",
                guarded(p.list_dir(&id, &path).map(|r| r.map(drop))).await,
            ),
            ("make_dir", guarded(p.make_dir(&id, &path)).await),
            ("remove", guarded(p.remove(&id, &path, true)).await),
        ];
        if batch {
            results.push((
                "download_archive",
                guarded(p.download_archive(&id, &path).map(|r| r.map(drop))).await,
            ));
            results.push((
                "upload_archive",
                guarded(p.upload_archive(&id, &path, tar.clone())).await,
            ));
        }
        for (op, result) in results {
            calls += 1;
            match result {
                Err(panic) => problems.push(format!("{op} {shown} panicked: {panic}")),
                Ok(Ok(())) => problems.push(format!("{op} {shown} succeeded")),
                Ok(Err(error)) if names_path(&error, head) => {}
                Ok(Err(error)) => problems.push(format!(
                    "{op} {shown}: expected FileOperation/InvalidSpec naming the path, got {} error: {}",
                    error.kind(),
                    shorten(&error.to_string(), 120)
                )),
            }
        }
        calls += 1;
        let request = ExecRequest::new(["true"]).cwd(path.clone());
        let outcome = guarded(async {
            match p.exec(&id, request).await {
                Ok(process) => process.output().await,
                Err(error) => Err(error),
            }
        })
        .await;
        match outcome {
            Err(panic) => problems.push(format!("exec with cwd {shown} panicked: {panic}")),
            Ok(Ok(output)) if output.status.success() => {
                problems.push(format!("exec with cwd {shown} ran"))
            }
            Ok(Ok(_))
            | Ok(Err(
                Error::InvalidSpec { .. } | Error::FileOperation { .. } | Error::ExecFailed { .. },
            )) => {}
            Ok(Err(error)) => problems.push(format!(
                "exec with cwd {shown}: expected a typed refusal, got {} error: {}",
                error.kind(),
                shorten(&error.to_string(), 120)
            )),
        }
    }
    note(&cx, format!("{calls} calls with malformed paths"));
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}
