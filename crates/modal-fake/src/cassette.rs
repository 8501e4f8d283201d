//! Cassettes: recorded exchanges as readable JSON, one entry per call, with every
//! credential and JWT redacted.
//!
//! Messages are stored as protobuf JSON (proto field names, defaults left out, `bytes` as
//! base64); a message of a method outside sandkit's proto subset is stored as
//! `{"@raw": "<base64>"}`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::MessageDescriptor;
use serde::{Deserialize, Serialize};
use tonic::Code;
use tonic::metadata::MetadataMap;

use crate::descriptors;
use crate::error::{Error, Result};
use crate::ids;

/// The format tag written into every cassette.
pub const FORMAT: &str = "sandkit-modal-cassette/1";
/// What a redacted value is replaced by (JWTs become a well-formed stand-in JWT instead).
pub const REDACTED: &str = "[redacted]";
/// Headers that carry credentials.
const SECRET_HEADERS: [&str; 5] = [
    "x-modal-token-id",
    "x-modal-token-secret",
    "x-modal-auth-token",
    "x-modal-sandbox-token",
    "authorization",
];
/// Request headers worth keeping in a cassette (the rest is client noise).
const KEPT_HEADERS: [&str; 6] = [
    "x-modal-client-type",
    "x-modal-client-version",
    "x-idempotency-key",
    "x-retry-attempt",
    "x-modal-libmodal-version",
    "x-throttle-retry-attempt",
];

/// A recorded session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cassette {
    /// Always [`FORMAT`].
    pub format: String,
    /// `emulator` or `modal`: what answered when this was recorded.
    pub recorded_from: String,
    /// The upstream URL the recorder forwarded to.
    pub upstream: String,
    /// When it was recorded, seconds since the Unix epoch.
    pub recorded_at_unix_secs: u64,
    /// Free text: how it was made and how to make it again.
    #[serde(default)]
    pub note: String,
    /// The exchanges, in the order the calls arrived.
    pub exchanges: Vec<Exchange>,
}

/// One call and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Position in arrival order.
    pub id: u64,
    /// e.g. `modal.client.ModalClient`.
    pub service: String,
    /// e.g. `SandboxCreate`.
    pub method: String,
    /// A few request headers, credentials redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, String>,
    /// The request messages (one for unary calls).
    pub request: Vec<serde_json::Value>,
    /// The response messages.
    #[serde(default)]
    pub response: Vec<serde_json::Value>,
    /// How the call ended.
    pub status: StatusRecord,
    /// When the call arrived, in milliseconds since the recording started.
    #[serde(default)]
    pub started_ms: u64,
    /// How long the call took, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

impl Exchange {
    /// `/service/method`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// The gRPC status a call ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The code by name, e.g. `OK` or `UNAVAILABLE`.
    pub code: String,
    /// The message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// `grpc-status-details-bin`, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The details decoded as `modal.client.RPCStatus`, for reading only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_decoded: Option<serde_json::Value>,
}

const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl StatusRecord {
    /// A successful end.
    pub fn ok() -> Self {
        Self {
            code: "OK".to_owned(),
            message: String::new(),
            details: None,
            details_decoded: None,
        }
    }

    /// The record of `status`.
    pub fn of(status: &tonic::Status) -> Self {
        let details = status.details();
        let details_decoded = (!details.is_empty())
            .then(|| {
                let descriptor =
                    descriptors::pool().get_message_by_name("modal.client.RPCStatus")?;
                descriptors::decode(&descriptor, details)
                    .ok()
                    .map(|message| descriptors::message_to_json(&message))
            })
            .flatten();
        Self {
            code: CODE_NAMES
                .get(status.code() as usize)
                .copied()
                .unwrap_or("UNKNOWN")
                .to_owned(),
            message: status.message().to_owned(),
            details: (!details.is_empty()).then(|| STANDARD.encode(details)),
            details_decoded,
        }
    }

    /// The code; unknown names read as `UNKNOWN`.
    pub fn code(&self) -> Code {
        CODE_NAMES
            .iter()
            .position(|name| *name == self.code)
            .map_or(Code::Unknown, |index| Code::from_i32(index as i32))
    }

    /// The status to answer with; `None` for `OK`.
    pub fn to_status(&self) -> Option<tonic::Status> {
        let code = self.code();
        if code == Code::Ok {
            return None;
        }
        let details = self
            .details
            .as_deref()
            .and_then(|details| STANDARD.decode(details).ok())
            .unwrap_or_default();
        Some(tonic::Status::with_details(
            code,
            self.message.clone(),
            Bytes::from(details),
        ))
    }
}

