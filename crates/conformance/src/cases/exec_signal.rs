//! Signals to a running command (`ExecProcess::signal`): delivered to the command's
//! process group as that signal, harmless once it has ended, refused out of range, and
//! `Unsupported` where a provider does not declare `exec_signal`.

use anyhow::{Context, Result, ensure};
use sandkit_core::{Error, ExecRequest};

use super::exec::HANG;
use crate::case::{Cx, drain, expect_error, expect_unsupported, read_until, show};

pub(crate) async fn exec_signal_reaches_the_command(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    // A handler proves the command got SIGTERM itself, not a kill.
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    let mut process = cx
        .provider()
        .exec(&id, ExecRequest::new(["sh", "-c", script]))
        .await?;
    read_until(&mut process, "ready").await?;
    process.signal(15).await.context("SIGTERM")?;
    let drained = tokio::time::timeout(HANG, drain(process, 4096))
        .await
        .context("the command did not end after SIGTERM")??;
    let status = drained.result?;
    ensure!(
        status.code == 7 && String::from_utf8_lossy(&drained.stdout).contains("got-term"),
        "after SIGTERM the trap should print got-term and exit 7: {status}, stdout {}",
        show(&drained.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_signal_unhandled_ends_with_128_plus_n(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut process = cx
        .provider()
        .exec(
            &id,
            ExecRequest::new(["sh", "-c", "echo ready; exec sleep 60"]),
        )
        .await?;
    read_until(&mut process, "ready").await?;
    process.signal(2).await.context("SIGINT")?;
    let drained = tokio::time::timeout(HANG, drain(process, 4096))
        .await
        .context("the command did not end after SIGINT")??;
    let status = drained.result?;
    ensure!(
        status.code == 130,
        "a command ended by SIGINT should report 130 (128 + 2), got {status}"
    );
    Ok(())
}

pub(crate) async fn exec_signal_after_the_end_and_out_of_range(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut process = cx.provider().exec(&id, ExecRequest::new(["true"])).await?;
    let status = tokio::time::timeout(HANG, process.wait())
        .await
        .context("`true` did not end")??;
    ensure!(status.success(), "`true` gave {status}");
    process
        .signal(15)
        .await
        .context("SIGTERM to a command that has ended is not an error")?;
    for signal in [0, -1, 32, 65] {
        let error = expect_error(
            process.signal(signal).await,
            "InvalidSpec for a signal out of range",
            |e| matches!(e, Error::InvalidSpec { .. }),
        )?;
        if let Error::InvalidSpec { field, .. } = &error {
            ensure!(
                field == "signal",
                "InvalidSpec names `{field}`, not `signal`"
            );
        }
    }
    Ok(())
}

pub(crate) async fn exec_signal_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut process = cx
        .provider()
        .exec(&id, ExecRequest::new(["sleep", "30"]))
        .await?;
    let result = process.signal(15).await;
    let _ = process.kill().await;
    expect_unsupported(result, "signalling a command")
}
