//! Replay mode: serves a cassette with no network, no Docker and no credentials.
//!
//! A request is answered by the first not-yet-used recorded exchange of the same method
//! whose request matches; when every match was used, the last one answers again (polls
//! and retries repeat requests). Values the client makes up are matched by rule:
//! - UUIDs anywhere in strings (exec ids, snapshot ids, random names and paths) and the
//!   sandbox `name` / `sandbox_name` fields match any value, but consistently: once a
//!   recorded value is paired with a new one, the pair holds for the rest of the replay,
//!   and the new value is put back wherever the recorded one appears in answers;
//! - values of sandkit's run-specific tags (`sandkit.*` but `sandkit.managed-by`: owner,
//!   run id, creation and expiry times) match anything (their UUID-like parts are still
//!   paired, so answers carry the new run's values);
//! - redacted values (`[redacted]`) match anything;
//! - `TaskExecStdioRead` matches whatever its `offset`, and the recorded output is served
//!   from that offset on, so clients may resume streams wherever they were cut;
//! - whole-number strings between 1024 and 65535 in a command line (ports chosen at run
//!   time) are paired like UUIDs.
//!
//! Waits (`TaskExecWait`, `SandboxWait`) end no earlier than they did in the recording,
//! counted from the first call: clients tell a timeout from a normal end by the clock.
//! Times in answers (creation, start, end and readiness times, sandkit's `created-at` and
//! `expires-at` tags) are moved forward by the time between recording and replay, and
//! `before_timestamp` in requests is moved back before matching.
//!
//! A request without a match is answered `FAILED_PRECONDITION`, naming the nearest
//! recorded request and the fields that differ.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use prost_reflect::{DynamicMessage, MapKey, MessageDescriptor, ReflectMessage as _, Value};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cassette::{self, Cassette, Exchange, REDACTED};
use crate::codec::{AnyMethod, RawHandler};
use crate::descriptors;
use crate::emulator::RouterScheme;
use crate::error::{Error, Result};
use crate::faults::{FaultConfig, FaultLayer};
use crate::listener::{self, ServerHandle};

const STDIO_READ: &str = "/modal.task_command_router.TaskCommandRouter/TaskExecStdioRead";
/// Calls that wait for something to happen (a command or sandbox to end): replay holds
/// them as long as they took when recorded, because clients judge timeouts by the clock.
const WAITS: [&str; 2] = [
    "/modal.task_command_router.TaskCommandRouter/TaskExecWait",
    "/modal.client.ModalClient/SandboxWait",
];
const ROUTER_ACCESS: [&str; 2] = [
    "/modal.client.ModalClient/TaskGetCommandRouterAccess",
    "/modal.client.ModalClient/SandboxGetCommandRouterAccess",
];
/// Epoch-seconds fields of answers, moved to the replay's time.
const TIME_FIELDS: [&str; 6] = [
    "created_at",
    "started_at",
    "finished_at",
    "enqueued_at",
    "ready_at",
    "timestamp",
];
/// sandkit tags holding epoch seconds.
const TIME_TAGS: [&str; 2] = ["sandkit.created-at", "sandkit.expires-at"];
/// Request fields holding a time taken from an answer.
const REQUEST_TIME_FIELDS: [&str; 1] = ["before_timestamp"];
/// Anything below this is a duration, not a point in time.
const EPOCH_FLOOR_SECS: f64 = 1e9;

/// Fields whose whole value is a client-chosen name.
const NAME_FIELDS: [&str; 2] = ["name", "sandbox_name"];
/// The one sandkit tag whose value is the same in every run.
const STABLE_SANDKIT_TAG: &str = "sandkit.managed-by";
/// Longest value shown in a mismatch message.
const SHOWN_VALUE_CHARS: usize = 80;
/// Most differences listed in a mismatch message.
const SHOWN_DIFFERENCES: usize = 8;

