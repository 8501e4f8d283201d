//! The transport: gRPC channels to Modal's control plane and to each task's command
//! router, with Modal's headers, the auth-token exchange, and retries.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sandkit_core::SecretString;
use sandkit_modal_proto::client::modal_client_client::ModalClientClient;
use sandkit_modal_proto::client::sandbox_get_command_router_access_request::Target;
use sandkit_modal_proto::client::{self as pb, AuthTokenGetRequest};
use sandkit_modal_proto::task_command_router::task_command_router_client::TaskCommandRouterClient;
use tokio::sync::{Mutex, RwLock};
use tonic::codec::Streaming;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};
use tonic::{Code, Request, Status};

use crate::error::router_not_ready;
use crate::retry::{Decision, RetryPolicy, RetryState};

/// `ClientType.LIBMODAL_GO`: we speak the protocol the way libmodal's Go client does
/// (auth token on every unary call, exec and files through the router).
const CLIENT_TYPE: &str = "9";
/// The protocol level libmodal clients announce ("behaves like this Python SDK version").
const CLIENT_VERSION: &str = "1.0.0";
/// Largest message either side may send, as Modal's clients configure it.
const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;
/// HTTP/2 flow-control windows, as Modal's clients configure them.
const WINDOW_BYTES: u32 = 64 * 1024 * 1024;
/// Per-attempt deadline of `AuthTokenGet`.
const AUTH_TOKEN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an auth token is used before it is refreshed, whatever its `exp` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Assumed lifetime of an auth token whose JWT has no `exp` claim.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// Longest pause between attempts of a first router call once its ordinary retries are
/// spent, as Modal's Python client caps its router-connect backoff at 10 s.
const ROUTER_START_MAX_DELAY: Duration = Duration::from_secs(10);

/// Hosts that get plaintext even for `https://` router URLs: local fakes serve h2c, and
/// Modal's Go and JS clients connect to them the same way.
fn is_loopback(host: &str) -> bool {
    matches!(
        host.trim_start_matches('[').trim_end_matches(']'),
        "localhost" | "127.0.0.1" | "::1" | "172.21.0.1"
    )
}

/// How channels are opened: which certificate authorities TLS trusts, and whether a local
/// fake's `https` URLs get plaintext.
#[derive(Clone, Default)]
pub(crate) struct Transport {
    /// Extra authorities (PEM) trusted beside the web PKI roots. With them, `https` is
    /// always TLS, loopback too: the caller asked for its certificate to be verified.
    ca: Option<Certificate>,
    /// The control plane is a local fake without a CA of its own: every `https` router
    /// URL it hands out gets plaintext, as Modal's Go and JS clients do.
    plaintext_routers: bool,
}

impl Transport {
    /// A transport trusting the authorities in `ca_file` besides the public roots.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let ca = match ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|error| format!("ca_file `{}`: {error}", path.display()))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(format!(
                        "ca_file `{}` holds no PEM certificate",
                        path.display()
                    ));
                }
                Some(Certificate::from_pem(pem))
            }
        };
        Ok(Self {
            ca,
            plaintext_routers: false,
        })
    }

    /// Opens a lazily connecting channel to `url`. `https` uses TLS, except to a loopback
    /// host (or any router of a local fake) when no CA was given: local fakes serve h2c.
    /// `http` is plaintext h2c.
    pub fn channel(&self, url: &str, router: bool) -> Result<Channel, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("`{url}` is not a URL: {error}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("`{url}` has no host"))?
            .to_owned();
        let plaintext =
            self.ca.is_none() && ((router && self.plaintext_routers) || is_loopback(&host));
        let (endpoint, tls) = match uri.scheme_str() {
            Some("https") if !plaintext => (url.to_owned(), true),
            Some("https") => {
                let port = uri.port_u16().unwrap_or(443);
                (format!("http://{host}:{port}"), false)
            }
            Some("http") => (url.to_owned(), false),
            _ => return Err(format!("`{url}` must start with http:// or https://")),
        };
        let mut endpoint = Endpoint::from_shared(endpoint)
            .map_err(|error| format!("`{url}`: {error}"))?
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(WINDOW_BYTES)
            .initial_connection_window_size(WINDOW_BYTES)
            .connect_timeout(Duration::from_secs(30));
        if tls {
            let mut config = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &self.ca {
                config = config.ca_certificate(ca.clone());
            }
            let name = host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(config.domain_name(name))
                .map_err(|error| format!("TLS for `{url}`: {error}"))?;
        }
        Ok(endpoint.connect_lazy())
    }
}

