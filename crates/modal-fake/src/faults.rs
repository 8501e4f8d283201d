//! Fault injection, in every mode: a layer in front of the served services that fails a
//! seeded share of unary calls with `UNAVAILABLE` or with `RESOURCE_EXHAUSTED` carrying a
//! server retry policy, cuts server streams after some bytes, and can refuse the first
//! command-router call as `UNAUTHENTICATED`.
//!
//! Faults are injected before the call reaches the emulator, proxy or replayer, so a failed
//! call never has a side effect and a client retry is always safe.

use std::convert::Infallible;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body::Frame;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sandkit_modal_proto::client::{RpcRetryPolicy, RpcStatus};
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tonic::{Code, Status};

use crate::descriptors::{self, CallKind};
use crate::error::Error;

/// Type URL prefix Modal's servers use when packing their own messages into status details.
const MODAL_TYPE_URL_PREFIX: &str = "type.modal.com/";

/// Which faults to inject. The default injects none.
///
/// As a string (the CLI's `--faults`): comma-separated `key=value` items, e.g.
/// `unavailable=0.2,exhausted=0.1,retry-after=0.05,cut-stream=4096,router-unauthenticated-once,seed=7`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the random choices, so a failing run can be repeated.
    pub seed: u64,
    /// Share of unary calls (0 to 1) answered `UNAVAILABLE`.
    pub unavailable_share: f64,
    /// Share of unary calls (0 to 1) answered `RESOURCE_EXHAUSTED` with a retry policy.
    pub resource_exhausted_share: f64,
    /// The `retry_after_secs` of that retry policy.
    pub retry_after_secs: f32,
    /// End every server stream with `UNAVAILABLE` once this many payload bytes went out
    /// (always at a message boundary, and never before the first message).
    pub stream_cut_after_bytes: Option<u64>,
    /// Answer the first command-router call `UNAUTHENTICATED`.
    pub router_unauthenticated_once: bool,
}

impl FaultConfig {
    /// Whether any fault is configured.
    pub fn is_active(&self) -> bool {
        self.unavailable_share > 0.0
            || self.resource_exhausted_share > 0.0
            || self.stream_cut_after_bytes.is_some()
            || self.router_unauthenticated_once
    }

    /// Checks shares and sizes.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, share) in [
            ("unavailable", self.unavailable_share),
            ("exhausted", self.resource_exhausted_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(Error::Faults(format!(
                    "`{name}` must be a share between 0 and 1, got {share}"
                )));
            }
        }
        if self.unavailable_share + self.resource_exhausted_share > 1.0 {
            return Err(Error::Faults(
                "`unavailable` and `exhausted` together must not exceed 1".into(),
            ));
        }
        if !(self.retry_after_secs.is_finite() && self.retry_after_secs >= 0.0) {
            return Err(Error::Faults(format!(
                "`retry-after` must be a non-negative number of seconds, got {}",
                self.retry_after_secs
            )));
        }
        if self.stream_cut_after_bytes == Some(0) {
            return Err(Error::Faults("`cut-stream` must be at least 1 byte".into()));
        }
        Ok(())
    }
}

impl FromStr for FaultConfig {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let mut config = FaultConfig {
            retry_after_secs: 0.1,
            ..Default::default()
        };
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim())),
                None => (item, None),
            };
            let number = |what: &str| -> Result<f64, Error> {
                value
                    .ok_or_else(|| Error::Faults(format!("`{key}` needs a value ({what})")))?
                    .parse::<f64>()
                    .map_err(|_| Error::Faults(format!("`{key}`: expected {what}, got `{item}`")))
            };
            match key {
                "seed" => config.seed = number("an integer")? as u64,
                "unavailable" => config.unavailable_share = number("a share")?,
                "exhausted" | "resource-exhausted" => {
                    config.resource_exhausted_share = number("a share")?;
                }
                "retry-after" => config.retry_after_secs = number("seconds")? as f32,
                "cut-stream" => config.stream_cut_after_bytes = Some(number("bytes")? as u64),
                "router-unauthenticated-once" => config.router_unauthenticated_once = true,
                other => {
                    return Err(Error::Faults(format!(
                        "unknown fault `{other}`; known: seed, unavailable, exhausted, \
                         retry-after, cut-stream, router-unauthenticated-once"
                    )));
                }
            }
        }
        config.validate()?;
        Ok(config)
    }
}

/// What happens to one call.
enum Decision {
    Pass,
    Fail(Status),
    CutAfter(u64),
}

