//! sandkit-modal-fake: a Modal-compatible gRPC server for tests, speaking the control plane
//! (`modal.client.ModalClient`) and the command router
//! (`modal.task_command_router.TaskCommandRouter`) on one port.
//!
//! - [`serve_emulator`]: Modal's sandbox API over any sandkit provider (local processes by
//!   default), so Modal clients run offline;
//! - [`serve_recorder`]: a proxy in front of real Modal (or the emulator) that writes every
//!   exchange to a readable JSON [`Cassette`], credentials and JWTs redacted;
//! - [`serve_replayer`]: serves a cassette with no network, Docker or credentials;
//! - [`FaultConfig`]: faults injected in every mode.
//!
//! Every mode prints nothing itself; the `modal-fake` binary prints the listening URL.

pub mod cassette;
mod codec;
pub mod descriptors;
pub mod emulator;
mod error;
pub mod faults;
mod ids;
mod listener;
mod proxy;
mod replay;

pub use cassette::{Cassette, Exchange};
pub use emulator::{
    Credentials, EmulatorOptions, RegistryImages, RouterScheme, backend, serve_emulator,
};
pub use error::{Error, Result};
pub use faults::FaultConfig;
pub use listener::ServerHandle;
pub use proxy::{RecordOptions, UpstreamKind, serve_recorder};
pub use replay::{ReplayOptions, serve_replayer};
