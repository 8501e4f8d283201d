//! Streaming transfers through the engine's archive API, so no file or archive is ever
//! held whole on the host.
//!
//! - Reads: the engine sends a tar archive of the path; its first entry's headers (with
//!   PAX and GNU long-name records) are parsed as they arrive, and the entry's data is
//!   handed on chunk by chunk as the engine sends it. Errors about the path (missing, a
//!   directory, not a regular file) come before the first chunk; the rest of the archive
//!   is never read.
//! - Writes: a tar header must carry the size, and a stream does not say it. So a stream
//!   is spooled first: up to [`SPOOL_IN_MEMORY`] in memory, beyond that into an unlinked
//!   temporary file on the host (bounded memory, any size), which is then streamed to the
//!   engine as header, contents, padding and end-of-archive blocks.
//! - Archives pass through in both directions as they come.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sandkit_core::{ByteStream, Error, FileErrorKind, Result};
use tokio::io::AsyncReadExt;

use crate::error::{self, Subject};
use crate::files::{Files, MAX_SYMLINK_HOPS, link_destination, now_unix_secs, split_parent};

/// The tar block size.
const BLOCK: usize = 512;
/// Largest PAX or GNU long-name record accepted from the engine.
const MAX_META_BYTES: u64 = 1 << 20;
/// A streamed write is kept in memory up to this size; larger ones are spooled to a
/// temporary file on the host.
pub(crate) const SPOOL_IN_MEMORY: usize = 8 << 20;
/// Chunk size when a spooled file is written and streamed to the engine.
const SPOOL_CHUNK: usize = 256 << 10;
/// Chunks queued for the spool writer.
const SPOOL_QUEUE: usize = 16;

/// The engine's archive stream.
type EngineStream =
    Pin<Box<dyn Stream<Item = std::result::Result<Bytes, bollard::errors::Error>> + Send>>;
/// A request body.
type BodyStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The contents of a file about to be written.
pub(crate) enum Contents {
    /// Held in memory.
    Memory(Bytes),
    /// Spooled to an unlinked temporary file of `size` bytes.
    Spool {
        /// The file, read from its start for every upload.
        file: std::fs::File,
        /// How many bytes were spooled.
        size: u64,
    },
}

impl Contents {
    fn size(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::Spool { size, .. } => *size,
        }
    }

    /// The contents as a fresh stream (a spool is read again from its start).
    fn stream(&self) -> std::io::Result<BodyStream> {
        match self {
            Self::Memory(bytes) => {
                let bytes = bytes.clone();
                Ok(Box::pin(futures::stream::once(async move { Ok(bytes) })))
            }
            Self::Spool { file, size } => {
                let mut file = file.try_clone()?;
                file.seek(SeekFrom::Start(0))?;
                let file = tokio::fs::File::from_std(file).take(*size);
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    file,
                    SPOOL_CHUNK,
                )))
            }
        }
    }
}

/// Collects a stream of file contents: in memory while small, then into a temporary file.
async fn spool(mut stream: ByteStream, shown: &str) -> Result<Contents> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut held = 0usize;
    while held <= SPOOL_IN_MEMORY {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                held += chunk.len();
                chunks.push(chunk);
            }
            None => {
                return Ok(Contents::Memory(match chunks.len() {
                    0 => Bytes::new(),
                    1 => chunks.remove(0),
                    _ => {
                        let mut all = BytesMut::with_capacity(held);
                        chunks.iter().for_each(|chunk| all.extend_from_slice(chunk));
                        all.freeze()
                    }
                }));
            }
        }
    }
    let spool_error = |e: std::io::Error| {
        Error::file(
            shown,
            FileErrorKind::Other(format!("spooling the upload on the host: {e}")),
        )
    };
    let file = tokio::task::spawn_blocking(anonymous_temp_file)
        .await
        .map_err(|e| spool_error(std::io::Error::other(e.to_string())))?
        .map_err(spool_error)?;
    // One blocking writer takes chunks through a short queue while the stream is read.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(SPOOL_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let mut writer = std::io::BufWriter::with_capacity(SPOOL_CHUNK, file);
        let mut size = 0u64;
        while let Some(chunk) = receiver.blocking_recv() {
            writer.write_all(&chunk)?;
            size += chunk.len() as u64;
        }
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        Ok::<_, std::io::Error>((file, size))
    });
    let mut stream_error = None;
    let mut queued = futures::stream::iter(chunks.into_iter().map(Ok)).chain(stream);
    while let Some(chunk) = queued.next().await {
        match chunk {
            // A closed queue means the writer failed; its error is reported below.
            Ok(chunk) => {
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                stream_error = Some(error);
                break;
            }
        }
    }
    drop(sender);
    let written = writer
        .await
        .map_err(|e| spool_error(std::io::Error::other(e.to_string())))?;
    if let Some(error) = stream_error {
        return Err(error);
    }
    let (file, size) = written.map_err(spool_error)?;
    Ok(Contents::Spool { file, size })
}