/// The shared state of the fault layer.
#[derive(Debug)]
struct Injector {
    config: FaultConfig,
    rng: Mutex<StdRng>,
    router_refused: AtomicBool,
}

impl Injector {
    fn decide(&self, path: &str) -> Decision {
        if self.config.router_unauthenticated_once
            && descriptors::is_router_path(path)
            && !self.router_refused.swap(true, Ordering::SeqCst)
        {
            return Decision::Fail(Status::unauthenticated(
                "fault injected: command router token refused once",
            ));
        }
        match descriptors::call_kind(path) {
            Some(CallKind::Unary) => {
                let draw: f64 = match self.rng.lock() {
                    Ok(mut rng) => rng.random(),
                    Err(poisoned) => poisoned.into_inner().random(),
                };
                if draw < self.config.unavailable_share {
                    Decision::Fail(Status::unavailable("fault injected: unavailable"))
                } else if draw
                    < self.config.unavailable_share + self.config.resource_exhausted_share
                {
                    Decision::Fail(resource_exhausted(self.config.retry_after_secs))
                } else {
                    Decision::Pass
                }
            }
            Some(CallKind::ServerStreaming | CallKind::Bidirectional) => {
                match self.config.stream_cut_after_bytes {
                    Some(limit) => Decision::CutAfter(limit),
                    None => Decision::Pass,
                }
            }
            _ => Decision::Pass,
        }
    }
}

/// `RESOURCE_EXHAUSTED` with a `modal.client.RPCRetryPolicy` in `grpc-status-details-bin`,
/// packed the way Modal's servers pack it.
pub fn resource_exhausted(retry_after_secs: f32) -> Status {
    let message = "fault injected: resource exhausted";
    let details = RpcStatus {
        code: Code::ResourceExhausted as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: format!("{MODAL_TYPE_URL_PREFIX}modal.client.RPCRetryPolicy"),
            value: RpcRetryPolicy { retry_after_secs }.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::ResourceExhausted,
        message,
        Bytes::from(details.encode_to_vec()),
    )
}

/// Wraps a service with fault injection.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    injector: Arc<Injector>,
}

impl FaultLayer {
    /// A layer injecting the faults of `config`.
    pub fn new(config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            injector: Arc::new(Injector {
                config,
                rng: Mutex::new(rng),
                router_refused: AtomicBool::new(false),
            }),
        }
    }
}

impl<S> tower::Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            injector: Arc::clone(&self.injector),
        }
    }
}

/// A service with faults injected in front of it.
#[derive(Debug, Clone)]
pub struct FaultService<S> {
    inner: S,
    injector: Arc<Injector>,
}

impl<S> tower::Service<http::Request<Body>> for FaultService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let decision = self.injector.decide(request.uri().path());
        // The clone is not necessarily ready; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match decision {
            Decision::Pass => Box::pin(inner.call(request)),
            Decision::Fail(status) => {
                tracing::debug!(path = %request.uri().path(), code = ?status.code(), "fault injected");
                Box::pin(async move { Ok(status.into_http()) })
            }
            Decision::CutAfter(limit) => Box::pin(async move {
                let response = inner.call(request).await?;
                Ok(response.map(|body| Body::new(CutBody::new(body, limit))))
            }),
        }
    }
}

/// A gRPC response body that ends with `UNAVAILABLE` once `limit` payload bytes passed,
/// cutting only between messages.
struct CutBody {
    inner: Body,
    limit: u64,
    passed: u64,
    pending: BytesMut,
    state: CutState,
}

#[derive(PartialEq)]
enum CutState {
    Streaming,
    Cut,
    Done,
}

impl CutBody {
    fn new(inner: Body, limit: u64) -> Self {
        Self {
            inner,
            limit,
            passed: 0,
            pending: BytesMut::new(),
            state: CutState::Streaming,
        }
    }

    /// One complete length-prefixed gRPC message from the pending bytes, if there is one.
    fn next_message(&mut self) -> Option<Bytes> {
        if self.pending.len() < 5 {
            return None;
        }
        let length = u32::from_be_bytes([
            self.pending[1],
            self.pending[2],
            self.pending[3],
            self.pending[4],
        ]) as usize;
        if self.pending.len() < 5 + length {
            return None;
        }
        self.passed += length as u64;
        Some(self.pending.split_to(5 + length).freeze())
    }
}

