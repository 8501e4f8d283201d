//! An entrypoint's output, as Modal serves it: a V2 sandbox's through its router
//! (`SandboxStdioReadV2`, bytes resumed by offset), a V1 sandbox's through the control
//! plane (`SandboxGetLogs`, text batches resumed by `last_entry_id`, ending with `eof`).

use std::time::Duration;

use bytes::Bytes;
use sandkit_core::{ByteStream, Error, OutputStream, Result, SandboxId};
use sandkit_modal_proto::client::{self as pb, FileDescriptor};
use sandkit_modal_proto::task_command_router::{
    SandboxStdinWriteV2Request, SandboxStdioFileDescriptor, SandboxStdioReadV2Request,
};
use tokio::sync::mpsc;
use tonic::Status;

use crate::error::from_status;
use crate::family::Family;
use crate::provider::{ModalProvider, subject};
use crate::retry::TRANSIENT_CODES;

/// Reopenings of a cut output stream before its failure is the reader's.
const MAX_RESUMES: u32 = 10;
/// First pause before reopening; doubled each time.
const RESUME_BACKOFF: Duration = Duration::from_millis(50);
/// The long-poll `SandboxGetLogs` is asked for, in seconds, as Modal's Python client asks.
const LOGS_POLL_SECS: f32 = 55.0;

