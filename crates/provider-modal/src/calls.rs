//! The control-plane calls the provider makes, and the one way to make them:
//! [`ControlPlane::call`] sends a request to the `ModalClient` method its type stands for,
//! with Modal's headers, retries and the method's deadline, and reports a failure as a
//! [`CallError`] about a subject, which `?` turns into sandkit's error.

use std::future::Future;
use std::time::Duration;

use sandkit_modal_proto::client as pb;
use sandkit_modal_proto::client::modal_client_client::ModalClientClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::client::ControlPlane;
use crate::error::CallError;

/// A control-plane request: the `ModalClient` method it goes to, and how long one attempt
/// may take.
pub(crate) trait ControlCall: Clone + Send + Sync + 'static {
    /// What the method answers.
    type Response: Send;

    /// One attempt, on a clone of the stub.
    fn send(
        stub: ModalClientClient<Channel>,
        request: Request<Self>,
    ) -> impl Future<Output = Result<Response<Self::Response>, Status>> + Send;

    /// The deadline of one attempt; `None` sets none.
    fn deadline(&self) -> Option<Duration> {
        None
    }
}

impl ControlPlane {
    /// Sends `request` (with retries, see [`ControlPlane::unary`]); a failure is a
    /// [`CallError`] about `subject`, e.g. "sandbox `sb-…`".
    pub async fn call<R: ControlCall>(
        &self,
        request: R,
        subject: &str,
    ) -> Result<R::Response, CallError> {
        let deadline = request.deadline();
        self.unary(request, |stub, mut attempt| {
            if let Some(deadline) = deadline {
                attempt.set_timeout(deadline);
            }
            R::send(stub, attempt)
        })
        .await
        .map_err(|status| CallError::new(status, subject))
    }
}

/// A long poll's attempt takes up to the poll's own timeout (seconds, as Modal sends it)
/// plus `margin` for the answer; a plain poll (timeout 0) gets no deadline.
fn long_poll(timeout_secs: f32, margin: Duration) -> Option<Duration> {
    (timeout_secs > 0.0).then(|| Duration::from_secs_f32(timeout_secs) + margin)
}

/// Implements [`ControlCall`] for each `Request => Response: method` line, with an optional
/// `deadline(request) <expression>`.
macro_rules! control_calls {
    ($($request:ident => $response:ty: $method:ident $(, deadline($this:ident) $deadline:expr)?;)*) => {$(
        impl ControlCall for pb::$request {
            type Response = $response;

            fn send(
                mut stub: ModalClientClient<Channel>,
                request: Request<Self>,
            ) -> impl Future<Output = Result<Response<Self::Response>, Status>> + Send {
                async move { stub.$method(request).await }
            }

            $(fn deadline(&self) -> Option<Duration> {
                let $this = self;
                $deadline
            })?
        }
    )*};
}

control_calls! {
    AppGetOrCreateRequest => pb::AppGetOrCreateResponse: app_get_or_create;
    EnvironmentGetOrCreateRequest => pb::EnvironmentGetOrCreateResponse: environment_get_or_create,
        deadline(_request) Some(Duration::from_secs(30));
    ImageDeleteRequest => (): image_delete;
    ImageFromIdRequest => pb::ImageFromIdResponse: image_from_id;
    ImageGetOrCreateRequest => pb::ImageGetOrCreateResponse: image_get_or_create;
    SandboxCreateRequest => pb::SandboxCreateResponse: sandbox_create;
    SandboxCreateV2Request => pb::SandboxCreateV2Response: sandbox_create_v2;
    SandboxGetFromNameRequest => pb::SandboxGetFromNameResponse: sandbox_get_from_name;
    SandboxGetTaskIdRequest => pb::SandboxGetTaskIdResponse: sandbox_get_task_id;
    SandboxGetTunnelsRequest => pb::SandboxGetTunnelsResponse: sandbox_get_tunnels,
        deadline(request) long_poll(request.timeout, Duration::from_secs(20));
    SandboxListRequest => pb::SandboxListResponse: sandbox_list;
    SandboxStdinWriteRequest => pb::SandboxStdinWriteResponse: sandbox_stdin_write;
    SandboxTagsGetRequest => pb::SandboxTagsGetResponse: sandbox_tags_get;
    SandboxTerminateRequest => pb::SandboxTerminateResponse: sandbox_terminate;
    SandboxWaitRequest => pb::SandboxWaitResponse: sandbox_wait,
        deadline(request) long_poll(request.timeout, Duration::from_secs(10));
    SecretGetOrCreateRequest => pb::SecretGetOrCreateResponse: secret_get_or_create;
    VolumeGetOrCreateRequest => pb::VolumeGetOrCreateResponse: volume_get_or_create;
}

/// A V1 request sent to the V2 method of the same name: Modal's V2 sandbox calls take the
/// V1 messages, so the method cannot be told from the request's type alone.
#[derive(Clone)]
pub(crate) struct V2<R>(pub R);

/// Implements [`ControlCall`] for `V2<request>` on each `Request: method` line, with the
/// V1 call's response and deadline.
macro_rules! v2_calls {
    ($($request:ident: $method:ident;)*) => {$(
        impl ControlCall for V2<pb::$request> {
            type Response = <pb::$request as ControlCall>::Response;

            fn send(
                mut stub: ModalClientClient<Channel>,
                request: Request<Self>,
            ) -> impl Future<Output = Result<Response<Self::Response>, Status>> + Send {
                async move { stub.$method(request.map(|V2(inner)| inner)).await }
            }

            fn deadline(&self) -> Option<Duration> {
                self.0.deadline()
            }
        }
    )*};
}

v2_calls! {
    SandboxGetFromNameRequest: sandbox_get_from_name_v2;
    SandboxGetTaskIdRequest: sandbox_get_task_id_v2;
    SandboxGetTunnelsRequest: sandbox_get_tunnels_v2;
    SandboxListRequest: sandbox_list_v2;
    SandboxTagsGetRequest: sandbox_tags_get_v2;
    SandboxTerminateRequest: sandbox_terminate_v2;
    SandboxWaitRequest: sandbox_wait_v2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_polls_get_their_timeout_and_a_margin() {
        let wait = |timeout| pb::SandboxWaitRequest {
            sandbox_id: String::new(),
            timeout,
        };
        assert_eq!(wait(0.0).deadline(), None);
        assert_eq!(wait(10.0).deadline(), Some(Duration::from_secs(20)));
        let tunnels = pb::SandboxGetTunnelsRequest {
            sandbox_id: String::new(),
            timeout: 50.0,
        };
        assert_eq!(tunnels.deadline(), Some(Duration::from_secs(70)));
        assert_eq!(pb::SandboxListRequest::default().deadline(), None);
    }
}
