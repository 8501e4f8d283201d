//! The descriptors of sandkit's Modal proto subset, for handling any method generically:
//! telling unary from streaming calls, and turning messages into readable JSON and back.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, ReflectMessage as _, Value,
};

/// The control-plane service.
pub const CONTROL_SERVICE: &str = "modal.client.ModalClient";
/// The per-task command router service.
pub const ROUTER_SERVICE: &str = "modal.task_command_router.TaskCommandRouter";

/// The pool of every message and service in the proto subset.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The bytes are generated at build time from the same files as the Rust types, so
        // they decode unless the build itself is broken.
        DescriptorPool::decode(sandkit_modal_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into sandkit-modal-proto is valid")
    })
}

/// Splits a gRPC path `/package.Service/Method` into service and method.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// The method a gRPC path names, when it is in the subset.
pub fn method(path: &str) -> Option<MethodDescriptor> {
    let (service, method) = split_path(path)?;
    pool()
        .get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)
}

/// Whether a path is a call to the command router.
pub fn is_router_path(path: &str) -> bool {
    split_path(path).is_some_and(|(service, _)| service == ROUTER_SERVICE)
}

/// The shape of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    Bidirectional,
}

/// The shape of the call at `path`; `None` when the method is not in the subset.
pub fn call_kind(path: &str) -> Option<CallKind> {
    let method = method(path)?;
    Some(
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => CallKind::Unary,
            (false, true) => CallKind::ServerStreaming,
            (true, false) => CallKind::ClientStreaming,
            (true, true) => CallKind::Bidirectional,
        },
    )
}

/// How messages are rendered: proto field names, defaults left out, 64-bit integers as
/// numbers, enums by name.
fn serialize_options() -> prost_reflect::SerializeOptions {
    prost_reflect::SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true)
        .stringify_64_bit_integers(false)
}

/// Renders a message as JSON.
pub fn message_to_json(message: &DynamicMessage) -> serde_json::Value {
    message
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .unwrap_or_else(|error| serde_json::json!({ "@unrenderable": error.to_string() }))
}

/// Decodes wire bytes of message type `descriptor`.
pub fn decode(descriptor: &MessageDescriptor, bytes: &[u8]) -> Result<DynamicMessage, String> {
    DynamicMessage::decode(descriptor.clone(), bytes).map_err(|error| error.to_string())
}

/// Parses a JSON rendering (as written by [`message_to_json`]) back into a message.
pub fn message_from_json(
    descriptor: &MessageDescriptor,
    json: &serde_json::Value,
) -> Result<DynamicMessage, String> {
    DynamicMessage::deserialize(descriptor.clone(), json).map_err(|error| error.to_string())
}

/// Encodes a message to wire bytes.
pub fn encode(message: &DynamicMessage) -> Vec<u8> {
    message.encode_to_vec()
}

/// Answers that hand out a command router's address (`url`) and bearer `jwt`: directly
/// (the router-access calls) or in a nested `command_router_access` (V2 creation).
pub const ROUTER_ACCESS_PATHS: [&str; 3] = [
    "/modal.client.ModalClient/TaskGetCommandRouterAccess",
    "/modal.client.ModalClient/SandboxGetCommandRouterAccess",
    "/modal.client.ModalClient/SandboxCreateV2",
];

/// The part of a router-access answer (see [`ROUTER_ACCESS_PATHS`]) that holds `url` and
/// `jwt`: the nested `command_router_access` when the message has one set, else the
/// message itself when it has a `url` field; `None` otherwise.
pub fn router_access_mut(message: &mut DynamicMessage) -> Option<&mut DynamicMessage> {
    const NESTED: &str = "command_router_access";
    if message.has_field_by_name(NESTED) {
        return match message.get_field_by_name_mut(NESTED) {
            Some(Value::Message(access)) => Some(access),
            _ => None,
        };
    }
    message
        .descriptor()
        .get_field_by_name("url")
        .is_some()
        .then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_methods_with_their_shapes() {
        assert_eq!(
            call_kind("/modal.client.ModalClient/SandboxCreate"),
            Some(CallKind::Unary)
        );
        assert_eq!(
            call_kind("/modal.task_command_router.TaskCommandRouter/TaskExecStdioRead"),
            Some(CallKind::ServerStreaming)
        );
        assert_eq!(
            call_kind("/modal.task_command_router.TaskCommandRouter/TaskExecStdinWriteStream"),
            Some(CallKind::ClientStreaming)
        );
        assert_eq!(call_kind("/modal.client.ModalClient/NoSuchThing"), None);
        assert!(is_router_path(
            "/modal.task_command_router.TaskCommandRouter/TaskExecStart"
        ));
        assert!(!is_router_path("/modal.client.ModalClient/SandboxCreate"));
    }

    #[test]
    fn json_round_trips_bytes_and_enums() {
        use sandkit_modal_proto::task_command_router as tcr;
        let original = tcr::TaskExecStartRequest {
            task_id: "ta-1".into(),
            exec_id: "e".into(),
            command_args: vec!["echo".into(), "hi".into()],
            stdout_config: tcr::TaskExecStdoutConfig::Pipe as i32,
            timeout_secs: Some(5),
            ..Default::default()
        };
        let descriptor = method("/modal.task_command_router.TaskCommandRouter/TaskExecStart")
            .unwrap()
            .input();
        let dynamic = decode(&descriptor, &original.encode_to_vec()).unwrap();
        let json = message_to_json(&dynamic);
        assert_eq!(json["stdout_config"], "TASK_EXEC_STDOUT_CONFIG_PIPE");
        assert_eq!(json["timeout_secs"], 5);
        let back = message_from_json(&descriptor, &json).unwrap();
        let decoded = tcr::TaskExecStartRequest::decode(encode(&back).as_slice()).unwrap();
        assert_eq!(decoded, original);
    }

    #[test]
    fn router_access_is_found_directly_and_nested() {
        use sandkit_modal_proto::client as pb;
        let direct = pb::TaskGetCommandRouterAccessResponse {
            jwt: "j".into(),
            url: "https://upstream:1".into(),
        };
        let nested = pb::SandboxCreateV2Response {
            sandbox_id: "sb-1".into(),
            command_router_access: Some(pb::CommandRouterAccess {
                jwt: "j".into(),
                url: "https://upstream:2".into(),
            }),
            ..Default::default()
        };
        for (path, bytes, url) in [
            (
                ROUTER_ACCESS_PATHS[0],
                direct.encode_to_vec(),
                "https://upstream:1",
            ),
            (
                ROUTER_ACCESS_PATHS[2],
                nested.encode_to_vec(),
                "https://upstream:2",
            ),
        ] {
            let mut message = decode(&method(path).unwrap().output(), &bytes).unwrap();
            let access = router_access_mut(&mut message).unwrap();
            assert_eq!(access.get_field_by_name("url").unwrap().as_str(), Some(url));
        }
        let without = pb::SandboxCreateV2Response::default().encode_to_vec();
        let mut message =
            decode(&method(ROUTER_ACCESS_PATHS[2]).unwrap().output(), &without).unwrap();
        assert!(router_access_mut(&mut message).is_none());
    }
}
