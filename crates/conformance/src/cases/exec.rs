//! Commands: output, exit codes, stdin, env, cwd, timeouts, argv, failures to start.
//!
//! Commands use only what a Debian host and a busybox image both have (POSIX `sh`,
//! `printf`, `cat`, `head`, `yes`, `seq`, `sleep`, `pwd`, `id`, `tty`, `chmod`, `ls`, `wc`):
//! the local-process provider runs host binaries, the Docker tests a busybox image.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{ByteStream, Error, ExecOutput, ExecRequest, SandboxId};

use crate::case::{
    Cx, describe_argv, drain, expect_error, expect_success, expect_unsupported, show,
};

/// How long a command that should end at once may take before the case calls it a hang.
pub(super) const HANG: Duration = Duration::from_secs(60);

/// The timeout given to commands that must time out.
const SHORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `request` to completion, with an error from starting it and from waiting for it
/// treated alike (providers report a program that cannot start at either point).
async fn outcome(
    cx: &Cx,
    id: &SandboxId,
    request: ExecRequest,
) -> sandkit_core::Result<ExecOutput> {
    match cx.provider().exec(id, request).await {
        Ok(process) => process.output().await,
        Err(error) => Err(error),
    }
}

/// Like [`outcome`], but a command still running after [`HANG`] fails the case.
pub(super) async fn outcome_within(
    cx: &Cx,
    id: &SandboxId,
    request: ExecRequest,
) -> Result<sandkit_core::Result<ExecOutput>> {
    let argv = describe_argv(&request.argv);
    tokio::time::timeout(HANG, outcome(cx, id, request))
        .await
        .with_context(|| format!("{argv} did not end within {HANG:?}"))
}

pub(super) fn sh(script: &str) -> ExecRequest {
    ExecRequest::new(["sh", "-c", script])
}

async fn exit_code(cx: Cx, script: &str, expected: i32) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = cx.run(&id, sh(script)).await?;
    ensure!(
        output.status.code == expected,
        "`sh -c {script:?}` gave {}, expected exit {expected}",
        output.status
    );
    Ok(())
}

/// Counts a stream's bytes without keeping them, checking each against a repeating pattern.
async fn count_pattern(stream: &mut ByteStream, pattern: &[u8]) -> Result<u64> {
    let mut count: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| anyhow::anyhow!("reading output: {error}"))?;
        for (offset, byte) in chunk.iter().enumerate() {
            let position = count + offset as u64;
            let expected = pattern[(position % pattern.len() as u64) as usize];
            ensure!(
                *byte == expected,
                "byte {position} is {byte:#04x}, expected {expected:#04x}: output was altered or reordered"
            );
        }
        count += chunk.len() as u64;
    }
    Ok(count)
}

/// Deterministic pseudo-random bytes (xorshift), so large payloads are not compressible
/// runs of one byte.
pub(crate) fn noise(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// `base` joined with a relative path, as the sandbox would resolve it.
pub(crate) fn join(base: &str, relative: &str) -> String {
    format!("{}/{relative}", base.trim_end_matches('/'))
}

pub(crate) async fn exec_stdout(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = cx
        .run(&id, ExecRequest::new(["echo", "hello", "world"]))
        .await?;
    expect_success(&output, "echo hello world")?;
    ensure!(
        output.stdout == "hello world\n",
        "stdout was {}",
        show(&output.stdout)
    );
    ensure!(
        output.stderr.is_empty(),
        "stderr was {}",
        show(&output.stderr)
    );
    Ok(())
}

pub(crate) async fn exec_true_is_silent(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = cx.run(&id, ExecRequest::new(["true"])).await?;
    expect_success(&output, "true")?;
    ensure!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "`true` printed stdout {} stderr {}",
        show(&output.stdout),
        show(&output.stderr)
    );
    Ok(())
}

