//! The plumbing of streamed copies: local files as chunk streams, and queues between the
//! blocking tar builder or unpacker and the provider's streams.

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use sandkit::{ByteStream, Error, FileErrorKind};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bytes read from a local file per chunk, and per piece of an archive built on the fly.
pub(super) const CHUNK_BYTES: usize = 256 << 10;
/// Chunks in flight between a blocking archive task and the provider.
pub(super) const QUEUE_CHUNKS: usize = 8;

/// Where a local I/O error met while a provider consumed our stream is kept, so it is
/// reported as the local error it is (the provider only sees that the stream failed).
#[derive(Clone, Default)]
pub(super) struct LocalFailure(Arc<Mutex<Option<std::io::Error>>>);

impl LocalFailure {
    /// Keeps `error`, and gives the provider a stand-in for it.
    pub(super) fn keep(&self, error: std::io::Error) -> Error {
        let stand_in = Error::FileOperation {
            path: "(local side of the copy)".to_owned(),
            kind: FileErrorKind::from_io(&error),
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        stand_in
    }

    pub(super) fn take(&self) -> Option<std::io::Error> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A local file as a stream of chunks.
pub(super) fn local_file_stream(file: tokio::fs::File, failure: &LocalFailure) -> ByteStream {
    let failure = failure.clone();
    Box::pin(futures::stream::try_unfold(file, move |mut file| {
        let failure = failure.clone();
        async move {
            let mut chunk = BytesMut::with_capacity(CHUNK_BYTES);
            match file.read_buf(&mut chunk).await {
                Ok(0) => Ok(None),
                Ok(_) => Ok(Some((chunk.freeze(), file))),
                Err(error) => Err(failure.keep(error)),
            }
        }
    }))
}

/// A blocking reader over chunks a queue brings (for unpacking while downloading).
pub(super) struct QueueReader {
    pub(super) queue: mpsc::Receiver<std::io::Result<Bytes>>,
    pub(super) current: Bytes,
}

impl Read for QueueReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.queue.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
