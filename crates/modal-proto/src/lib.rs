//! sandkit-modal-proto: Modal's wire types, prost messages and tonic clients and servers
//! generated from sandkit's own subset of Modal's `.proto` files (`proto/modal_proto/*.proto`).
//! Names and field numbers are Modal's, so these types interoperate with Modal's servers and
//! official clients. `sandkit-provider-modal` speaks them as a client; `sandkit-modal-fake`
//! serves the same services.

/// `modal.client`: the control-plane service `ModalClient` and its messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod client {
    tonic::include_proto!("modal.client");
}

/// `modal.task_command_router`: the per-task `TaskCommandRouter` service and its messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod task_command_router {
    tonic::include_proto!("modal.task_command_router");
}

/// Encoded `google.protobuf.FileDescriptorSet` of both files (and their google imports), for
/// tools that handle these messages generically, such as JSON renderers built on prost-reflect.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/modal_descriptor.bin"));
