//! sandkit-provider-modal: the `modal` provider, running sandboxes on Modal by speaking Modal's
//! own gRPC protocol (control plane `modal.client.ModalClient` plus the per-task
//! `modal.task_command_router.TaskCommandRouter`).

pub mod proto;
