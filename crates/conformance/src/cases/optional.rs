//! Optional operations: snapshots, pause, entrypoints, capacity, tunnels, volumes.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use sandkit_core::{Error, ExecRequest, OutputStream, SandboxId, SandboxState};

use crate::case::{Cx, expect_error, expect_unsupported};

pub(crate) async fn snapshot_restore_shows_file(cx: Cx) -> Result<()> {
    let source = cx.sandbox().await?;
    cx.sh(
        &source,
        "mkdir -p snapdir && printf restored-content > snapdir/file.txt",
    )
    .await?;
    let snapshot = cx
        .provider()
        .snapshot(&source)
        .await
        .map_err(|e| anyhow::anyhow!("snapshot: {e}"))?;
    cx.track_snapshot(&snapshot.id);
    ensure!(
        snapshot.source == source,
        "snapshot.source is {}, taken from {source}",
        snapshot.source
    );
    // Changes after the snapshot must not leak into it.
    cx.sh(&source, "printf later > snapdir/after.txt").await?;
    let restored = cx.create(&cx.spec().from_snapshot(&snapshot.id)).await?.id;
    let seen = cx.sh(&restored, "cat snapdir/file.txt").await?;
    ensure!(
        seen == "restored-content",
        "the restored sandbox reads {seen:?}"
    );
    let after = cx
        .run(&restored, ExecRequest::new(["cat", "snapdir/after.txt"]))
        .await?;
    ensure!(
        !after.status.success(),
        "a file written after the snapshot appears in the restored sandbox"
    );
    Ok(())
}

pub(crate) async fn snapshot_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(cx.provider().snapshot(&id).await, "snapshot")?;
    expect_unsupported(
        cx.provider()
            .create(&cx.spec().from_snapshot("conformance-snapshot"))
            .await,
        "create from a snapshot",
    )
}

/// Reads the counter of the heartbeat named `main`.
async fn counter(cx: &Cx, id: &SandboxId) -> Result<u64> {
    let text = cx.sh(id, "cat pause-beat.main").await?;
    text.trim()
        .parse()
        .with_context(|| format!("the counter file holds {text:?}"))
}

