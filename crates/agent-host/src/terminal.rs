//! The host's side of a command on a pseudo-terminal: the agent opens the terminal in
//! the sandbox and hands over its master side, which becomes the command's output
//! stream and its input here, and which a resize sets the size of.

use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use sandkit_core::{ByteStream, PtySize, Result, StdinWriter};
use tokio::io::{AsyncRead, ReadBuf};

use crate::Agent;

/// Output, input and a handle for resizing, from a terminal's master side.
pub(crate) fn streams(
    agent: &Agent,
    master: OwnedFd,
) -> Result<(ByteStream, StdinWriter, OwnedFd)> {
    let clone = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| agent.internal("sharing the terminal", e))
    };
    let (input, resize) = (clone(&master)?, clone(&master)?);
    let reader = MasterReader(tokio::fs::File::from_std(std::fs::File::from(master)));
    let writer = tokio::fs::File::from_std(std::fs::File::from(input));
    Ok((
        agent.output_stream(reader),
        Box::pin(writer) as StdinWriter,
        resize,
    ))
}

/// Sets the terminal's size (the command gets `SIGWINCH`).
pub(crate) fn resize(provider: &str, master: &OwnedFd, size: PtySize) -> Result<()> {
    let winsize = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, winsize)
        .map_err(|e| crate::internal(provider, "resizing the terminal", e.into()))
}

/// Reads a master side, for which the end of the command's side is `EIO`: that is the
/// end of the output here.
struct MasterReader(tokio::fs::File);

impl AsyncRead for MasterReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(error))
                if error.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) =>
            {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
