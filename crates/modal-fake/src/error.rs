//! Errors of the fake server itself (binding, cassettes, upstreams), as opposed to the gRPC
//! statuses it answers clients with.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop the fake server from starting or finishing cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A cassette could not be read, parsed or written.
    #[error("cassette `{}`: {reason}", path.display())]
    Cassette {
        /// The cassette file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The upstream URL of the recorder is unusable.
    #[error("upstream `{url}`: {reason}")]
    Upstream {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The fault configuration is invalid.
    #[error("invalid fault configuration: {0}")]
    Faults(String),
    /// The emulator's backend provider failed (building it, or cleaning up).
    #[error("backend: {0}")]
    Backend(#[from] sandkit_core::Error),
    /// The TLS side of the listener could not be set up.
    #[error("tls setup: {0}")]
    Tls(String),
    /// The gRPC server stopped with an error.
    #[error("server: {0}")]
    Server(String),
}