pub(crate) async fn pause_stops_processes_and_resume_continues(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    // Written through a rename, so a read never sees a half-written file.
    let script = "i=0; while :; do i=$((i+1)); echo $i > tmp-pause-beat && mv -f tmp-pause-beat pause-beat.main; sleep 0.1; done";
    let mut process = cx
        .start(&id, ExecRequest::new(["sh", "-c", script]))
        .await?;
    let stdout = std::mem::replace(&mut process.stdout, Box::pin(futures::stream::empty()));
    let stderr = std::mem::replace(&mut process.stderr, Box::pin(futures::stream::empty()));
    let drains = tokio::spawn(async move {
        let _ = stdout.count().await;
        let _ = stderr.count().await;
    });
    let mut started = false;
    for _ in 0..150 {
        if cx
            .run(&id, ExecRequest::new(["test", "-s", "pause-beat.main"]))
            .await?
            .status
            .success()
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(started, "the counter process did not start within 30 s");
    // The counter's pace while running, as a yardstick (no absolute times are assumed).
    let c0 = counter(&cx, &id).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c1 = counter(&cx, &id).await?;
    let running_pace = c1.saturating_sub(c0);
    ensure!(
        running_pace >= 3,
        "the counter advanced only {running_pace} in 2 s while running; cannot judge a pause"
    );

    let c2 = counter(&cx, &id).await?;
    cx.provider()
        .pause(&id)
        .await
        .map_err(|e| anyhow::anyhow!("pause: {e}"))?;
    let state = cx
        .provider()
        .info(&id)
        .await
        .map_err(|e| anyhow::anyhow!("info while paused: {e}"))?
        .state;
    ensure!(
        state == SandboxState::Paused,
        "info says {state} while paused"
    );
    // Paused twice as long as the yardstick: a running counter would advance twice as far.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cx.provider()
        .resume(&id)
        .await
        .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
    let c3 = counter(&cx, &id).await?;
    let paused_advance = c3.saturating_sub(c2);
    ensure!(
        paused_advance < running_pace,
        "the counter advanced {paused_advance} across a 4 s pause, {running_pace} in 2 s running: pause did not stop the processes"
    );
    let state = cx
        .provider()
        .info(&id)
        .await
        .map_err(|e| anyhow::anyhow!("info after resume: {e}"))?
        .state;
    ensure!(
        state == SandboxState::Running,
        "info says {state} after resume"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c4 = counter(&cx, &id).await?;
    ensure!(
        c4 > c3,
        "the counter stayed at {c3} after resume: the processes did not continue"
    );
    process
        .kill()
        .await
        .map_err(|e| anyhow::anyhow!("kill: {e}"))?;
    drains.abort();
    Ok(())
}

pub(crate) async fn pause_resume_keeps_files(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.sh(&id, "printf kept > paused-file.txt").await?;
    cx.provider()
        .pause(&id)
        .await
        .map_err(|e| anyhow::anyhow!("pause: {e}"))?;
    cx.provider()
        .resume(&id)
        .await
        .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
    let seen = cx.sh(&id, "cat paused-file.txt").await?;
    ensure!(
        seen == "kept",
        "after pause and resume the file reads {seen:?}"
    );
    Ok(())
}

/// How long a call on a paused sandbox may take to be refused: a provider that waits on
/// the frozen sandbox instead hangs.
const REFUSAL: Duration = Duration::from_secs(30);

/// Fails unless `call` is refused promptly with [`Error::InvalidState`] naming `id` and
/// `state`.
async fn expect_invalid_state<T>(
    call: impl std::future::Future<Output = sandkit_core::Result<T>>,
    id: &SandboxId,
    state: SandboxState,
    what: &str,
) -> Result<()> {
    let result = tokio::time::timeout(REFUSAL, call)
        .await
        .with_context(|| format!("{what} did not answer within {REFUSAL:?}"))?;
    let error = expect_error(result, &format!("InvalidState for {what}"), |e| {
        matches!(e, Error::InvalidState { .. })
    })?;
    if let Error::InvalidState {
        id: named,
        state: named_state,
        ..
    } = &error
    {
        ensure!(
            named == id && *named_state == state,
            "{what}: InvalidState names sandbox {named} {named_state}, expected {id} {state}"
        );
        ensure!(!error.is_retryable(), "{what}: InvalidState is retryable");
    }
    Ok(())
}

pub(crate) async fn paused_sandbox_refuses_exec_until_resumed(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.provider()
        .pause(&id)
        .await
        .map_err(|e| anyhow::anyhow!("pause: {e}"))?;
    let exec = async {
        cx.provider()
            .exec(&id, ExecRequest::new(["echo", "ran"]))
            .await?
            .output()
            .await
    };
    expect_invalid_state(exec, &id, SandboxState::Paused, "exec while paused").await?;
    if cx.caps().files {
        expect_invalid_state(
            cx.provider()
                .write_file(&id, "paused.txt", bytes::Bytes::from_static(b"x")),
            &id,
            SandboxState::Paused,
            "write_file while paused",
        )
        .await?;
        expect_invalid_state(
            cx.provider().read_file(&id, "paused.txt"),
            &id,
            SandboxState::Paused,
            "read_file while paused",
        )
        .await?;
    }
    cx.provider()
        .resume(&id)
        .await
        .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
    let seen = cx.sh(&id, "echo ran").await?;
    ensure!(seen == "ran\n", "exec after resume printed {seen:?}");
    Ok(())
}

pub(crate) async fn pause_of_paused_and_resume_of_running_are_invalid_state(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_invalid_state(
        cx.provider().resume(&id),
        &id,
        SandboxState::Running,
        "resume of a running sandbox",
    )
    .await?;
    cx.provider()
        .pause(&id)
        .await
        .map_err(|e| anyhow::anyhow!("pause: {e}"))?;
    expect_invalid_state(
        cx.provider().pause(&id),
        &id,
        SandboxState::Paused,
        "pause of a paused sandbox",
    )
    .await?;
    // The refused pause changed nothing: one resume makes it run again.
    cx.provider()
        .resume(&id)
        .await
        .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
    cx.sh(&id, "true").await?;
    Ok(())
}

pub(crate) async fn pause_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(cx.provider().pause(&id).await, "pause")?;
    expect_unsupported(cx.provider().resume(&id).await, "resume")
}

pub(crate) async fn entrypoint_runs(cx: Cx) -> Result<()> {
    let spec = cx.spec().entrypoint([
        "sh",
        "-c",
        "echo entrypoint-ran > entrypoint.txt; exec sleep 600",
    ]);
    let id = cx.create(&spec).await?.id;
    for _ in 0..150 {
        let output = cx
            .run(&id, ExecRequest::new(["cat", "entrypoint.txt"]))
            .await?;
        if output.status.success() {
            ensure!(
                output.stdout == "entrypoint-ran\n",
                "entrypoint.txt holds {:?}",
                output.stdout_lossy()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the entrypoint did not write entrypoint.txt in the working directory within 30 s")
}

/// The whole of an entrypoint's `stream` from `offset`, within a minute.
async fn entrypoint_output(
    cx: &Cx,
    id: &SandboxId,
    stream: OutputStream,
    offset: u64,
) -> Result<String> {
    let output = cx
        .provider()
        .entrypoint_output(id, stream, offset)
        .await
        .with_context(|| format!("entrypoint_output({stream}, {offset})"))?;
    let bytes = tokio::time::timeout(Duration::from_secs(60), sandkit_core::collect(output))
        .await
        .with_context(|| format!("the entrypoint's {stream} did not end within 60 s"))?
        .with_context(|| format!("reading the entrypoint's {stream}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) async fn entrypoint_output_and_exit_code(cx: Cx) -> Result<()> {
    let spec = cx.spec().entrypoint([
        "sh",
        "-c",
        "echo out-1; echo err-1 >&2; sleep 1; echo out-2; exit 7",
    ]);
    let id = cx.create(&spec).await?.id;
    // Read while it runs: the stream follows the entrypoint to its end.
    let stdout = entrypoint_output(&cx, &id, OutputStream::Stdout, 0).await?;
    ensure!(
        stdout == "out-1\nout-2\n",
        "the entrypoint's stdout was {stdout:?}"
    );
    let stderr = entrypoint_output(&cx, &id, OutputStream::Stderr, 0).await?;
    ensure!(
        stderr == "err-1\n",
        "the entrypoint's stderr was {stderr:?}"
    );
    // Resumed where a reader was cut, after the end too.
    let rest = entrypoint_output(&cx, &id, OutputStream::Stdout, 4).await?;
    ensure!(rest == "1\nout-2\n", "stdout from offset 4 was {rest:?}");
    // The entrypoint's exit code is the sandbox's result.
    for _ in 0..100 {
        match cx.provider().info(&id).await {
            Ok(info) if info.state.is_finished() => {
                ensure!(
                    info.state == (SandboxState::Terminated { exit_code: Some(7) }),
                    "the sandbox whose entrypoint exited 7 is {}",
                    info.state
                );
                return Ok(());
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => bail!("info after the entrypoint ended: {error}"),
        }
    }
    bail!("the sandbox still runs 10 s after its entrypoint's output ended")
}

pub(crate) async fn entrypoint_stdin_feeds_it_and_closes(cx: Cx) -> Result<()> {
    let spec = cx.spec().entrypoint([
        "sh",
        "-c",
        "while read -r line; do echo \"got $line\"; done; echo closed",
    ]);
    let id = cx.create(&spec).await?.id;
    let write = |offset: u64, data: &'static str, eof: bool| {
        let provider = cx.provider().clone();
        let id = id.clone();
        async move {
            provider
                .write_entrypoint_stdin(
                    &id,
                    offset,
                    bytes::Bytes::from_static(data.as_bytes()),
                    eof,
                )
                .await
        }
    };
    write(0, "a\n", false).await.context("writing at 0")?;
    // A retry of the same bytes, and one overlapping them: applied once.
    write(0, "a\n", false).await.context("writing at 0 again")?;
    write(1, "\nb\n", false).await.context("writing at 1")?;
    expect_error(
        write(100, "gap", false).await,
        "InvalidSpec for an offset past the end",
        |e| matches!(e, Error::InvalidSpec { .. }),
    )?;
    write(4, "", true).await.context("closing at 4")?;
    let stdout = entrypoint_output(&cx, &id, OutputStream::Stdout, 0).await?;
    ensure!(
        stdout == "got a\ngot b\nclosed\n",
        "the entrypoint fed `a`, `b`, then EOF printed {stdout:?}"
    );
    Ok(())
}

pub(crate) async fn entrypoint_stdin_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(
        cx.provider()
            .write_entrypoint_stdin(&id, 0, bytes::Bytes::from_static(b"x"), false)
            .await,
        "writing to an entrypoint's stdin",
    )
}

pub(crate) async fn entrypoint_output_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(
        cx.provider()
            .entrypoint_output(&id, OutputStream::Stdout, 0)
            .await,
        "reading an entrypoint's output",
    )
}

pub(crate) async fn entrypoint_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().entrypoint(["sleep", "600"]);
    expect_unsupported(cx.provider().create(&spec).await, "an entrypoint")
}

pub(crate) async fn capacity_reported(cx: Cx) -> Result<()> {
    let capacity = cx
        .provider()
        .capacity()
        .await
        .map_err(|e| anyhow::anyhow!("capacity: {e}"))?;
    if let Some(cpu) = capacity.available_cpu {
        ensure!(cpu.is_finite() && cpu >= 0.0, "available cpu is {cpu}");
    }
    Ok(())
}

pub(crate) async fn capacity_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(cx.provider().capacity().await, "capacity queries")
}

pub(crate) async fn tunnels_listed(cx: Cx) -> Result<()> {
    let id = cx.create(&cx.spec().port(8080)).await?.id;
    let tunnels = cx
        .provider()
        .tunnels(&id)
        .await
        .map_err(|e| anyhow::anyhow!("tunnels: {e}"))?;
    let tunnel = tunnels
        .iter()
        .find(|t| t.port == 8080)
        .with_context(|| format!("no tunnel for port 8080 among {tunnels:?}"))?;
    ensure!(
        !tunnel.url.is_empty(),
        "the tunnel for port 8080 has an empty url"
    );
    Ok(())
}

pub(crate) async fn tunnels_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(cx.provider().tunnels(&id).await, "tunnels")?;
    expect_unsupported(
        cx.provider().create(&cx.spec().port(8080)).await,
        "a spec exposing a port",
    )
}

pub(crate) async fn volumes_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().volume("conformance-volume", "/mnt/conformance");
    expect_unsupported(cx.provider().create(&spec).await, "a spec with a volume")
}