pub(crate) async fn exec_stderr_separate(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = cx
        .run(&id, sh("echo to-out; echo to-err >&2; echo more-out"))
        .await?;
    expect_success(&output, "echo to both streams")?;
    ensure!(
        output.stdout == "to-out\nmore-out\n",
        "stdout was {}",
        show(&output.stdout)
    );
    ensure!(
        output.stderr == "to-err\n",
        "stderr was {}",
        show(&output.stderr)
    );
    Ok(())
}

pub(crate) async fn exec_stderr_merged_when_not_separate(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = cx.run(&id, sh("echo to-out; echo to-err >&2")).await?;
    let text = output.stdout_lossy();
    ensure!(
        text.contains("to-out") && text.contains("to-err"),
        "without separate stderr, standard error must arrive on stdout, not be lost; stdout was {}",
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_exit_0(cx: Cx) -> Result<()> {
    exit_code(cx, "exit 0", 0).await
}

pub(crate) async fn exec_exit_1(cx: Cx) -> Result<()> {
    exit_code(cx, "exit 1", 1).await
}

pub(crate) async fn exec_exit_42(cx: Cx) -> Result<()> {
    exit_code(cx, "echo before-exit; exit 42", 42).await
}

pub(crate) async fn exec_sigterm_self_is_143(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut request = sh("kill -TERM $$; sleep 5");
    if cx.caps().exec_timeout != sandkit_core::TimeoutEnforcement::None {
        // A generous timeout, so a provider that confuses a signal death with its own
        // timeout shows it.
        request = request.timeout(Duration::from_secs(120));
    }
    match outcome_within(&cx, &id, request).await? {
        Ok(output) => {
            ensure!(
                output.status.code == 143,
                "a shell that sends itself SIGTERM must exit 143 (128 + 15), got {}",
                output.status
            );
            ensure!(
                output.status.signal.is_none_or(|signal| signal == 15),
                "reported signal {:?}, expected 15",
                output.status.signal
            );
            Ok(())
        }
        Err(error @ Error::CommandTimeout { .. }) => {
            bail!("a command killed by SIGTERM was reported as a timeout: {error}")
        }
        Err(error) => bail!("expected exit 143, got {} error: {error}", error.kind()),
    }
}

pub(crate) async fn exec_utf8_output(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let text = "héllo wörld ✓ 日本語 🚀";
    let output = cx
        .run(&id, ExecRequest::new(["printf", "%s", text]))
        .await?;
    expect_success(&output, "printf utf-8")?;
    ensure!(
        output.stdout == text.as_bytes(),
        "stdout was {}",
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_invalid_utf8_output(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    // Octal escapes in printf's format: bytes that are not UTF-8 on both streams.
    let output = cx
        .run(&id, sh(r"printf 'a\377\376\200z'; printf 'b\300\301y' >&2"))
        .await?;
    expect_success(&output, "printf invalid utf-8")?;
    let stdout: &[u8] = b"a\xff\xfe\x80z";
    let stderr: &[u8] = b"b\xc0\xc1y";
    if cx.caps().exec_separate_stderr {
        ensure!(
            output.stdout == stdout,
            "stdout bytes were {:?}",
            output.stdout
        );
        ensure!(
            output.stderr == stderr,
            "stderr bytes were {:?}",
            output.stderr
        );
    } else {
        let all = output.stdout.to_vec();
        ensure!(
            all.windows(stdout.len()).any(|w| w == stdout)
                && all.windows(stderr.len()).any(|w| w == stderr),
            "output bytes were {all:?}"
        );
    }
    Ok(())
}

pub(crate) async fn exec_large_output_streamed(cx: Cx) -> Result<()> {
    const SIZE: u64 = 64 * 1024 * 1024;
    let id = cx.sandbox().await?;
    let mut process = cx
        .start(&id, sh(&format!("yes 0123456789abcde | head -c {SIZE}")))
        .await?;
    let mut stderr = std::mem::replace(&mut process.stderr, Box::pin(futures::stream::empty()));
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Some(Ok(chunk)) = stderr.next().await {
            kept.extend_from_slice(&chunk[..chunk.len().min(4096usize.saturating_sub(kept.len()))]);
        }
        kept
    });
    let count = count_pattern(&mut process.stdout, b"0123456789abcde\n").await?;
    let status = process
        .wait()
        .await
        .map_err(|error| anyhow::anyhow!("wait: {error}"))?;
    let stderr = stderr.await.unwrap_or_default();
    ensure!(
        status.success(),
        "exited with {status}; stderr {}",
        show(&stderr)
    );
    ensure!(count == SIZE, "streamed {count} bytes, expected {SIZE}");
    Ok(())
}

pub(crate) async fn exec_output_in_order(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let output = cx
        .run(&id, ExecRequest::new(["seq", "1", "100000"]))
        .await?;
    expect_success(&output, "seq 1 100000")?;
    let expected: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    ensure!(
        output.stdout == expected.as_bytes(),
        "seq output differs ({} bytes, expected {}); chunks were lost, duplicated or reordered",
        output.stdout.len(),
        expected.len()
    );
    Ok(())
}

pub(crate) async fn exec_both_streams_large(cx: Cx) -> Result<()> {
    const SIZE: u64 = 4 * 1024 * 1024;
    let id = cx.sandbox().await?;
    // Both pipes fill at once: a provider that reads one stream to its end before the
    // other deadlocks here.
    let script = format!("yes o | head -c {SIZE} & yes e | head -c {SIZE} >&2; wait");
    let mut process = cx.start(&id, sh(&script)).await?;
    let mut stdout = std::mem::replace(&mut process.stdout, Box::pin(futures::stream::empty()));
    let mut stderr = std::mem::replace(&mut process.stderr, Box::pin(futures::stream::empty()));
    let counted = tokio::time::timeout(HANG, async {
        tokio::join!(
            count_pattern(&mut stdout, b"o\n"),
            count_pattern(&mut stderr, b"e\n")
        )
    })
    .await
    .context("reading 4 MiB on each stream did not finish; are both streams read concurrently?")?;
    let (out, err) = (counted.0?, counted.1?);
    let status = process
        .wait()
        .await
        .map_err(|error| anyhow::anyhow!("wait: {error}"))?;
    ensure!(status.success(), "exited with {status}");
    ensure!(
        out == SIZE && err == SIZE,
        "got {out} bytes on stdout and {err} on stderr, expected {SIZE} each"
    );
    Ok(())
}

pub(crate) async fn exec_output_limit_truncates(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let request = sh("yes | head -c 1048576").output_limit_bytes(1000);
    let output = cx.run(&id, request).await?;
    expect_success(&output, "yes | head")?;
    ensure!(
        output.stdout.len() == 1000,
        "kept {} bytes, limit was 1000",
        output.stdout.len()
    );
    ensure!(
        output.truncated,
        "output was cut at the limit but not marked truncated"
    );
    ensure!(
        output
            .stdout
            .iter()
            .enumerate()
            .all(|(i, b)| *b == if i % 2 == 0 { b'y' } else { b'\n' }),
        "kept bytes are not the start of the output"
    );
    Ok(())
}

/// A script whose three processes (the shell, a child, a grandchild) each bump a counter
/// file every 0.2 s: liveness is seen through the files, which works whatever the
/// provider's pid namespaces are.
fn heartbeat_script(prefix: &str) -> String {
    // Written through a rename, so a read never sees a half-written file.
    let beat = |name: &str| {
        format!(
            "i=0; while :; do i=$((i+1)); echo $i > tmp-{prefix}-{name} && mv -f tmp-{prefix}-{name} {prefix}.{name}; sleep 0.2; done"
        )
    };
    format!(
        "({child}) & sh -c '({grandchild}) & wait' & {main}",
        child = beat("child"),
        grandchild = beat("grandchild"),
        main = beat("main"),
    )
}

/// Waits until every heartbeat file of `prefix` exists.
async fn await_heartbeats(cx: &Cx, id: &SandboxId, prefix: &str, names: &[&str]) -> Result<()> {
    let check = names
        .iter()
        .map(|name| format!("[ -s {prefix}.{name} ]"))
        .collect::<Vec<_>>()
        .join(" && ");
    for _ in 0..150 {
        let output = cx.run(id, sh(&check)).await?;
        if output.status.success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the heartbeat processes ({names:?}) did not start within 30 s")
}

/// Reads the heartbeat counters of `prefix`.
pub(crate) async fn read_heartbeats(cx: &Cx, id: &SandboxId, prefix: &str) -> Result<String> {
    cx.sh(
        id,
        &format!("for f in {prefix}.*; do printf '%s=' \"$f\"; cat \"$f\"; done"),
    )
    .await
}

/// Fails unless no heartbeat of `prefix` advances any more (allowing a few seconds for
/// the kill to land).
async fn expect_heartbeats_stopped(cx: &Cx, id: &SandboxId, prefix: &str) -> Result<()> {
    let mut before = read_heartbeats(cx, id, prefix).await?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = read_heartbeats(cx, id, prefix).await?;
        if after == before {
            return Ok(());
        }
        before = after;
    }
    bail!(
        "processes of the command are still running after it ended (counters still advance: {before:?})"
    )
}

pub(crate) async fn exec_timeout_returns_partial_output(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let request = sh("echo started; echo warming-up >&2; sleep 120").timeout(SHORT_TIMEOUT);
    match outcome_within(&cx, &id, request).await? {
        Ok(output) => bail!(
            "a command past its timeout ended normally with {}",
            output.status
        ),
        Err(Error::CommandTimeout {
            timeout,
            stdout,
            stderr,
        }) => {
            ensure!(
                timeout == SHORT_TIMEOUT,
                "CommandTimeout says {timeout:?}, the request said {SHORT_TIMEOUT:?}"
            );
            ensure!(
                stdout.starts_with(b"started\n"),
                "CommandTimeout must carry the output so far; stdout was {}",
                show(&stdout)
            );
            if cx.caps().exec_separate_stderr {
                ensure!(
                    stderr == "warming-up\n",
                    "stderr so far was {}",
                    show(&stderr)
                );
            }
            Ok(())
        }
        Err(error) => bail!(
            "expected CommandTimeout, got {} error: {error}",
            error.kind()
        ),
    }
}

pub(crate) async fn exec_timeout_kills_process_tree(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let prefix = "timeout-beat";
    let request = sh(&heartbeat_script(prefix)).timeout(Duration::from_secs(5));
    let process = cx.start(&id, request).await?;
    // Check the tree is alive before the timeout, so its stopping proves the kill.
    await_heartbeats(&cx, &id, prefix, &["main", "child", "grandchild"]).await?;
    let ended = tokio::time::timeout(HANG, drain(process, 0))
        .await
        .context("the command's output did not end within 60 s of its 5 s timeout: processes still hold its pipes")??;
    match ended.result {
        Err(Error::CommandTimeout { .. }) => {}
        Ok(status) => bail!("expected CommandTimeout, the command ended with {status}"),
        Err(error) => bail!(
            "expected CommandTimeout, got {} error: {error}",
            error.kind()
        ),
    }
    expect_heartbeats_stopped(&cx, &id, prefix).await?;
    // The sandbox itself stays usable.
    let output = cx.sh(&id, "echo still-usable").await?;
    ensure!(
        output == "still-usable\n",
        "after a timeout, echo printed {output:?}"
    );
    Ok(())
}

pub(crate) async fn exec_timeout_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let result = cx
        .provider()
        .exec(
            &id,
            ExecRequest::new(["true"]).timeout(Duration::from_secs(5)),
        )
        .await;
    expect_unsupported(result, "an exec timeout")
}

pub(crate) async fn exec_kill_stops_command(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let prefix = "kill-beat";
    let mut process = cx.start(&id, sh(&heartbeat_script(prefix))).await?;
    let stdout = std::mem::replace(&mut process.stdout, Box::pin(futures::stream::empty()));
    let stderr = std::mem::replace(&mut process.stderr, Box::pin(futures::stream::empty()));
    let drains = tokio::spawn(async move {
        let _ = stdout.count().await;
        let _ = stderr.count().await;
    });
    await_heartbeats(&cx, &id, prefix, &["main", "child", "grandchild"]).await?;
    process
        .kill()
        .await
        .map_err(|error| anyhow::anyhow!("kill: {error}"))?;
    let status = tokio::time::timeout(HANG, process.wait())
        .await
        .context("wait did not return after kill")?
        .map_err(|error| anyhow::anyhow!("wait after kill: {error}"))?;
    ensure!(
        !status.success(),
        "a killed command reported success ({status})"
    );
    process
        .kill()
        .await
        .map_err(|error| anyhow::anyhow!("killing a finished command must be Ok: {error}"))?;
    drains.abort();
    expect_heartbeats_stopped(&cx, &id, prefix).await
}

pub(crate) async fn exec_argv_shell_specials(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let args = [
        "$HOME",
        "*",
        "a;b",
        "'single'",
        "\"double\"",
        "line1\nline2",
        "with space",
        "`id`",
        "$(id)",
        "|&<>",
        "~",
        "\\back\\slash",
        "",
        "-n",
        "%s %d",
        "ünï✓",
    ];
    let mut argv = vec!["printf".to_owned(), "[%s]\\n".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let output = cx.run(&id, ExecRequest::new(argv)).await?;
    expect_success(&output, "printf")?;
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    ensure!(
        output.stdout == expected.as_bytes(),
        "arguments were changed on the way: got {}, expected {expected:?}",
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_argv_60kib(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let long: String = (0..60 * 1024)
        .map(|i| alphabet[i % alphabet.len()] as char)
        .collect();
    let output = cx
        .run(&id, ExecRequest::new(["printf", "%s", long.as_str()]))
        .await?;
    expect_success(&output, "printf <60 KiB>")?;
    ensure!(
        output.stdout == long.as_bytes(),
        "a 60 KiB argument came back as {} bytes",
        output.stdout.len()
    );
    Ok(())
}

pub(crate) async fn exec_non_executable_is_exec_failed(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.sh(
        &id,
        "printf '#!/bin/sh\\necho ran\\n' > not-executable.sh && chmod 644 not-executable.sh",
    )
    .await?;
    match outcome_within(&cx, &id, ExecRequest::new(["./not-executable.sh"])).await? {
        Err(Error::ExecFailed { program, .. }) => {
            ensure!(
                program == "./not-executable.sh",
                "ExecFailed names {program:?}"
            );
            Ok(())
        }
        Ok(output) => bail!(
            "executing a mode-644 file must be ExecFailed, it ran with {} (stdout {})",
            output.status,
            show(&output.stdout)
        ),
        Err(error) => bail!("expected ExecFailed, got {} error: {error}", error.kind()),
    }
}

pub(crate) async fn exec_missing_binary_is_program_not_found(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    for program in [
        "conformance-no-such-program",
        "/conformance/no/such/program",
    ] {
        match outcome_within(&cx, &id, ExecRequest::new([program, "arg"])).await? {
            Err(Error::ProgramNotFound { program: named }) => ensure!(
                named == program,
                "ProgramNotFound names {named:?}, not {program:?}"
            ),
            Ok(output) => bail!(
                "a missing program `{program}` must be ProgramNotFound, got {} (stderr {})",
                output.status,
                show(&output.stderr)
            ),
            Err(error) => bail!(
                "`{program}`: expected ProgramNotFound, got {} error: {error}",
                error.kind()
            ),
        }
    }
    Ok(())
}

pub(crate) async fn exec_concurrent_in_one_sandbox(cx: Cx) -> Result<()> {
    const COUNT: usize = 6;
    let id = cx.sandbox().await?;
    // Each command waits until all have started: commands run one after another would
    // never see the others' markers.
    let commands = (0..COUNT).map(|index| {
        let script = format!(
            "touch marker.{index}; n=0; \
             while [ $(ls marker.* | wc -l) -lt {COUNT} ]; do n=$((n+1)); [ $n -gt 600 ] && exit 9; sleep 0.1; done; \
             echo done-{index}"
        );
        let cx = cx.clone();
        let id = id.clone();
        async move { cx.run(&id, sh(&script)).await }
    });
    let outputs = futures::future::join_all(commands).await;
    for (index, output) in outputs.into_iter().enumerate() {
        let output = output?;
        ensure!(
            output.status.code != 9,
            "command {index} waited 60 s for the others to start: commands in one sandbox do not run concurrently"
        );
        expect_success(&output, &format!("command {index}"))?;
        ensure!(
            output.stdout == format!("done-{index}\n").as_bytes(),
            "command {index} printed {}: outputs of concurrent commands got mixed up",
            show(&output.stdout)
        );
    }
    Ok(())
}

pub(crate) async fn exec_pty(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut request = ExecRequest::new(["tty"]);
    request.pty = true;
    let output = cx.run(&id, request).await?;
    ensure!(
        output.status.success() && output.stdout.starts_with(b"/dev/"),
        "`tty` on a pty gave {} with {}",
        output.status,
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_pty_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut request = ExecRequest::new(["tty"]);
    request.pty = true;
    expect_unsupported(cx.provider().exec(&id, request).await, "exec on a pty")
}

pub(crate) async fn exec_run_as_user(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    // A numeric id: a minimal image has no /etc/passwd to look names up in.
    let output = cx
        .run(&id, ExecRequest::new(["id", "-u"]).user("65534"))
        .await?;
    expect_success(&output, "id -u")?;
    ensure!(
        output.stdout_lossy().trim() == "65534",
        "ran as uid {}",
        output.stdout_lossy().trim()
    );
    // The switch really drops privileges: a file nobody may read stays unreadable.
    cx.sh(
        &id,
        "printf secret > conformance-locked && chmod 000 conformance-locked",
    )
    .await?;
    let output = cx
        .run(
            &id,
            ExecRequest::new(["cat", "conformance-locked"]).user("65534"),
        )
        .await?;
    ensure!(
        !output.status.success() && output.stdout.is_empty(),
        "as uid 65534, `cat` read a mode-000 file ({}, stdout {}): permissions do not apply",
        output.status,
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_as_root_has_root_powers(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    // Giving a file away takes CAP_CHOWN, which a container's root has.
    let script =
        "touch conformance-owned && chown 65534 conformance-owned && stat -c %u conformance-owned";
    let output = cx
        .run(&id, ExecRequest::new(["sh", "-c", script]).user("root"))
        .await?;
    expect_success(&output, "chown as root")?;
    ensure!(
        output.stdout_lossy().trim() == "65534",
        "after chown as root the file belongs to {}",
        output.stdout_lossy().trim()
    );
    Ok(())
}

pub(crate) async fn exec_unknown_user_fails_naming_it(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let user = "conformance-no-such-user";
    match outcome(&cx, &id, ExecRequest::new(["id", "-u"]).user(user)).await {
        Err(Error::InvalidSpec { field, .. }) if field == "user" => Ok(()),
        Err(error) => bail!("expected InvalidSpec naming `user`, got {error}"),
        // A runtime may start the command and fail it instead, as `docker exec` does.
        Ok(output) => {
            let said = format!("{}{}", output.stdout_lossy(), output.stderr_lossy());
            ensure!(
                !output.status.success() && said.contains(user),
                "as an unknown user the command gave {} with {}",
                output.status,
                show(said.as_bytes())
            );
            Ok(())
        }
    }
}

pub(crate) async fn exec_run_as_user_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let result = cx
        .provider()
        .exec(&id, ExecRequest::new(["id", "-u"]).user("65534"))
        .await;
    expect_unsupported(result, "exec as another user")
}

pub(crate) async fn exec_empty_argv_is_invalid(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let result = cx
        .provider()
        .exec(&id, ExecRequest::new(Vec::<String>::new()))
        .await;
    let error = expect_error(result, "InvalidSpec for an empty argv", |e| {
        matches!(e, Error::InvalidSpec { .. })
    })?;
    if let Error::InvalidSpec { field, .. } = &error {
        ensure!(
            field == "argv",
            "InvalidSpec names `{field}`, expected `argv`"
        );
    }
    Ok(())
}
