//! How a spec becomes a container: checks, the container's configuration, creation and
//! start; and what the provider can do.

use sandkit_agent_host::protocol::SpawnRequest;

use super::*;

/// The main process of a leased sandbox: it ends the container (and so every process in
/// it) once no renewal (`SIGUSR1`, sent by the creator every third of the lease) has come
/// for the lease's seconds, when the lifetime runs out, or when the entrypoint (if any)
/// ends, with its exit code. `$1` lease seconds, `$2` lifetime seconds, then the
/// entrypoint.
const LEASE_KEEPER: &str = r#"
lease=$1
end=$(( $(date +%s) + $2 ))
shift 2
renewed=$(date +%s)
trap 'renewed=$(date +%s)' USR1
child=""
if [ $# -gt 0 ]; then "$@" & child=$!; fi
while :; do
  if [ -n "$child" ] && ! kill -0 "$child" 2>/dev/null; then wait "$child"; exit $?; fi
  now=$(date +%s)
  [ $((now - renewed)) -ge "$lease" ] && exit 137
  [ "$now" -ge "$end" ] && exit 137
  sleep 1
done
"#;

impl LocalDockerProvider {
    pub(super) fn check_spec(&self, spec: &SandboxSpec) -> Result<()> {
        // The `Checked` layer's rule, again: called without layers, a sandbox must still
        // not get less than its spec asks for (an allowlist it cannot enforce, say). Then
        // the engine's own limits.
        Requirements::from_spec(spec).enforce(PROVIDER_NAME, &self.capabilities)?;
        if let Some(memory) = spec.memory_mib
            && memory < MIN_MEMORY_MIB
        {
            return Err(Error::invalid_spec(
                "memory_mib",
                format!("the Docker Engine needs at least {MIN_MEMORY_MIB} MiB"),
            ));
        }
        if blocks_network(spec) && !spec.ports.is_empty() {
            return Err(Error::invalid_spec(
                "ports",
                "ports cannot be exposed from a sandbox whose network is blocked",
            ));
        }
        for (index, file) in spec.files.iter().enumerate() {
            if sandbox::absolute("/", &file.path) == "/" {
                return Err(Error::invalid_spec(
                    format!("files[{index}].path"),
                    "must name a file",
                ));
            }
        }
        Ok(())
    }

    /// The container the spec describes.
    fn container_body(
        &self,
        spec: &SandboxSpec,
        image: &image::ReadyImage,
        workdir: &str,
        agent_dir: Option<&std::path::Path>,
    ) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = spec
            .tags
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let keys: Vec<&str> = spec.tags.keys().map(String::as_str).collect();
        labels.insert(LABEL_SANDBOX.to_owned(), LABEL_SET.to_owned());
        labels.insert(LABEL_TAG_KEYS.to_owned(), keys.join(","));
        // Blank values override what a snapshot image would otherwise hand down.
        let set_or_blank = |present: bool| if present { LABEL_SET } else { "" }.to_owned();
        labels.insert(LABEL_NAMED.to_owned(), set_or_blank(spec.name.is_some()));
        labels.insert(
            LABEL_LIFETIME_SECS.to_owned(),
            spec.lifetime_secs
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
        labels.insert(
            LABEL_GPU.to_owned(),
            spec.gpu
                .map(|gpu| format!("{}:{}", gpu.kind, gpu.count))
                .unwrap_or_default(),
        );
        labels.insert(
            LABEL_BUILT_IMAGE.to_owned(),
            image.built_tag.clone().unwrap_or_default(),
        );
        let from_snapshot = match &spec.image {
            Some(ImageSource::Snapshot { id }) => id.clone(),
            _ => String::new(),
        };
        labels.insert(LABEL_FROM_SNAPSHOT.to_owned(), from_snapshot);
        labels.insert(
            LABEL_AGENT_DIR.to_owned(),
            agent_dir
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        );
        let image_user = image.user.clone().filter(|_| agent_dir.is_some());
        labels.insert(
            LABEL_IMAGE_USER.to_owned(),
            image_user.clone().unwrap_or_default(),
        );

        let lifetime = spec.lifetime_secs.map(|secs| secs.to_string());
        let expires_at = spec
            .lifetime_secs
            .map(|secs| sandkit_core::ownership::unix_now().saturating_add(secs));
        let entrypoint = match (spec.lease_secs, spec.entrypoint.is_empty(), lifetime) {
            // The agent is the init: it ends the sandbox when its lifetime or its lease
            // runs out, and starts the spec's entrypoint once it listens.
            _ if agent_dir.is_some() => crate::agent::entrypoint(expires_at, image_user.as_deref()),
            // A leased sandbox's main process is the lease keeper (see `LEASE_KEEPER`).
            (Some(lease), _, lifetime) => [
                "sh",
                "-c",
                LEASE_KEEPER,
                "sandkit-lease",
                &lease.to_string(),
                &lifetime.unwrap_or_else(|| FOREVER_SECS.to_string()),
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(spec.entrypoint.iter().cloned())
            .collect(),
            (None, entrypoint_empty, lifetime) => match (entrypoint_empty, lifetime) {
                (true, lifetime) => vec![
                    "sleep".to_owned(),
                    lifetime.unwrap_or_else(|| FOREVER_SECS.to_string()),
                ],
                (false, Some(lifetime)) => ["timeout", "-s", "KILL", &lifetime]
                    .into_iter()
                    .map(str::to_owned)
                    .chain(spec.entrypoint.iter().cloned())
                    .collect(),
                (false, None) => spec.entrypoint.clone(),
            },
        };
        let env: Vec<String> = spec
            .env
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .chain(
                spec.secrets
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value.expose())),
            )
            .collect();
        let ports: Vec<String> = spec
            .ports
            .iter()
            .map(|port| format!("{port}/tcp"))
            .collect();
        let port_bindings = ports
            .iter()
            .map(|port| {
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(String::new()),
                };
                (port.clone(), Some(vec![binding]))
            })
            .collect();
        let host_config = HostConfig {
            // Other sandboxes stay after they stop, until terminate or reap; a leased one
            // has nobody left to remove it when its lease runs out, so the engine does.
            auto_remove: Some(spec.lease_secs.is_some()),
            // The agent reaps orphans itself.
            init: Some(self.config.init && agent_dir.is_none()),
            nano_cpus: spec.cpu.map(|cores| (cores * 1e9).round() as i64),
            memory: spec.memory_mib.map(|mib| mib as i64 * MIB),
            // No swap beyond the limit, or the limit would not bound anything.
            memory_swap: spec.memory_mib.map(|mib| mib as i64 * MIB),
            pids_limit: Some(i64::from(self.config.pids_limit)),
            network_mode: blocks_network(spec).then(|| "none".to_owned()),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(self.config.capabilities.clone()),
            runtime: self.config.runtime.clone(),
            device_requests: spec.gpu.map(|gpu| {
                vec![DeviceRequest {
                    driver: Some("nvidia".to_owned()),
                    count: Some(i64::from(gpu.count)),
                    capabilities: Some(vec![vec!["gpu".to_owned()]]),
                    ..Default::default()
                }]
            }),
            mounts: {
                let mut mounts: Vec<Mount> = spec
                    .volumes
                    .iter()
                    .map(|volume| Mount {
                        typ: Some(MountType::VOLUME),
                        source: Some(volume.name.clone()),
                        target: Some(volume.mount_path.clone()),
                        read_only: Some(volume.read_only),
                        ..Default::default()
                    })
                    .collect();
                if let (Some(dir), crate::agent::AgentMode::On { binary, .. }) =
                    (agent_dir, &self.agent)
                {
                    mounts.extend(crate::agent::mounts(binary, dir));
                }
                (!mounts.is_empty()).then_some(mounts)
            },
            port_bindings: (!ports.is_empty()).then_some(port_bindings),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(image.reference.clone()),
            entrypoint: Some(entrypoint),
            env: (!env.is_empty()).then_some(env),
            working_dir: Some(workdir.to_owned()),
            // The agent runs as root, and starts commands as the image's user.
            user: image_user.as_ref().map(|_| "0".to_owned()),
            labels: Some(labels),
            exposed_ports: (!ports.is_empty()).then_some(ports),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    /// Creates, fills and starts the container; on failure removes what it made.
    pub(super) async fn create_container(
        &self,
        spec: &SandboxSpec,
        image: &image::ReadyImage,
    ) -> Result<SandboxInfo> {
        let workdir = spec
            .workdir
            .clone()
            .or_else(|| image.working_dir.clone())
            .map_or_else(|| "/".to_owned(), |w| sandbox::absolute("/", &w));
        let name = spec.name.clone().unwrap_or_else(|| {
            format!(
                "sandkit-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        });
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let agent_dir = match &self.agent {
            crate::agent::AgentMode::On { sockets, .. } => Some(crate::agent::socket_dir(sockets)?),
            crate::agent::AgentMode::Off(_) => None,
        };
        let body = self.container_body(spec, image, &workdir, agent_dir.as_deref());
        let created = self
            .engine
            .docker
            .create_container(Some(options), body)
            .await
            .inspect_err(|_| {
                if let Some(dir) = &agent_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            })
            .map_err(
                |e| match error::map(e, Subject::NewSandbox(spec.name.as_deref())) {
                    Error::CreationFailed { message } => Error::CreationFailed {
                        message: format!("creating the container: {message}"),
                    },
                    other => other,
                },
            )?;
        let id = created.id;
        let result = self
            .fill_and_start(&id, spec, &workdir, agent_dir.as_deref())
            .await;
        if result.is_err() {
            let _ = self.remove_container(&id).await;
            self.forget(&id);
            if let Some(dir) = &agent_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        result
    }

    async fn fill_and_start(
        &self,
        id: &str,
        spec: &SandboxSpec,
        workdir: &str,
        agent_dir: Option<&std::path::Path>,
    ) -> Result<SandboxInfo> {
        let meta = Meta {
            container_id: id.to_owned(),
            workdir: workdir.to_owned(),
            memory_limited: spec.memory_mib.is_some(),
            paused: false,
            leftovers: Leftovers::default(),
            agent: None,
        };
        // Written before the start, so the entrypoint already sees them.
        let files = Files {
            engine: &self.engine,
            meta: &meta,
        };
        for file in &spec.files {
            files
                .write(&file.path, Bytes::from(file.contents.clone()))
                .await
                .map_err(|e| Error::CreationFailed {
                    message: format!("writing initial file `{}`: {e}", file.path),
                })?;
        }
        self.engine
            .docker
            .start_container(id, None)
            .await
            .map_err(|e| Error::CreationFailed {
                message: format!(
                    "starting the container: {}{}",
                    error::map(e, Subject::Sandbox(id)),
                    if spec.entrypoint.is_empty() {
                        " (sandboxes without an entrypoint run `sleep`; the image must have it)"
                    } else {
                        ""
                    }
                ),
            })?;
        let mut inspect = self.inspect_ours(id).await?;
        if let Some(agent_dir) = &agent_dir {
            let agent = self
                .agent
                .agent_of(&inspect)
                .ok_or_else(|| Error::CreationFailed {
                    message: "the container's agent has no process".to_owned(),
                })?;
            self.start_on_agent(&agent, agent_dir, spec, workdir)
                .await?;
            if !spec.entrypoint.is_empty() {
                inspect = self.inspect_ours(id).await?;
            }
        }
        let info = self.info_of(&inspect);
        if !info.state.is_finished() {
            self.remember(&inspect);
            return Ok(info);
        }
        if spec.entrypoint.is_empty() {
            return Err(Error::CreationFailed {
                message: format!(
                    "the sandbox ended at once ({}); sandboxes without an entrypoint run `sleep <lifetime>`, which the image must have",
                    info.state
                ),
            });
        }
        // An entrypoint that ended at once: the sandbox is already over.
        Ok(info)
    }
}

impl LocalDockerProvider {
    /// Ids of this provider's containers matching `tags` (all states with `all`).
    pub(super) async fn container_ids(
        &self,
        tags: &BTreeMap<String, String>,
        all: bool,
    ) -> Result<Vec<String>> {
        let mut labels = vec![format!("{LABEL_SANDBOX}={LABEL_SET}")];
        labels.extend(tags.iter().map(|(key, value)| format!("{key}={value}")));
        let filters = HashMap::from([("label".to_owned(), labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        let containers = self
            .engine
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| error::map(e, Subject::Engine))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    /// Waits for a started container's agent, then starts the spec's entrypoint, its
    /// stdout and stderr going to files in the agent's directory, which only the host
    /// names (`entrypoint_output` reads them, and every sandbox has them, empty without
    /// an entrypoint).
    async fn start_on_agent(
        &self,
        agent: &sandkit_agent_host::Agent,
        agent_dir: &std::path::Path,
        spec: &SandboxSpec,
        workdir: &str,
    ) -> Result<()> {
        crate::agent::wait_ready(agent).await?;
        let [stdout, stderr] =
            sandkit_agent_host::entrypoint::create_outputs(agent_dir).map_err(|e| {
                crate::error::other(format!(
                    "creating the entrypoint's output files in {}: {e}",
                    agent_dir.display()
                ))
            })?;
        if spec.entrypoint.is_empty() {
            return Ok(());
        }
        let request = SpawnRequest {
            argv: spec.entrypoint.clone(),
            env: Vec::new(),
            cwd: workdir.to_owned(),
            timeout_ms: None,
            main: true,
            user: None,
            pty: None,
            inherit_env: true,
            detached: false,
            keep_stdin: true,
        };
        // Its stdin is a pipe the agent keeps, for `write_entrypoint_stdin`.
        let stdio = vec![stdout, stderr];
        agent
            .spawn(request, stdio)
            .await
            .map_err(|error| Error::CreationFailed {
                message: format!("entrypoint: {error}"),
            })?;
        Ok(())
    }
}

/// The host addresses of a container's published ports, by container port.
pub(super) fn tunnels_of(inspect: ContainerInspectResponse) -> Vec<Tunnel> {
    let ports = inspect
        .network_settings
        .and_then(|settings| settings.ports)
        .unwrap_or_default();
    let mut tunnels: Vec<Tunnel> = ports
        .into_iter()
        .filter_map(|(port, bindings)| {
            let port: u16 = port.strip_suffix("/tcp")?.parse().ok()?;
            let binding = bindings?.into_iter().next()?;
            let host = binding.host_ip.filter(|h| !h.is_empty())?;
            let host_port = binding.host_port.filter(|p| !p.is_empty())?;
            Some(Tunnel {
                port,
                url: format!("{host}:{host_port}"),
            })
        })
        .collect();
    tunnels.sort_by_key(|tunnel| tunnel.port);
    tunnels
}

/// Whether the spec asks for no network at all (an empty allowlist allows nothing).
fn blocks_network(spec: &SandboxSpec) -> bool {
    match &spec.network {
        Some(NetworkPolicy::BlockAll) => true,
        Some(NetworkPolicy::AllowList { cidrs, domains }) => cidrs.is_empty() && domains.is_empty(),
        Some(NetworkPolicy::AllowAll) | None => false,
    }
}

/// What the provider can do with `config`, on `engine` when connected. Anything not
/// named here (capabilities core adds later) is off until this provider implements it.
#[allow(clippy::needless_update)]
pub(super) fn capabilities(config: &LocalDockerConfig, engine: Option<&Engine>) -> Capabilities {
    let gpus = engine.is_some_and(Engine::has_nvidia_runtime);
    let on_agent = crate::agent::unusable(config, engine).is_none();
    let isolation = match config.runtime.as_deref() {
        Some("runsc") => Isolation::UserSpaceKernel,
        Some("kata" | "kata-runtime" | "io.containerd.kata.v2") => Isolation::MicroVm,
        _ => Isolation::Container,
    };
    Capabilities {
        transport: Transport::Local,
        isolation,
        fs_snapshot: true,
        pause: PauseSupport::Yes,
        pause_keeps_memory: true,
        // Free cpu and memory are known, but only a configured limit says how many
        // more sandboxes fit, which is what a capacity query answers first.
        capacity_query: config.max_sandboxes.is_some(),
        max_concurrent: config.max_sandboxes,
        max_lifetime_secs: Some(FOREVER_SECS),
        default_lifetime_secs: config.default_lifetime_secs,
        idle_timeout: false,
        // The main process keeps the lease; the creator renews it with a signal.
        client_lease: true,
        os: vec![Os::Linux],
        arch: Arch::host(),
        regions: Vec::new(),
        cpu_limit: true,
        memory_limit: true,
        max_cpu: engine.map(|e| f64::from(e.ncpu)).filter(|n| *n > 0.0),
        max_memory_mib: engine
            .map(|e| e.mem_total_bytes / (1024 * 1024))
            .filter(|n| *n > 0),
        gpu_kinds: if gpus {
            config.gpu_kinds.clone()
        } else {
            Vec::new()
        },
        max_gpu_count: if gpus { config.gpu_count } else { 0 },
        network_block_all: true,
        network_cidr_allowlist: false,
        network_domain_allowlist: false,
        egress_default: EgressDefault::AllowAll,
        idle_cost: IdleCost::Zero,
        billing: BillingModel::None,
        price_sheet: None,
        image_registry: true,
        image_dockerfile: true,
        entrypoint: true,
        entrypoint_output: on_agent,
        entrypoint_stdin: on_agent,
        exec_stdin: true,
        exec_pty: on_agent,
        exec_run_as_user: true,
        // Signals go through the agent, or this host's /proc, as kills do.
        exec_signal: engine.is_none_or(|e| e.shares_processes),
        // The agent enforces timeouts in the sandbox; without it they are killed
        // through this host's /proc, and an engine elsewhere offers none.
        exec_timeout: if on_agent {
            TimeoutEnforcement::Server
        } else if engine.is_none_or(|e| e.shares_processes) {
            TimeoutEnforcement::Client
        } else {
            TimeoutEnforcement::None
        },
        file_watch: on_agent,
        exec_detached: on_agent,
        resource_usage: on_agent,
        exec_separate_stderr: true,
        files: true,
        container_paths: true,
        // The container's root filesystem is its own, writable copy.
        read_only_base: false,
        batch_transfer: true,
        tunnels: true,
        volumes: true,
        secrets: true,
        tags: true,
        list_by_tags: true,
        lookup_by_name: true,
        ..Capabilities::default()
    }
}
