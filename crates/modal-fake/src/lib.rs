#![doc = include_str!("../README.md")]

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