/// A header value that never shows itself in `Debug` output.
fn sensitive(value: &str) -> Result<AsciiMetadataValue, String> {
    let mut value = AsciiMetadataValue::try_from(value)
        .map_err(|_| "a credential contains characters not allowed in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// An auth token and when to replace it.
struct CachedToken {
    value: AsciiMetadataValue,
    expires_at: SystemTime,
    refresh_at: SystemTime,
}

enum AuthState {
    /// Not fetched yet.
    Unknown,
    Token(CachedToken),
    /// The server does not implement `AuthTokenGet` (an older fake); send no token.
    Unsupported,
}

/// The control plane: `modal.client.ModalClient`.
pub(crate) struct ControlPlane {
    stub: ModalClientClient<Channel>,
    token_id: AsciiMetadataValue,
    token_secret: AsciiMetadataValue,
    auth: Mutex<AuthState>,
    policy: RetryPolicy,
    transport: Transport,
    max_throttle_wait: Option<Duration>,
    /// How long a router's first call is retried while the router refuses it.
    router_connect_timeout: Duration,
}

impl ControlPlane {
    /// A client for `server_url` with these credentials. Connects on first use.
    pub fn new(
        server_url: &str,
        token_id: &str,
        token_secret: &SecretString,
        mut transport: Transport,
        max_throttle_wait: Option<Duration>,
        router_connect_timeout: Duration,
    ) -> Result<Self, String> {
        let stub = ModalClientClient::new(transport.channel(server_url, false)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        transport.plaintext_routers = server_url
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri.host().map(is_loopback))
            .unwrap_or(false);
        Ok(Self {
            stub,
            token_id: sensitive(token_id)?,
            token_secret: sensitive(token_secret.expose())?,
            auth: Mutex::new(AuthState::Unknown),
            policy: RetryPolicy::control_plane(max_throttle_wait),
            transport,
            max_throttle_wait,
            router_connect_timeout,
        })
    }

    /// The headers every control-plane call carries.
    fn identify(&self, metadata: &mut MetadataMap) {
        metadata.insert(
            "x-modal-client-type",
            AsciiMetadataValue::from_static(CLIENT_TYPE),
        );
        metadata.insert(
            "x-modal-client-version",
            AsciiMetadataValue::from_static(CLIENT_VERSION),
        );
        metadata.insert(
            "x-modal-libmodal-version",
            AsciiMetadataValue::from_static(concat!("sandkit/", env!("CARGO_PKG_VERSION"))),
        );
        metadata.insert("x-modal-token-id", self.token_id.clone());
        metadata.insert("x-modal-token-secret", self.token_secret.clone());
    }

    /// A unary call with Modal's headers and retry policy. `call` performs one attempt on
    /// a clone of the stub; the same `x-idempotency-key` goes with every attempt.
    pub async fn unary<Req, Resp, F, Fut>(&self, request: Req, call: F) -> Result<Resp, Status>
    where
        Req: Clone,
        F: Fn(ModalClientClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let idempotency_key = AsciiMetadataValue::try_from(uuid::Uuid::new_v4().to_string())
            .expect("a UUID is ASCII");
        let started = Instant::now();
        let mut state = RetryState::default();
        loop {
            let mut attempt = Request::new(request.clone());
            self.identify(attempt.metadata_mut());
            if let Some(token) = self.auth_token().await? {
                attempt.metadata_mut().insert("x-modal-auth-token", token);
            }
            let metadata = attempt.metadata_mut();
            metadata.insert("x-idempotency-key", idempotency_key.clone());
            metadata.insert("x-retry-attempt", ascii_number(state.attempts));
            if state.attempts > 0 {
                let delay = format!("{:.3}", started.elapsed().as_secs_f64());
                if let Ok(delay) = AsciiMetadataValue::try_from(delay) {
                    metadata.insert("x-retry-delay", delay);
                }
            }
            state.attempts += 1;
            match call(self.stub.clone(), attempt).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => match self.policy.decide(&mut state, &status) {
                    Decision::RetryAfter(delay) => {
                        tracing::debug!(code = ?status.code(), ?delay, attempt = state.attempts, "retrying Modal call");
                        tokio::time::sleep(delay).await;
                    }
                    Decision::Stop => return Err(status),
                },
            }
        }
    }

    /// Opens a server stream with Modal's headers. Streams are not retried here: callers
    /// resume them with their own cursor.
    pub async fn server_stream<Req, Resp, F, Fut>(
        &self,
        request: Req,
        call: F,
    ) -> Result<Streaming<Resp>, Status>
    where
        F: FnOnce(ModalClientClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>>,
    {
        let mut request = Request::new(request);
        self.identify(request.metadata_mut());
        if let Some(token) = self.auth_token().await? {
            request.metadata_mut().insert("x-modal-auth-token", token);
        }
        Ok(call(self.stub.clone(), request).await?.into_inner())
    }

    /// The current auth token, fetching or refreshing it when due. A refresh that fails
    /// transiently falls back to the cached token while it is still valid.
    async fn auth_token(&self) -> Result<Option<AsciiMetadataValue>, Status> {
        let mut state = self.auth.lock().await;
        let now = SystemTime::now();
        match &*state {
            AuthState::Unsupported => return Ok(None),
            AuthState::Token(token) if now < token.refresh_at => {
                return Ok(Some(token.value.clone()));
            }
            _ => {}
        }
        match self.fetch_auth_token().await {
            Ok(token) => {
                let value = token.value.clone();
                *state = AuthState::Token(token);
                Ok(Some(value))
            }
            Err(status) if status.code() == Code::Unimplemented => {
                *state = AuthState::Unsupported;
                Ok(None)
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ) =>
            {
                Err(status)
            }
            Err(status) => match &mut *state {
                AuthState::Token(token) if now < token.expires_at => {
                    tracing::warn!(code = ?status.code(), "refreshing the Modal auth token failed; using the cached one");
                    token.refresh_at = now + Duration::from_secs(1);
                    Ok(Some(token.value.clone()))
                }
                _ => Err(status),
            },
        }
    }

    async fn fetch_auth_token(&self) -> Result<CachedToken, Status> {
        let mut state = RetryState::default();
        let response = loop {
            let mut request = Request::new(AuthTokenGetRequest {});
            self.identify(request.metadata_mut());
            request.set_timeout(AUTH_TOKEN_ATTEMPT_TIMEOUT);
            state.attempts += 1;
            match self.stub.clone().auth_token_get(request).await {
                Ok(response) => break response.into_inner(),
                Err(status) => match self.policy.decide(&mut state, &status) {
                    Decision::RetryAfter(delay) => tokio::time::sleep(delay).await,
                    Decision::Stop => return Err(status),
                },
            }
        };
        if response.token.is_empty() {
            return Err(Status::unauthenticated(
                "the server returned an empty auth token",
            ));
        }
        let now = SystemTime::now();
        let expires_at = jwt_expiry(&response.token).unwrap_or_else(|| {
            tracing::warn!("Modal auth token has no `exp` claim; assuming 20 minutes");
            now + DEFAULT_TOKEN_LIFETIME
        });
        // The server's claim is trusted for timing only; a far-future one still gets
        // refreshed daily, and never overflows the clock.
        let lifetime = expires_at
            .duration_since(now)
            .unwrap_or_default()
            .min(MAX_TOKEN_LIFETIME);
        let expires_at = now + lifetime;
        // Refresh at a jittered 50-60 % of the remaining lifetime, as Modal's Go client does,
        // so many clients do not refresh at once.
        let refresh_at = now + lifetime.mul_f64(rand::random_range(0.5..0.6));
        Ok(CachedToken {
            value: sensitive(&response.token).map_err(Status::internal)?,
            expires_at,
            refresh_at,
        })
    }

    /// Opens the command router of `task_id`, whose access comes from `source`; `access`
    /// is a JWT and URL already handed out with the sandbox (V2 creation), if any.
    pub async fn router(
        self: &Arc<Self>,
        task_id: &str,
        source: AccessSource,
        access: Option<pb::CommandRouterAccess>,
    ) -> Result<Router, Status> {
        let access = match access {
            Some(access) => self.open_router(access, 0)?,
            None => self.router_access(task_id, &source, 0).await?,
        };
        Ok(Router {
            task_id: task_id.to_owned(),
            source,
            control_plane: Arc::clone(self),
            access: RwLock::new(access),
            policy: RetryPolicy::router(self.max_throttle_wait),
            connect_timeout: self.router_connect_timeout,
            answered: AtomicBool::new(false),
        })
    }

    /// Fetches router access for `task_id` from `source`.
    async fn router_access(
        &self,
        task_id: &str,
        source: &AccessSource,
        generation: u64,
    ) -> Result<RouterAccess, Status> {
        let (jwt, url) = match source {
            AccessSource::Task => {
                let request = pb::TaskGetCommandRouterAccessRequest {
                    task_id: task_id.to_owned(),
                };
                let response = self
                    .unary(request, |mut stub, request| async move {
                        stub.task_get_command_router_access(request).await
                    })
                    .await?;
                (response.jwt, response.url)
            }
            AccessSource::Sandbox { sandbox_id, token } => {
                let request = pb::SandboxGetCommandRouterAccessRequest {
                    target: Some(Target::SandboxId(sandbox_id.clone())),
                };
                let response = self
                    .unary(request, |mut stub, mut request| {
                        if let Some(token) = token {
                            request
                                .metadata_mut()
                                .insert(SANDBOX_TOKEN_HEADER, token.clone());
                        }
                        async move { stub.sandbox_get_command_router_access(request).await }
                    })
                    .await?;
                (response.jwt, response.url)
            }
        };
        self.open_router(pb::CommandRouterAccess { jwt, url }, generation)
    }

    /// A stub for the router at `access.url`, with its JWT.
    fn open_router(
        &self,
        access: pb::CommandRouterAccess,
        generation: u64,
    ) -> Result<RouterAccess, Status> {
        let stub = TaskCommandRouterClient::new(
            self.transport
                .channel(&access.url, true)
                .map_err(Status::internal)?,
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(RouterAccess {
            stub,
            bearer: sensitive(&format!("Bearer {}", access.jwt)).map_err(Status::internal)?,
            url: access.url,
            generation,
        })
    }
}

/// The header V2 calls carry a sandbox's `sandbox_token` in.
pub(crate) const SANDBOX_TOKEN_HEADER: &str = "x-modal-sandbox-token";

/// A sandbox token as a header value that never shows itself in `Debug` output; `None`
/// for an empty or unusable one.
pub(crate) fn sandbox_token(token: &str) -> Option<AsciiMetadataValue> {
    (!token.is_empty()).then(|| sensitive(token).ok()).flatten()
}

/// Where a router's access comes from, first and whenever its JWT is refused.
#[derive(Clone)]
pub(crate) enum AccessSource {
    /// `TaskGetCommandRouterAccess` by task id: V1 sandboxes.
    Task,
    /// `SandboxGetCommandRouterAccess` by sandbox id, with the sandbox token when this
    /// instance created it: V2 sandboxes, as Modal's Python client reaches their routers.
    Sandbox {
        sandbox_id: String,
        token: Option<AsciiMetadataValue>,
    },
}

fn ascii_number(n: u32) -> AsciiMetadataValue {
    AsciiMetadataValue::try_from(n.to_string()).expect("digits are ASCII")
}

/// The `exp` claim of a JWT, read without verifying the signature (the server verifies).
fn jwt_expiry(jwt: &str) -> Option<SystemTime> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)
}

/// How to reach one task's router: a stub and its bearer JWT.
#[derive(Clone)]
pub(crate) struct RouterAccess {
    pub stub: TaskCommandRouterClient<Channel>,
    bearer: AsciiMetadataValue,
    url: String,
    /// Bumped on every refresh, so concurrent callers refresh once.
    pub generation: u64,
}

impl RouterAccess {
    /// `message` with the router's bearer token attached.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }
}

/// One task's `modal.task_command_router.TaskCommandRouter`, authenticated with a JWT that
/// is re-fetched once when the router answers UNAUTHENTICATED.
///
/// Until the router has answered once, a call failing with `UNAVAILABLE` (which is also
/// how a refused or failed connection surfaces) is retried for `connect_timeout`: a task
/// may take minutes to start on its worker after it is scheduled, and its router refuses
/// connections until then.
pub(crate) struct Router {
    task_id: String,
    source: AccessSource,
    control_plane: Arc<ControlPlane>,
    access: RwLock<RouterAccess>,
    policy: RetryPolicy,
    connect_timeout: Duration,
    /// Whether the router has answered a call with anything but `UNAVAILABLE`.
    answered: AtomicBool,
}

impl Router {
    /// The task this router serves.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The current stub and JWT.
    pub async fn access(&self) -> RouterAccess {
        self.access.read().await.clone()
    }

    /// Fetches fresh access, unless another caller already replaced `seen`.
    pub async fn refresh(&self, seen: &RouterAccess) -> Result<RouterAccess, Status> {
        let mut access = self.access.write().await;
        if access.generation == seen.generation {
            let fresh = self
                .control_plane
                .router_access(&self.task_id, &self.source, seen.generation + 1)
                .await?;
            if fresh.url != access.url {
                tracing::warn!(task_id = %self.task_id, "the command router moved to another address");
            }
            *access = fresh;
        }
        Ok(access.clone())
    }

    /// A unary router call with the router retry policy and one JWT refresh on
    /// UNAUTHENTICATED. `timeout` bounds each attempt.
    pub async fn unary<Req, Resp, F, Fut>(
        &self,
        request: Req,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<Resp, Status>
    where
        Req: Clone,
        F: Fn(TaskCommandRouterClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.unary_with(&self.policy, request, timeout, call).await
    }

    /// [`Router::unary`] with another retry policy.
    pub async fn unary_with<Req, Resp, F, Fut>(
        &self,
        policy: &RetryPolicy,
        request: Req,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<Resp, Status>
    where
        Req: Clone,
        F: Fn(TaskCommandRouterClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let mut state = RetryState::default();
        let mut refreshed = false;
        let mut access = self.access().await;
        let started = Instant::now();
        loop {
            let mut attempt = access.request(request.clone());
            if let Some(timeout) = timeout {
                attempt.set_timeout(timeout);
            }
            state.attempts += 1;
            let result = call(access.stub.clone(), attempt).await;
            let starting = !self.answered.load(Ordering::Acquire);
            if starting
                && result
                    .as_ref()
                    .err()
                    .is_none_or(|s| s.code() != Code::Unavailable)
            {
                self.answered.store(true, Ordering::Release);
            }
            match result {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::Unauthenticated && !refreshed => {
                    refreshed = true;
                    access = self.refresh(&access).await?;
                }
                Err(status) => {
                    let decision = policy.decide(&mut state, &status);
                    if !(starting && status.code() == Code::Unavailable) {
                        match decision {
                            Decision::RetryAfter(delay) => tokio::time::sleep(delay).await,
                            Decision::Stop => return Err(status),
                        }
                        continue;
                    }
                    // The router has never answered: its task may still be starting.
                    // The ordinary retries first, then one try every 10 s, until the
                    // window is over.
                    let delay = match decision {
                        Decision::RetryAfter(delay) => delay,
                        Decision::Stop => ROUTER_START_MAX_DELAY,
                    };
                    let remaining = self.connect_timeout.saturating_sub(started.elapsed());
                    if remaining.is_zero() {
                        return Err(router_not_ready(
                            &self.task_id,
                            self.connect_timeout,
                            &status,
                        ));
                    }
                    tracing::debug!(task_id = %self.task_id, ?delay, attempt = state.attempts, "the command router is not accepting calls yet");
                    tokio::time::sleep(delay.min(remaining)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let encode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", encode(r#"{"alg":"HS256"}"#), encode(claims))
    }

    #[test]
    fn jwt_expiry_reads_the_exp_claim() {
        assert_eq!(
            jwt_expiry(&jwt(r#"{"exp":2000000000}"#)),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":-5}"#)), None);
        // Far beyond what the clock can hold: no panic, no expiry.
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1e300}"#)), None);
    }

    #[test]
    fn a_ca_file_that_cannot_be_used_is_an_error_naming_it() {
        let directory = std::env::temp_dir().join(format!("sandkit-ca-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let missing = directory.join("missing.pem");
        let error = Transport::new(Some(&missing)).err().unwrap();
        assert!(error.contains("missing.pem"), "{error}");
        let garbage = directory.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let error = Transport::new(Some(&garbage)).err().unwrap();
        assert!(
            error.contains("garbage.pem") && error.contains("no PEM"),
            "{error}"
        );
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn loopback_https_routers_get_plaintext() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("api.modal.com"));
    }

    #[test]
    fn credentials_are_sensitive_headers() {
        let value = sensitive("as-secret").unwrap();
        assert!(!format!("{value:?}").contains("as-secret"));
    }
}