/// A new temporary file, already unlinked: it goes when its last descriptor closes.
fn anonymous_temp_file() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!(
        ".sandkit-docker-upload-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// The tar header (with a GNU long-name record when `name` needs one) of a regular file of
/// `size` bytes, mode 0644.
fn file_header(name: &str, size: u64, shown: &str) -> Result<Bytes> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(now_unix_secs());
    let mut builder = tar::Builder::new(Vec::new());
    // No data is given, so the builder writes only the header blocks (and, at the end,
    // the two end-of-archive blocks, cut off here).
    let mut blocks = builder
        .append_data(&mut header, name, std::io::empty())
        .and_then(|()| builder.into_inner())
        .map_err(|e| Error::file(shown, FileErrorKind::Other(format!("archiving: {e}"))))?;
    blocks.truncate(blocks.len().saturating_sub(2 * BLOCK));
    Ok(Bytes::from(blocks))
}

/// A one-file tar archive as a stream: `header`, the contents, padding, end blocks.
fn file_tar(header: Bytes, contents: &Contents) -> std::io::Result<BodyStream> {
    let size = contents.size();
    let padding = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
    let tail = Bytes::from(vec![0u8; padding + 2 * BLOCK]);
    Ok(Box::pin(
        futures::stream::once(async move { Ok(header) })
            .chain(contents.stream()?)
            .chain(futures::stream::once(async move { Ok(tail) })),
    ))
}

/// The first entry of an archive, as its headers say.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    File {
        size: u64,
    },
    Directory,
    Symlink(String),
    Other,
    /// The archive has no entry.
    End,
}

/// Reads an archive from the engine as it streams.
struct TarIn {
    stream: EngineStream,
    pending: Bytes,
    sandbox: String,
    shown: String,
}

impl TarIn {
    fn new(stream: EngineStream, sandbox: &str, shown: &str) -> Self {
        Self {
            stream,
            pending: Bytes::new(),
            sandbox: sandbox.to_owned(),
            shown: shown.to_owned(),
        }
    }

    fn map(&self, e: bollard::errors::Error) -> Error {
        error::map(
            e,
            Subject::Path {
                sandbox: &self.sandbox,
                path: &self.shown,
            },
        )
    }

    fn bad(&self, why: impl std::fmt::Display) -> Error {
        Error::file(
            &self.shown,
            FileErrorKind::Other(format!("unreadable archive from the engine: {why}")),
        )
    }

