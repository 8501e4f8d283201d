//! Commands' standard input: none, text, binary, 16 MiB, streamed before EOF, closed
//! early, and the `Unsupported` twin.

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{ExecRequest, SandboxProviderExt};
use tokio::io::AsyncWriteExt;

use super::exec::{HANG, noise, outcome_within};
use crate::case::{Cx, drain, expect_success, expect_unsupported, show};

pub(crate) async fn exec_without_stdin_reads_eof(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = outcome_within(&cx, &id, ExecRequest::new(["cat"]))
        .await?
        .map_err(|error| anyhow::anyhow!("cat without stdin: {error}"))?;
    expect_success(&output, "cat")?;
    ensure!(
        output.stdout.is_empty(),
        "cat read {} from an empty stdin",
        show(&output.stdout)
    );
    Ok(())
}

async fn stdin_round_trip(cx: Cx, input: Bytes) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = tokio::time::timeout(
        HANG * 2,
        cx.provider()
            .run_with_stdin(&id, ExecRequest::new(["cat"]), input.clone()),
    )
    .await
    .context("cat with stdin did not finish")?
    .map_err(|error| anyhow::anyhow!("cat with stdin: {error}"))?;
    expect_success(&output, "cat")?;
    ensure!(
        output.stdout == input,
        "cat echoed {} bytes, sent {}; first difference at byte {:?}",
        output.stdout.len(),
        input.len(),
        output
            .stdout
            .iter()
            .zip(input.iter())
            .position(|(a, b)| a != b)
    );
    Ok(())
}

pub(crate) async fn exec_stdin_text(cx: Cx) -> Result<()> {
    stdin_round_trip(
        cx,
        Bytes::from_static("first line\nsecond — wörld ✓\n".as_bytes()),
    )
    .await
}

pub(crate) async fn exec_stdin_binary(cx: Cx) -> Result<()> {
    let bytes: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    stdin_round_trip(cx, Bytes::from(bytes)).await
}

pub(crate) async fn exec_stdin_16mib(cx: Cx) -> Result<()> {
    stdin_round_trip(cx, noise(16 * 1024 * 1024, 16)).await
}

pub(crate) async fn exec_stdin_streams_before_eof(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut process = cx.start(&id, ExecRequest::new(["cat"]).stdin()).await?;
    let mut stdin = process
        .stdin
        .take()
        .context("stdin was requested but not provided")?;
    stdin.write_all(b"ping\n").await.context("writing stdin")?;
    stdin.flush().await.context("flushing stdin")?;
    // The echo must arrive while stdin is still open: input is streamed, not buffered
    // until EOF.
    let mut echoed = Vec::new();
    let seen = tokio::time::timeout(HANG, async {
        while !echoed.ends_with(b"ping\n") {
            match process.stdout.next().await {
                Some(Ok(chunk)) => echoed.extend_from_slice(&chunk),
                Some(Err(error)) => return Err(anyhow::anyhow!("reading stdout: {error}")),
                None => return Err(anyhow::anyhow!("stdout ended before the echo")),
            }
        }
        Ok(())
    })
    .await;
    match seen {
        Err(_) => bail!("`cat` did not echo a line while stdin stayed open: stdin is not streamed"),
        Ok(result) => result?,
    }
    stdin.write_all(b"pong\n").await.context("writing stdin")?;
    stdin.shutdown().await.context("closing stdin")?;
    drop(stdin);
    let rest = drain(process, 1024).await?;
    let status = rest
        .result
        .map_err(|error| anyhow::anyhow!("wait: {error}"))?;
    ensure!(
        status.success(),
        "cat exited with {status}; stderr {}",
        show(&rest.stderr)
    );
    echoed.extend_from_slice(&rest.stdout);
    ensure!(echoed == b"ping\npong\n", "echoed {}", show(&echoed));
    Ok(())
}

pub(crate) async fn exec_stdin_closed_gives_eof(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let process = cx
        .start(&id, ExecRequest::new(["wc", "-c"]).stdin())
        .await?;
    // `output` closes stdin first.
    let output = tokio::time::timeout(HANG, process.output())
        .await
        .context("`wc -c` did not see EOF after stdin was closed")?
        .map_err(|error| anyhow::anyhow!("wc -c: {error}"))?;
    expect_success(&output, "wc -c")?;
    ensure!(
        output.stdout_lossy().trim() == "0",
        "wc -c counted {}",
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_stdin_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let result = cx
        .provider()
        .exec(&id, ExecRequest::new(["cat"]).stdin())
        .await;
    expect_unsupported(result, "exec with stdin")
}
