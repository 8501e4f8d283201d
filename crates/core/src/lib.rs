//! sandkit-core: one API over every sandbox provider.
//!
//! - [`SandboxProvider`]: the object-safe trait every provider implements, held as
//!   `Arc<dyn SandboxProvider>`; [`Sandbox`] is a handle for method-call style and
//!   [`SandboxProviderExt`] adds conveniences.
//! - [`Capabilities`]: what a provider can do, as plain data; [`Requirements`] and
//!   [`select`] choose providers and explain every rejection.
//! - [`SandboxSpec`] and [`ExecRequest`]: what callers ask for, validated field by field.
//! - [`registry`]: providers register with [`register_provider!`] and are built by name.
//! - [`layers`]: capability checking, retries, tracing and lifecycle events.
//! - [`ownership`] tags and [`reap`]; [`Usage`] and cost estimates.
//!
//! Library users depend on the `sandkit` facade, which re-exports this crate and links
//! providers behind features; orchestration (pools, routing, warm pools, cost reports)
//! is `sandkit-orchestrate`.

pub mod capabilities;
pub mod error;
pub mod exec;
pub mod layers;
pub mod ownership;
pub mod provider;
pub mod registry;
pub mod requirements;
pub mod spec;
pub mod stream;
pub mod usage;

#[doc(hidden)]
pub use inventory;
// For `layer_impl!`, which expands in other crates.
#[doc(hidden)]
pub use async_trait::async_trait;
#[doc(hidden)]
pub use bytes as __bytes;
#[doc(hidden)]
pub use serde_json as __serde_json;

pub use capabilities::{
    Arch, BillingModel, Capabilities, EgressDefault, Feature, GpuKind, IdleCost, Isolation, Os,
    PauseSupport, PriceSheet, TimeoutEnforcement, Transport,
};
pub use error::{Error, FileErrorKind, Result};
pub use exec::{
    ByteStream, ExecControl, ExecOutput, ExecProcess, ExecRequest, ExitStatus, StdinWriter,
};
pub use ownership::{Ownership, ReapFilter, ReapReport, reap};
pub use provider::{
    Capacity, DirEntry, FileKind, FileStat, ListFilter, Sandbox, SandboxId, SandboxInfo,
    SandboxProvider, SandboxProviderExt, SandboxState, Snapshot, Tunnel, collect,
};
pub use registry::{ProviderFactory, ProviderRegistration};
pub use requirements::{Rejection, Requirements, Selection, Unmet, select};
pub use spec::{
    GpuRequest, ImageSource, InitialFile, NetworkPolicy, SandboxSpec, SecretString, VolumeMount,
};
pub use usage::{LifecycleEvent, LifecycleKind, Usage};
