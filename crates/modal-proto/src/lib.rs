#![doc = include_str!("../README.md")]

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
