//! An entrypoint's output as Modal keeps it: captured from the backend while the sandbox
//! runs, kept after it ended, and served from any offset, through `SandboxGetLogs` (V1,
//! text batches resumed by `last_entry_id`) and `SandboxStdioReadV2` (V2, bytes resumed
//! by offset).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{OutputStream, SandboxId, SandboxProvider};
use sandkit_modal_proto::client::{self as pb, FileDescriptor};
use sandkit_modal_proto::task_command_router::{self as tcr, SandboxStdioFileDescriptor};
use tokio::sync::watch;
use tonic::Status;

use super::lock;

/// Most of one stream kept. A capture that reaches it stops there (and logs so): the
/// emulator is a test server, and output past it is not what tests read.
const MAX_CAPTURED_BYTES: usize = 64 << 20;

/// One captured stream: the bytes so far, and whether more may come.
pub(crate) struct Captured {
    data: Mutex<Vec<u8>>,
    /// Bytes captured, and whether the stream has ended.
    progress: watch::Sender<(usize, bool)>,
}

impl Captured {
    fn new() -> Self {
        Self {
            data: Mutex::new(Vec::new()),
            progress: watch::channel((0, false)).0,
        }
    }

    fn push(&self, chunk: &[u8]) -> bool {
        let mut data = lock(&self.data);
        let room = MAX_CAPTURED_BYTES.saturating_sub(data.len());
        data.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let len = data.len();
        drop(data);
        self.progress.send_modify(|progress| progress.0 = len);
        chunk.len() <= room
    }

    fn finish(&self) {
        self.progress.send_modify(|progress| progress.1 = true);
    }

