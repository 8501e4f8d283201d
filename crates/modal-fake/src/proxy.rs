//! Record mode: a proxy in front of an upstream Modal (real, over TLS, or the emulator)
//! that forwards every call unchanged and writes each exchange to a cassette.
//!
//! Router URLs in `TaskGetCommandRouterAccess` / `SandboxGetCommandRouterAccess` answers
//! (and in the `command_router_access` of `SandboxCreateV2` answers) are rewritten to the
//! proxy's own address, so router traffic is recorded too; the proxy
//! remembers which upstream router each JWT belongs to.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use prost_reflect::{MethodDescriptor, Value};
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::cassette::{self, Cassette, Exchange, StatusRecord};
use crate::codec::{AnyMethod, MAX_MESSAGE_BYTES, RawCodec, RawHandler};
use crate::descriptors;
use crate::emulator::RouterScheme;
use crate::error::{Error, Result};
use crate::faults::{FaultConfig, FaultLayer};
use crate::listener::{self, ServerHandle};

/// How often a recording in progress is written to disk.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Request headers not forwarded: the transport sets its own.
const HOP_HEADERS: [&str; 8] = [
    "content-type",
    "te",
    "user-agent",
    "host",
    "content-length",
    "grpc-accept-encoding",
    "grpc-encoding",
    "accept-encoding",
];

/// What the upstream is, for the cassette's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// sandkit's emulator (`modal-fake emulate`).
    Emulator,
    /// Modal itself.
    Modal,
}

/// How the recorder runs.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Upstream control-plane URL, e.g. `https://api.modal.com` or `http://127.0.0.1:PORT`.
    pub upstream: String,
    /// Where the cassette is written (rewritten as calls complete, and at shutdown).
    pub cassette: PathBuf,
    /// Faults injected between the client and the proxy.
    pub faults: FaultConfig,
    /// Scheme of the router URL handed to clients.
    pub router_scheme: RouterScheme,
    /// What the upstream is; `None` guesses from the URL (localhost = emulator).
    pub upstream_kind: Option<UpstreamKind>,
}

impl RecordOptions {
    /// Options recording `upstream` into `cassette`.
    pub fn new(upstream: impl Into<String>, cassette: impl Into<PathBuf>) -> Self {
        Self {
            upstream: upstream.into(),
            cassette: cassette.into(),
            faults: FaultConfig::default(),
            router_scheme: RouterScheme::default(),
            upstream_kind: None,
        }
    }
}

fn is_localhost(host: &str) -> bool {
    matches!(
        host.trim_matches(['[', ']']),
        "localhost" | "127.0.0.1" | "::1" | "172.21.0.1"
    )
}

/// A channel to `url`. An `https` URL on localhost is dialled in plaintext, as Modal's Go
/// and JS clients do (the emulator serves both on one port).
fn channel(url: &str) -> Result<Channel> {
    let error = |reason: String| Error::Upstream {
        url: url.to_owned(),
        reason,
    };
    let uri = http::Uri::from_str(url).map_err(|e| error(e.to_string()))?;
    let host = uri
        .host()
        .ok_or_else(|| error("no host".into()))?
        .to_owned();
    let tls = match uri.scheme_str() {
        Some("https") => !is_localhost(&host),
        Some("http") => false,
        other => return Err(error(format!("unsupported scheme {other:?}"))),
    };
    let target = if tls {
        url.to_owned()
    } else {
        format!(
            "http://{}",
            uri.authority().map(|a| a.as_str()).unwrap_or(&host)
        )
    };
    let mut endpoint = Endpoint::from_shared(target)
        .map_err(|e| error(e.to_string()))?
        .initial_connection_window_size(Some(64 * 1024 * 1024))
        .initial_stream_window_size(Some(64 * 1024 * 1024))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10));
    if tls {
        endpoint = endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .with_webpki_roots()
                    .domain_name(host.clone()),
            )
            .map_err(|e| error(e.to_string()))?;
    }
    Ok(endpoint.connect_lazy())
}

/// The recording in progress.
struct Recording {
    cassette: Cassette,
    secrets: HashSet<String>,
    dirty: bool,
}

struct Recorder {
    control: Channel,
    own_router_url: String,
    routers: Mutex<HashMap<String, Channel>>,
    router_of_jwt: Mutex<HashMap<String, String>>,
    last_router: Mutex<Option<String>>,
    next_id: AtomicU64,
    recording: Mutex<Recording>,
    path: PathBuf,
    origin: std::time::Instant,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    fn flush(&self) {
        let mut recording = lock(&self.recording);
        if !recording.dirty {
            return;
        }
        recording
            .cassette
            .exchanges
            .sort_by_key(|exchange| exchange.id);
        match recording.cassette.save(&self.path, &recording.secrets) {
            Ok(()) => recording.dirty = false,
            Err(error) => tracing::warn!(%error, "writing the cassette failed"),
        }
    }