/// How the replayer runs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The cassette served.
    pub cassette: Cassette,
    /// Faults injected in front of the replayer.
    pub faults: FaultConfig,
    /// Scheme of the router URL handed to clients.
    pub router_scheme: RouterScheme,
}

impl ReplayOptions {
    /// Options serving `cassette`.
    pub fn new(cassette: Cassette) -> Self {
        Self {
            cassette,
            faults: FaultConfig::default(),
            router_scheme: RouterScheme::default(),
        }
    }

    /// Options serving the cassette file at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self::new(Cassette::load(path)?))
    }
}

/// A recorded message: decoded when its method is known, raw otherwise.
#[derive(Clone)]
enum Recorded {
    Message(DynamicMessage),
    Raw(Bytes),
}

impl Recorded {
    fn encode(&self) -> Bytes {
        match self {
            Recorded::Message(message) => Bytes::from(descriptors::encode(message)),
            Recorded::Raw(bytes) => bytes.clone(),
        }
    }
}

struct Entry {
    exchange: Exchange,
    request: Vec<Recorded>,
    response: Vec<Recorded>,
    status: Option<Status>,
}

/// Recorded ↔ replayed values paired so far.
#[derive(Default)]
struct Bindings {
    recorded_to_new: HashMap<String, String>,
    new_to_recorded: HashMap<String, String>,
}

struct Replayer {
    entries: Vec<Entry>,
    /// When the first call arrived.
    origin: std::sync::OnceLock<tokio::time::Instant>,
    /// When the first recorded call arrived, in the recording's milliseconds.
    recorded_origin_ms: u64,
    /// When the recording started, seconds since the Unix epoch.
    recorded_at_unix_secs: f64,
    /// How far replay times lie after recorded ones, fixed at the first call.
    time_shift_secs: std::sync::OnceLock<f64>,
    state: Mutex<ReplayState>,
    own_router_url: String,
}

#[derive(Default)]
struct ReplayState {
    used: Vec<bool>,
    bindings: Bindings,
}

/// One difference between a recorded and an incoming request.
struct Difference {
    path: String,
    recorded: String,
    got: String,
}

/// Compares a recorded request with an incoming one under the matching rules.
struct Comparison<'a> {
    bindings: &'a Bindings,
    new_pairs: Vec<(String, String)>,
    differences: Vec<Difference>,
    ignore_offset: bool,
    time_shift_secs: f64,
}

fn shown(value: &str) -> String {
    let mut text: String = value.chars().take(SHOWN_VALUE_CHARS).collect();
    if value.chars().count() > SHOWN_VALUE_CHARS {
        text.push('…');
    }
    format!("{text:?}")
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => shown(text),
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => format!("bytes {}", shown(text)),
            Err(_) => format!("{} bytes", bytes.len()),
        },
        Value::Message(message) => shown(&descriptors::message_to_json(message).to_string()),
        Value::List(items) => format!("a list of {}", items.len()),
        Value::Map(map) => format!("a map of {}", map.len()),
        other => format!("{other:?}"),
    }
}

