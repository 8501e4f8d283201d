//! A bridge from blocking code that writes bytes (a tar builder, say) to a [`ByteStream`]
//! an async consumer reads: chunks pass through a small bounded queue, so memory stays
//! flat however much is written, and the writer waits while the reader is behind.

use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::exec::ByteStream;

/// The writing end of [`chunk_channel`]: a [`Write`] for blocking code (never call it
/// on an async thread). Call [`Write::flush`] at the end to send the last chunk.
pub struct ChunkWriter {
    sender: mpsc::Sender<Result<Bytes>>,
    pending: Vec<u8>,
    chunk_bytes: usize,
}

/// Ends a [`chunk_channel`]'s stream with an error, also once its writer was handed on.
#[derive(Clone)]
pub struct StreamFailer(mpsc::Sender<Result<Bytes>>);

impl StreamFailer {
    /// Ends the stream with `error`, so the reader cannot take a cut-off stream for a
    /// whole one. Blocking: call it where the writer writes.
    pub fn fail(&self, error: Error) {
        let _ = self.0.blocking_send(Err(error));
    }
}

impl ChunkWriter {
    /// Ends the stream with `error` (see [`StreamFailer::fail`]).
    pub fn fail(&self, error: Error) {
        self.failer().fail(error);
    }

    /// A handle that can end the stream with an error after this writer is moved away.
    pub fn failer(&self) -> StreamFailer {
        StreamFailer(self.sender.clone())
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(self.chunk_bytes),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the reader of the stream went away",
            )
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // At most one chunk's worth: `write_all` comes back for the rest.
        let taken = (self.chunk_bytes - self.pending.len()).min(bytes.len());
        self.pending.extend_from_slice(&bytes[..taken]);
        if self.pending.len() >= self.chunk_bytes {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A writer and the stream of what it writes, in chunks of at most `chunk_bytes`, at most
/// `chunks_in_flight` of them queued.
pub fn chunk_channel(chunks_in_flight: usize, chunk_bytes: usize) -> (ChunkWriter, ByteStream) {
    let (sender, receiver) = mpsc::channel(chunks_in_flight.max(1));
    let writer = ChunkWriter {
        sender,
        pending: Vec::with_capacity(chunk_bytes),
        chunk_bytes: chunk_bytes.max(1),
    };
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    (writer, Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_arrive_in_order_and_an_error_ends_the_stream() {
        let (mut writer, mut stream) = chunk_channel(2, 4);
        let writing = tokio::task::spawn_blocking(move || {
            writer.write_all(b"0123456789").unwrap();
            writer.flush().unwrap();
            writer.fail(Error::Unavailable {
                message: "cut".into(),
            });
        });
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    assert!(chunk.len() <= 4);
                    got.extend_from_slice(&chunk);
                }
                Err(_) => failed = true,
            }
        }
        writing.await.unwrap();
        assert_eq!(got, b"0123456789");
        assert!(failed);
    }
}