    /// Up to `max` bytes (at least one when `max` > 0), or `None` at the end of the stream.
    async fn chunk(&mut self, max: u64) -> Result<Option<Bytes>> {
        while self.pending.is_empty() {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Err(self.map(e)),
            }
        }
        let take = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.pending.len());
        Ok(Some(self.pending.split_to(take)))
    }

    /// Exactly `n` bytes, or `None` when the stream ends before the first of them.
    async fn exact(&mut self, n: usize) -> Result<Option<BytesMut>> {
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            match self.chunk((n - out.len()) as u64).await? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None if out.is_empty() => return Ok(None),
                None => return Err(self.bad("it ends inside a header")),
            }
        }
        Ok(Some(out))
    }

    async fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            match self.chunk(n).await? {
                Some(chunk) => n -= chunk.len() as u64,
                None => return Err(self.bad("it ends inside a record")),
            }
        }
        Ok(())
    }

    /// Reads headers up to the first real entry (PAX and GNU long-name records apply
    /// to it), leaving the stream at its data.
    async fn first_entry(&mut self) -> Result<Head> {
        let mut pax_size: Option<u64> = None;
        let mut long_link: Option<String> = None;
        loop {
            let Some(block) = self.exact(BLOCK).await? else {
                return Ok(Head::End);
            };
            if block.iter().all(|b| *b == 0) {
                return Ok(Head::End);
            }
            let header = tar::Header::from_byte_slice(&block);
            let size = header.entry_size().map_err(|e| self.bad(e))?;
            let kind = header.entry_type();
            match kind {
                tar::EntryType::XHeader
                | tar::EntryType::XGlobalHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => {
                    if size > MAX_META_BYTES {
                        return Err(self.bad(format!("a {size}-byte header record")));
                    }
                    let data = self
                        .exact(size as usize)
                        .await?
                        .ok_or_else(|| self.bad("it ends inside a record"))?;
                    self.skip(size.next_multiple_of(BLOCK as u64) - size)
                        .await?;
                    if kind == tar::EntryType::XHeader {
                        for extension in tar::PaxExtensions::new(&data) {
                            let extension = extension.map_err(|e| self.bad(e))?;
                            let value = || String::from_utf8_lossy(extension.value_bytes());
                            match extension.key() {
                                Ok("size") => {
                                    pax_size = Some(
                                        value()
                                            .trim()
                                            .parse()
                                            .map_err(|e| self.bad(format!("PAX size: {e}")))?,
                                    );
                                }
                                Ok("linkpath") => long_link = Some(value().into_owned()),
                                _ => {}
                            }
                        }
                    } else if kind == tar::EntryType::GNULongLink {
                        let link = data[..].split(|b| *b == 0).next().unwrap_or_default();
                        long_link = Some(String::from_utf8_lossy(link).into_owned());
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    return Ok(Head::File {
                        size: pax_size.unwrap_or(size),
                    });
                }
                tar::EntryType::Directory => return Ok(Head::Directory),
                tar::EntryType::Symlink => {
                    let target = long_link.or_else(|| {
                        header
                            .link_name_bytes()
                            .map(|link| String::from_utf8_lossy(&link).into_owned())
                    });
                    return Ok(Head::Symlink(target.unwrap_or_default()));
                }
                _ => return Ok(Head::Other),
            }
        }
    }

    /// The next `size` bytes (the entry's data) as a stream of the engine's chunks.
    fn into_data(self, size: u64) -> ByteStream {
        Box::pin(futures::stream::try_unfold(
            (self, size),
            |(mut tar, remaining)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                match tar.chunk(remaining).await? {
                    Some(chunk) => {
                        let left = remaining - chunk.len() as u64;
                        Ok(Some((chunk, (tar, left))))
                    }
                    None => Err(tar.bad(format!("it ended {remaining} bytes before the file did"))),
                }
            },
        ))
    }
}

