//! The backend spec of a Modal sandbox definition, and where Modal's paths lie at the
//! backend.

use sandkit_core::{GpuKind, GpuRequest, NetworkPolicy, SandboxSpec, SecretString, VolumeMount};
use sandkit_modal_proto::client::{self as pb, network_access::NetworkAccessType};
use tonic::Status;

use super::Emulator;

/// Headroom past a sandbox's Modal timeout before the backend's own lifetime ends it: the
/// emulator's timer ends it first (with a TIMEOUT result); the backend's lifetime only
/// matters if the emulator dies.
const BACKEND_LIFETIME_GRACE_SECS: u64 = 60;

impl Emulator {
    fn gpu_request(config: &pb::GpuConfig) -> Result<Option<GpuRequest>, Status> {
        if config.count == 0 && config.gpu_type.is_empty() {
            return Ok(None);
        }
        let kind: GpuKind = config
            .gpu_type
            .parse()
            .map_err(|error: sandkit_core::Error| Status::invalid_argument(error.to_string()))?;
        Ok(Some(GpuRequest {
            kind,
            count: config.count.max(1),
        }))
    }

    /// The backend spec for a Modal sandbox definition.
    pub(crate) fn spec_for(
        &self,
        definition: &pb::Sandbox,
        timeout_secs: u32,
    ) -> Result<SandboxSpec, Status> {
        let backend_caps = self.backend().capabilities().clone();
        let mut spec = SandboxSpec::new();
        spec.entrypoint = definition.entrypoint_args.clone();
        spec.workdir = definition.workdir.clone().filter(|dir| !dir.is_empty());
        let lifetime = u64::from(timeout_secs) + BACKEND_LIFETIME_GRACE_SECS;
        spec.lifetime_secs = Some(match backend_caps.max_lifetime_secs {
            Some(max) => lifetime.min(max),
            None => lifetime,
        });
        // A backend without idle timeouts gets none: the emulator enforces them itself.
        if backend_caps.idle_timeout {
            spec.idle_timeout_secs = definition.idle_timeout_secs.map(u64::from);
        }
        {
            let state = self.state();
            if !definition.image_id.is_empty() {
                let source = state.images.get(&definition.image_id).ok_or_else(|| {
                    Status::not_found(format!("Image `{}` not found", definition.image_id))
                })?;
                spec.image = self.backend_image(source);
            }
            for secret_id in &definition.secret_ids {
                let values = state
                    .secrets
                    .get(secret_id)
                    .ok_or_else(|| Status::not_found(format!("Secret `{secret_id}` not found")))?;
                for (name, value) in values {
                    spec.secrets.insert(name.clone(), SecretString::new(value));
                }
            }
            if let Some(variables) = &definition.environment_variables {
                for (name, value) in &variables.contents {
                    spec.env.insert(name.clone(), value.clone());
                }
            }
            for mount in &definition.volume_mounts {
                let name = state.volumes.get(&mount.volume_id).ok_or_else(|| {
                    Status::not_found(format!("Volume `{}` not found", mount.volume_id))
                })?;
                spec.volumes.push(VolumeMount {
                    name: name.clone(),
                    mount_path: mount.mount_path.clone(),
                    read_only: mount.read_only,
                });
            }
        }
        if let Some(resources) = &definition.resources {
            // Requests the backend cannot enforce are recorded, not refused: Modal always
            // honours them, and refusing would make most clients unusable here.
            if resources.milli_cpu > 0 && backend_caps.cpu_limit {
                spec.cpu = Some(f64::from(resources.milli_cpu) / 1000.0);
            }
            if resources.memory_mb > 0 && backend_caps.memory_limit {
                spec.memory_mib = Some(u64::from(resources.memory_mb));
            }
            if let Some(gpu) = &resources.gpu_config {
                spec.gpu = Self::gpu_request(gpu)?;
            }
        }
        let access = definition.network_access.as_ref();
        let access_type = access
            .and_then(|access| NetworkAccessType::try_from(access.network_access_type).ok())
            .unwrap_or(NetworkAccessType::Unspecified);
        spec.network = match access_type {
            NetworkAccessType::Blocked => Some(NetworkPolicy::BlockAll),
            NetworkAccessType::Allowlist => Some(NetworkPolicy::AllowList {
                cidrs: access.map(|a| a.allowed_cidrs.clone()).unwrap_or_default(),
                domains: access
                    .map(|a| a.allowed_domains.clone())
                    .unwrap_or_default(),
            }),
            _ if definition.block_network => Some(NetworkPolicy::BlockAll),
            _ => None,
        };
        if let Some(pb::sandbox::OpenPortsOneof::OpenPorts(ports)) = &definition.open_ports_oneof {
            for port in &ports.ports {
                let port = u16::try_from(port.port).map_err(|_| {
                    Status::invalid_argument(format!("port {} is out of range", port.port))
                })?;
                spec.ports.push(port);
            }
        }
        if definition.pty_info.as_ref().is_some_and(|pty| pty.enabled) {
            return Err(Status::unimplemented(
                "modal-fake does not run sandbox entrypoints on a PTY",
            ));
        }
        Ok(spec)
    }

    /// Whether the backend's file operations see `/` as Modal's clients do. A backend that
    /// refuses `/` as outside the sandbox keeps each sandbox under a private root; Modal's
    /// paths are then mapped into that root, which is the working directory minus the
    /// spec's workdir (the backend takes an absolute workdir inside its root).
    pub(crate) async fn probe_path_root(
        &self,
        info: &sandkit_core::SandboxInfo,
        workdir: Option<&str>,
    ) -> Option<String> {
        if self.backend().capabilities().container_paths {
            return None;
        }
        match self.backend().stat(&info.id, "/").await {
            Err(sandkit_core::Error::FileOperation {
                kind: sandkit_core::FileErrorKind::OutsideSandbox,
                ..
            }) => {}
            _ => return None,
        }
        let full = info.workdir.trim_end_matches('/');
        let inner = workdir.unwrap_or("").trim_matches('/');
        let root = if inner.is_empty() {
            full
        } else {
            full.strip_suffix(inner)
                .map(|root| root.trim_end_matches('/'))
                .unwrap_or(full)
        };
        Some(if root.is_empty() {
            "/".to_owned()
        } else {
            root.to_owned()
        })
    }
}

/// The working directory of a backend sandbox as a Modal path: the backend's own path, or
/// with a private root (`path_root`), the part inside it.
pub(crate) fn modal_workdir(backend_workdir: &str, path_root: Option<&str>) -> String {
    let Some(root) = path_root else {
        return backend_workdir.to_owned();
    };
    let root = root.trim_end_matches('/');
    match backend_workdir.strip_prefix(root) {
        Some(inner) if inner.starts_with('/') => inner.to_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_workdirs_read_as_modal_paths() {
        assert_eq!(modal_workdir("/workspace", None), "/workspace");
        assert_eq!(
            modal_workdir("/state/sb-1/root", Some("/state/sb-1/root")),
            "/"
        );
        assert_eq!(
            modal_workdir("/state/sb-1/root/app", Some("/state/sb-1/root/")),
            "/app"
        );
        assert_eq!(modal_workdir("/elsewhere", Some("/state/sb-1/root")), "/");
    }
}
