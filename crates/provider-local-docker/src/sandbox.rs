//! How a sandbox is written onto a container (labels) and read back (info).
//!
//! Everything sandkit needs to know about a sandbox lives on the container itself, so
//! another process (or this one after a restart of the engine) finds it again by its
//! labels: there is no state file.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use sandkit_core::ownership::TAG_EXPIRES_AT;
use sandkit_core::{GpuRequest, SandboxId, SandboxInfo, SandboxState};

use crate::provider::PROVIDER_NAME;

/// On every container this provider creates; nothing without it is ever touched.
pub(crate) const LABEL_SANDBOX: &str = "sandkit.docker.sandbox";
/// The keys of the spec's tags (comma-separated; tag keys cannot contain commas), so
/// labels an image brings along are not reported as tags.
pub(crate) const LABEL_TAG_KEYS: &str = "sandkit.docker.tag-keys";
/// Present when the caller named the sandbox (otherwise the container name is ours).
pub(crate) const LABEL_NAMED: &str = "sandkit.docker.named";
/// The lifetime in seconds, when the sandbox has one.
pub(crate) const LABEL_LIFETIME_SECS: &str = "sandkit.docker.lifetime-secs";
/// GPUs as `KIND:COUNT`.
pub(crate) const LABEL_GPU: &str = "sandkit.docker.gpu";
/// On a container restored from a snapshot: the snapshot id (its image is removed with
/// the container once the snapshot was deleted).
pub(crate) const LABEL_FROM_SNAPSHOT: &str = "sandkit.docker.from-snapshot";
/// On a container whose image was built for it: the image's tag, removed with it.
pub(crate) const LABEL_BUILT_IMAGE: &str = "sandkit.docker.built-image";
/// On images sandkit built from a Dockerfile context.
pub(crate) const LABEL_BUILT: &str = "sandkit.docker.built";
/// On snapshot images: the sandbox they were taken from.
/// The host directory of the sandbox's agent socket, when it runs on the agent.
pub(crate) const LABEL_AGENT_DIR: &str = "sandkit.docker.agent-dir";
/// The user the image runs as, which the container itself does not (its init, the
/// agent, runs as root and starts commands as this user).
pub(crate) const LABEL_IMAGE_USER: &str = "sandkit.docker.image-user";
pub(crate) const LABEL_SNAPSHOT_OF: &str = "sandkit.docker.snapshot-of";
/// Repository of snapshot images; a snapshot id is `sandkit-snapshot:<uuid>`.
pub(crate) const SNAPSHOT_REPOSITORY: &str = "sandkit-snapshot";
/// Repository of images built from Dockerfile contexts.
pub(crate) const BUILD_REPOSITORY: &str = "sandkit-build";

/// What the provider remembers about a sandbox it has seen, to spare an inspect per call.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The full container id.
    pub container_id: String,
    /// Absolute working directory.
    pub workdir: String,
    /// Whether a memory limit is set (an out-of-memory kill is then reported as such).
    pub memory_limited: bool,
    /// Whether it was paused when last seen: inspected, paused or resumed by this
    /// instance, or refused an exec as paused. Only a sandbox paused behind this
    /// instance's back since then slips through, for the file operations the engine
    /// serves on a paused container (reads and writes through its archive API).
    pub paused: bool,
    /// Images that go when the sandbox goes.
    pub leftovers: Leftovers,
    /// Its agent, when it runs on one.
    pub agent: Option<sandkit_agent_host::Agent>,
}

/// Images removed with a sandbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leftovers {
    /// The tag of an image built for it.
    pub built_image: Option<String>,
    /// The image of a snapshot it was restored from (removed once untagged).
    pub snapshot_image: Option<String>,
    /// The host directory of its agent's socket.
    pub agent_dir: Option<std::path::PathBuf>,
}

