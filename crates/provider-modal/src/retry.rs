//! Retries as a policy object: which gRPC failures are retried, how long to wait, and the
//! server-directed delays (`RPCRetryPolicy`) that do not use up the budget.

use std::time::Duration;

use prost::Message;
use sandkit_modal_proto::client::{RpcRetryPolicy, RpcStatus};
use tonic::{Code, Status};

/// Codes Modal's clients treat as transient.
pub(crate) const TRANSIENT_CODES: [Code; 5] = [
    Code::DeadlineExceeded,
    Code::Unavailable,
    Code::Cancelled,
    Code::Internal,
    Code::Unknown,
];

/// Server-directed delays are never shorter than this (as in Modal's clients).
const MIN_SERVER_DELAY: Duration = Duration::from_millis(100);

/// How a family of calls is retried.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt for transient failures.
    pub max_retries: u32,
    /// Delay before the first retry; doubles after each.
    pub initial_backoff: Duration,
    /// Longest delay between retries.
    pub max_backoff: Duration,
    /// Codes that are retried.
    pub retryable: &'static [Code],
    /// Cap on the total server-directed wait; `None` means no cap, zero disables them.
    pub max_throttle_wait: Option<Duration>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait, then try again.
    RetryAfter(Duration),
    /// Give up and report the failure.
    Stop,
}

/// The progress of one logical call through its retries.
#[derive(Debug, Default)]
pub(crate) struct RetryState {
    /// Attempts made so far (the next attempt's number for `x-retry-attempt`).
    pub attempts: u32,
    retries_used: u32,
    next_backoff: Option<Duration>,
    throttle_waited: Duration,
}

impl RetryPolicy {
    /// Control-plane unary calls: 3 retries, 100 ms doubling to at most 1 s.
    pub fn control_plane(max_throttle_wait: Option<Duration>) -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            retryable: &TRANSIENT_CODES,
            max_throttle_wait,
        }
    }

    /// Router unary calls: 10 retries, 10 ms doubling (bounded at 5 s so a long outage
    /// does not stretch one wait unreasonably).
    pub fn router(max_throttle_wait: Option<Duration>) -> Self {
        Self {
            max_retries: 10,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(5),
            retryable: &TRANSIENT_CODES,
            max_throttle_wait,
        }
    }

    /// Decides after attempt `state.attempts` failed with `status`.
    pub fn decide(&self, state: &mut RetryState, status: &Status) -> Decision {
        if let Some(delay) = server_retry_after(status) {
            let allowed = self
                .max_throttle_wait
                .is_none_or(|cap| state.throttle_waited + delay <= cap);
            if allowed {
                state.throttle_waited += delay;
                return Decision::RetryAfter(delay);
            }
            return Decision::Stop;
        }
        if !self.retryable.contains(&status.code()) || state.retries_used >= self.max_retries {
            return Decision::Stop;
        }
        state.retries_used += 1;
        let delay = state.next_backoff.unwrap_or(self.initial_backoff);
        state.next_backoff = Some((delay * 2).min(self.max_backoff));
        Decision::RetryAfter(delay)
    }
}

/// The delay a server asks for through `modal.client.RPCRetryPolicy` in the status details
/// (`grpc-status-details-bin`), at least 100 ms.
pub(crate) fn server_retry_after(status: &Status) -> Option<Duration> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let rpc_status = RpcStatus::decode(details).ok()?;
    rpc_status.details.iter().find_map(|any| {
        // Modal packs it with the type-URL prefix `type.modal.com/`; accept any prefix.
        let type_name = any.type_url.rsplit('/').next()?;
        if type_name != "modal.client.RPCRetryPolicy" {
            return None;
        }
        let policy = RpcRetryPolicy::decode(any.value.as_slice()).ok()?;
        let secs = if policy.retry_after_secs.is_finite() {
            f64::from(policy.retry_after_secs).max(0.0)
        } else {
            0.0
        };
        Some(Duration::from_secs_f64(secs.min(3600.0)).max(MIN_SERVER_DELAY))
    })
}

/// Status details carrying a server-directed retry delay, as Modal's servers send them.
/// Used by tests and fakes.
pub fn retry_policy_details(code: Code, message: &str, retry_after: Duration) -> Vec<u8> {
    let policy = RpcRetryPolicy {
        retry_after_secs: retry_after.as_secs_f32(),
    };
    RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: "type.modal.com/modal.client.RPCRetryPolicy".to_owned(),
            value: policy.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Status {
        Status::unavailable("down")
    }

    #[test]
    fn transient_failures_back_off_doubling_to_the_cap_then_stop() {
        let policy = RetryPolicy::control_plane(None);
        let mut state = RetryState::default();
        let delays: Vec<Decision> = (0..4)
            .map(|_| policy.decide(&mut state, &unavailable()))
            .collect();
        assert_eq!(
            delays,
            vec![
                Decision::RetryAfter(Duration::from_millis(100)),
                Decision::RetryAfter(Duration::from_millis(200)),
                Decision::RetryAfter(Duration::from_millis(400)),
                Decision::Stop,
            ]
        );
        let policy = RetryPolicy {
            max_retries: 6,
            ..policy
        };
        let mut state = RetryState::default();
        let last = (0..5)
            .map(|_| policy.decide(&mut state, &unavailable()))
            .last();
        assert_eq!(last, Some(Decision::RetryAfter(Duration::from_secs(1))));
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let policy = RetryPolicy::control_plane(None);
        for status in [
            Status::not_found("x"),
            Status::invalid_argument("x"),
            Status::unauthenticated("x"),
            Status::resource_exhausted("x"),
        ] {
            assert_eq!(
                policy.decide(&mut RetryState::default(), &status),
                Decision::Stop
            );
        }
    }

    #[test]
    fn server_directed_delays_do_not_use_the_budget() {
        let policy = RetryPolicy::control_plane(None);
        let throttled = Status::with_details(
            Code::ResourceExhausted,
            "slow down",
            retry_policy_details(
                Code::ResourceExhausted,
                "slow down",
                Duration::from_millis(250),
            )
            .into(),
        );
        let mut state = RetryState::default();
        for _ in 0..10 {
            assert_eq!(
                policy.decide(&mut state, &throttled),
                Decision::RetryAfter(Duration::from_millis(250))
            );
        }
        // The transient budget is untouched.
        assert_eq!(
            policy.decide(&mut state, &unavailable()),
            Decision::RetryAfter(Duration::from_millis(100))
        );
    }

    #[test]
    fn server_delays_have_a_floor_and_an_optional_cap() {
        let tiny = Status::with_details(
            Code::Unavailable,
            "x",
            retry_policy_details(Code::Unavailable, "x", Duration::ZERO).into(),
        );
        assert_eq!(server_retry_after(&tiny), Some(MIN_SERVER_DELAY));
        let capped = RetryPolicy::control_plane(Some(Duration::from_millis(150)));
        let mut state = RetryState::default();
        assert_eq!(
            capped.decide(&mut state, &tiny),
            Decision::RetryAfter(MIN_SERVER_DELAY)
        );
        assert_eq!(capped.decide(&mut state, &tiny), Decision::Stop);
    }
}