    fn router_channel(&self, metadata: &MetadataMap) -> Result<Channel, Status> {
        let jwt = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let url = jwt
            .and_then(|jwt| lock(&self.router_of_jwt).get(jwt).cloned())
            .or_else(|| lock(&self.last_router).clone())
            .ok_or_else(|| {
                Status::unavailable("modal-fake record: no command router address known yet")
            })?;
        let mut routers = lock(&self.routers);
        if let Some(channel) = routers.get(&url) {
            return Ok(channel.clone());
        }
        let channel = channel(&url).map_err(|e| Status::unavailable(e.to_string()))?;
        routers.insert(url, channel.clone());
        Ok(channel)
    }

    /// Notes the upstream router of a router-access answer and points the client at the
    /// proxy instead. Returns the bytes to send on.
    fn rewrite_router_access(&self, method: &MethodDescriptor, bytes: Bytes) -> Bytes {
        let Ok(mut message) = descriptors::decode(&method.output(), &bytes) else {
            return bytes;
        };
        let Some(access) = descriptors::router_access_mut(&mut message) else {
            return bytes;
        };
        let url = access
            .get_field_by_name("url")
            .and_then(|value| value.as_str().map(str::to_owned));
        let jwt = access
            .get_field_by_name("jwt")
            .and_then(|value| value.as_str().map(str::to_owned));
        let Some(url) = url.filter(|url| !url.is_empty()) else {
            return bytes;
        };
        if let Some(jwt) = jwt {
            lock(&self.router_of_jwt).insert(jwt, url.clone());
        }
        *lock(&self.last_router) = Some(url);
        access.set_field_by_name("url", Value::String(self.own_router_url.clone()));
        Bytes::from(descriptors::encode(&message))
    }
}

/// Collects one exchange while it happens and files it when it ends (also when the client
/// goes away mid-stream).
struct Pending {
    recorder: Arc<Recorder>,
    id: u64,
    path: String,
    method: Option<MethodDescriptor>,
    headers: std::collections::BTreeMap<String, String>,
    requests: Arc<Mutex<Vec<Bytes>>>,
    responses: Vec<Bytes>,
    filed: AtomicBool,
    started: std::time::Instant,
}

impl Pending {
    fn file(&mut self, status: StatusRecord) {
        if self.filed.swap(true, Ordering::SeqCst) {
            return;
        }
        let (service, method) = descriptors::split_path(&self.path).unwrap_or(("", ""));
        let input = self.method.as_ref().map(MethodDescriptor::input);
        let output = self.method.as_ref().map(MethodDescriptor::output);
        let mut recording = lock(&self.recorder.recording);
        let Recording {
            cassette, secrets, ..
        } = &mut *recording;
        let request = lock(&self.requests)
            .iter()
            .map(|bytes| cassette::message_json(input.as_ref(), bytes, secrets))
            .collect();
        let response = self
            .responses
            .iter()
            .map(|bytes| cassette::message_json(output.as_ref(), bytes, secrets))
            .collect();
        cassette.exchanges.push(Exchange {
            id: self.id,
            service: service.to_owned(),
            method: method.to_owned(),
            request_headers: std::mem::take(&mut self.headers),
            request,
            response,
            status,
            started_ms: millis(self.started.duration_since(self.recorder.origin)),
            duration_ms: millis(self.started.elapsed()),
        });
        recording.dirty = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.file(StatusRecord::of(&Status::cancelled(
            "the client went away before the call ended",
        )));
    }
}

