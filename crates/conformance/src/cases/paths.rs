//! Portable paths: on a provider with container-like paths, an absolute path names the same
//! file for commands and for the files API, `/tmp` is private and writable, a command's
//! `cwd` may be any directory of the sandbox, and system directories can be read-only.

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use sandkit_core::{Error, ExecRequest, FileErrorKind};

use crate::case::{Cx, expect_success, show};

/// A name no other case or run uses.
fn unique(stem: &str) -> String {
    format!(
        "{stem}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub(crate) async fn paths_tmp_shared_with_exec(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let from_api = format!("/tmp/{}", unique("sandkit-api"));
    cx.provider()
        .write_file(&id, &from_api, Bytes::from_static(b"written by the API"))
        .await
        .map_err(|e| anyhow::anyhow!("write_file `{from_api}`: {e}"))?;
    let back = cx
        .provider()
        .read_file(&id, &from_api)
        .await
        .map_err(|e| anyhow::anyhow!("read_file `{from_api}`: {e}"))?;
    ensure!(
        back == "written by the API",
        "read_file `{from_api}` gave {}",
        show(&back)
    );
    let seen = cx.sh(&id, &format!("cat '{from_api}'")).await?;
    ensure!(
        seen == "written by the API",
        "`cat {from_api}` in a command gave {seen:?}: the files API and commands disagree about /tmp"
    );
    let from_exec = format!("/tmp/{}", unique("sandkit-exec"));
    cx.sh(
        &id,
        &format!("printf 'written by a command' > '{from_exec}'"),
    )
    .await?;
    let back = cx
        .provider()
        .read_file(&id, &from_exec)
        .await
        .map_err(|e| anyhow::anyhow!("read_file `{from_exec}` (written by a command): {e}"))?;
    ensure!(
        back == "written by a command",
        "read_file `{from_exec}` gave {}, a command wrote \"written by a command\"",
        show(&back)
    );
    Ok(())
}

/// Runs `sh -c pwd` in `cwd`; returns what it printed.
async fn pwd_in(cx: &Cx, id: &sandkit_core::SandboxId, cwd: &str) -> Result<String> {
    let output = cx
        .run(id, ExecRequest::new(["sh", "-c", "pwd"]).cwd(cwd))
        .await?;
    expect_success(&output, &format!("pwd with cwd {cwd}"))?;
    Ok(output.stdout_lossy().trim_end().to_owned())
}

pub(crate) async fn paths_exec_cwd_tmp_and_system_dir(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let tmp = pwd_in(&cx, &id, "/tmp").await?;
    ensure!(tmp == "/tmp", "a command with cwd /tmp printed {tmp:?}");
    // The first system directory that exists, with its physical form (on merged-/usr
    // systems /bin is a symlink to usr/bin).
    let found = cx
        .sh(
            &id,
            "for d in /bin /usr/bin /sbin /usr/sbin; do if [ -d \"$d\" ]; then echo \"$d\"; cd \"$d\" && pwd -P; exit 0; fi; done; exit 1",
        )
        .await?;
    let mut lines = found.lines();
    let (Some(dir), Some(physical)) = (lines.next(), lines.next()) else {
        bail!("no system directory found: printed {found:?}");
    };
    let seen = pwd_in(&cx, &id, dir).await?;
    ensure!(
        seen == dir || seen == physical,
        "a command with cwd {dir} printed {seen:?} (expected {dir} or {physical})"
    );
    Ok(())
}

pub(crate) async fn paths_read_only_base_refuses_writes(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let name = unique("sandkit-probe");
    for dir in ["/usr", "/bin"] {
        let path = format!("{dir}/{name}");
        match cx
            .provider()
            .write_file(&id, &path, Bytes::from_static(b"must not land"))
            .await
        {
            Err(Error::FileOperation {
                kind: FileErrorKind::PermissionDenied,
                ..
            }) => {}
            Ok(()) => {
                bail!("write_file `{path}` succeeded, but the provider declares read_only_base")
            }
            Err(error) => bail!(
                "write_file `{path}`: expected a PermissionDenied file error, got {} error: {error}",
                error.kind()
            ),
        }
    }
    // A command sees nothing of the refused writes.
    let listing = cx
        .run(
            &id,
            ExecRequest::new([
                "sh",
                "-c",
                &format!("ls /usr/{name} /bin/{name} 2>/dev/null"),
            ]),
        )
        .await?;
    ensure!(
        listing.stdout.is_empty(),
        "a refused write left a file: {}",
        show(&listing.stdout)
    );
    Ok(())
}
