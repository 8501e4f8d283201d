//! sandkit's embedded default provider, registered as `local-process`: no daemon, no
//! credentials. A sandbox is a private directory under a state directory and a small
//! in-box agent ([`sandkit_agent`], embedded in this crate and installed under the state
//! directory) that runs as the sandbox's init and starts its commands.
//!
//! - **With bubblewrap** (found at creation, its absolute path recorded with the
//!   sandbox): the sandbox looks like a container to the program inside. `/usr`, `/bin`,
//!   `/lib*` and `/sbin` are the host's, read-only; `/etc` is generated (passwd, group,
//!   hosts, resolv.conf, nsswitch.conf, os-release, plus harmless host entries such as
//!   certificates; never shadow or keys); `/tmp`, the home `/root` and the workdir
//!   `/workspace` are private and writable. With an image (`SandboxSpec::image`), the
//!   image's root filesystem, pulled without a daemon and cached by digest, is `/`,
//!   read-only under the sandbox's own writable layer. Every command joins the sandbox's
//!   mount, pid, network, ipc and uts namespaces with no capabilities; terminate ends its
//!   pid namespace, so nothing survives, at a cost that does not grow with the number of
//!   sandboxes. The network is the sandbox's own namespace: outbound through `pasta`
//!   (Debian's `passt`) with no route to the host's loopback or abstract sockets, or
//!   loopback only with block-all (and by default when `pasta` is missing, declared as
//!   `egress_default: deny-all`).
//! - **Without it** (`isolation: none`, or `auto` when `bwrap` is missing): plain
//!   processes as the calling user, working in the sandbox's directory; the agent is a
//!   child subreaper, so processes that leave their group are still ended by terminate.
//!   Commands print one warning line on stderr per process (`warn_unisolated`).
//!
//! Paths in the API are the sandbox's own (container paths under bubblewrap). File
//! operations resolve in the kernel relative to a handle of the sandbox's root
//! (`openat2` with `RESOLVE_IN_ROOT`), so `..`, symlinks and races cannot lead out; only
//! regular files and directories are read or written. Reads, writes and archives stream.
//! Snapshots are archives of the writable layer (with their base image); pause stops
//! every process of the sandbox; exec timeouts are enforced by the agent inside the
//! sandbox. The lifetime holds even if the creating process dies: the agent ends the
//! sandbox when it expires, and a detached supervisor removes its directory.

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