/// Splits text into literal pieces and tokens of client-made randomness: UUIDs
/// (`8-4-4-4-12` hex) and runs of at least 12 hex digits mixing digits and letters (simple
/// UUIDs and their prefixes, as in random names), standing alone between non-alphanumeric
/// characters.
fn tokens(text: &str) -> (Vec<&str>, Vec<&str>) {
    let bytes = text.as_bytes();
    let hex = |b: u8| b.is_ascii_hexdigit();
    let alone_after = |at: usize| bytes.get(at).is_none_or(|b| !b.is_ascii_alphanumeric());
    let mut literals = Vec::new();
    let mut found = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let mut length = 0;
        if i == 0 || !bytes[i - 1].is_ascii_alphanumeric() {
            let mut at = i;
            let mut dashed = true;
            for (index, run) in [8usize, 4, 4, 4, 12].iter().enumerate() {
                if at + run > bytes.len() || !bytes[at..at + run].iter().all(|b| hex(*b)) {
                    dashed = false;
                    break;
                }
                at += run;
                if index < 4 {
                    if bytes.get(at) != Some(&b'-') {
                        dashed = false;
                        break;
                    }
                    at += 1;
                }
            }
            if dashed && alone_after(at) {
                length = at - i;
            } else {
                let run = bytes[i..].iter().take_while(|b| hex(**b)).count();
                let run_bytes = &bytes[i..i + run];
                if run >= 12
                    && alone_after(i + run)
                    && run_bytes.iter().any(u8::is_ascii_digit)
                    && run_bytes.iter().any(u8::is_ascii_alphabetic)
                {
                    length = run;
                }
            }
        }
        if length > 0 {
            literals.push(&text[literal_start..i]);
            found.push(&text[i..i + length]);
            i += length;
            literal_start = i;
        } else {
            i += 1;
        }
    }
    literals.push(&text[literal_start..]);
    (literals, found)
}

