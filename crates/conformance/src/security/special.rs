//! Special files made inside the sandbox: FIFOs, character devices and sockets must be
//! typed file errors, quickly, never a hang or an endless read; a 1 GiB sparse file copied
//! out must not be held in host memory.

use std::io::Read;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use sandkit_core::{Error, FileErrorKind, SandboxId};

use super::escapes::guarded;
use super::{has_program, note};
use crate::case::{Cx, shorten, skip};

/// How long a call on a special file may take.
const QUICK: Duration = Duration::from_secs(10);

/// What one call on a special file did.
enum Answer {
    /// A typed file error.
    Refused,
    /// Bytes (file contents or an archive).
    Data(Bytes),
    /// Anything else, described.
    Wrong(String),
}

async fn answer(
    what: &str,
    call: impl std::future::Future<Output = sandkit_core::Result<Bytes>>,
) -> Answer {
    match tokio::time::timeout(QUICK, guarded(call)).await {
        Err(_) => Answer::Wrong(format!("{what} hung (no answer within {QUICK:?})")),
        Ok(Err(panic)) => Answer::Wrong(format!("{what} panicked: {panic}")),
        Ok(Ok(Err(Error::FileOperation { .. }))) => Answer::Refused,
        Ok(Ok(Err(error))) => Answer::Wrong(format!(
            "{what}: expected a FileOperation error, got {} error: {}",
            error.kind(),
            shorten(&error.to_string(), 120)
        )),
        Ok(Ok(Ok(bytes))) => Answer::Data(bytes),
    }
}

/// `read_file` must refuse.
async fn read_refused(cx: &Cx, id: &SandboxId, path: &str, problems: &mut Vec<String>) {
    let what = format!("read_file `{path}`");
    match answer(&what, cx.bare().read_file(id, path)).await {
        Answer::Refused => {}
        Answer::Data(bytes) => problems.push(format!(
            "{what} returned {} bytes instead of a FileOperation error",
            bytes.len()
        )),
        Answer::Wrong(message) => problems.push(message),
    }
}

/// `download_archive` must refuse, or give an archive in which the special file is a bare
/// header (tar records FIFOs and devices without reading them) and no entry has data.
async fn archive_harmless(cx: &Cx, id: &SandboxId, path: &str, problems: &mut Vec<String>) {
    let what = format!("download_archive `{path}`");
    match answer(&what, cx.bare().download_archive(id, path)).await {
        Answer::Refused => {}
        Answer::Wrong(message) => problems.push(message),
        Answer::Data(bytes) => {
            let mut archive = tar::Archive::new(bytes.as_ref());
            let Ok(entries) = archive.entries() else {
                problems.push(format!("{what} returned bytes that are not a tar archive"));
                return;
            };
            for entry in entries {
                let Ok(mut entry) = entry else {
                    problems.push(format!("{what} returned a broken tar archive"));
                    return;
                };
                let mut sink = Vec::new();
                let _ = entry.read_to_end(&mut sink);
                if !sink.is_empty() {
                    problems.push(format!(
                        "{what} archived {} bytes of data from a special file",
                        sink.len()
                    ));
                }
            }
        }
    }
}

/// Runs a setup script; `None` (with stderr) when the sandbox cannot.
async fn try_sh(cx: &Cx, id: &SandboxId, script: &str) -> Option<String> {
    match cx.sh(id, script).await {
        Ok(_) => None,
        Err(error) => Some(format!("{error:#}")),
    }
}