impl Files<'_> {
    /// A regular file's size and its contents as a stream, following symlinks. Errors
    /// about the path come before the stream is returned.
    pub async fn read_stream_sized(&self, path: &str) -> Result<(u64, ByteStream)> {
        let mut current = self.absolute_checked(path)?;
        for _ in 0..MAX_SYMLINK_HOPS {
            let stream = self.download_stream(&current, path).await?;
            let mut tar = TarIn::new(Box::pin(stream), self.id(), path);
            match tar.first_entry().await? {
                Head::File { size } => return Ok((size, tar.into_data(size))),
                Head::Directory => return Err(Error::file(path, FileErrorKind::IsADirectory)),
                Head::Symlink(target) => current = link_destination(&current, &target),
                Head::Other => {
                    return Err(Error::file(
                        path,
                        FileErrorKind::Other("not a regular file".to_owned()),
                    ));
                }
                Head::End => return Err(Error::file(path, FileErrorKind::NotFound)),
            }
        }
        Err(Error::file(
            path,
            FileErrorKind::Other("too many levels of symbolic links".to_owned()),
        ))
    }

    /// A regular file's contents as a stream (see [`Files::read_stream_sized`]).
    pub async fn read_stream(&self, path: &str) -> Result<ByteStream> {
        if let Some(agent) = self.agent() {
            return agent
                .read_file_stream(self.absolute_checked(path)?, path)
                .await;
        }
        Ok(self.read_stream_sized(path).await?.1)
    }

    /// Creates or replaces a file from a stream, spooled first (see the module docs).
    pub async fn write_stream(&self, path: &str, contents: ByteStream) -> Result<()> {
        // Refused before anything is read.
        let absolute = self.absolute_checked(path)?;
        if let Some(agent) = self.agent() {
            return agent.write_file_stream(absolute, path, contents).await;
        }
        let contents = spool(contents, path).await?;
        self.write_contents(path, contents).await
    }

    /// Creates or replaces a file (mode 0644), creating missing parent directories (see
    /// [`Files::write`]).
    pub(crate) async fn write_contents(&self, path: &str, contents: Contents) -> Result<()> {
        let target = self.absolute_checked(path)?;
        let (parent, name) = split_parent(&target);
        if name.is_empty() || name == ".." {
            return Err(Error::file(path, FileErrorKind::IsADirectory));
        }
        let header = file_header(name, contents.size(), path)?;
        match self.upload_file(parent, &header, &contents, path).await {
            Err(Error::FileOperation {
                kind: FileErrorKind::NotFound,
                ..
            }) => {
                self.make_dir_absolute(parent, path).await?;
                self.upload_file(parent, &header, &contents, path).await
            }
            other => other,
        }
    }

    async fn upload_file(
        &self,
        directory: &str,
        header: &Bytes,
        contents: &Contents,
        shown: &str,
    ) -> Result<()> {
        let body = file_tar(header.clone(), contents).map_err(|e| {
            Error::file(
                shown,
                FileErrorKind::Other(format!("reading the spooled upload: {e}")),
            )
        })?;
        self.upload(directory, body, shown, true).await
    }

    /// A tar archive of `path` and everything under it, as the engine streams it.
    pub async fn download_archive_stream(&self, path: &str) -> Result<ByteStream> {
        let absolute = self.absolute_checked(path)?;
        let stream = self.download_stream(&absolute, path).await?;
        let (sandbox, shown) = (self.id().to_owned(), path.to_owned());
        Ok(Box::pin(stream.map(move |chunk| {
            chunk.map_err(|e| {
                error::map(
                    e,
                    Subject::Path {
                        sandbox: &sandbox,
                        path: &shown,
                    },
                )
            })
        })))
    }

    /// Unpacks a tar archive, given as a stream, under directory `path` (created when
    /// missing). An error of the stream itself is returned as it was.
    pub async fn upload_archive_stream(&self, path: &str, tar: ByteStream) -> Result<()> {
        let absolute = self.absolute_checked(path)?;
        self.make_dir_absolute(&absolute, path).await?;
        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let slot = Arc::clone(&failure);
        let body = tar.map(move |chunk| {
            chunk.map_err(|e| {
                let message = e.to_string();
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                std::io::Error::other(message)
            })
        });
        let result = self.upload(&absolute, Box::pin(body), path, false).await;
        if let Some(error) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(error);
        }
        result
    }

    /// Uploads a whole tar archive into `directory`.
    pub(crate) async fn upload_bytes(
        &self,
        directory: &str,
        tar: Bytes,
        shown: &str,
    ) -> Result<()> {
        let body = Box::pin(futures::stream::once(async move { Ok(tar) }));
        self.upload(directory, body, shown, false).await
    }

    /// Uploads a tar stream into `directory`; with `keep_directories`, the engine refuses
    /// to replace a directory with a file.
    async fn upload(
        &self,
        directory: &str,
        body: BodyStream,
        shown: &str,
        keep_directories: bool,
    ) -> Result<()> {
        let mut options = UploadToContainerOptionsBuilder::default().path(directory);
        if keep_directories {
            options = options.no_overwrite_dir_non_dir("true");
        }
        self.engine
            .docker
            .upload_to_container(
                self.id(),
                Some(options.build()),
                bollard::body_try_stream(body),
            )
            .await
            .map_err(|e| error::map(e, self.subject(shown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive as a stream of `size`-byte chunks, the way the engine might cut it.
    fn chunked(archive: &[u8], size: usize) -> EngineStream {
        let chunks: Vec<_> = archive
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    async fn read_first(archive: &[u8], chunk: usize) -> (Head, Vec<u8>) {
        let mut tar = TarIn::new(chunked(archive, chunk), "sb", "f");
        let head = tar.first_entry().await.unwrap();
        let data = match head {
            Head::File { size } => {
                let mut data = Vec::new();
                let mut stream = tar.into_data(size);
                while let Some(chunk) = stream.next().await {
                    data.extend_from_slice(&chunk.unwrap());
                }
                data
            }
            _ => Vec::new(),
        };
        (head, data)
    }

    async fn archive_of(name: &str, contents: &[u8]) -> Vec<u8> {
        let header = file_header(name, contents.len() as u64, name).unwrap();
        let contents = Contents::Memory(Bytes::copy_from_slice(contents));
        let mut body = file_tar(header, &contents).unwrap();
        let mut archive = Vec::new();
        while let Some(chunk) = body.next().await {
            archive.extend_from_slice(&chunk.unwrap());
        }
        archive
    }

    #[tokio::test]
    async fn one_file_archives_round_trip_in_any_chunking() {
        let contents: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let archive = archive_of("data.bin", &contents).await;
        assert_eq!(archive.len() % BLOCK, 0);
        // The tar crate agrees it is one well-formed entry.
        let mut reader = tar::Archive::new(&archive[..]);
        let entries: Vec<_> = reader
            .entries()
            .unwrap()
            .map(|e| e.unwrap().size())
            .collect();
        assert_eq!(entries, [5000]);
        for chunk in [1, 7, 511, 512, 513, 4096, 1 << 20] {
            let (head, data) = read_first(&archive, chunk).await;
            assert_eq!(head, Head::File { size: 5000 });
            assert_eq!(data, contents, "chunks of {chunk}");
        }
    }

    #[tokio::test]
    async fn long_names_and_pax_records_are_skipped_or_applied() {
        let long = "n".repeat(300);
        let archive = archive_of(&long, b"abc").await;
        assert_eq!(read_first(&archive, 100).await.1, b"abc");

        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("linkpath", "/very/long/target".as_bytes())])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, "link", "short").unwrap();
        let archive = builder.into_inner().unwrap();
        let (head, _) = read_first(&archive, 64).await;
        assert_eq!(head, Head::Symlink("/very/long/target".to_owned()));
    }

    #[tokio::test]
    async fn directories_empty_and_truncated_archives() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        builder
            .append_data(&mut header, "d/", std::io::empty())
            .unwrap();
        let archive = builder.into_inner().unwrap();
        assert_eq!(read_first(&archive, 512).await.0, Head::Directory);
        assert_eq!(read_first(&[0u8; 1024], 512).await.0, Head::End);
        assert_eq!(read_first(&[], 512).await.0, Head::End);

        let archive = archive_of("f", &[7u8; 2000]).await;
        let mut tar = TarIn::new(chunked(&archive[..1200], 100), "sb", "f");
        let Head::File { size } = tar.first_entry().await.unwrap() else {
            panic!("expected a file");
        };
        let results: Vec<_> = tar.into_data(size).collect().await;
        assert!(matches!(
            results.last(),
            Some(Err(Error::FileOperation { .. }))
        ));
    }

    #[tokio::test]
    async fn small_streams_stay_in_memory_and_large_ones_spool() {
        let small: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"cd")),
        ]));
        match spool(small, "f").await.unwrap() {
            Contents::Memory(bytes) => assert_eq!(&bytes[..], b"abcd"),
            Contents::Spool { .. } => panic!("a small stream was spooled"),
        }
        let piece = Bytes::from(vec![3u8; 1 << 20]);
        let count = SPOOL_IN_MEMORY / piece.len() + 5;
        let large: ByteStream = Box::pin(futures::stream::iter(
            std::iter::repeat_n(piece, count).map(Ok),
        ));
        let contents = spool(large, "f").await.unwrap();
        assert!(matches!(contents, Contents::Spool { .. }));
        assert_eq!(contents.size(), (count << 20) as u64);
        // Read twice: each upload starts from the beginning.
        for _ in 0..2 {
            let mut total = 0u64;
            let mut stream = contents.stream().unwrap();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                assert!(chunk.iter().all(|b| *b == 3));
                total += chunk.len() as u64;
            }
            assert_eq!(total, contents.size());
        }
        let failing: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(Error::Unavailable {
                message: "cut".to_owned(),
            }),
        ]));
        assert!(matches!(
            spool(failing, "f").await,
            Err(Error::Unavailable { .. })
        ));
    }
}
