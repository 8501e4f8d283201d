//! Watching a directory through the agent: one connection per watch, whose replies
//! become the event stream; dropping the stream closes it, which ends the watch.

use sandkit_agent::protocol::{self, Reply, Request, WatchEventKind};
use sandkit_core::{Error, FileEvent, FileEventKind, FileEvents, Result};

use crate::Agent;

impl Agent {
    /// Watches `path` (as the sandbox sees it; `shown` as the caller named it, for
    /// errors), and its subdirectories when `recursive`.
    pub async fn watch(&self, path: String, recursive: bool, shown: String) -> Result<FileEvents> {
        let connection = self
            .blocking(move |agent| {
                let stream = agent.open(&Request::Watch { path, recursive }, &[])?;
                match protocol::receive::<Reply>(&stream)
                    .map_err(|e| agent.failed(&e))?
                    .0
                {
                    Reply::Watching => {}
                    Reply::Error { kind, message } => {
                        return Err(crate::files::file_error(&shown, kind, message));
                    }
                    other => return Err(agent.unexpected(&other)),
                }
                // Events may be far apart.
                agent.long_lived(stream, "watching a directory")
            })
            .await?;
        let provider = self.provider();
        let events = futures::stream::unfold(connection, move |mut connection| async move {
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
                        let error = Error::provider(provider, std::io::Error::other(message));
                        return Some((Err(error), connection));
                    }
                    _ => continue,
                }
            }
        });
        Ok(Box::pin(events))
    }
}
