//! Images: the spec's image resolved to a Modal image id, built (and waited for) when it
//! comes from a registry, looked up when it is a snapshot; and snapshots, which are images
//! taken of a sandbox's filesystem.

use std::time::{Duration, Instant};

use sandkit_core::{Error, Result, SandboxId, SandboxSpec, Snapshot};
use sandkit_modal_proto::client as pb;
use sandkit_modal_proto::client::generic_result::GenericStatus;
use sandkit_modal_proto::task_command_router::TaskSnapshotFilesystemRequest;
use tonic::Code;

use crate::NAME;
use crate::error::{from_status, router_wait};
use crate::listing::is_finished;
use crate::mapping::{ImageRef, image_ref, registry_image};
use crate::provider::{ModalProvider, subject};
use crate::retry::RetryPolicy;

/// Long-poll of one `ImageJoinStreaming` call, in seconds.
const LONG_POLL_SECS: f32 = 55.0;
/// Longest an image build is waited for.
const IMAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long a snapshot may take, across retries.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(55);
/// How often a build's log stream may fail in a row before the build is given up.
const MAX_STREAM_FAILURES: u32 = 10;

impl ModalProvider {
    /// The image for `spec`: its id and, when the image says, its working directory.
    pub(crate) async fn image(
        &self,
        app_id: &str,
        spec: &SandboxSpec,
    ) -> Result<(String, Option<String>)> {
        let reference = match image_ref(spec, &self.settings.default_image)? {
            ImageRef::Snapshot(id) => return self.image_from_id(&id).await,
            ImageRef::Registry(reference) => reference,
        };
        let builder_version = self.builder_version().await?;
        let request = pb::ImageGetOrCreateRequest {
            app_id: app_id.to_owned(),
            image: Some(registry_image(&reference)),
            builder_version,
            ..Default::default()
        };
        let what = format!("image `{reference}`");
        let response = self.control_plane.call(request, &what).await?;
        let (result, metadata) = if is_finished(response.result.as_ref()) {
            (response.result.unwrap_or_default(), response.metadata)
        } else {
            self.join_image_build(&response.image_id, &what).await?
        };
        if result.status != GenericStatus::Success as i32 {
            let status = GenericStatus::try_from(result.status).unwrap_or(GenericStatus::Failure);
            return Err(Error::CreationFailed {
                message: format!(
                    "{what} did not build ({}){}",
                    status.as_str_name(),
                    if result.exception.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", result.exception)
                    }
                ),
            });
        }
        Ok((
            response.image_id,
            metadata.and_then(|metadata| metadata.workdir),
        ))
    }

    /// The image builder version: configured, or the environment's setting.
    async fn builder_version(&self) -> Result<String> {
        if let Some(version) = &self.settings.image_builder_version {
            return Ok(version.clone());
        }
        self.builder_version
            .get_or_try_init(|| async {
                let request = pb::EnvironmentGetOrCreateRequest {
                    deployment_name: self.settings.environment.clone(),
                    object_creation_type: pb::ObjectCreationType::Unspecified as i32,
                };
                let what = format!("environment `{}`", self.settings.environment);
                let response = self.control_plane.call(request, &what).await?;
                Ok(response
                    .metadata
                    .and_then(|metadata| metadata.settings)
                    .map(|settings| settings.image_builder_version)
                    .unwrap_or_default())
            })
            .await
            .cloned()
    }

    /// Follows an image build until it has a result, reconnecting from the last log entry
    /// when a stream ends early. A stream that fails with a transient code is reopened
    /// after a pause that grows with each failure in a row; any message resets the count.
    async fn join_image_build(
        &self,
        image_id: &str,
        what: &str,
    ) -> Result<(pb::GenericResult, Option<pb::ImageMetadata>)> {
        let deadline = Instant::now() + IMAGE_BUILD_TIMEOUT;
        let mut last_entry_id = String::new();
        let mut failures = 0u32;
        let policy = RetryPolicy::control_plane(self.settings.max_throttle_wait);
        while Instant::now() < deadline {
            let request = pb::ImageJoinStreamingRequest {
                image_id: image_id.to_owned(),
                timeout: LONG_POLL_SECS,
                last_entry_id: last_entry_id.clone(),
                include_logs_for_finished: false,
            };
            let opened = self
                .control_plane
                .server_stream(request, |mut stub, request| async move {
                    stub.image_join_streaming(request).await
                })
                .await;
            let failure = match opened {
                Ok(mut stream) => loop {
                    match stream.message().await {
                        Ok(Some(item)) => {
                            failures = 0;
                            if !item.entry_id.is_empty() {
                                last_entry_id = item.entry_id;
                            }
                            if is_finished(item.result.as_ref()) {
                                return Ok((item.result.unwrap_or_default(), item.metadata));
                            }
                        }
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                },
                Err(status) => Some(status),
            };
            if let Some(status) = failure {
                failures += 1;
                let transient = policy.retryable.contains(&status.code());
                if !transient || failures > MAX_STREAM_FAILURES {
                    return Err(from_status(&status, what));
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
            }
        }
        Err(Error::Timeout {
            operation: format!("building {what}"),
            timeout: IMAGE_BUILD_TIMEOUT,
        })
    }

    /// A snapshot's image; an unknown (or malformed, hence unknown) id is not found.
    async fn image_from_id(&self, image_id: &str) -> Result<(String, Option<String>)> {
        let request = pb::ImageFromIdRequest {
            image_id: image_id.to_owned(),
        };
        let what = format!("snapshot `{image_id}`");
        let response = match self.control_plane.call(request, &what).await {
            Ok(response) => response,
            Err(error) if matches!(error.code(), Code::NotFound | Code::InvalidArgument) => {
                return Err(Error::NotFound { what });
            }
            Err(error) => return Err(error.into()),
        };
        Ok((
            response.image_id,
            response.metadata.and_then(|metadata| metadata.workdir),
        ))
    }

    /// The sandbox's filesystem as a new image (`TaskSnapshotFilesystem` on its router).
    pub(crate) async fn snapshot_filesystem(&self, id: &SandboxId) -> Result<Snapshot> {
        let router = self.router(id).await?;
        let request = TaskSnapshotFilesystemRequest {
            task_id: router.task_id().to_owned(),
            snapshot_id: uuid::Uuid::new_v4().to_string(),
            // Sent explicitly, as Modal's Python client does: the server's default could
            // change, the configured lifetime should not.
            ttl_seconds: Some(self.settings.snapshot_ttl_secs),
            ..Default::default()
        };
        // A snapshot attempt that timed out may still be running; retrying it would only
        // queue another behind it.
        let policy = RetryPolicy {
            retryable: &[Code::Unavailable, Code::Internal, Code::Unknown],
            ..RetryPolicy::router(self.settings.max_throttle_wait)
        };
        let started = Instant::now();
        let result = router
            .unary_with(
                &policy,
                request,
                Some(SNAPSHOT_TIMEOUT),
                |mut stub, request| async move { stub.task_snapshot_filesystem(request).await },
            )
            .await;
        let response = match result {
            Ok(response) => response,
            Err(status)
                if status.code() == Code::DeadlineExceeded && router_wait(&status).is_none() =>
            {
                return Err(Error::Timeout {
                    operation: format!("snapshotting {}", subject(id.as_str())),
                    timeout: started.elapsed().max(SNAPSHOT_TIMEOUT),
                });
            }
            Err(status) => {
                let error = from_status(&status, &subject(id.as_str()));
                return Err(self.router_failure(id, error).await);
            }
        };
        if response.image_id.is_empty() {
            return Err(Error::provider(NAME, "the snapshot returned no image id"));
        }
        Ok(Snapshot {
            id: response.image_id,
            source: id.clone(),
        })
    }

    /// Deletes a snapshot's image; one already gone is not an error.
    pub(crate) async fn delete_image(&self, snapshot_id: &str) -> Result<()> {
        let request = pb::ImageDeleteRequest {
            image_id: snapshot_id.to_owned(),
        };
        let what = format!("snapshot `{snapshot_id}`");
        match self.control_plane.call(request, &what).await {
            Ok(()) => Ok(()),
            // An unknown (or malformed, hence unknown) id is already gone.
            Err(error) if matches!(error.code(), Code::NotFound | Code::InvalidArgument) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
