//! From sandkit's spec to Modal's messages, with no I/O: the sandbox definition and the
//! pieces `create` sends before it (image, environment, volumes, tags). Modal's own limits
//! are checked here, so a spec Modal would refuse fails before anything is sent.

use std::collections::{BTreeMap, HashMap};

use sandkit_core::{Error, ImageSource, NetworkPolicy, Result, SandboxSpec, VolumeMount};
use sandkit_modal_proto::client as pb;
use sandkit_modal_proto::client::network_access::NetworkAccessType;

use crate::NAME;
use crate::capabilities::DEFAULT_LIFETIME_SECS;

/// Where a sandbox's image comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ImageRef {
    /// A snapshot this provider took: an existing image id.
    Snapshot(String),
    /// A registry reference, built as `FROM <reference>`.
    Registry(String),
}

/// The spec's image, or `default_image` when it names none.
pub(crate) fn image_ref(spec: &SandboxSpec, default_image: &str) -> Result<ImageRef> {
    let reference = match &spec.image {
        Some(ImageSource::Snapshot { id }) => return Ok(ImageRef::Snapshot(id.clone())),
        Some(ImageSource::Dockerfile { .. }) => {
            return Err(Error::unsupported(NAME, "images built from a Dockerfile"));
        }
        Some(ImageSource::Registry { reference }) => reference.clone(),
        None => default_image.to_owned(),
    };
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid_spec(
            "image.reference",
            format!("`{reference}` is not an image reference"),
        ));
    }
    Ok(ImageRef::Registry(reference))
}

/// The image Modal builds for a registry reference.
pub(crate) fn registry_image(reference: &str) -> pb::Image {
    pb::Image {
        dockerfile_commands: vec![format!("FROM {reference}")],
        ..Default::default()
    }
}

/// The spec's environment and secrets as one dictionary, for an ephemeral secret; `None`
/// when there are neither.
pub(crate) fn environment(spec: &SandboxSpec) -> Option<HashMap<String, String>> {
    if spec.env.is_empty() && spec.secrets.is_empty() {
        return None;
    }
    Some(
        spec.env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .chain(
                spec.secrets
                    .iter()
                    .map(|(name, value)| (name.clone(), value.expose().to_owned())),
            )
            .collect(),
    )
}

/// The mount of `volume`, which Modal knows as `volume_id`.
pub(crate) fn volume_mount(volume: &VolumeMount, volume_id: String) -> pb::VolumeMount {
    pb::VolumeMount {
        volume_id,
        mount_path: volume.mount_path.clone(),
        allow_background_commits: true,
        read_only: volume.read_only,
        sub_path: None,
    }
}

/// Tags as Modal sends them.
pub(crate) fn sandbox_tags(tags: &BTreeMap<String, String>) -> Vec<pb::SandboxTag> {
    tags.iter()
        .map(|(name, value)| pb::SandboxTag {
            tag_name: name.clone(),
            tag_value: value.clone(),
        })
        .collect()
}

/// Tags as sandkit keeps them.
pub(crate) fn tags_from(tags: Vec<pb::SandboxTag>) -> BTreeMap<String, String> {
    tags.into_iter()
        .map(|tag| (tag.tag_name, tag.tag_value))
        .collect()
}

/// The directory commands start in: the spec's, else the image's, else `/`.
pub(crate) fn workdir(spec: &SandboxSpec, image_workdir: Option<String>) -> String {
    spec.workdir
        .clone()
        .or(image_workdir)
        .filter(|workdir| workdir.starts_with('/'))
        .unwrap_or_else(|| "/".to_owned())
}