impl ModalProvider {
    /// [`sandkit_core::SandboxProvider::entrypoint_output`].
    pub(crate) async fn entrypoint_stream(
        &self,
        id: &SandboxId,
        stream: OutputStream,
        offset: u64,
    ) -> Result<ByteStream> {
        let (sender, receiver) = mpsc::channel::<Result<Bytes>>(16);
        match Family::of(id.as_str()) {
            None => return Err(Error::sandbox_not_found(id)),
            Some(Family::V2) => {
                let router = self.router(id).await?;
                let what = format!("the entrypoint's {stream} of {}", subject(id.as_str()));
                tokio::spawn(async move {
                    let descriptor = match stream {
                        OutputStream::Stdout => SandboxStdioFileDescriptor::Stdout,
                        OutputStream::Stderr => SandboxStdioFileDescriptor::Stderr,
                    };
                    let mut offset = offset;
                    let mut resumes = 0;
                    loop {
                        let request = SandboxStdioReadV2Request {
                            task_id: router.task_id().to_owned(),
                            offset,
                            file_descriptor: descriptor as i32,
                        };
                        let access = router.access().await;
                        let failure = match access
                            .stub
                            .clone()
                            .sandbox_stdio_read_v2(access.request(request))
                            .await
                        {
                            Ok(response) => {
                                let mut messages = response.into_inner();
                                loop {
                                    match messages.message().await {
                                        Ok(Some(message)) if message.data.is_empty() => {}
                                        Ok(Some(message)) => {
                                            offset += message.data.len() as u64;
                                            resumes = 0;
                                            let chunk = Bytes::from(message.data);
                                            if sender.send(Ok(chunk)).await.is_err() {
                                                return;
                                            }
                                        }
                                        Ok(None) => return,
                                        Err(status) => break status,
                                    }
                                }
                            }
                            Err(status) => status,
                        };
                        if !resume(&mut resumes, &failure).await {
                            let _ = sender.send(Err(from_status(&failure, &what))).await;
                            return;
                        }
                    }
                });
            }
            Some(Family::V1) => {
                let control_plane = std::sync::Arc::clone(&self.control_plane);
                let (sandbox_id, what) = (id.0.clone(), subject(id.as_str()));
                let file_descriptor = match stream {
                    OutputStream::Stdout => FileDescriptor::Stdout,
                    OutputStream::Stderr => FileDescriptor::Stderr,
                } as i32;
                tokio::spawn(async move {
                    // V1 has no byte offsets: what comes before `offset` is skipped here.
                    let mut skip = offset;
                    let mut last_entry_id = String::new();
                    let mut resumes = 0;
                    loop {
                        let request = pb::SandboxGetLogsRequest {
                            sandbox_id: sandbox_id.clone(),
                            file_descriptor,
                            timeout: LOGS_POLL_SECS,
                            last_entry_id: last_entry_id.clone(),
                        };
                        let failure = match control_plane
                            .server_stream(request, |mut stub, request| async move {
                                stub.sandbox_get_logs(request).await
                            })
                            .await
                        {
                            Ok(mut batches) => loop {
                                match batches.message().await {
                                    Ok(Some(batch)) => {
                                        resumes = 0;
                                        if !batch.entry_id.is_empty() {
                                            last_entry_id = batch.entry_id.clone();
                                        }
                                        for item in batch.items {
                                            if item.file_descriptor != file_descriptor {
                                                continue;
                                            }
                                            let mut data = Bytes::from(item.data.into_bytes());
                                            let skipped = skip.min(data.len() as u64);
                                            skip -= skipped;
                                            data = data.slice(skipped as usize..);
                                            if !data.is_empty()
                                                && sender.send(Ok(data)).await.is_err()
                                            {
                                                return;
                                            }
                                        }
                                        if batch.eof {
                                            return;
                                        }
                                    }
                                    // Ended without `eof`: the long poll ran out; ask again.
                                    Ok(None) => break None,
                                    Err(status) => break Some(status),
                                }
                            },
                            Err(status) => Some(status),
                        };
                        if let Some(failure) = failure
                            && !resume(&mut resumes, &failure).await
                        {
                            let what = format!("the entrypoint's {stream} of {what}");
                            let _ = sender.send(Err(from_status(&failure, &what))).await;
                            return;
                        }
                    }
                });
            }
        }
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}

impl ModalProvider {
    /// [`sandkit_core::SandboxProvider::write_entrypoint_stdin`]: V2's router call takes
    /// the offset as it is; V1's `SandboxStdinWrite` numbers writes instead, so this
    /// instance counts what it wrote and skips what a retry repeats.
    pub(crate) async fn entrypoint_stdin(
        &self,
        id: &SandboxId,
        offset: u64,
        data: Bytes,
        eof: bool,
    ) -> Result<()> {
        let what = format!("the entrypoint's stdin of {}", subject(id.as_str()));
        match Family::of(id.as_str()) {
            None => Err(Error::sandbox_not_found(id)),
            Some(Family::V2) => {
                let router = self.router(id).await?;
                let request = SandboxStdinWriteV2Request {
                    task_id: router.task_id().to_owned(),
                    offset,
                    data: data.to_vec(),
                    eof,
                };
                router
                    .unary(request, None, |mut stub, request| async move {
                        stub.sandbox_stdin_write_v2(request).await
                    })
                    .await
                    .map(drop)
                    .map_err(|status| from_status(&status, &what))
            }
            Some(Family::V1) => {
                let known = self.known.get(id.as_str());
                if offset > known.stdin_bytes {
                    return Err(Error::InvalidSpec {
                        field: "offset".to_owned(),
                        reason: format!(
                            "{offset} is past the {} bytes written to the entrypoint's stdin",
                            known.stdin_bytes
                        ),
                    });
                }
                let skip = usize::try_from(known.stdin_bytes - offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let fresh = data.slice(skip..);
                if fresh.is_empty() && !eof {
                    return Ok(());
                }
                let index = known.stdin_writes + 1;
                let request = pb::SandboxStdinWriteRequest {
                    sandbox_id: id.0.clone(),
                    input: fresh.to_vec(),
                    index,
                    eof,
                };
                self.control_plane
                    .call(request, &what)
                    .await
                    .map_err(Error::from)?;
                self.known.remember(id.as_str(), |known| {
                    known.stdin_writes = index;
                    known.stdin_bytes += fresh.len() as u64;
                });
                Ok(())
            }
        }
    }
}

/// Whether a stream cut by `failure` is reopened (after a pause), counting in `resumes`.
async fn resume(resumes: &mut u32, failure: &Status) -> bool {
    if !TRANSIENT_CODES.contains(&failure.code()) || *resumes >= MAX_RESUMES {
        return false;
    }
    tracing::debug!(code = ?failure.code(), "reopening an entrypoint output stream");
    tokio::time::sleep(RESUME_BACKOFF * 2u32.pow(*resumes)).await;
    *resumes += 1;
    true
}
