//! sandkit-provider-modal: the `modal` provider, running sandboxes on Modal by speaking
//! Modal's own gRPC protocol: the control plane `modal.client.ModalClient` for sandboxes,
//! images, secrets and volumes, and each task's `modal.task_command_router.TaskCommandRouter`
//! for commands, files (through Modal's fs-tools helper) and snapshots.
//!
//! Credentials and endpoints resolve like Modal's own clients ([`ModalConfig`]); pointing
//! `MODAL_SERVER_URL` at a fake Modal (`sandkit-modal-fake`) runs everything offline.
//! [`proto`] exposes the wire types so such fakes can serve the same services.

mod client;
mod config;
mod error;
mod exec;
mod files;
pub mod proto;
mod provider;
mod retry;

pub use config::{DEFAULT_APP_NAME, DEFAULT_IMAGE, DEFAULT_SERVER_URL, ModalConfig};
pub use files::FS_TOOLS_PATH;
pub use provider::{
    DEFAULT_LIFETIME_SECS, MAX_LIFETIME_SECS, ModalProvider, capabilities, price_sheet,
};
pub use retry::retry_policy_details;

/// The registry name.
pub const NAME: &str = "modal";

sandkit_core::register_provider!(ModalProvider);
