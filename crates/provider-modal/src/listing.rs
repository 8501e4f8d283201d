//! Describing sandboxes: `SandboxList` and its paging, Modal's listing entries and task
//! results mapped into sandkit's [`SandboxInfo`] and [`SandboxState`], and `info` built on
//! them.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use sandkit_core::ownership::TAG_CREATED_AT;
use sandkit_core::{Error, GpuKind, GpuRequest, Result, SandboxId, SandboxInfo, SandboxState};
use sandkit_modal_proto::client as pb;
use sandkit_modal_proto::client::generic_result::GenericStatus;

use crate::NAME;
use crate::calls::V2;
use crate::family::Family;
use crate::mapping::{sandbox_tags, tags_from};
use crate::provider::ModalProvider;
use crate::router_access::Task;

/// Whether a finished result is a failure to run rather than an exit.
pub(crate) fn state_of_result(result: &pb::GenericResult) -> Option<SandboxState> {
    let status = GenericStatus::try_from(result.status).unwrap_or(GenericStatus::Unspecified);
    Some(match status {
        GenericStatus::Unspecified => return None,
        GenericStatus::Success | GenericStatus::Failure | GenericStatus::IdleTimeout => {
            SandboxState::Terminated {
                exit_code: Some(result.exitcode),
            }
        }
        GenericStatus::Timeout => SandboxState::Terminated {
            exit_code: Some(124),
        },
        GenericStatus::Terminated => SandboxState::Terminated {
            exit_code: Some(137),
        },
        GenericStatus::InitFailure
        | GenericStatus::InternalFailure
        | GenericStatus::MemoryManagerEviction
        | GenericStatus::MemoryThrashingEviction
        | GenericStatus::KernelOomKill => SandboxState::Failed {
            reason: if result.exception.is_empty() {
                status.as_str_name().to_owned()
            } else {
                result.exception.clone()
            },
        },
    })
}

/// Whether there is a result and it says the thing (sandbox, build) has finished.
pub(crate) fn is_finished(result: Option<&pb::GenericResult>) -> bool {
    result.is_some_and(|result| result.status != GenericStatus::Unspecified as i32)
}

impl ModalProvider {
    /// `info`: the sandbox's listing entry, which carries its creation time, resources and
    /// task. A sandbox this instance created is searched by the tags it was created with:
    /// `SandboxWait` (has it ended?) and one `SandboxList` page. Any other sandbox, or one
    /// whose tags changed since, is searched by its current tags: `SandboxTagsGet` first.
    pub(crate) async fn describe(&self, id: &SandboxId) -> Result<SandboxInfo> {
        if Family::of(id.as_str()).is_none() {
            return Err(Error::sandbox_not_found(id));
        }
        if let Some(result) = self.poll(id.as_str()).await? {
            // An entrypoint that exited by itself: its exit code is the sandbox's result.
            // Ended any other way (terminated, timed out), the sandbox is gone.
            let exited = matches!(
                GenericStatus::try_from(result.status),
                Ok(GenericStatus::Success | GenericStatus::Failure)
            );
            let state = state_of_result(&result).filter(|_| exited);
            let Some(state) = state else {
                return Err(Error::sandbox_not_found(id));
            };
            let tags = self
                .known
                .get(id.as_str())
                .placement
                .map(|placement| placement.tags)
                .unwrap_or_default();
            let mut info = self.unlisted(id, &tags, state);
            info.tags = tags;
            self.fill_from_spec(&mut info);
            return Ok(info);
        }
        if let Some(placement) = self.known.get(id.as_str()).placement
            && let Some(entry) = self.find_listed(id, &placement.tags).await?
            // The listing's tags are the sandbox's when they hold what it was found by.
            && placement.tags.iter().all(|(name, value)| {
                entry
                    .tags
                    .iter()
                    .any(|tag| tag.tag_name == *name && tag.tag_value == *value)
            })
        {
            return Ok(self.info_from(entry));
        }
        let tags = self.tags(id).await?;
        let mut info = match self.find_listed(id, &tags).await? {
            Some(entry) => self.info_from(entry),
            None => {
                let running = matches!(
                    self.wait_for_task(id.as_str(), Duration::ZERO).await,
                    Ok(Task::Running(_))
                );
                let state = if running {
                    SandboxState::Running
                } else {
                    SandboxState::Provisioning
                };
                self.unlisted(id, &tags, state)
            }
        };
        info.tags = tags;
        self.fill_from_spec(&mut info);
        Ok(info)
    }

