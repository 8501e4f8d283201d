//! Watching a directory through the agent: one connection per watch, whose replies
//! become the event stream; dropping the stream closes it, which ends the watch.

use std::path::PathBuf;

use sandkit_agent::protocol::{Reply, WatchEventKind};
use sandkit_core::{
    Error, FileErrorKind, FileEvent, FileEventKind, FileEvents, FileKind, Result, SandboxId,
};

use crate::agent;
use crate::error::internal;
use crate::provider::{LocalProcessProvider, blocking};

impl LocalProcessProvider {
    /// [`sandkit_core::SandboxProvider::watch`].
    pub(crate) async fn watch_dir(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<FileEvents> {
        let (record, layout) = self.live(id).await?;
        let fs = self.files_of(id, "watch").await?;
        let relative = fs.relative(path)?;
        let shown = path.to_owned();
        match blocking(move || fs.kind_following(&shown)).await? {
            FileKind::Directory => {}
            _ => return Err(Error::file(path, FileErrorKind::NotADirectory)),
        }
        // The agent resolves the path in the sandbox's own view of its files.
        let seen: PathBuf = layout.seen_root(&record).join(relative);
        let socket = layout.socket.clone();
        let shown = path.to_owned();
        let connection = blocking(move || {
            let stream = agent::watch(&socket, &seen.display().to_string(), recursive, &shown)?;
            // Events may be far apart: no read timeout from here on.
            stream
                .set_read_timeout(None)
                .and_then(|()| stream.set_nonblocking(true))
                .and_then(|()| tokio::net::UnixStream::from_std(stream))
                .map_err(|e| internal("watching a directory", e))
        })
        .await?;
        let events = futures::stream::unfold(connection, |mut connection| async move {
            loop {
                match crate::exec::next_reply(&mut connection).await? {
                    Reply::FileEvent {
                        kind,
                        path,
                        from,
                        is_dir,
                    } => {
                        let kind = match kind {
                            WatchEventKind::Created => FileEventKind::Created,
                            WatchEventKind::Modified => FileEventKind::Modified,
                            WatchEventKind::Deleted => FileEventKind::Deleted,
                            WatchEventKind::Renamed => FileEventKind::Renamed,
                        };
                        let event = FileEvent {
                            kind,
                            path,
                            from,
                            is_dir,
                        };
                        return Some((Ok(event), connection));
                    }
                    Reply::Error { message, .. } => {
                        let error = Error::provider(crate::NAME, std::io::Error::other(message));
                        return Some((Err(error), connection));
                    }
                    _ => continue,
                }
            }
        });
        Ok(Box::pin(events))
    }
}
