//! `-t` and `sandkit shell`: a command on a pseudo-terminal, attached to ours. Our
//! terminal goes into raw mode, so every key (Ctrl-C too) reaches the command's terminal
//! and its line discipline; its size follows ours (`SIGWINCH`); the terminal is put back
//! however the command ends.

use futures::StreamExt;
use rustix::termios::{OptionalActions, Termios};
use sandkit::{ExecProcess, PtySize};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::error::CliError;
use crate::stream::Interrupts;

/// The size of our terminal, when standard output is one.
pub fn size() -> Option<PtySize> {
    let winsize = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (winsize.ws_row > 0 && winsize.ws_col > 0).then_some(PtySize {
        rows: winsize.ws_row,
        cols: winsize.ws_col,
    })
}

/// Our terminal in raw mode until dropped.
struct RawMode {
    original: Termios,
}

impl RawMode {
    /// Raw mode, when standard input is a terminal.
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let original = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = original.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(Self { original })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.original);
    }
}

/// Runs the attached session to the command's end; returns its exit code. SIGINT or
/// SIGTERM sent to us (not typed: raw mode hands keys to the command) kill the command.
pub async fn attach(
    process: &mut ExecProcess,
    interrupts: &mut Interrupts,
) -> Result<i32, CliError> {
    let mut output = std::mem::replace(&mut process.stdout, Box::pin(futures::stream::empty()));
    let input = process.stdin.take();
    let mut resized = signal(SignalKind::window_change())
        .map_err(|error| CliError::Failed(format!("cannot watch the terminal's size: {error}")))?;
    let raw = RawMode::enter();
    let typing = input.map(|mut input| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut input).await;
        })
    });
    let mut stdout = tokio::io::stdout();
    let ended = loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(bytes)) => {
                    // Our own terminal gone: keep reading, so the command is not blocked.
                    if stdout.write_all(&bytes).await.is_ok() {
                        let _ = stdout.flush().await;
                    }
                }
                Some(Err(error)) => break Err(error.into()),
                None => break Ok(()),
            },
            _ = resized.recv() => {
                if let Some(size) = size() {
                    let _ = process.resize(size).await;
                }
            }
            signal = interrupts.recv() => {
                let _ = process.kill().await;
                break Err(CliError::Interrupted { signal, cleanup: None });
            }
        }
    };
    let status = match ended {
        Ok(()) => process.wait().await.map_err(CliError::from),
        Err(error) => Err(error),
    };
    if let Some(typing) = typing {
        typing.abort();
    }
    drop(raw);
    Ok(status?.code)
}
