//! Measured resource usage (`SandboxProvider::resource_usage`): cpu time that grows with
//! the work done, ended commands included, and the memory of a live process.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sandkit_core::ExecRequest;

use crate::case::{Cx, expect_unsupported, read_until};

pub(crate) async fn resource_usage_measures_cpu_and_memory(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let before = cx.provider().resource_usage(&id).await?;
    // About half a second of a shell counting, which then ends.
    let output = cx
        .sh(
            &id,
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo counted",
        )
        .await?;
    ensure!(
        output.trim() == "counted",
        "the counting shell printed {output:?}"
    );
    let after = cx.provider().resource_usage(&id).await?;
    ensure!(
        after.cpu_secs >= before.cpu_secs + 0.05,
        "cpu time went from {:.3} s to {:.3} s over a shell loop of 200000 rounds",
        before.cpu_secs,
        after.cpu_secs
    );
    // A live process holds memory and counts as one.
    let mut process = cx
        .provider()
        .exec(
            &id,
            ExecRequest::new(["sh", "-c", "echo up; exec sleep 30"]),
        )
        .await?;
    read_until(&mut process, "up").await?;
    let live = cx.provider().resource_usage(&id).await?;
    let _ = process.kill().await;
    ensure!(
        live.processes >= 1 && live.memory_bytes > 0,
        "with `sleep` running: {} processes, {} bytes resident",
        live.processes,
        live.memory_bytes
    );
    ensure!(
        live.peak_memory_bytes >= live.memory_bytes,
        "the peak ({}) is below the current memory ({})",
        live.peak_memory_bytes,
        live.memory_bytes
    );
    ensure!(
        live.cpu_secs >= after.cpu_secs,
        "cpu time went down, from {:.3} s to {:.3} s",
        after.cpu_secs,
        live.cpu_secs
    );
    let _ = tokio::time::timeout(Duration::from_secs(60), process.wait())
        .await
        .context("the killed `sleep` did not end")?;
    Ok(())
}

pub(crate) async fn resource_usage_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(cx.provider().resource_usage(&id).await, "resource usage")
}
