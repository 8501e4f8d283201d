#![doc = include_str!("../README.md")]

mod agent;
mod client;
mod config;
mod error;
mod exec;
mod files;
mod image;
mod provider;
mod sandbox;
mod transfer;

pub use config::{DEFAULT_CAPABILITIES, LocalDockerConfig};
pub use provider::{LocalDockerProvider, PROVIDER_NAME};
