//! sandkit-provider-modal: the `modal` provider, running sandboxes on Modal by speaking
//! Modal's own gRPC protocol: the control plane `modal.client.ModalClient` for sandboxes,
//! images, secrets and volumes, and each task's `modal.task_command_router.TaskCommandRouter`
//! for commands, files (through Modal's fs-tools helper) and snapshots.
//!
//! Credentials and endpoints resolve like Modal's own clients ([`ModalConfig`]); pointing
//! `MODAL_SERVER_URL` at a fake Modal (`sandkit-modal-fake`) runs everything offline. The
//! wire types live in their own crate, `sandkit-modal-proto`, which such fakes use to serve
//! the same services.
//!
//! # What a server sees from this client
//!
//! - Headers like libmodal's Go client: `x-modal-client-type: 9`, `x-modal-client-version:
//!   1.0.0`, `x-modal-libmodal-version: sandkit/<version>`, token id and secret, and
//!   `x-modal-auth-token` (from `AuthTokenGet`; an UNIMPLEMENTED answer means none is sent)
//!   on unary calls and streams; `x-idempotency-key` and `x-retry-attempt` on unary calls.
//! - Only V1 sandbox ids (`sb-` + 22 base62) are accepted; others are not found.
//! - `create` polls `SandboxGetTaskId` until a task id (or `task_result`) appears and writes
//!   initial files through fs-tools before returning.
//! - Commands: `TaskExecStart` with both streams PIPE, environment in `env` (field 12), the
//!   working directory always set for sandboxes this client created, `timeout_secs` rounded
//!   up, and `SANDKIT_EXEC_ID=<exec_id>` added to the environment. A start failing with
//!   NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION or PERMISSION_DENIED while the sandbox
//!   runs is reported as a program that cannot start. Without stdin, an empty
//!   `TaskExecStdinWrite{eof: true}` follows the start.
//! - Output streams end with OK only when complete; a stream cut with a transient code
//!   (UNAVAILABLE, INTERNAL, UNKNOWN, CANCELLED, DEADLINE_EXCEEDED) is reopened at the byte
//!   offset received so far.
//! - Kill: Modal's router has no kill call, so [`kill_argv`] (`/bin/sh -c <script>
//!   sandkit-kill <exec_id>`) runs as a second command and SIGKILLs every process whose
//!   environment holds that `SANDKIT_EXEC_ID`. A server whose commands do not share one
//!   process namespace must handle that command itself.
//! - Files: execs of [`FS_TOOLS_PATH`] with a JSON command. `ReadFile`'s stdout is handed
//!   on as it arrives (a stream that ends with no data is checked against the exit code and
//!   stderr first; a non-zero exit after data ends the stream with an error). `WriteFile`
//!   data arrives through `TaskExecStdinWriteStream` in messages of at most 256 KiB, read
//!   from the caller as the router takes them; a broken stream resumes at
//!   `TaskExecStdinStatus.num_bytes_written` if that is within the last 4 MiB sent. When
//!   the caller's input fails, stdin gets no `end` and the helper is killed.
//! - `terminate` sends `SandboxTerminate`, then long-polls `SandboxWait` until a result.

mod calls;
mod capabilities;
mod client;
mod config;
mod error;
mod exec;
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
pub use config::{DEFAULT_APP_NAME, DEFAULT_IMAGE, DEFAULT_SERVER_URL, ModalConfig};
pub use exec::{EXEC_ID_ENV, KILL_SCRIPT, kill_argv};
pub use files::FS_TOOLS_PATH;
pub use prices::price_sheet;
pub use provider::ModalProvider;
pub use retry::retry_policy_details;

/// The registry name.
pub const NAME: &str = "modal";

sandkit_core::register_provider!(ModalProvider);
