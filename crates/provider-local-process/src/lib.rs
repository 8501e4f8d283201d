#![doc = include_str!("../README.md")]

mod config;
mod error;
mod files;
pub mod image;
mod launch;
mod lifecycle;
mod process;
mod provider;
mod state;
mod users;
mod watch;

pub use config::{Isolation, LocalProcessConfig};
pub use provider::{LocalProcessProvider, bubblewrap_available};

/// The registry name.
pub(crate) const NAME: &str = "local-process";

sandkit_core::register_provider!(LocalProcessProvider);