impl Cassette {
    /// An empty cassette.
    pub fn new(recorded_from: &str, upstream: &str, note: &str) -> Self {
        Self {
            format: FORMAT.to_owned(),
            recorded_from: recorded_from.to_owned(),
            upstream: upstream.to_owned(),
            recorded_at_unix_secs: ids::now_secs_f64() as u64,
            note: note.to_owned(),
            exchanges: Vec::new(),
        }
    }

    /// Reads a cassette file.
    pub fn load(path: &Path) -> Result<Self> {
        let error = |reason: String| Error::Cassette {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let cassette: Cassette = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
        if cassette.format != FORMAT {
            return Err(error(format!(
                "format `{}` is not `{FORMAT}`",
                cassette.format
            )));
        }
        Ok(cassette)
    }

    /// Writes the cassette, replacing the file atomically; `secrets` are scrubbed from
    /// every string on the way out.
    pub fn save(&self, path: &Path, secrets: &HashSet<String>) -> Result<()> {
        let error = |reason: String| Error::Cassette {
            path: path.to_owned(),
            reason,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| error(e.to_string()))?;
        text = scrub(&text, secrets);
        text.push('\n');
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
        }
        let temporary = path.with_extension("json.partial");
        std::fs::write(&temporary, text).map_err(|e| error(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| error(e.to_string()))
    }
}

/// Replaces every occurrence of each secret (at least 8 characters, so short common
/// strings are left alone) with [`REDACTED`].
pub fn scrub(text: &str, secrets: &HashSet<String>) -> String {
    let mut longest_first: Vec<&String> = secrets.iter().filter(|s| s.len() >= 8).collect();
    longest_first.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let mut text = text.to_owned();
    for secret in longest_first {
        // JSON escapes nothing in tokens and ids, so the raw form is what appears.
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// The request headers kept in a cassette, credentials redacted; the credential values
/// seen are added to `secrets`.
pub fn record_headers(
    metadata: &MetadataMap,
    secrets: &mut HashSet<String>,
) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for name in SECRET_HEADERS {
        if let Some(value) = metadata.get(name).and_then(|v| v.to_str().ok()) {
            let secret = value.strip_prefix("Bearer ").unwrap_or(value);
            if !secret.is_empty() {
                secrets.insert(secret.to_owned());
            }
            kept.insert(name.to_owned(), REDACTED.to_owned());
        }
    }
    for name in KEPT_HEADERS {
        if let Some(value) = metadata.get(name).and_then(|v| v.to_str().ok()) {
            kept.insert(name.to_owned(), value.to_owned());
        }
    }
    kept
}

/// A message as cassette JSON, with JWTs and secret values redacted (those found are added
/// to `secrets`).
pub fn message_json(
    descriptor: Option<&MessageDescriptor>,
    bytes: &[u8],
    secrets: &mut HashSet<String>,
) -> serde_json::Value {
    let mut json = match descriptor.map(|d| descriptors::decode(d, bytes)) {
        Some(Ok(message)) => descriptors::message_to_json(&message),
        _ => serde_json::json!({ "@raw": STANDARD.encode(bytes) }),
    };
    redact(&mut json, None, secrets);
    json
}

/// The wire bytes of a cassette message.
pub fn message_bytes(
    descriptor: Option<&MessageDescriptor>,
    json: &serde_json::Value,
) -> std::result::Result<Vec<u8>, String> {
    if let Some(raw) = json.get("@raw").and_then(|raw| raw.as_str()) {
        return STANDARD.decode(raw).map_err(|e| e.to_string());
    }
    let descriptor = descriptor.ok_or("the method is not in the proto subset")?;
    Ok(descriptors::message_from_json(descriptor, json)?.encode_to_vec())
}

/// Fields whose whole subtree holds secrets: inline secret maps travel as
/// `StringMap.contents` inside them (V2 creation, Python's exec environment).
const SECRET_SUBTREES: [&str; 2] = ["secret_sources", "ephemeral_secrets"];

/// Redacts in place: `token`, `jwt` and `sandbox_token` strings become the stand-in JWT,
/// the values of `env_dict` and of `contents` maps under [`SECRET_SUBTREES`] (secret
/// contents) become [`REDACTED`], and any other JWT-shaped string is replaced too.
fn redact(value: &mut serde_json::Value, key: Option<&str>, secrets: &mut HashSet<String>) {
    redact_in(value, key, false, secrets);
}

fn redact_in(
    value: &mut serde_json::Value,
    key: Option<&str>,
    in_secret: bool,
    secrets: &mut HashSet<String>,
) {
    match value {
        serde_json::Value::String(text) => {
            let is_token_field = matches!(key, Some("token" | "jwt" | "sandbox_token"));
            if (is_token_field || ids::looks_like_jwt(text)) && !text.is_empty() {
                secrets.insert(text.clone());
                *text = ids::redacted_jwt();
            }
        }
        serde_json::Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                let secret_map = name == "env_dict" || (in_secret && name == "contents");
                if secret_map && let serde_json::Value::Object(values) = child {
                    for secret in values.values_mut() {
                        if let Some(text) = secret.as_str() {
                            secrets.insert(text.to_owned());
                        }
                        *secret = serde_json::Value::String(REDACTED.to_owned());
                    }
                } else {
                    let in_secret = in_secret || SECRET_SUBTREES.contains(&name.as_str());
                    redact_in(child, Some(name), in_secret, secrets);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact_in(item, key, in_secret, secrets);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_jwts_and_secret_values_are_redacted() {
        let mut secrets = HashSet::new();
        let jwt = ids::mint_jwt("ta-1", std::time::Duration::from_secs(60));
        let mut json = serde_json::json!({
            "jwt": jwt,
            "url": "https://127.0.0.1:1",
            "env_dict": {"API_KEY": "hunter2-hunter2"},
            "nested": [{"token": "opaque-token-value"}],
        });
        redact(&mut json, None, &mut secrets);
        let text = json.to_string();
        assert!(!text.contains(&jwt));
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("opaque-token-value"));
        assert!(text.contains("https://127.0.0.1:1"));
        assert_eq!(json["jwt"], ids::redacted_jwt());
        assert!(secrets.contains(&jwt));
        let scrubbed = scrub(&format!("echo {jwt} hunter2-hunter2"), &secrets);
        assert_eq!(scrubbed, format!("echo {REDACTED} {REDACTED}"));
    }

    #[test]
    fn inline_secrets_of_v2_creation_and_exec_are_redacted() {
        let mut secrets = HashSet::new();
        let mut json = serde_json::json!({
            "secret_sources": [
                {"env": {"contents": {"FLOW_SECRET": "s3cret-value"}}},
                {"secret_id": "st-1"},
            ],
            "ephemeral_secrets": {"contents": {"OLD": "older-secret"}},
            "sandbox_token": "opaque-sandbox-token",
            "definition": {"environment_variables": {"contents": {"PLAIN": "kept"}}},
        });
        redact(&mut json, None, &mut secrets);
        let text = json.to_string();
        for secret in ["s3cret-value", "older-secret", "opaque-sandbox-token"] {
            assert!(!text.contains(secret), "{secret} in {text}");
            assert!(secrets.contains(secret));
        }
        assert_eq!(json["secret_sources"][1]["secret_id"], "st-1");
        assert_eq!(
            json["definition"]["environment_variables"]["contents"]["PLAIN"],
            "kept"
        );
    }

    #[test]
    fn headers_keep_only_what_is_useful_and_hide_credentials() {
        let mut metadata = MetadataMap::new();
        metadata.insert("x-modal-token-secret", "as-very-secret".parse().unwrap());
        metadata.insert("authorization", "Bearer eyJabc.def.ghi".parse().unwrap());
        metadata.insert("x-idempotency-key", "key-1".parse().unwrap());
        metadata.insert("x-modal-platform", "linux".parse().unwrap());
        let mut secrets = HashSet::new();
        let kept = record_headers(&metadata, &mut secrets);
        assert_eq!(kept["x-modal-token-secret"], REDACTED);
        assert_eq!(kept["authorization"], REDACTED);
        assert_eq!(kept["x-idempotency-key"], "key-1");
        assert!(!kept.contains_key("x-modal-platform"));
        assert!(secrets.contains("as-very-secret") && secrets.contains("eyJabc.def.ghi"));
    }

    #[test]
    fn statuses_round_trip_with_details() {
        let status = crate::faults::resource_exhausted(0.5);
        let record = StatusRecord::of(&status);
        assert_eq!(record.code, "RESOURCE_EXHAUSTED");
        assert!(record.details_decoded.is_some());
        let back = record.to_status().unwrap();
        assert_eq!(back.code(), Code::ResourceExhausted);
        assert_eq!(back.details(), status.details());
        assert!(StatusRecord::ok().to_status().is_none());
    }
}
