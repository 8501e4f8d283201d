//! sandkit provider for the local Docker Engine, through `bollard`.
//!
//! A sandbox is a container: created from a registry image (pulled with progress), a
//! Dockerfile context (built) or a snapshot (an image committed from a sandbox), hardened
//! (no new privileges, a minimal set of Linux capabilities, a pids limit), labelled with
//! its tags so it is found again by any process, and gone when its lifetime ends even if
//! its creator died. Commands run through the exec API, files move through the archive
//! API. Registered as `local-docker`; configured by [`LocalDockerConfig`].

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
