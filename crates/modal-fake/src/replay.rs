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
//!   run id, creation and expiry times) match anything (their UUID-like parts, and whole
//!   creation and expiry times, are still paired, so answers carry the new run's values);
//! - redacted values (`[redacted]`) match anything;
//! - `TaskExecStdioRead` matches whatever its `offset`, and the recorded output is served
//!   from that offset on, so clients may resume streams wherever they were cut;
//! - whole-number strings between 1024 and 65535 in a command line (ports chosen at run
//!   time) are paired like UUIDs.
//!
//! Waits (`TaskExecWait`, `SandboxWait[V2]`) end no earlier than they did in the recording,
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

mod compare;

use compare::{Comparison, Difference, tokens};

const STDIO_READ: &str = "/modal.task_command_router.TaskCommandRouter/TaskExecStdioRead";
/// Calls that wait for something to happen (a command or sandbox to end): replay holds
/// them as long as they took when recorded, because clients judge timeouts by the clock.
const WAITS: [&str; 3] = [
    "/modal.task_command_router.TaskCommandRouter/TaskExecWait",
    "/modal.client.ModalClient/SandboxWait",
    "/modal.client.ModalClient/SandboxWaitV2",
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

fn now_unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Moves the points in time of an answer forward by `shift` seconds. A time tag whose
/// recorded value is paired with the replaying client's is left for [`rewrite_strings`]
/// to put the client's own value back: a shifted one can be a second off it.
fn shift_times(value: &mut Value, field: &str, shift: f64, bindings: &Bindings) {
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
                    && !bindings.recorded_to_new.contains_key(text.as_str())
                    && let Ok(seconds) = text.parse::<u64>()
                {
                    *text = (seconds + shift.round() as u64).to_string();
                }
                return;
            }
            for (descriptor, child) in message.fields_mut() {
                shift_times(child, descriptor.name(), shift, bindings);
            }
        }
        Value::List(items) => {
            for item in items {
                shift_times(item, field, shift, bindings);
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
                shift_times(&mut value, "", self.time_shift(), &state.bindings);
                rewrite_strings(&mut value, &state.bindings);
                if let Value::Message(rewritten) = value {
                    *message = rewritten;
                }
                if descriptors::ROUTER_ACCESS_PATHS.contains(&path)
                    && let Some(access) = descriptors::router_access_mut(message)
                {
                    access.set_field_by_name("url", Value::String(self.own_router_url.clone()));
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
    listener::serve(listener, service, None, None).await
}

#[cfg(test)]
mod tests;
