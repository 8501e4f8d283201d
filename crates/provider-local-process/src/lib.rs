//! sandkit's embedded default provider, registered as `local-process`: no daemon, no
//! credentials. A sandbox is a private directory under a state directory, and the process
//! trees started in it.
//!
//! - **With bubblewrap** (`bwrap` on `PATH`, able to create namespaces): every process
//!   runs in fresh mount, pid, network, ipc and uts namespaces with all capabilities
//!   dropped. It sees `/usr`, `/etc` and the library directories read-only, its own
//!   `/tmp`, and its root directory at the same absolute path as on the host; nothing
//!   else of the host, the state directory or other sandboxes. Block-all network leaves
//!   it only `lo`. Capabilities say isolation `namespaces` and `network_block_all`.
//! - **Without it** (`isolation: none`, or `auto` when `bwrap` is missing): plain
//!   processes with a clean environment, working in the sandbox root. Capabilities say
//!   isolation `none` and no network policy, so specs that need one are rejected.
//!
//! In both, [`SandboxInfo::workdir`](sandkit_core::SandboxInfo::workdir) is the absolute
//! host path of the sandbox root (or the spec's `workdir` taken inside it). File
//! operations accept relative paths and absolute paths inside the root; `..`, other
//! absolute paths and symlinks cannot lead out. Snapshots are tar archives of the root;
//! pause is `SIGSTOP` of every process tree; exec timeouts are enforced by this process
//! (`exec_timeout: client`). The lifetime holds even if the creating process dies: a
//! small detached supervisor per sandbox kills its processes and removes its directory
//! when the lifetime ends. A sandbox also ends when its entrypoint exits. Commands on a
//! paused sandbox fail with [`Error::Unavailable`](sandkit_core::Error::Unavailable);
//! a command's background processes end with it.

mod agent;
mod config;
mod error;
mod exec;
mod files;
pub mod image;
mod launch;
mod lifecycle;
mod process;
mod provider;
mod state;

pub use config::{Isolation, LocalProcessConfig};
pub use provider::{LocalProcessProvider, bubblewrap_available};

/// The registry name.
pub(crate) const NAME: &str = "local-process";

sandkit_core::register_provider!(LocalProcessProvider);
