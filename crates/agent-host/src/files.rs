//! A sandbox's files through its agent, which opens them inside the sandbox: one
//! connection per request; contents stream through a pipe made here, and a listing
//! carries every entry's metadata, so a directory and its stats are one round trip.
//!
//! Each method takes the path as the sandbox sees it (absolute) and the path as the
//! caller named it, `shown`, which errors name.

use std::os::fd::{AsFd, OwnedFd};

use futures::StreamExt;
use sandkit_agent::protocol::{self, ErrorKind, PathInfo, PathKind, Reply, Request};
use sandkit_core::{ByteStream, DirEntry, Error, FileErrorKind, FileKind, FileStat, Result};
use tokio::io::AsyncWriteExt;

use crate::Agent;

/// The caller's error for the agent's failure `kind` on the path shown as `shown`.
pub(crate) fn file_error(shown: &str, kind: ErrorKind, message: String) -> Error {
    let kind = match kind {
        ErrorKind::NotFound => FileErrorKind::NotFound,
        ErrorKind::NotADirectory => FileErrorKind::NotADirectory,
        ErrorKind::IsADirectory => FileErrorKind::IsADirectory,
        ErrorKind::PermissionDenied => FileErrorKind::PermissionDenied,
        ErrorKind::AlreadyExists => FileErrorKind::AlreadyExists,
        ErrorKind::DirectoryNotEmpty => FileErrorKind::DirectoryNotEmpty,
        _ => FileErrorKind::Other(message),
    };
    Error::file(shown, kind)
}

fn kind_of(kind: PathKind) -> FileKind {
    match kind {
        PathKind::File => FileKind::File,
        PathKind::Directory => FileKind::Directory,
        PathKind::Symlink => FileKind::Symlink,
        PathKind::Other => FileKind::Other,
    }
}

impl Agent {
    /// Sends a file request with `fds` and reads its first answer, which must be
    /// `file-opened` (or the error about the path); returns the connection, made
    /// asynchronous and without a read timeout (a large file takes its time).
    async fn open_file(
        &self,
        request: Request,
        fds: Vec<OwnedFd>,
        shown: &str,
    ) -> Result<tokio::net::UnixStream> {
        let shown = shown.to_owned();
        self.blocking(move |agent| {
            let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            let stream = agent.open(&request, &borrowed)?;
            // The agent holds its own copies now: ours must close, or the pipe never ends.
            drop(fds);
            match protocol::receive::<Reply>(&stream)
                .map_err(|e| agent.failed(&e))?
                .0
            {
                Reply::FileOpened { .. } => {}
                Reply::Error { kind, message } => return Err(file_error(&shown, kind, message)),
                other => return Err(agent.unexpected(&other)),
            }
            agent.long_lived(stream, "moving a file")
        })
        .await
    }

    /// The agent's last word on a file request, once its contents have moved.
    async fn finished(&self, mut connection: tokio::net::UnixStream, shown: &str) -> Result<()> {
        match crate::exec::next_reply(&mut connection).await {
            Some(Reply::Done) => Ok(()),
            Some(Reply::Error { kind, message }) => Err(file_error(shown, kind, message)),
            Some(other) => Err(self.unexpected(&other)),
            None => Err(Error::Unavailable {
                message: "the sandbox's agent went away during a file transfer".to_owned(),
            }),
        }
    }

    /// A regular file's contents as a stream (symlinks followed); errors about the path
    /// come before the first chunk, and one that cuts the copy short ends the stream.
    pub async fn read_file_stream(&self, path: String, shown: &str) -> Result<ByteStream> {
        let (contents, write_end) = self.output_pipe()?;
        let connection = self
            .open_file(Request::ReadFile { path }, vec![write_end], shown)
            .await?;
        let (agent, shown) = (self.clone(), shown.to_owned());
        let last = futures::stream::once(async move { agent.finished(connection, &shown).await })
            .filter_map(|end| async move { end.err().map(Err) });
        Ok(contents.chain(last).boxed())
    }

    /// Creates or replaces a regular file from `contents`, making missing parents: whole
    /// or not at all (a failing `contents` is the error, and leaves the file as it was).
    pub async fn write_file_stream(
        &self,
        path: String,
        shown: &str,
        mut contents: ByteStream,
    ) -> Result<()> {
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| self.internal("creating a pipe", e.into()))?;
        let mut sink = tokio::net::unix::pipe::Sender::from_owned_fd(write_end)
            .map_err(|e| self.internal("watching a pipe", e))?;
        let connection = self
            .open_file(Request::WriteFile { path }, vec![read_end], shown)
            .await?;
        while let Some(chunk) = contents.next().await {
            // A failing source leaves the file as far as it got, and says why.
            let chunk = chunk?;
            if let Err(e) = sink.write_all(&chunk).await {
                // The agent closed its end: its answer says what went wrong.
                drop(sink);
                self.finished(connection, shown).await?;
                return Err(self.internal("writing a file", e));
            }
        }
        drop(sink);
        // Every byte is in: the agent may put the file in place.
        let mut connection = connection;
        let commit = protocol::encode(&Request::Commit);
        if let Err(e) = connection.write_all(&commit).await {
            return Err(self.internal("finishing a file", e));
        }
        self.finished(connection, shown).await
    }

    /// Metadata of `path`, not following a final symlink.
    pub async fn stat(&self, path: String, shown: &str) -> Result<FileStat> {
        match self.request(Request::Stat { path }).await? {
            Reply::PathInfo(PathInfo {
                kind,
                size,
                mode,
                modified_secs,
            }) => Ok(FileStat {
                kind: kind_of(kind),
                size_bytes: size,
                mode,
                modified_unix_secs: modified_secs,
            }),
            Reply::Error { kind, message } => Err(file_error(shown, kind, message)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// A directory's entries with their metadata, sorted by name.
    pub async fn list_dir(&self, path: String, shown: &str) -> Result<Vec<DirEntry>> {
        let shown = shown.to_owned();
        let mut entries = self
            .blocking(move |agent| {
                let stream = agent.open(&Request::ListDir { path }, &[])?;
                let mut entries = Vec::new();
                loop {
                    match protocol::receive::<Reply>(&stream)
                        .map_err(|e| agent.failed(&e))?
                        .0
                    {
                        Reply::Entries { entries: some } => {
                            entries.extend(some.into_iter().map(|entry| DirEntry {
                                name: entry.name,
                                kind: kind_of(entry.kind),
                                size_bytes: entry.size,
                            }));
                        }
                        Reply::Done => return Ok(entries),
                        Reply::Error { kind, message } => {
                            return Err(file_error(&shown, kind, message));
                        }
                        other => return Err(agent.unexpected(&other)),
                    }
                }
            })
            .await?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Creates a directory and its missing parents; an existing directory is fine.
    pub async fn make_dir(&self, path: String, shown: &str) -> Result<()> {
        self.file_command(Request::MakeDir { path }, shown).await
    }

    /// Removes a file, a symlink, or a directory (with its contents when `recursive`).
    pub async fn remove(&self, path: String, recursive: bool, shown: &str) -> Result<()> {
        self.file_command(Request::Remove { path, recursive }, shown)
            .await
    }

    async fn file_command(&self, request: Request, shown: &str) -> Result<()> {
        match self.request(request).await? {
            Reply::Done => Ok(()),
            Reply::Error { kind, message } => Err(file_error(shown, kind, message)),
            other => Err(self.unexpected(&other)),
        }
    }
}
