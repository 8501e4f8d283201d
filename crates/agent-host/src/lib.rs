//! The host's side of sandkit's in-box agent (`sandkit-agent`), shared by every provider
//! that runs it: the static agent binary, embedded at build time, and [`Agent`], a client
//! for one sandbox's agent socket.
//!
//! A provider puts the binary where its sandbox can run it ([`install`]), starts it as
//! the sandbox's init with a listening socket the host can reach, and then sends every
//! command through [`Agent::exec`]: the host makes the pipes (or the agent a terminal),
//! their descriptors travel over the socket, and the command's output never passes
//! through the agent. That is what makes an exec a millisecond and its output a pipe's
//! speed.

mod client;
mod detached;
pub mod entrypoint;
mod exec;
mod files;
mod terminal;
mod watch;

use std::fmt;
use std::io;

pub use client::{Agent, dev_null, install};
pub use exec::spawn_request;
pub use sandkit_agent::protocol;

/// An I/O failure on the host's side, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
struct IoFailure {
    context: String,
    #[source]
    source: io::Error,
}

/// A failure of `provider` itself while talking to its agent, as
/// [`sandkit_core::Error::Provider`].
fn internal(provider: &str, context: impl fmt::Display, source: io::Error) -> sandkit_core::Error {
    sandkit_core::Error::provider(
        provider,
        IoFailure {
            context: context.to_string(),
            source,
        },
    )
}
