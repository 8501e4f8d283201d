//! Watching a directory (`SandboxProvider::watch`): creations, writes, renames and
//! deletions under it, subdirectories with `recursive`, and the end of the watch.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use futures::StreamExt;
use sandkit_core::{Error, FileErrorKind, FileEvent, FileEventKind, FileEvents};

use crate::case::{Cx, expect_error, expect_unsupported};

/// How long the events of one script may take to arrive.
const ARRIVE_WITHIN: Duration = Duration::from_secs(20);

/// Reads events until `last` has arrived (or fails after [`ARRIVE_WITHIN`]).
async fn events_until(events: &mut FileEvents, last: &FileEvent) -> Result<Vec<FileEvent>> {
    let mut seen = Vec::new();
    let started = Instant::now();
    while !seen.contains(last) {
        let left = ARRIVE_WITHIN.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(event)) => seen.push(event?),
            Ok(None) => bail!("the event stream ended; events so far: {seen:?}"),
            Err(_) => bail!("no {last:?} within {ARRIVE_WITHIN:?}; events so far: {seen:?}"),
        }
    }
    Ok(seen)
}

fn event(kind: FileEventKind, path: &str, from: Option<&str>, is_dir: bool) -> FileEvent {
    FileEvent {
        kind,
        path: path.into(),
        from: from.map(Into::into),
        is_dir,
    }
}

pub(crate) async fn watch_reports_changes(cx: Cx) -> Result<()> {
    use FileEventKind::{Created, Deleted, Modified, Renamed};
    let id = cx.sandbox().await?;
    cx.provider()
        .make_dir(&id, "conformance-watched/old")
        .await?;
    let mut events = cx
        .provider()
        .watch(&id, "conformance-watched", true)
        .await?;
    cx.sh(
        &id,
        "cd conformance-watched && printf a > f && mv f g && mkdir d && printf b > d/h \
         && printf c > old/i && rm g",
    )
    .await?;
    let seen = events_until(&mut events, &event(Deleted, "g", None, false)).await?;
    for expected in [
        event(Created, "f", None, false),
        event(Modified, "f", None, false),
        event(Renamed, "g", Some("f"), false),
        event(Created, "d", None, true),
        event(Created, "d/h", None, false),
        event(Created, "old/i", None, false),
    ] {
        ensure!(
            seen.contains(&expected),
            "no {expected:?} among the events: {seen:?}"
        );
    }
    // Without `recursive`, only the directory itself.
    drop(events);
    let mut flat = cx
        .provider()
        .watch(&id, "conformance-watched", false)
        .await?;
    cx.sh(
        &id,
        "cd conformance-watched && printf x > d/deep && printf y > top",
    )
    .await?;
    let seen = events_until(&mut flat, &event(Created, "top", None, false)).await?;
    ensure!(
        !seen.iter().any(|e| e.path.starts_with("d/")),
        "a watch without `recursive` reported a subdirectory's file: {seen:?}"
    );
    Ok(())
}

pub(crate) async fn watch_of_a_file_or_missing_path_is_an_error(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.provider()
        .write_file(&id, "conformance-plain", "x".into())
        .await?;
    for (path, kind) in [
        ("conformance-plain", FileErrorKind::NotADirectory),
        ("conformance-missing", FileErrorKind::NotFound),
    ] {
        expect_error(
            cx.provider().watch(&id, path, false).await.map(|_| ()),
            &format!("FileOperation {kind:?} watching {path}"),
            |e| matches!(e, Error::FileOperation { kind: found, .. } if *found == kind),
        )?;
    }
    Ok(())
}

pub(crate) async fn watch_unsupported(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    expect_unsupported(
        cx.provider().watch(&id, ".", false).await.map(|_| ()),
        "watching files",
    )
}