impl RawHandler for Recorder {
    fn handle(
        self: Arc<Self>,
        path: String,
        request: Request<Streaming<Bytes>>,
    ) -> BoxFuture<'static, Result<Response<BoxStream<Bytes>>, Status>> {
        Box::pin(async move {
            let method = descriptors::method(&path);
            let mut metadata = request.metadata().clone();
            let headers = {
                let mut recording = lock(&self.recording);
                cassette::record_headers(&metadata, &mut recording.secrets)
            };
            let upstream = if descriptors::is_router_path(&path) {
                self.router_channel(&metadata)?
            } else {
                self.control.clone()
            };
            for name in HOP_HEADERS {
                metadata.remove(name);
            }
            let requests = Arc::new(Mutex::new(Vec::new()));
            let mut pending = Pending {
                recorder: Arc::clone(&self),
                id: self.next_id.fetch_add(1, Ordering::SeqCst),
                path: path.clone(),
                method: method.clone(),
                headers,
                requests: Arc::clone(&requests),
                responses: Vec::new(),
                filed: AtomicBool::new(false),
                started: std::time::Instant::now(),
            };
            let outgoing = request
                .into_inner()
                .take_while(|item| futures::future::ready(item.is_ok()))
                .filter_map(|item| futures::future::ready(item.ok()))
                .inspect(move |bytes| lock(&requests).push(bytes.clone()));
            let mut outgoing = Request::new(outgoing);
            *outgoing.metadata_mut() = metadata;
            let path_and_query = PathAndQuery::from_str(&path)
                .map_err(|_| Status::invalid_argument(format!("bad path `{path}`")))?;
            let mut client = tonic::client::Grpc::new(upstream)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            if let Err(error) = client.ready().await {
                let status = Status::unavailable(format!("upstream not ready: {error}"));
                pending.file(StatusRecord::of(&status));
                return Err(status);
            }
            let response = match client.streaming(outgoing, path_and_query, RawCodec).await {
                Ok(response) => response,
                Err(status) => {
                    pending.file(StatusRecord::of(&status));
                    return Err(status);
                }
            };
            let (mut response_metadata, incoming, _) = response.into_parts();
            for name in HOP_HEADERS {
                response_metadata.remove(name);
            }
            let rewrites = descriptors::ROUTER_ACCESS_PATHS.contains(&path.as_str());
            let recorder = Arc::clone(&self);
            let stream = futures::stream::unfold(Some((incoming, pending)), move |state| {
                let recorder = Arc::clone(&recorder);
                let method = method.clone();
                async move {
                    let (mut incoming, mut pending) = state?;
                    match incoming.message().await {
                        Ok(Some(bytes)) => {
                            pending.responses.push(bytes.clone());
                            let bytes = match (&method, rewrites) {
                                (Some(method), true) => {
                                    recorder.rewrite_router_access(method, bytes)
                                }
                                _ => bytes,
                            };
                            Some((Ok(bytes), Some((incoming, pending))))
                        }
                        Ok(None) => {
                            pending.file(StatusRecord::ok());
                            None
                        }
                        Err(status) => {
                            pending.file(StatusRecord::of(&status));
                            Some((Err(status), None))
                        }
                    }
                }
            });
            let mut response = Response::new(Box::pin(stream) as BoxStream<Bytes>);
            *response.metadata_mut() = response_metadata;
            Ok(response)
        })
    }
}

/// Serves the recorder on `addr`. Shutting the handle down writes the cassette a last time.
pub async fn serve_recorder(addr: SocketAddr, options: RecordOptions) -> Result<ServerHandle> {
    options.faults.validate()?;
    let control = channel(&options.upstream)?;
    let upstream_host = http::Uri::from_str(&options.upstream)
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned))
        .unwrap_or_default();
    let kind = options
        .upstream_kind
        .unwrap_or(if is_localhost(&upstream_host) {
            UpstreamKind::Emulator
        } else {
            UpstreamKind::Modal
        });
    let (recorded_from, note) = match kind {
        UpstreamKind::Emulator => (
            "emulator",
            "Recorded from sandkit's Modal emulator (modal-fake emulate), not from real Modal. \
             Credentials and JWTs are redacted; replay rewrites router URLs to the replay \
             server. To re-record against real Modal, see crates/modal-fake/README.md.",
        ),
        UpstreamKind::Modal => (
            "modal",
            "Recorded from Modal. Credentials and JWTs are redacted; replay rewrites router \
             URLs to the replay server.",
        ),
    };
    let listener = listener::bind(addr).await?;
    let dial = listener::dial_addr(&listener)?;
    let scheme = match options.router_scheme {
        RouterScheme::Https => "https",
        RouterScheme::Http => "http",
    };
    let recorder = Arc::new(Recorder {
        control,
        own_router_url: format!("{scheme}://{dial}"),
        routers: Mutex::new(HashMap::new()),
        router_of_jwt: Mutex::new(HashMap::new()),
        last_router: Mutex::new(None),
        next_id: AtomicU64::new(0),
        recording: Mutex::new(Recording {
            cassette: Cassette::new(recorded_from, &options.upstream, note),
            secrets: HashSet::new(),
            dirty: true,
        }),
        path: options.cassette.clone(),
        origin: std::time::Instant::now(),
    });
    recorder.flush();
    let flusher = {
        let recorder = Arc::downgrade(&recorder);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_INTERVAL).await;
                match recorder.upgrade() {
                    Some(recorder) => recorder.flush(),
                    None => return,
                }
            }
        })
    };
    let service = tower::Layer::layer(
        &FaultLayer::new(options.faults.clone()),
        AnyMethod(Arc::clone(&recorder)),
    );
    let cleanup = Box::pin(async move {
        flusher.abort();
        recorder.flush();
    });
    listener::serve(listener, service, Some(cleanup), None).await
}
