#![doc = include_str!("../README.md")]

mod calls;
mod capabilities;
mod client;
mod config;
mod entrypoint;
mod error;
mod exec;
mod family;
mod files;
mod images;
mod known;
mod listing;
mod mapping;
mod objects;
mod prices;
mod provider;
mod retry;
mod router_access;

pub use capabilities::{DEFAULT_LIFETIME_SECS, MAX_LIFETIME_SECS, capabilities};
pub use config::{
    DEFAULT_APP_NAME, DEFAULT_IMAGE, DEFAULT_ROUTER_CONNECT_TIMEOUT_SECS,
    DEFAULT_SCHEDULE_TIMEOUT_SECS, DEFAULT_SERVER_URL, DEFAULT_SNAPSHOT_TTL_SECS, ModalConfig,
    Protocol,
};
pub use exec::{EXEC_ID_ENV, KILL_SCRIPT, kill_argv};
pub use files::FS_TOOLS_PATH;
pub use prices::price_sheet;
pub use provider::ModalProvider;
pub use retry::retry_policy_details;

/// The registry name.
pub const NAME: &str = "modal";

sandkit_core::register_provider!(ModalProvider);
