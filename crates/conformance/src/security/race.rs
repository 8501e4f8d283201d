//! Symlink-swap races: inside the sandbox a loop swaps a directory `race/d` with a symlink
//! to the host decoy directory, while the host calls the file API on `race/d/...`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{ExecProcess, ExecRequest, SandboxId};

use super::{Decoy, has_program, note, one_file_tar};
use crate::case::{Cx, show};

/// The swap loop with `renameat2(RENAME_EXCHANGE)` through ctypes: argv[1] is the time
/// limit in seconds. Prints `ready`, then `swaps N failed M` when it stops (at the limit
/// or when a file `stop` appears), leaving `d` a directory.
const PYTHON_SWAP: &str = r#"
import ctypes, os, platform, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fn = getattr(libc, "renameat2", None)
nr = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
def swap():
    if fn is not None:
        return fn(-100, b"d", -100, b"l", 2)
    return libc.syscall(nr, -100, b"d", -100, b"l", 2)
end = time.monotonic() + float(sys.argv[1])
n = failed = i = 0
print("ready", flush=True)
while True:
    i += 1
    if i % 64 == 0 and (time.monotonic() > end or os.path.exists("stop")):
        break
    if swap() == 0:
        n += 1
    else:
        failed += 1
        if failed > 1000 and n == 0:
            break
if n % 2 == 1:
    swap()
print("swaps", n, "failed", failed, flush=True)
"#;

/// The same with `mv` and `ln -s`: `d` is a symlink between `ln` and `rm`, and each time
/// it became one counts as a swap. A call that makes missing parents (`write_file`) can
/// make a new directory `d` while the real one is away; it is removed and the real one
/// put back, so the loop goes on swapping instead of stalling. `$1` is the time limit in
/// seconds, `$2` the decoy directory.
const SHELL_SWAP: &str = r#"
end=$(( $(date +%s) + $1 )); n=0
echo ready
while [ ! -e stop ] && [ "$(date +%s)" -lt "$end" ]; do
  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
    if mv d t 2>/dev/null; then
      ln -s "$2" d 2>/dev/null && n=$((n + 1))
      rm -f d 2>/dev/null || rm -rf d
      mv t d
    fi
  done
done
[ -d d ] || { [ -d t ] && rm -f d && mv t d; }
echo swaps "$n" failed 0
"#;

/// The file-API call each race repeats.
#[derive(Clone, Copy)]
enum Op {
    Write,
    Read,
    Download,
    Upload,
}

pub(crate) async fn race_write_file(cx: Cx) -> Result<()> {
    race(cx, Op::Write).await
}

pub(crate) async fn race_read_file(cx: Cx) -> Result<()> {
    race(cx, Op::Read).await
}

pub(crate) async fn race_download_archive(cx: Cx) -> Result<()> {
    race(cx, Op::Download).await
}

pub(crate) async fn race_upload_archive(cx: Cx) -> Result<()> {
    race(cx, Op::Upload).await
}

/// What the host side saw.
#[derive(Default)]
struct Tally {
    attempts: u32,
    succeeded: u32,
    refused: u32,
    leaks: Vec<String>,
    /// A call that did not answer within [`CALL_TIMEOUT`] (the race stops there).
    hung: Option<String>,
}

/// How long one racing call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The least time the calls race the swap loop, however fast they are: on an agent a
/// few hundred calls take well under a second, which can pass before the loop's first
/// swap, and such a race proves nothing.
const LEAST_RACE: Duration = Duration::from_secs(2);