    /// The bytes from `offset` on, waiting for some while the stream runs; `None` once
    /// everything up to its end was read.
    async fn read_from(&self, offset: usize) -> Option<Bytes> {
        let mut progress = self.progress.subscribe();
        loop {
            let (len, done) = *progress.borrow_and_update();
            if offset < len {
                return Some(Bytes::copy_from_slice(&lock(&self.data)[offset..len]));
            }
            if done || progress.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// Both of an entrypoint's streams.
pub(crate) struct EntrypointOutput {
    stdout: Captured,
    stderr: Captured,
}

impl EntrypointOutput {
    fn stream(&self, stream: OutputStream) -> &Captured {
        match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        }
    }
}

/// Where a V1 client's entrypoint stdin stands: V1 numbers its writes (from 1) where V2
/// gives byte offsets, so the emulator turns one into the other.
#[derive(Default)]
pub(crate) struct StdinCursor {
    /// The highest write index applied.
    last_index: u32,
    /// Bytes written so far.
    offset: u64,
}

/// `SandboxStdinWrite` (V1): write `index` (a repeat of an applied one is acknowledged,
/// not applied again) to the backend's entrypoint stdin.
pub(crate) async fn stdin_write_v1(
    backend: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
    cursor: &tokio::sync::Mutex<StdinCursor>,
    request: pb::SandboxStdinWriteRequest,
) -> Result<(), Status> {
    let mut cursor = cursor.lock().await;
    if request.index <= cursor.last_index {
        return Ok(());
    }
    let length = request.input.len() as u64;
    backend
        .write_entrypoint_stdin(id, cursor.offset, Bytes::from(request.input), request.eof)
        .await
        .map_err(super::status_of)?;
    cursor.last_index = request.index;
    cursor.offset += length;
    Ok(())
}

/// Starts capturing the output of the backend sandbox `id`, when the backend offers it.
pub(crate) fn capture(
    backend: &Arc<dyn SandboxProvider>,
    id: &SandboxId,
) -> Option<Arc<EntrypointOutput>> {
    if !backend.capabilities().entrypoint_output {
        return None;
    }
    let output = Arc::new(EntrypointOutput {
        stdout: Captured::new(),
        stderr: Captured::new(),
    });
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        let (backend, id, output) = (Arc::clone(backend), id.clone(), Arc::clone(&output));
        tokio::spawn(async move {
            let captured = output.stream(stream);
            match backend.entrypoint_output(&id, stream, 0).await {
                Ok(mut chunks) => {
                    while let Some(chunk) = chunks.next().await {
                        match chunk {
                            Ok(chunk) if captured.push(&chunk) => {}
                            Ok(_) => {
                                tracing::warn!(sandbox = %id, %stream, "entrypoint output past {MAX_CAPTURED_BYTES} bytes is not kept");
                                break;
                            }
                            Err(error) => {
                                tracing::debug!(sandbox = %id, %stream, %error, "entrypoint output ended early");
                                break;
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(sandbox = %id, %stream, %error, "entrypoint output unreadable")
                }
            }
            captured.finish();
        });
    }
    Some(output)
}

/// The stream a V1 `FileDescriptor` names; `None` for the others (`INFO`).
fn v1_stream(file_descriptor: i32) -> Option<OutputStream> {
    match FileDescriptor::try_from(file_descriptor) {
        Ok(FileDescriptor::Stdout) => Some(OutputStream::Stdout),
        Ok(FileDescriptor::Stderr) => Some(OutputStream::Stderr),
        _ => None,
    }
}

/// How much of `bytes` ends on a character boundary: a UTF-8 sequence cut at the end of a
/// chunk waits for its rest, since V1 carries output as text.
fn complete_utf8(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0xC0 != 0x80 {
            let needs = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if needs > back { len - back } else { len };
        }
    }
    len
}

/// `SandboxGetLogs`: batches of text from `last_entry_id` (a byte offset, as this server
/// hands it out) on, then one with `eof`.
pub(crate) fn logs_v1(
    output: Option<Arc<EntrypointOutput>>,
    request: &pb::SandboxGetLogsRequest,
    task_id: String,
) -> futures::stream::BoxStream<'static, Result<pb::TaskLogsBatch, Status>> {
    let sandbox_id = request.sandbox_id.clone();
    let file_descriptor = request.file_descriptor;
    let offset: usize = request.last_entry_id.parse().unwrap_or(0);
    let stream = v1_stream(file_descriptor);
    let state = Some((offset, Vec::<u8>::new()));
    Box::pin(futures::stream::unfold(state, move |state| {
        let (output, sandbox_id, task_id) = (output.clone(), sandbox_id.clone(), task_id.clone());
        async move {
            let (mut offset, mut pending) = state?;
            let batch = |items: Vec<pb::TaskLogs>, entry_id: usize, eof: bool| pb::TaskLogsBatch {
                task_id: task_id.clone(),
                sandbox_id: sandbox_id.clone(),
                items,
                entry_id: entry_id.to_string(),
                eof,
                ..Default::default()
            };
            let captured = output.as_ref().zip(stream).map(|(o, s)| o.stream(s));
            let Some(chunk) = (match captured {
                Some(captured) => captured.read_from(offset + pending.len()).await,
                None => None,
            }) else {
                // The end: whatever partial character is left goes as it is.
                let items = (!pending.is_empty())
                    .then(|| log_item(&pending, file_descriptor))
                    .into_iter()
                    .collect();
                let end = offset + pending.len();
                return Some((Ok(batch(items, end, true)), None));
            };
            pending.extend_from_slice(&chunk);
            let cut = complete_utf8(&pending);
            let item = log_item(&pending[..cut], file_descriptor);
            offset += cut;
            pending.drain(..cut);
            Some((
                Ok(batch(vec![item], offset, false)),
                Some((offset, pending)),
            ))
        }
    }))
}

fn log_item(bytes: &[u8], file_descriptor: i32) -> pb::TaskLogs {
    pb::TaskLogs {
        data: String::from_utf8_lossy(bytes).into_owned(),
        file_descriptor,
        timestamp: crate::ids::now_secs_f64(),
        ..Default::default()
    }
}

/// `SandboxStdioReadV2`: the bytes of one stream from `offset` on, until its end.
pub(crate) fn stdio_v2(
    output: Arc<EntrypointOutput>,
    request: &tcr::SandboxStdioReadV2Request,
) -> futures::stream::BoxStream<'static, Result<tcr::SandboxStdioReadV2Response, Status>> {
    let stream = match SandboxStdioFileDescriptor::try_from(request.file_descriptor) {
        Ok(SandboxStdioFileDescriptor::Stderr) => OutputStream::Stderr,
        _ => OutputStream::Stdout,
    };
    let offset = usize::try_from(request.offset).unwrap_or(usize::MAX);
    Box::pin(futures::stream::unfold(offset, move |offset| {
        let output = Arc::clone(&output);
        async move {
            let chunk = output.stream(stream).read_from(offset).await?;
            let next = offset + chunk.len();
            let response = tcr::SandboxStdioReadV2Response {
                data: chunk.to_vec(),
                starting_offset: offset as u64,
            };
            Some((Ok(response), next))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_at_the_end_waits_for_its_rest() {
        assert_eq!(complete_utf8(b"plain"), 5);
        let e_acute = "é".as_bytes();
        assert_eq!(complete_utf8(&[b'a', e_acute[0]]), 1);
        assert_eq!(complete_utf8(&[b'a', e_acute[0], e_acute[1]]), 3);
        let snowman = "☃".as_bytes();
        assert_eq!(complete_utf8(&snowman[..2]), 0);
        assert_eq!(complete_utf8(snowman), 3);
        assert_eq!(complete_utf8(b""), 0);
    }

    #[tokio::test]
    async fn captured_output_is_served_from_any_offset_until_its_end() {
        let captured = Arc::new(Captured::new());
        captured.push(b"hello ");
        assert_eq!(captured.read_from(0).await.unwrap(), "hello ");
        let reader = {
            let captured = Arc::clone(&captured);
            tokio::spawn(async move { captured.read_from(6).await })
        };
        captured.push(b"world");
        assert_eq!(reader.await.unwrap().unwrap(), "world");
        captured.finish();
        assert_eq!(captured.read_from(3).await.unwrap(), "lo world");
        assert!(captured.read_from(11).await.is_none());
    }
}