/// The sandbox definition for `spec`, checking Modal's own limits.
pub(crate) fn definition(
    spec: &SandboxSpec,
    image_id: String,
    secret_ids: Vec<String>,
    volume_mounts: Vec<pb::VolumeMount>,
) -> Result<pb::Sandbox> {
    let lifetime_secs = lifetime_secs(spec)?;
    let idle_timeout_secs = spec
        .idle_timeout_secs
        .map(|secs| {
            u32::try_from(secs).map_err(|_| {
                Error::invalid_spec("idle_timeout_secs", "must fit in 32 bits of seconds")
            })
        })
        .transpose()?;
    check_name(spec.name.as_deref())?;
    let resources = resources(spec)?;
    let network_access = network_access(spec.network.as_ref())?;
    Ok(pb::Sandbox {
        entrypoint_args: spec.entrypoint.clone(),
        image_id,
        secret_ids,
        resources: Some(resources),
        timeout_secs: lifetime_secs,
        idle_timeout_secs,
        workdir: spec.workdir.clone(),
        volume_mounts,
        scheduler_placement: spec.region.as_ref().map(|region| pb::SchedulerPlacement {
            regions: vec![region.clone()],
            ..Default::default()
        }),
        open_ports_oneof: Some(pb::sandbox::OpenPortsOneof::OpenPorts(pb::PortSpecs {
            ports: spec
                .ports
                .iter()
                .map(|port| pb::PortSpec {
                    port: u32::from(*port),
                    unencrypted: false,
                    tunnel_type: None,
                })
                .collect(),
        })),
        network_access: Some(network_access),
        name: spec.name.clone(),
        ..Default::default()
    })
}

/// The lifetime in Modal's field. Modal's maximum is a capability (`max_lifetime_secs`),
/// which `Requirements::enforce` checks before any mapping; this only refuses to truncate.
fn lifetime_secs(spec: &SandboxSpec) -> Result<u32> {
    let lifetime_secs = spec.lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
    u32::try_from(lifetime_secs)
        .map_err(|_| Error::invalid_spec("lifetime_secs", "must fit in 32 bits of seconds"))
}

fn check_name(name: Option<&str>) -> Result<()> {
    match name {
        Some(name)
            if name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
        {
            Err(Error::invalid_spec(
                "name",
                "Modal names are at most 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
            ))
        }
        _ => Ok(()),
    }
}

fn resources(spec: &SandboxSpec) -> Result<pb::Resources> {
    let milli_cpu = match spec.cpu {
        Some(cores) => {
            let milli = (cores * 1000.0).round();
            if !(1.0..=f64::from(u32::MAX)).contains(&milli) {
                return Err(Error::invalid_spec(
                    "cpu",
                    format!("{cores} cores is out of range"),
                ));
            }
            milli as u32
        }
        None => 0,
    };
    let memory_mb = match spec.memory_mib {
        Some(mib) => {
            u32::try_from(mib).map_err(|_| Error::invalid_spec("memory_mib", "is out of range"))?
        }
        None => 0,
    };
    Ok(pb::Resources {
        milli_cpu,
        // Request and limit are equal, so the limits are enforced.
        milli_cpu_max: milli_cpu,
        memory_mb,
        memory_mb_max: memory_mb,
        gpu_config: Some(match spec.gpu {
            Some(gpu) => pb::GpuConfig {
                count: gpu.count,
                gpu_type: gpu.kind.as_str().to_owned(),
                ..Default::default()
            },
            None => pb::GpuConfig::default(),
        }),
        ..Default::default()
    })
}

fn network_access(policy: Option<&NetworkPolicy>) -> Result<pb::NetworkAccess> {
    let (access, allowed_cidrs) = match policy {
        None | Some(NetworkPolicy::AllowAll) => (NetworkAccessType::Open, Vec::new()),
        Some(NetworkPolicy::BlockAll) => (NetworkAccessType::Blocked, Vec::new()),
        Some(NetworkPolicy::AllowList { domains, .. }) if !domains.is_empty() => {
            return Err(Error::unsupported(NAME, "domain allowlists for egress"));
        }
        Some(NetworkPolicy::AllowList { cidrs, .. }) if cidrs.is_empty() => {
            (NetworkAccessType::Blocked, Vec::new())
        }
        Some(NetworkPolicy::AllowList { cidrs, .. }) => {
            (NetworkAccessType::Allowlist, cidrs.clone())
        }
    };
    Ok(pb::NetworkAccess {
        network_access_type: access as i32,
        allowed_cidrs,
        ..Default::default()
    })
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
