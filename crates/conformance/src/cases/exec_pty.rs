//! Commands on a pseudo-terminal: its size at the start and after a resize, and Ctrl-C
//! typed on it. (That `tty` sees a terminal at all is `exec::exec_pty`.)

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use sandkit_core::{Error, ExecRequest, PtySize};
use tokio::io::AsyncWriteExt;

use super::exec::HANG;
use crate::case::{Cx, drain, expect_error, read_until, show};

fn on_a_terminal(script: &str) -> ExecRequest {
    let mut request = ExecRequest::new(["sh", "-c", script]);
    request.pty = true;
    request
}

pub(crate) async fn exec_pty_size_and_resize(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut request = on_a_terminal("stty size; echo asked; read line; stty size");
    request.pty_size = Some(PtySize {
        rows: 30,
        cols: 100,
    });
    let mut process = cx.provider().exec(&id, request).await?;
    let first = read_until(&mut process, "asked").await?;
    ensure!(
        String::from_utf8_lossy(&first).contains("30 100"),
        "`stty size` on a 30x100 terminal printed {}",
        show(&first)
    );
    process
        .resize(PtySize {
            rows: 40,
            cols: 120,
        })
        .await
        .context("resizing to 40x120")?;
    let mut stdin = process.stdin.take().context("a terminal takes input")?;
    stdin.write_all(b"go\n").await.context("typing a line")?;
    stdin.flush().await?;
    let drained = tokio::time::timeout(HANG, drain(process, 64 * 1024))
        .await
        .context("the command did not end after its line")??;
    let status = drained.result?;
    ensure!(status.success(), "the command gave {status}");
    ensure!(
        String::from_utf8_lossy(&drained.stdout).contains("40 120"),
        "after a resize to 40x120, `stty size` printed {}",
        show(&drained.stdout)
    );
    drop(stdin);
    Ok(())
}

pub(crate) async fn exec_pty_ctrl_c_interrupts(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let script = "trap 'echo got-int; exit 3' INT; echo ready; while :; do sleep 0.1; done";
    let mut process = cx.provider().exec(&id, on_a_terminal(script)).await?;
    read_until(&mut process, "ready").await?;
    let mut stdin = process.stdin.take().context("a terminal takes input")?;
    // The terminal's line discipline turns ^C into SIGINT for the foreground group.
    stdin.write_all(&Bytes::from_static(b"\x03")).await?;
    stdin.flush().await?;
    let drained = tokio::time::timeout(HANG, drain(process, 64 * 1024))
        .await
        .context("the command did not end after Ctrl-C")??;
    let status = drained.result?;
    ensure!(
        status.code == 3 && String::from_utf8_lossy(&drained.stdout).contains("got-int"),
        "after Ctrl-C the trap should print got-int and exit 3: {status}, output {}",
        show(&drained.stdout)
    );
    drop(stdin);
    Ok(())
}

pub(crate) async fn exec_resize_without_pty_is_invalid(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut process = cx.provider().exec(&id, ExecRequest::new(["true"])).await?;
    let result = process.resize(PtySize { rows: 10, cols: 10 }).await;
    let _ = process.wait().await;
    let error = expect_error(result, "InvalidSpec for a resize without a pty", |e| {
        matches!(e, Error::InvalidSpec { .. })
    })?;
    if let Error::InvalidSpec { field, .. } = &error {
        ensure!(field == "pty", "InvalidSpec names `{field}`, not `pty`");
    }
    let mut request = ExecRequest::new(["true"]);
    request.pty_size = Some(PtySize { rows: 10, cols: 10 });
    expect_error(
        cx.provider().exec(&id, request).await,
        "InvalidSpec for pty_size without pty",
        |e| matches!(e, Error::InvalidSpec { field, .. } if field == "pty_size"),
    )?;
    Ok(())
}