pub(crate) async fn special_fifo(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    if let Some(why) = try_sh(
        &cx,
        &id,
        "mkfifo fifo && mkdir -p fifodir && mkfifo fifodir/inner",
    )
    .await
    {
        return Err(skip(format!("the sandbox cannot make a FIFO: {why}")));
    }
    let mut problems = Vec::new();
    read_refused(&cx, &id, "fifo", &mut problems).await;
    if cx.caps().batch_transfer {
        archive_harmless(&cx, &id, "fifo", &mut problems).await;
        archive_harmless(&cx, &id, "fifodir", &mut problems).await;
    }
    // A provider stuck opening a FIFO is released: opening it read-write never blocks.
    let _ = tokio::time::timeout(
        QUICK,
        cx.sh(&id, "exec 3<>fifo; exec 4<>fifodir/inner; sleep 1"),
    )
    .await;
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

pub(crate) async fn special_char_device(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let mut paths = vec!["/dev/null".to_owned()];
    if try_sh(&cx, &id, "ln -s /dev/null devnull-link")
        .await
        .is_none()
    {
        paths.push("devnull-link".to_owned());
    }
    let made_node = try_sh(&cx, &id, "mknod chardev c 1 3").await.is_none();
    if made_node {
        paths.push("chardev".to_owned());
    }
    // /dev/zero and /dev/urandom are left out on purpose: a provider that reads them to the
    // end would fill the host's memory before any timeout.
    let mut problems = Vec::new();
    for path in &paths {
        read_refused(&cx, &id, path, &mut problems).await;
    }
    note(
        &cx,
        format!(
            "character devices tried: {paths:?}{}",
            if made_node {
                ""
            } else {
                " (mknod is not permitted inside)"
            }
        ),
    );
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

pub(crate) async fn special_socket(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    if !has_program(&cx, &id, "python3").await {
        return Err(skip(
            "no python3 inside to bind a Unix socket (busybox nc cannot)",
        ));
    }
    cx.sh(
        &id,
        "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(\"sock\")' && test -S sock",
    )
    .await?;
    let mut problems = Vec::new();
    read_refused(&cx, &id, "sock", &mut problems).await;
    if cx.caps().batch_transfer {
        archive_harmless(&cx, &id, "sock", &mut problems).await;
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}

/// 1 GiB.
const SPARSE_BYTES: u64 = 1 << 30;
/// Most bytes a copy-out may hold at once.
const HELD_LIMIT: u64 = 256 << 20;

/// The peak resident memory of this process so far, in bytes (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How copying a file out went: the bytes the host held at once, or a typed refusal.
enum CopyOut {
    Held(u64),
    Refused(Error),
}

/// Copies `path` out through the streaming API (a file read, or an archive when the
/// provider has no file operations), consuming it chunk by chunk: what counts is the
/// largest chunk held at once.
async fn copy_out(cx: &Cx, id: &SandboxId, path: &str) -> Result<CopyOut> {
    use futures::StreamExt;
    let copy = async {
        let mut stream = if cx.caps().files {
            cx.bare().read_file_stream(id, path).await?
        } else {
            cx.bare().download_archive_stream(id, path).await?
        };
        let (mut largest, mut total) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            largest = largest.max(chunk.len() as u64);
            total += chunk.len() as u64;
        }
        Ok::<_, Error>((largest, total))
    };
    match tokio::time::timeout(Duration::from_secs(180), copy).await {
        Err(_) => bail!("copying `{path}` out did not finish within 180 s"),
        Ok(Ok((largest, total))) => {
            ensure!(
                total >= SPARSE_BYTES || !cx.caps().files,
                "streaming `{path}` out gave {total} bytes, expected {SPARSE_BYTES}"
            );
            Ok(CopyOut::Held(largest))
        }
        Ok(Err(
            error @ (Error::FileOperation { .. }
            | Error::ResourceLimitExceeded { .. }
            | Error::InvalidSpec { .. }),
        )) => Ok(CopyOut::Refused(error)),
        Ok(Err(error)) => bail!(
            "copying `{path}` out: expected the contents or a typed refusal, got {} error: {error}",
            error.kind()
        ),
    }
}

pub(crate) async fn sparse_1gib_copy_out(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let made = try_sh(
        &cx,
        &id,
        "truncate -s 1G sparse 2>/dev/null || dd if=/dev/zero of=sparse bs=1 count=0 seek=1073741824",
    )
    .await;
    if let Some(why) = made {
        return Err(skip(format!(
            "the sandbox cannot make a sparse file: {why}"
        )));
    }
    if cx.caps().files {
        let stat = cx
            .bare()
            .stat(&id, "sparse")
            .await
            .map_err(|e| anyhow::anyhow!("stat sparse: {e}"))?;
        ensure!(
            stat.size_bytes == SPARSE_BYTES,
            "the sparse file is {} bytes, expected 1 GiB",
            stat.size_bytes
        );
    }
    let before = peak_rss();
    let outcome = copy_out(&cx, &id, "sparse").await?;
    let grew = before.zip(peak_rss()).map(|(b, a)| a.saturating_sub(b));
    let grew_text = grew.map_or_else(|| "unknown".to_owned(), |g| format!("{} MiB", g >> 20));
    match outcome {
        CopyOut::Refused(error) => {
            note(
                &cx,
                format!("refused with a typed error: {error}; peak RSS grew {grew_text}"),
            );
            if let Error::FileOperation { kind, .. } = &error {
                ensure!(
                    *kind != FileErrorKind::NotFound,
                    "the sparse file exists, but copying it out says: {error}"
                );
            }
        }
        CopyOut::Held(held) => {
            note(
                &cx,
                format!(
                    "the largest chunk held at once was {} MiB; peak RSS grew {grew_text}",
                    held >> 20
                ),
            );
            ensure!(
                held <= HELD_LIMIT,
                "copying out a 1 GiB sparse file held {} MiB in host memory at once (limit {} MiB)",
                held >> 20,
                HELD_LIMIT >> 20
            );
        }
    }
    if let Some(grew) = grew {
        ensure!(
            grew <= 2 * HELD_LIMIT,
            "copying out a 1 GiB sparse file raised this process's peak memory by {} MiB",
            grew >> 20
        );
    }
    Ok(())
}