impl Comparison<'_> {
    fn differ(&mut self, path: &str, recorded: String, got: String) {
        self.differences.push(Difference {
            path: path.to_owned(),
            recorded,
            got,
        });
    }

    /// Pairs a recorded value with a new one, if that is consistent with earlier pairs.
    fn pair(&mut self, recorded: &str, new: &str) -> bool {
        let earlier_new = self.bindings.recorded_to_new.get(recorded).or_else(|| {
            self.new_pairs
                .iter()
                .find(|(r, _)| r == recorded)
                .map(|(_, n)| n)
        });
        if let Some(earlier) = earlier_new {
            return earlier == new;
        }
        let earlier_recorded = self.bindings.new_to_recorded.get(new).or_else(|| {
            self.new_pairs
                .iter()
                .find(|(_, n)| n == new)
                .map(|(r, _)| r)
        });
        if let Some(earlier) = earlier_recorded {
            return earlier == recorded;
        }
        self.new_pairs.push((recorded.to_owned(), new.to_owned()));
        true
    }

    fn strings(&mut self, path: &str, field: &str, recorded: &str, got: &str) {
        if recorded == got || recorded == REDACTED {
            return;
        }
        let port = |text: &str| {
            !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit())
                && text
                    .parse::<u32>()
                    .is_ok_and(|n| (1024..=65535).contains(&n))
        };
        let whole_value = (NAME_FIELDS.contains(&field) && !recorded.is_empty() && !got.is_empty())
            || (field == "command_args" && port(recorded) && port(got));
        if whole_value {
            if !self.pair(recorded, got) {
                self.differ(path, shown(recorded), shown(got));
            }
            return;
        }
        let (recorded_literals, recorded_tokens) = tokens(recorded);
        let (got_literals, got_tokens) = tokens(got);
        let same_shape =
            recorded_literals == got_literals && recorded_tokens.len() == got_tokens.len();
        if !same_shape
            || !recorded_tokens
                .iter()
                .zip(&got_tokens)
                .all(|(r, g)| self.pair(r, g))
        {
            self.differ(path, shown(recorded), shown(got));
        }
    }

    /// Pairs the random parts of two values that may differ without it mattering.
    fn pair_loosely(&mut self, recorded: &str, got: &str) {
        let (recorded_literals, recorded_tokens) = tokens(recorded);
        let (got_literals, got_tokens) = tokens(got);
        if recorded_literals == got_literals && recorded_tokens.len() == got_tokens.len() {
            for (r, g) in recorded_tokens.iter().zip(&got_tokens) {
                // An inconsistent pair is simply not made: the value matches anyway.
                let _ = self.pair(r, g);
            }
        }
    }

    fn values(&mut self, path: &str, field: &str, recorded: &Value, got: &Value) {
        if recorded == got {
            return;
        }
        if let (Value::F64(r), Value::F64(g)) = (recorded, got)
            && REQUEST_TIME_FIELDS.contains(&field)
            && *g > EPOCH_FLOOR_SECS
            && (r - (g - self.time_shift_secs)).abs() < 0.01
        {
            return;
        }
        match (recorded, got) {
            (Value::String(r), Value::String(g)) => self.strings(path, field, r, g),
            (Value::Bytes(r), Value::Bytes(g)) => {
                match (std::str::from_utf8(r), std::str::from_utf8(g)) {
                    (Ok(r), Ok(g)) => self.strings(path, field, r, g),
                    _ => self.differ(path, describe(recorded), describe(got)),
                }
            }
            (Value::Message(r), Value::Message(g)) => self.messages(path, r, g),
            (Value::List(r), Value::List(g)) => {
                if r.len() != g.len() {
                    self.differ(
                        path,
                        format!("{} items", r.len()),
                        format!("{} items", g.len()),
                    );
                    return;
                }
                for (index, (r, g)) in r.iter().zip(g).enumerate() {
                    self.values(&format!("{path}[{index}]"), field, r, g);
                }
            }
            (Value::Map(r), Value::Map(g)) => {
                let mut keys: Vec<&MapKey> = r.keys().chain(g.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let key_path = format!("{path}[{}]", map_key(key));
                    match (r.get(key), g.get(key)) {
                        (Some(r), Some(g)) => self.values(&key_path, field, r, g),
                        (Some(r), None) => self.differ(&key_path, describe(r), "nothing".into()),
                        (None, Some(g)) => self.differ(&key_path, "nothing".into(), describe(g)),
                        (None, None) => {}
                    }
                }
            }
            _ => self.differ(path, describe(recorded), describe(got)),
        }
    }

    fn messages(&mut self, path: &str, recorded: &DynamicMessage, got: &DynamicMessage) {
        let descriptor = recorded.descriptor();
        let run_specific_tag = descriptor.full_name() == "modal.client.SandboxTag"
            && recorded
                .get_field_by_name("tag_name")
                .and_then(|name| name.as_str().map(str::to_owned))
                .is_some_and(|name| name.starts_with("sandkit.") && name != STABLE_SANDKIT_TAG);
        for field in descriptor.fields() {
            let name = field.name();
            if run_specific_tag && name == "tag_value" {
                if let (Some(Value::String(r)), Some(Value::String(g))) = (
                    recorded.get_field_by_name(name).map(|v| v.into_owned()),
                    got.get_field_by_name(name).map(|v| v.into_owned()),
                ) {
                    self.pair_loosely(&r, &g);
                }
                continue;
            }
            if self.ignore_offset && name == "offset" {
                continue;
            }
            let field_path = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            let r = recorded.get_field(&field);
            let g = got.get_field(&field);
            self.values(&field_path, name, &r, &g);
        }
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

fn now_unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Moves the points in time of an answer forward by `shift` seconds.
fn shift_times(value: &mut Value, field: &str, shift: f64) {
    match value {
        Value::F64(seconds) if TIME_FIELDS.contains(&field) && *seconds > EPOCH_FLOOR_SECS => {
            *seconds += shift;
        }
        Value::Message(message) => {
            let time_tag = message.descriptor().full_name() == "modal.client.SandboxTag"
                && message
                    .get_field_by_name("tag_name")
                    .and_then(|name| name.as_str().map(|name| TIME_TAGS.contains(&name)))
                    .unwrap_or(false);
            if time_tag {
                if let Some(Value::String(text)) = message.get_field_by_name_mut("tag_value")
                    && let Ok(seconds) = text.parse::<u64>()
                {
                    *text = (seconds + shift.round() as u64).to_string();
                }
                return;
            }
            for (descriptor, child) in message.fields_mut() {
                shift_times(child, descriptor.name(), shift);
            }
        }
        Value::List(items) => {
            for item in items {
                shift_times(item, field, shift);
            }
        }
        _ => {}
    }
}

/// Puts the replaying client's values back where the recorded ones appear in an answer.
fn rewrite_strings(value: &mut Value, bindings: &Bindings) {
    let replace = |text: &str| -> Option<String> {
        if let Some(new) = bindings.recorded_to_new.get(text) {
            return Some(new.clone());
        }
        let (literals, found) = tokens(text);
        if found
            .iter()
            .all(|token| !bindings.recorded_to_new.contains_key(*token))
        {
            return None;
        }
        let mut rebuilt = String::with_capacity(text.len());
        for (index, literal) in literals.iter().enumerate() {
            rebuilt.push_str(literal);
            if let Some(token) = found.get(index) {
                rebuilt.push_str(
                    bindings
                        .recorded_to_new
                        .get(*token)
                        .map_or(token, String::as_str),
                );
            }
        }
        Some(rebuilt)
    };
    match value {
        Value::String(text) => {
            if let Some(new) = replace(text) {
                *text = new;
            }
        }
        Value::Message(message) => {
            for (_, child) in message.fields_mut() {
                rewrite_strings(child, bindings);
            }
        }
        Value::List(items) => {
            for item in items {
                rewrite_strings(item, bindings);
            }
        }
        Value::Map(map) => {
            for child in map.values_mut() {
                rewrite_strings(child, bindings);
            }
        }
        _ => {}
    }
}

impl Replayer {
    fn new(cassette: Cassette, own_router_url: String) -> Result<Self> {
        let recorded_at = cassette.recorded_at_unix_secs;
        let mut entries = Vec::with_capacity(cassette.exchanges.len());
        for exchange in cassette.exchanges {
            let method = descriptors::method(&exchange.path());
            let decode = |json: &serde_json::Value, descriptor: Option<MessageDescriptor>| {
                let bytes =
                    cassette::message_bytes(descriptor.as_ref(), json).map_err(|reason| {
                        Error::Cassette {
                            path: Default::default(),
                            reason: format!("exchange {}: {reason}", exchange.id),
                        }
                    })?;
                Ok::<_, Error>(match descriptor {
                    Some(descriptor) => {
                        Recorded::Message(descriptors::decode(&descriptor, &bytes).map_err(
                            |reason| Error::Cassette {
                                path: Default::default(),
                                reason: format!("exchange {}: {reason}", exchange.id),
                            },
                        )?)
                    }
                    None => Recorded::Raw(Bytes::from(bytes)),
                })
            };
            let request = exchange
                .request
                .iter()
                .map(|json| decode(json, method.as_ref().map(|m| m.input())))
                .collect::<Result<Vec<_>>>()?;
            let response = exchange
                .response
                .iter()
                .map(|json| decode(json, method.as_ref().map(|m| m.output())))
                .collect::<Result<Vec<_>>>()?;
            let status = exchange.status.to_status();
            entries.push(Entry {
                exchange,
                request,
                response,
                status,
            });
        }
        let used = vec![false; entries.len()];
        let recorded_origin_ms = entries
            .iter()
            .map(|entry| entry.exchange.started_ms)
            .min()
            .unwrap_or(0);
        Ok(Self {
            entries,
            origin: std::sync::OnceLock::new(),
            recorded_origin_ms,
            recorded_at_unix_secs: recorded_at as f64,
            time_shift_secs: std::sync::OnceLock::new(),
            state: Mutex::new(ReplayState {
                used,
                bindings: Bindings::default(),
            }),
            own_router_url,
        })
    }

    fn compare(
        &self,
        entry: &Entry,
        incoming: &[Recorded],
        bindings: &Bindings,
        ignore_offset: bool,
    ) -> (Vec<(String, String)>, Vec<Difference>) {
        let mut comparison = Comparison {
            bindings,
            new_pairs: Vec::new(),
            differences: Vec::new(),
            ignore_offset,
            time_shift_secs: self.time_shift(),
        };
        if entry.request.len() != incoming.len() {
            comparison.differ(
                "(messages)",
                format!("{} request messages", entry.request.len()),
                format!("{} request messages", incoming.len()),
            );
        }
        for (index, (recorded, got)) in entry.request.iter().zip(incoming).enumerate() {
            let prefix = if incoming.len() > 1 {
                format!("[{index}]")
            } else {
                String::new()
            };
            match (recorded, got) {
                (Recorded::Message(r), Recorded::Message(g)) => {
                    comparison.messages(&prefix, r, g);
                }
                (r, g) if r.encode() == g.encode() => {}
                _ => comparison.differ(&prefix, "recorded bytes".into(), "other bytes".into()),
            }
        }
        (comparison.new_pairs, comparison.differences)
    }

    /// Seconds between the recording and this replay (fixed at the first call).
    fn time_shift(&self) -> f64 {
        *self.time_shift_secs.get_or_init(|| {
            let recorded_origin =
                self.recorded_at_unix_secs + self.recorded_origin_ms as f64 / 1000.0;
            (now_unix_secs() - recorded_origin).max(0.0)
        })
    }

    /// Finds the exchange answering `incoming` at `path` and marks it used.
    fn find(&self, path: &str, incoming: &[Recorded]) -> Result<usize, Status> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ignore_offset = path == STDIO_READ;
        let candidates: Vec<usize> = (0..self.entries.len())
            .filter(|index| self.entries[*index].exchange.path() == path)
            .collect();
        let mut nearest: Option<(usize, Vec<Difference>)> = None;
        let mut reusable = None;
        for &index in &candidates {
            let (pairs, differences) = self.compare(
                &self.entries[index],
                incoming,
                &state.bindings,
                ignore_offset,
            );
            if differences.is_empty() && ignore_offset && !self.offset_servable(index, incoming) {
                continue;
            }
            if differences.is_empty() {
                if !state.used[index] {
                    state.used[index] = true;
                    for (recorded, new) in pairs {
                        state
                            .bindings
                            .new_to_recorded
                            .insert(new.clone(), recorded.clone());
                        state.bindings.recorded_to_new.insert(recorded, new);
                    }
                    return Ok(index);
                }
                reusable = Some((index, pairs));
            } else if nearest
                .as_ref()
                .is_none_or(|(_, best)| differences.len() < best.len())
            {
                nearest = Some((index, differences));
            }
        }
        if let Some((index, pairs)) = reusable {
            for (recorded, new) in pairs {
                state
                    .bindings
                    .new_to_recorded
                    .insert(new.clone(), recorded.clone());
                state.bindings.recorded_to_new.insert(recorded, new);
            }
            return Ok(index);
        }
        Err(self.mismatch(path, nearest))
    }

    /// Whether a recorded stdio read can serve the incoming offset (it starts at or before).
    fn offset_servable(&self, index: usize, incoming: &[Recorded]) -> bool {
        offset_of(&self.entries[index].request) <= offset_of(incoming)
    }

    fn mismatch(&self, path: &str, nearest: Option<(usize, Vec<Difference>)>) -> Status {
        let mut message =
            format!("modal-fake replay: no recorded exchange matches this {path} call");
        match nearest {
            Some((index, differences)) => {
                let exchange = &self.entries[index].exchange;
                let _ = write!(
                    message,
                    "; nearest recorded request is exchange #{}, differing in {} field(s):",
                    exchange.id,
                    differences.len()
                );
                for difference in differences.iter().take(SHOWN_DIFFERENCES) {
                    let _ = write!(
                        message,
                        " `{}`: recorded {}, got {};",
                        difference.path, difference.recorded, difference.got
                    );
                }
                if differences.len() > SHOWN_DIFFERENCES {
                    let _ = write!(
                        message,
                        " and {} more",
                        differences.len() - SHOWN_DIFFERENCES
                    );
                }
            }
            None => {
                let mut counts: HashMap<String, usize> = HashMap::new();
                for entry in &self.entries {
                    *counts.entry(entry.exchange.method.clone()).or_default() += 1;
                }
                let mut methods: Vec<String> = counts
                    .into_iter()
                    .map(|(method, count)| format!("{method}×{count}"))
                    .collect();
                methods.sort();
                let _ = write!(
                    message,
                    "; the cassette has no call of this method (it has: {})",
                    methods.join(", ")
                );
            }
        }
        Status::failed_precondition(message)
    }

    /// The answer of exchange `index` to `incoming`.
    fn answer(
        &self,
        index: usize,
        path: &str,
        incoming: &[Recorded],
    ) -> (Vec<Bytes>, Option<Status>) {
        let entry = &self.entries[index];
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut messages: Vec<Recorded> = entry.response.clone();
        for message in &mut messages {
            if let Recorded::Message(message) = message {
                let mut value = Value::Message(message.clone());
                rewrite_strings(&mut value, &state.bindings);
                shift_times(&mut value, "", self.time_shift());
                if let Value::Message(rewritten) = value {
                    *message = rewritten;
                }
                if ROUTER_ACCESS.contains(&path) && message.has_field_by_name("url") {
                    message.set_field_by_name("url", Value::String(self.own_router_url.clone()));
                }
            }
        }
        let mut bytes: Vec<Bytes> = messages.iter().map(Recorded::encode).collect();
        if path == STDIO_READ {
            let skip = offset_of(incoming).saturating_sub(offset_of(&entry.request));
            bytes = skip_output(&entry.response, skip);
        }
        (bytes, entry.status.clone())
    }
}