fn cut_trailers() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "grpc-status",
        http::HeaderValue::from(Code::Unavailable as i32),
    );
    trailers.insert(
        "grpc-message",
        http::HeaderValue::from_static("fault injected: stream cut"),
    );
    trailers
}

impl http_body::Body for CutBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            match self.state {
                CutState::Done => return Poll::Ready(None),
                CutState::Cut => {
                    self.state = CutState::Done;
                    tracing::debug!(bytes = self.passed, "fault injected: stream cut");
                    return Poll::Ready(Some(Ok(Frame::trailers(cut_trailers()))));
                }
                CutState::Streaming => {}
            }
            if let Some(message) = self.next_message() {
                if self.passed >= self.limit {
                    self.state = CutState::Cut;
                }
                return Poll::Ready(Some(Ok(Frame::data(message))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.state = CutState::Done;
                    if self.pending.has_remaining() {
                        let rest = self.pending.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.pending.extend_from_slice(&data),
                    Err(frame) => {
                        // Trailers: the stream ended before the limit.
                        self.state = CutState::Done;
                        return Poll::Ready(Some(Ok(frame)));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == CutState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_strings_parse_and_validate() {
        let config: FaultConfig =
            "unavailable=0.2, exhausted=0.1,retry-after=0.5,cut-stream=100,router-unauthenticated-once,seed=9"
                .parse()
                .unwrap();
        assert_eq!(config.unavailable_share, 0.2);
        assert_eq!(config.resource_exhausted_share, 0.1);
        assert_eq!(config.retry_after_secs, 0.5);
        assert_eq!(config.stream_cut_after_bytes, Some(100));
        assert!(config.router_unauthenticated_once);
        assert_eq!(config.seed, 9);
        assert!("unavailable=2".parse::<FaultConfig>().is_err());
        assert!(
            "unavailable=0.6,exhausted=0.6"
                .parse::<FaultConfig>()
                .is_err()
        );
        let error = "bogus=1".parse::<FaultConfig>().unwrap_err().to_string();
        assert!(error.contains("bogus"), "{error}");
        assert!(!"".parse::<FaultConfig>().unwrap().is_active());
    }

    #[test]
    fn the_same_seed_injects_the_same_faults() {
        let config: FaultConfig = "unavailable=0.5,seed=3".parse().unwrap();
        let draws = |layer: &FaultLayer| -> Vec<bool> {
            (0..50)
                .map(|_| {
                    matches!(
                        layer
                            .injector
                            .decide("/modal.client.ModalClient/SandboxWait"),
                        Decision::Fail(_)
                    )
                })
                .collect()
        };
        let first = draws(&FaultLayer::new(config.clone()));
        assert_eq!(first, draws(&FaultLayer::new(config)));
        assert!(first.iter().any(|failed| *failed) && first.iter().any(|failed| !*failed));
    }

    #[test]
    fn the_router_is_refused_exactly_once() {
        let layer = FaultLayer::new("router-unauthenticated-once".parse().unwrap());
        let path = "/modal.task_command_router.TaskCommandRouter/TaskExecStart";
        assert!(
            matches!(layer.injector.decide(path), Decision::Fail(s) if s.code() == Code::Unauthenticated)
        );
        assert!(matches!(layer.injector.decide(path), Decision::Pass));
    }

    #[test]
    fn exhaustion_carries_a_retry_policy() {
        let status = resource_exhausted(0.25);
        let details = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(details.details.len(), 1);
        assert!(
            details.details[0]
                .type_url
                .ends_with("/modal.client.RPCRetryPolicy")
        );
        let policy = RpcRetryPolicy::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!(policy.retry_after_secs, 0.25);
    }

    #[tokio::test]
    async fn cut_bodies_stop_between_messages() {
        let mut wire = BytesMut::new();
        for payload in [&b"aaaa"[..], b"bbbb", b"cccc"] {
            wire.extend_from_slice(&[0, 0, 0, 0, payload.len() as u8]);
            wire.extend_from_slice(payload);
        }
        let body = Body::new(Once(Some(wire.freeze())));
        let mut cut = CutBody::new(body, 5);
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut cut), cx)).await
        {
            match frame.unwrap().into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        // Two messages (8 payload bytes) pass: the cut comes after the one crossing 5 bytes.
        assert_eq!(data.len(), 2 * 9);
        assert_eq!(trailers.unwrap()["grpc-status"], "14");
    }

    /// A body of one data frame.
    struct Once(Option<Bytes>);

    impl http_body::Body for Once {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.take().map(|bytes| Ok(Frame::data(bytes))))
        }
    }
}