async fn race(cx: Cx, op: Op) -> Result<()> {
    let settings = cx.suite().security.clone();
    let decoy = Decoy::create(&settings.decoy_parent)?;
    let id = cx.sandbox().await?;
    cx.sh(
        &id,
        &format!(
            "mkdir -p race/d/sub && printf inside > race/d/f && printf inside > race/d/sub/f && ln -s '{}' race/l",
            decoy.dir_str()
        ),
    )
    .await?;
    let limit = settings.race_time_limit;
    let loop_secs = (limit + Duration::from_secs(30)).as_secs();
    let python = has_program(&cx, &id, "python3").await
        && cx
            .run(&id, ExecRequest::new(["python3", "-c", "import ctypes"]))
            .await
            .is_ok_and(|o| o.status.success());
    let (kind, request) = if python {
        (
            "python3 renameat2(RENAME_EXCHANGE)",
            ExecRequest::new(["python3", "-c", PYTHON_SWAP, &loop_secs.to_string()]),
        )
    } else {
        (
            "sh mv/ln -s loop (no python3 inside; races less well)",
            ExecRequest::new([
                "sh",
                "-c",
                SHELL_SWAP,
                "swap",
                &loop_secs.to_string(),
                &decoy.dir_str(),
            ]),
        )
    };
    let mut swapper = cx.start(&id, request.cwd("race")).await?;
    let mut seen = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        wait_for_line(&mut swapper, &mut seen, "ready"),
    )
    .await
    .context("the swap loop did not start within 60 s")??;

    let tally = hammer(&cx, &id, op, &decoy, settings.race_attempts, limit).await;

    let _ = cx.sh(&id, "touch race/stop").await;
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        wait_for_line(&mut swapper, &mut seen, "swaps").await?;
        drop(swapper.wait().await);
        anyhow::Ok(())
    })
    .await;
    let swaps = seen
        .lines()
        .find_map(|line| line.strip_prefix("swaps "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    note(
        &cx,
        format!(
            "{} attempts ({} succeeded, {} refused), swap loop: {kind}, {} swaps",
            tally.attempts,
            tally.succeeded,
            tally.refused,
            swaps.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
        ),
    );
    if let Some(hung) = &tally.hung {
        bail!(
            "a racing call hung: {hung} (after {} calls)",
            tally.attempts
        );
    }
    ensure!(
        tally.leaks.is_empty(),
        "{} of {} calls returned the host decoy's content, e.g. {}",
        tally.leaks.len(),
        tally.attempts,
        tally.leaks[0]
    );
    decoy
        .check_untouched()
        .with_context(|| format!("after {} racing calls", tally.attempts))?;
    match (finished, swaps) {
        (Err(_), _) => bail!("the swap loop did not stop within 60 s of being told to"),
        (Ok(Err(error)), _) => bail!("the swap loop's output ended early: {error:#}; saw {seen:?}"),
        (Ok(Ok(())), None) => bail!("the swap loop did not report its count; saw {seen:?}"),
        (Ok(Ok(())), Some(0)) => {
            bail!("the swap loop ({kind}) made no swap, so the race proved nothing; saw {seen:?}")
        }
        (Ok(Ok(())), Some(_)) => {}
    }
    ensure!(tally.attempts > 0, "no racing call was made");
    Ok(())
}

/// Reads the command's stdout into `seen` until a line starting with `prefix` arrives.
async fn wait_for_line(process: &mut ExecProcess, seen: &mut String, prefix: &str) -> Result<()> {
    loop {
        if seen.lines().any(|line| line.starts_with(prefix)) {
            return Ok(());
        }
        match process.stdout.next().await {
            Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Some(Err(error)) => bail!("reading the swap loop's output: {error}"),
            None => {
                let mut stderr = Vec::new();
                while let Some(Ok(chunk)) = process.stderr.next().await {
                    stderr.extend_from_slice(&chunk);
                }
                bail!(
                    "the swap loop's output ended before `{prefix}`; stderr {}",
                    show(&stderr)
                )
            }
        }
    }
}

/// Calls the file API on `race/d/...` until `attempts` calls or `limit` have passed.
async fn hammer(
    cx: &Cx,
    id: &SandboxId,
    op: Op,
    decoy: &Decoy,
    attempts: u32,
    limit: Duration,
) -> Tally {
    let provider = cx.bare();
    let started = Instant::now();
    let mut tally = Tally::default();
    while (tally.attempts < attempts || started.elapsed() < LEAST_RACE.min(limit))
        && started.elapsed() < limit
    {
        let n = tally.attempts;
        tally.attempts += 1;
        let dir = if n % 2 == 0 { "race/d" } else { "race/d/sub" };
        let call = async {
            match op {
                Op::Write => {
                    let path = if n % 2 == 0 {
                        "race/d/f".to_owned()
                    } else {
                        format!("race/d/new-{n}")
                    };
                    let result = provider
                        .write_file(id, &path, Bytes::from(format!("host write {n}")))
                        .await;
                    (format!("write_file {path}"), result.map(|()| None))
                }
                Op::Read => {
                    let path = format!("{dir}/f");
                    let result = provider.read_file(id, &path).await;
                    (format!("read_file {path}"), result.map(Some))
                }
                Op::Download => {
                    let result = provider.download_archive(id, dir).await;
                    (format!("download_archive {dir}"), result.map(Some))
                }
                Op::Upload => {
                    let result = match one_file_tar(&format!("up-{n}.txt"), b"uploaded") {
                        Ok(tar) => provider.upload_archive(id, dir, tar).await,
                        Err(error) => Err(sandkit_core::Error::file(
                            dir,
                            sandkit_core::FileErrorKind::Other(error.to_string()),
                        )),
                    };
                    (format!("upload_archive {dir}"), result.map(|()| None))
                }
            }
        };
        let (what, result): (String, sandkit_core::Result<Option<Bytes>>) =
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(done) => done,
                Err(_) => {
                    tally.hung = Some(format!("call {n} did not answer within {CALL_TIMEOUT:?}"));
                    break;
                }
            };
        match result {
            Ok(bytes) => {
                tally.succeeded += 1;
                if bytes.is_some_and(|b| decoy.leaked(&b)) {
                    tally.leaks.push(format!("call {n}: {what}"));
                }
            }
            Err(_) => tally.refused += 1,
        }
    }
    tally
}