    /// What is known of a sandbox no listing entry describes: its state, and what its
    /// ownership tags say.
    fn unlisted(
        &self,
        id: &SandboxId,
        tags: &BTreeMap<String, String>,
        state: SandboxState,
    ) -> SandboxInfo {
        SandboxInfo {
            id: id.clone(),
            provider: NAME.to_owned(),
            name: None,
            state,
            tags: BTreeMap::new(),
            created_at_unix_secs: tags
                .get(TAG_CREATED_AT)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            expires_at_unix_secs: sandkit_core::ownership::expires_at(tags),
            workdir: self.workdir(id),
            cpu: None,
            memory_mib: None,
            gpu: None,
            region: None,
            notes: Vec::new(),
        }
    }

    /// The listing entry of `id` among the running sandboxes with `tags`.
    async fn find_listed(
        &self,
        id: &SandboxId,
        tags: &BTreeMap<String, String>,
    ) -> Result<Option<pb::SandboxInfo>> {
        Ok(self
            .list_all(tags, false, |entry| entry.id == id.as_str())
            .await?
            .into_iter()
            .find(|entry| entry.id == id.as_str()))
    }

    /// The tags of a sandbox (Modal's `SandboxTagsGet`).
    pub async fn tags(&self, id: &SandboxId) -> Result<BTreeMap<String, String>> {
        if Family::of(id.as_str()).is_none() {
            return Err(Error::sandbox_not_found(id));
        }
        let request = pb::SandboxTagsGetRequest {
            sandbox_id: id.0.clone(),
        };
        let response = self.sandbox_call(id.as_str(), request).await?;
        Ok(tags_from(response.tags))
    }

    /// Converts Modal's listing entry into sandkit's.
    pub(crate) fn info_from(&self, entry: pb::SandboxInfo) -> SandboxInfo {
        let task = entry.task_info.unwrap_or_default();
        let state =
            task.result
                .as_ref()
                .and_then(state_of_result)
                .unwrap_or(if task.id.is_empty() {
                    SandboxState::Provisioning
                } else {
                    SandboxState::Running
                });
        let tags = tags_from(entry.tags);
        // sandkit's own tags agree with each other to the second; prefer them.
        let created_at_unix_secs = tags
            .get(TAG_CREATED_AT)
            .and_then(|value| value.parse().ok())
            .unwrap_or(entry.created_at.max(0.0) as u64);
        let expires_at_unix_secs =
            sandkit_core::ownership::expires_at(&tags)
                .or((entry.timeout_secs > 0 && created_at_unix_secs > 0)
                    .then(|| created_at_unix_secs + u64::from(entry.timeout_secs)));
        let resources = entry.resource_info.unwrap_or_default();
        let gpu = task.gpu_config.and_then(|gpu| {
            let kind = gpu.gpu_type.parse::<GpuKind>().ok()?;
            Some(GpuRequest {
                kind,
                count: gpu.count.max(1),
            })
        });
        let workdir = self.workdir(&SandboxId(entry.id.clone()));
        let mut info = SandboxInfo {
            id: SandboxId(entry.id),
            provider: NAME.to_owned(),
            name: Some(entry.name).filter(|name| !name.is_empty()),
            state,
            tags,
            created_at_unix_secs,
            expires_at_unix_secs,
            workdir,
            cpu: resources
                .milli_cpu
                .map(|value| value.value)
                .filter(|milli| *milli > 0)
                .map(|milli| f64::from(milli) / 1000.0),
            memory_mib: resources
                .memory_mb
                .map(|value| u64::from(value.value))
                .filter(|mib| *mib > 0),
            gpu,
            region: entry.regions.into_iter().next(),
            notes: Vec::new(),
        };
        self.fill_from_spec(&mut info);
        info
    }