impl Leftovers {
    /// What the labels of an inspected container say.
    pub fn of(inspect: &ContainerInspectResponse) -> Self {
        let labels = inspect.config.as_ref().and_then(|c| c.labels.as_ref());
        let label = |key: &str| {
            labels
                .and_then(|l| l.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        Self {
            built_image: label(LABEL_BUILT_IMAGE),
            snapshot_image: label(LABEL_FROM_SNAPSHOT).and(inspect.image.clone()),
            agent_dir: label(LABEL_AGENT_DIR).map(std::path::PathBuf::from),
        }
    }
}

impl Meta {
    /// Resolves a sandbox path: relative paths against the working directory.
    pub fn absolute(&self, path: &str) -> String {
        absolute(&self.workdir, path)
    }
}

/// `path` made absolute against `workdir`, with `.` and empty components removed (`..`
/// is kept: the engine resolves it inside the container's root).
pub(crate) fn absolute(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}/{path}", workdir.trim_end_matches('/'))
    };
    let parts: Vec<&str> = joined
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Length of the container ids this provider hands out as sandbox ids.
const CONTAINER_ID_LEN: usize = 64;

/// Whether `id` has the shape of a sandbox id this provider hands out: a full container id,
/// 64 lowercase hexadecimal digits. Nothing else ever reaches an engine URL as a sandbox:
/// the engine would resolve names, id prefixes and path-shaped strings (`x/../y`, `.`, a
/// query) to other containers or other endpoints.
pub(crate) fn is_sandbox_id(id: &str) -> bool {
    id.len() == CONTAINER_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `name` is a container name the engine could have given out (its own grammar,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 255 bytes), so it can go into a URL.
pub(crate) fn is_container_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2
        && bytes.len() <= 255
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The value internal labels carry when set. Snapshot images blank them (an image's
/// labels are inherited by containers made from it, and cannot be removed, only
/// overridden), so only this value counts.
pub(crate) const LABEL_SET: &str = "1";

/// Whether a container carries this provider's label.
pub(crate) fn is_ours(labels: Option<&HashMap<String, String>>) -> bool {
    labels.is_some_and(|labels| labels.get(LABEL_SANDBOX).map(String::as_str) == Some(LABEL_SET))
}

/// The sandkit view of an inspected container.
pub(crate) fn info_from(inspect: &ContainerInspectResponse) -> SandboxInfo {
    let config = inspect.config.as_ref();
    let labels = config.and_then(|c| c.labels.as_ref());
    let label = |key: &str| labels.and_then(|labels| labels.get(key));
    let tags: BTreeMap<String, String> = label(LABEL_TAG_KEYS)
        .map(|keys| {
            keys.split(',')
                .filter(|key| !key.is_empty())
                .filter_map(|key| Some((key.to_owned(), label(key)?.clone())))
                .collect()
        })
        .unwrap_or_default();
    let created_at_unix_secs = inspect
        .created
        .as_deref()
        .and_then(|created| humantime::parse_rfc3339_weak(created).ok())
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs());
    let expires_at_unix_secs = tags
        .get(TAG_EXPIRES_AT)
        .and_then(|at| at.parse().ok())
        .or_else(|| {
            let lifetime: u64 = label(LABEL_LIFETIME_SECS)?.parse().ok()?;
            Some(created_at_unix_secs.saturating_add(lifetime))
        });
    let host_config = inspect.host_config.as_ref();
    let cpu = host_config
        .and_then(|h| h.nano_cpus)
        .filter(|n| *n > 0)
        .map(|n| n as f64 / 1e9);
    let memory_mib = host_config
        .and_then(|h| h.memory)
        .filter(|m| *m > 0)
        .map(|m| (m as u64) / (1024 * 1024));
    let gpu = label(LABEL_GPU).and_then(|value| {
        let (kind, count) = value.split_once(':')?;
        Some(GpuRequest {
            kind: kind.parse().ok()?,
            count: count.parse().ok()?,
        })
    });
    let name = label(LABEL_NAMED).filter(|v| *v == LABEL_SET).and(
        inspect
            .name
            .as_deref()
            .map(|name| name.trim_start_matches('/').to_owned()),
    );
    SandboxInfo {
        id: SandboxId(inspect.id.clone().unwrap_or_default()),
        provider: PROVIDER_NAME.to_owned(),
        name,
        state: state_of(inspect),
        tags,
        created_at_unix_secs,
        expires_at_unix_secs,
        workdir: workdir_of(inspect),
        cpu,
        memory_mib,
        gpu,
        region: None,
        notes: Vec::new(),
    }
}

/// The container's working directory (the image's, or `/`).
pub(crate) fn workdir_of(inspect: &ContainerInspectResponse) -> String {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.working_dir.clone())
        .filter(|w| !w.is_empty())
        .map_or_else(|| "/".to_owned(), |w| absolute("/", &w))
}

/// Maps the engine's container states onto sandkit's.
fn state_of(inspect: &ContainerInspectResponse) -> SandboxState {
    let Some(state) = inspect.state.as_ref() else {
        return SandboxState::Provisioning;
    };
    let exit_code = state.exit_code.and_then(|c| i32::try_from(c).ok());
    match state.status {
        Some(ContainerStateStatusEnum::RUNNING) => SandboxState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => SandboxState::Paused,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::RESTARTING) => {
            SandboxState::Provisioning
        }
        Some(ContainerStateStatusEnum::DEAD) => SandboxState::Failed {
            reason: state
                .error
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the container is dead".to_owned()),
        },
        _ if state.oom_killed == Some(true) => SandboxState::Failed {
            reason: "the main process was killed: out of memory".to_owned(),
        },
        _ => match state.error.as_deref().filter(|e| !e.is_empty()) {
            Some(error) => SandboxState::Failed {
                reason: error.to_owned(),
            },
            None => SandboxState::Terminated { exit_code },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_container_ids_are_sandbox_ids() {
        let real = "ae14d0e81ab857d165bc77667a569aac2dc7a59e4285811629cc26ec06f04bb7";
        assert!(is_sandbox_id(real));
        for hostile in [
            "",
            ".",
            "..",
            "/etc/passwd",
            "ae14d0e81ab8",
            &format!("{real}/"),
            &format!("./{real}"),
            &format!("{real}/../{real}"),
            &format!("{real}?all=1"),
            &format!("{real}\0"),
            &real.to_ascii_uppercase(),
        ] {
            assert!(!is_sandbox_id(hostile), "{hostile:?}");
        }
        assert!(is_container_name("sandkit-1a2b"));
        for hostile in ["", "a", ".", "..", "-x", "a/b", "a?b", "a\0", "../x"] {
            assert!(!is_container_name(hostile), "{hostile:?}");
        }
    }
    use bollard::models::{ContainerConfig, ContainerState, HostConfig};

    #[test]
    fn paths_resolve_against_the_workdir() {
        assert_eq!(absolute("/work", "a/b.txt"), "/work/a/b.txt");
        assert_eq!(absolute("/work/", "./a//b"), "/work/a/b");
        assert_eq!(absolute("/work", "/etc/hosts"), "/etc/hosts");
        assert_eq!(absolute("/", "."), "/");
        assert_eq!(absolute("/work", "../x"), "/work/../x");
    }

    #[test]
    fn only_the_specs_tags_are_reported() {
        let labels = HashMap::from([
            (LABEL_SANDBOX.to_owned(), LABEL_SET.to_owned()),
            (LABEL_TAG_KEYS.to_owned(), "team,sandkit.run-id".to_owned()),
            ("team".to_owned(), "evals".to_owned()),
            ("sandkit.run-id".to_owned(), "r1".to_owned()),
            (
                "org.opencontainers.image.version".to_owned(),
                "12".to_owned(),
            ),
        ]);
        let inspect = ContainerInspectResponse {
            id: Some("abc".into()),
            created: Some("2026-11-21T10:00:00.123456789Z".into()),
            config: Some(ContainerConfig {
                labels: Some(labels),
                working_dir: Some("/work".into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                nano_cpus: Some(500_000_000),
                memory: Some(256 * 1024 * 1024),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = info_from(&inspect);
        assert_eq!(info.tags.len(), 2, "{:?}", info.tags);
        assert_eq!(info.tags["team"], "evals");
        assert_eq!(info.state, SandboxState::Running);
        assert_eq!(info.cpu, Some(0.5));
        assert_eq!(info.memory_mib, Some(256));
        assert_eq!(info.workdir, "/work");
        assert_eq!(info.name, None);
        assert_eq!(info.created_at_unix_secs, 1_795_255_200);
    }

    #[test]
    fn an_oom_killed_container_failed() {
        let inspect = ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::EXITED),
                oom_killed: Some(true),
                exit_code: Some(137),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(state_of(&inspect), SandboxState::Failed { .. }));
    }
}
