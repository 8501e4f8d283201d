#![doc = include_str!("../README.md")]

pub mod capabilities;
pub mod detached;
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
pub mod watch;

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
pub use detached::{AttachFrom, CommandInfo};
pub use error::{Error, FileErrorKind, Result};
pub use exec::{
    ByteStream, ExecControl, ExecOutput, ExecProcess, ExecRequest, ExitStatus, PtySize, StdinWriter,
};
pub use ownership::{Ownership, ReapFilter, ReapReport, reap};
pub use provider::{
    Capacity, DirEntry, FileKind, FileStat, ListFilter, OutputStream, Sandbox, SandboxId,
    SandboxInfo, SandboxProvider, SandboxProviderExt, SandboxState, Snapshot, Tunnel, collect,
};
pub use registry::{ProviderFactory, ProviderRegistration};
pub use requirements::{Rejection, Requirements, Selection, Unmet, select};
pub use spec::{
    GpuRequest, ImageSource, InitialFile, NetworkPolicy, SandboxSpec, SecretString, VolumeMount,
};
pub use usage::{LifecycleEvent, LifecycleKind, ResourceUsage, Usage};
pub use watch::{FileEvent, FileEventKind, FileEvents};