    /// Fills what Modal did not report from the spec this instance created the sandbox with.
    fn fill_from_spec(&self, info: &mut SandboxInfo) {
        let Some(placement) = self.known.get(info.id.as_str()).placement else {
            return;
        };
        if info.name.is_none() {
            info.name = placement.name;
        }
        if info.cpu.is_none() {
            info.cpu = placement.cpu;
        }
        if info.memory_mib.is_none() {
            info.memory_mib = placement.memory_mib;
        }
        if info.gpu.is_none() {
            info.gpu = placement.gpu;
        }
        if info.region.is_none() {
            info.region = placement.region;
        }
    }

    /// One page of `SandboxList`.
    async fn list_page(
        &self,
        tags: &BTreeMap<String, String>,
        include_finished: bool,
        before_timestamp: f64,
    ) -> Result<Vec<pb::SandboxInfo>> {
        let request = pb::SandboxListRequest {
            app_id: self.app_id().await?,
            before_timestamp,
            environment_name: self.settings.environment.clone(),
            include_finished,
            tags: sandbox_tags(tags),
        };
        // V2's listing holds V1 and V2 sandboxes alike.
        let response = if self.lists_v2() {
            self.control_plane.call(V2(request), "sandbox list").await?
        } else {
            self.control_plane.call(request, "sandbox list").await?
        };
        Ok(response.sandboxes)
    }

    /// Every sandbox matching, following `before_timestamp` pages until an empty one, or
    /// until `stop` says an entry is the last one needed.
    pub(crate) async fn list_all(
        &self,
        tags: &BTreeMap<String, String>,
        include_finished: bool,
        mut stop: impl FnMut(&pb::SandboxInfo) -> bool,
    ) -> Result<Vec<pb::SandboxInfo>> {
        let mut all = Vec::new();
        let mut seen = HashSet::new();
        let mut before = 0.0;
        loop {
            let page = self.list_page(tags, include_finished, before).await?;
            let Some(last) = page.last() else { break };
            let next = last.created_at;
            let mut progressed = false;
            for entry in page {
                if seen.insert(entry.id.clone()) {
                    progressed = true;
                    let done = stop(&entry);
                    all.push(entry);
                    if done {
                        return Ok(all);
                    }
                }
            }
            // A server that repeats a page would loop forever; the cursor must move.
            if !progressed || next <= 0.0 {
                break;
            }
            before = next;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_states() {
        let result = |status: GenericStatus, exitcode| pb::GenericResult {
            status: status as i32,
            exitcode,
            ..Default::default()
        };
        assert_eq!(
            state_of_result(&result(GenericStatus::Unspecified, 0)),
            None
        );
        assert_eq!(
            state_of_result(&result(GenericStatus::Success, 3)),
            Some(SandboxState::Terminated { exit_code: Some(3) })
        );
        assert_eq!(
            state_of_result(&result(GenericStatus::Timeout, 0)),
            Some(SandboxState::Terminated {
                exit_code: Some(124)
            })
        );
        assert_eq!(
            state_of_result(&result(GenericStatus::Terminated, 0)),
            Some(SandboxState::Terminated {
                exit_code: Some(137)
            })
        );
        assert!(matches!(
            state_of_result(&result(GenericStatus::InitFailure, 0)),
            Some(SandboxState::Failed { .. })
        ));
        assert!(!is_finished(None));
        assert!(!is_finished(Some(&result(GenericStatus::Unspecified, 0))));
        assert!(is_finished(Some(&result(GenericStatus::Failure, 1))));
    }
}