fn offset_of(messages: &[Recorded]) -> u64 {
    match messages.first() {
        Some(Recorded::Message(message)) => message
            .get_field_by_name("offset")
            .and_then(|value| value.as_u64())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Stdio messages with their first `skip` bytes of data dropped.
fn skip_output(messages: &[Recorded], mut skip: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    for message in messages {
        let Recorded::Message(message) = message else {
            continue;
        };
        let Some(data) = message
            .get_field_by_name("data")
            .and_then(|value| value.as_bytes().cloned())
        else {
            continue;
        };
        let length = data.len() as u64;
        if skip >= length {
            skip -= length;
            continue;
        }
        let rest = data.slice(skip as usize..);
        skip = 0;
        let mut trimmed = message.clone();
        trimmed.set_field_by_name("data", Value::Bytes(rest));
        out.push(Bytes::from(descriptors::encode(&trimmed)));
    }
    out
}

impl RawHandler for Replayer {
    fn handle(
        self: Arc<Self>,
        path: String,
        request: Request<Streaming<Bytes>>,
    ) -> BoxFuture<'static, Result<Response<BoxStream<Bytes>>, Status>> {
        Box::pin(async move {
            let origin = *self.origin.get_or_init(tokio::time::Instant::now);
            let input = descriptors::method(&path).map(|method| method.input());
            let mut stream = request.into_inner();
            let mut incoming = Vec::new();
            while let Some(bytes) = stream.message().await? {
                incoming.push(match &input {
                    Some(descriptor) => {
                        Recorded::Message(descriptors::decode(descriptor, &bytes).map_err(|e| {
                            Status::invalid_argument(format!("undecodable request: {e}"))
                        })?)
                    }
                    None => Recorded::Raw(bytes),
                });
            }
            let index = self.find(&path, &incoming)?;
            let (messages, status) = self.answer(index, &path, &incoming);
            if WAITS.contains(&path.as_str()) {
                let exchange = &self.entries[index].exchange;
                let ended_ms = (exchange.started_ms + exchange.duration_ms)
                    .saturating_sub(self.recorded_origin_ms);
                tokio::time::sleep_until(origin + std::time::Duration::from_millis(ended_ms)).await;
            }
            if messages.is_empty()
                && let Some(status) = status
            {
                return Err(status);
            }
            let items = messages
                .into_iter()
                .map(Ok)
                .chain(status.map(Err))
                .collect::<Vec<Result<Bytes, Status>>>();
            Ok(Response::new(
                Box::pin(futures::stream::iter(items)) as BoxStream<Bytes>
            ))
        })
    }
}

/// Serves `options.cassette` on `addr`.
pub async fn serve_replayer(addr: SocketAddr, options: ReplayOptions) -> Result<ServerHandle> {
    options.faults.validate()?;
    let listener = listener::bind(addr).await?;
    let dial = listener::dial_addr(&listener)?;
    let scheme = match options.router_scheme {
        RouterScheme::Https => "https",
        RouterScheme::Http => "http",
    };
    let replayer = Arc::new(Replayer::new(
        options.cassette,
        format!("{scheme}://{dial}"),
    )?);
    let service = tower::Layer::layer(&FaultLayer::new(options.faults), AnyMethod(replayer));
    listener::serve(listener, service, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_found_inside_text() {
        let (literals, found) = tokens(
            "/tmp/f-123e4567-e89b-12d3-a456-426614174000/x 0123456789abcdef0123456789abcdef!",
        );
        assert_eq!(
            found,
            [
                "123e4567-e89b-12d3-a456-426614174000",
                "0123456789abcdef0123456789abcdef"
            ]
        );
        assert_eq!(literals, ["/tmp/f-", "/x ", "!"]);
        let (_, names) = tokens("conformance-name-0a1b2c3d4e5f");
        assert_eq!(names, ["0a1b2c3d4e5f"]);
        let (_, none) = tokens("sb-abc 1234 deadbeef 123456789012 xa1b2c3d4e5f6a7");
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn paired_values_must_stay_consistent() {
        let bindings = Bindings::default();
        let mut comparison = Comparison {
            bindings: &bindings,
            new_pairs: Vec::new(),
            differences: Vec::new(),
            ignore_offset: false,
            time_shift_secs: 0.0,
        };
        let a = "11111111-1111-1111-1111-111111111111";
        let b = "22222222-2222-2222-2222-222222222222";
        let c = "33333333-3333-3333-3333-333333333333";
        comparison.strings("exec_id", "exec_id", a, b);
        comparison.strings("exec_id", "exec_id", a, b);
        assert!(comparison.differences.is_empty());
        comparison.strings("exec_id", "exec_id", a, c);
        assert_eq!(comparison.differences.len(), 1);
        comparison.strings("args", "command_args", "echo 1", "echo 2");
        assert_eq!(comparison.differences.len(), 2);
        comparison.strings("x", "env_dict", REDACTED, "anything");
        assert_eq!(comparison.differences.len(), 2);
    }

    #[test]
    fn answers_move_to_the_replay_time() {
        use sandkit_provider_modal::proto::client as pb;
        let info = pb::SandboxInfo {
            created_at: 1_700_000_000.5,
            timeout_secs: 300,
            tags: vec![
                pb::SandboxTag {
                    tag_name: "sandkit.expires-at".into(),
                    tag_value: "1700000300".into(),
                },
                pb::SandboxTag {
                    tag_name: "team".into(),
                    tag_value: "1700000300".into(),
                },
            ],
            ..Default::default()
        };
        let descriptor = descriptors::pool()
            .get_message_by_name("modal.client.SandboxInfo")
            .unwrap();
        let message =
            descriptors::decode(&descriptor, &prost::Message::encode_to_vec(&info)).unwrap();
        let mut value = Value::Message(message);
        shift_times(&mut value, "", 100.0);
        let Value::Message(message) = value else {
            unreachable!()
        };
        let json = descriptors::message_to_json(&message);
        assert_eq!(json["created_at"], 1_700_000_100.5);
        assert_eq!(json["timeout_secs"], 300);
        assert_eq!(json["tags"][0]["tag_value"], "1700000400");
        assert_eq!(json["tags"][1]["tag_value"], "1700000300");
    }
}
