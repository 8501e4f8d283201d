//! Detached commands (`start_detached`, `commands`, `attach`): they run on without a
//! client, are listed, and are re-attached by id with their output replayed from an
//! offset, live until they end; an attach can kill them.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use sandkit_core::{AttachFrom, Error, ExecRequest, ExitStatus};

use crate::case::{Cx, expect_unsupported, read_until};

pub(crate) async fn exec_detached_reattaches_with_replay(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let provider = cx.provider();
    let started = provider
        .start_detached(
            &id,
            ExecRequest::new([
                "sh",
                "-c",
                "echo first; echo oops >&2; while [ ! -e go ]; do sleep 0.1; done; echo second; exit 3",
            ]),
        )
        .await?;
    ensure!(started.running(), "just started, yet {started:?}");
    let listed = provider.commands(&id).await?;
    ensure!(
        listed.iter().any(|c| c.id == started.id && c.running()),
        "`commands` does not list the running command {}: {listed:?}",
        started.id
    );
    // Attached from the start, then dropped: the command runs on.
    let mut early = provider
        .attach(&id, &started.id, AttachFrom::default())
        .await?;
    read_until(&mut early, "first").await?;
    drop(early);
    cx.sh(&id, "touch go").await?;
    // Re-attached past `first\n`: the rest of stdout, all of stderr, and the end.
    let from = AttachFrom {
        stdout: "first\n".len() as u64,
        stderr: 0,
    };
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        provider.attach(&id, &started.id, from).await?.output(),
    )
    .await
    .context("the attached command did not end within 60 s")??;
    ensure!(
        output.stdout_lossy() == "second\n",
        "stdout from offset 6: {:?}",
        output.stdout_lossy()
    );
    ensure!(
        output.stderr_lossy() == "oops\n",
        "stderr from 0: {:?}",
        output.stderr_lossy()
    );
    ensure!(
        output.status == ExitStatus::code(3),
        "ended with {:?}, not code 3",
        output.status
    );
    let ended = provider.commands(&id).await?;
    let info = ended
        .iter()
        .find(|c| c.id == started.id)
        .with_context(|| format!("the ended command is no longer listed: {ended:?}"))?;
    ensure!(
        info.exit == Some(ExitStatus::code(3)) && info.stdout_bytes == 13 && info.stderr_bytes == 5,
        "the ended command is listed as {info:?}"
    );
    match provider
        .attach(&id, "no-such-command", AttachFrom::default())
        .await
    {
        Err(Error::NotFound { .. }) => Ok(()),
        other => bail!("attaching to an unknown command: {other:?}"),
    }
}

pub(crate) async fn exec_detached_killed_by_id(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let provider = cx.provider();
    let started = provider
        .start_detached(
            &id,
            ExecRequest::new(["sh", "-c", "echo up; exec sleep 300"]),
        )
        .await?;
    let mut attached = provider
        .attach(&id, &started.id, AttachFrom::default())
        .await?;
    read_until(&mut attached, "up").await?;
    attached.kill().await?;
    let status = tokio::time::timeout(Duration::from_secs(60), attached.wait())
        .await
        .context("the killed command did not end within 60 s")??;
    ensure!(
        status.signal == Some(9),
        "a killed command ended with {status:?}"
    );
    let listed = provider.commands(&id).await?;
    ensure!(
        listed.iter().any(|c| c.id == started.id && !c.running()),
        "the killed command is still listed as running: {listed:?}"
    );
    // Nothing more comes after the end.
    let rest = attached.stdout.next().await;
    ensure!(rest.is_none(), "output after the end: {rest:?}");
    Ok(())
}

pub(crate) async fn exec_detached_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(
        cx.provider()
            .start_detached(&id, ExecRequest::new(["true"]))
            .await,
        "detached commands",
    )?;
    expect_unsupported(
        cx.provider().commands(&id).await,
        "listing detached commands",
    )
}
