//! What a sandbox on sandkit's agent does through it (see [`crate::agent`]): commands,
//! file watching and usage, and what a sandbox's info says when it is not on the agent.

use sandkit_agent_host::Agent;
use sandkit_agent_host::protocol::SpawnRequest;
use sandkit_core::{
    AttachFrom, CommandInfo, ExecControl, ExitStatus, FileEvents, OutputStream, ResourceUsage,
};

use super::*;

impl LocalDockerProvider {
    /// Starts `request` through the agent: as the image's user unless it names one, in
    /// the container's environment with the request's on top.
    pub(super) async fn exec_on_agent(
        &self,
        agent: &Agent,
        meta: &Meta,
        request: ExecRequest,
    ) -> Result<ExecProcess> {
        let spawn = spawn_request(meta, &request);
        let oom_before = meta
            .memory_limited
            .then(|| crate::exec::oom_kills(&self.engine, meta))
            .flatten();
        let (engine, known) = (self.engine.clone(), meta.clone());
        let started = agent
            .exec_with(spawn, &request, move |inner| {
                Box::new(AgentEnd {
                    engine,
                    meta: known,
                    oom_before,
                    inner,
                })
            })
            .await;
        self.unless_gone(meta, started).await
    }

    /// [`SandboxProvider::start_detached`].
    pub(super) async fn start_detached_on_agent(
        &self,
        id: &SandboxId,
        request: ExecRequest,
    ) -> Result<CommandInfo> {
        request.validate()?;
        let (meta, agent) = self.on_agent(id, "start_detached").await?;
        let started = agent.start_detached(spawn_request(&meta, &request)).await;
        self.unless_gone(&meta, started).await
    }

    /// [`SandboxProvider::commands`].
    pub(super) async fn commands_on_agent(&self, id: &SandboxId) -> Result<Vec<CommandInfo>> {
        let (meta, agent) = self.on_agent(id, "commands").await?;
        let commands = agent.commands().await;
        self.unless_gone(&meta, commands).await
    }

    /// [`SandboxProvider::attach`].
    pub(super) async fn attach_on_agent(
        &self,
        id: &SandboxId,
        command: &str,
        from: AttachFrom,
    ) -> Result<ExecProcess> {
        let (meta, agent) = self.on_agent(id, "attach").await?;
        let attached = agent.attach(command, from).await;
        self.unless_gone(&meta, attached).await
    }

    /// The sandbox, unpaused, and its agent; `Unsupported` for one without.
    async fn on_agent(&self, id: &SandboxId, operation: &str) -> Result<(Meta, Agent)> {
        let meta = self.unpaused_meta(id, operation).await?;
        match meta.agent.clone() {
            Some(agent) => Ok((meta, agent)),
            None => Err(Error::unsupported(
                PROVIDER_NAME,
                format!("{operation} without sandkit's agent"),
            )),
        }
    }

    /// [`SandboxProvider::watch`].
    pub(super) async fn watch_on_agent(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<FileEvents> {
        let meta = self.unpaused_meta(id, "watch").await?;
        let Some(agent) = &meta.agent else {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "file watching without sandkit's agent",
            ));
        };
        let watched = agent
            .watch(meta.absolute(path), recursive, path.to_owned())
            .await;
        self.unless_gone(&meta, watched).await
    }

    /// [`SandboxProvider::resource_usage`].
    pub(super) async fn usage_on_agent(&self, id: &SandboxId) -> Result<ResourceUsage> {
        let meta = self.unpaused_meta(id, "resource_usage").await?;
        let Some(agent) = &meta.agent else {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "resource usage without sandkit's agent",
            ));
        };
        let usage = agent.usage().await;
        self.unless_gone(&meta, usage).await
    }

    /// [`SandboxProvider::entrypoint_output`]: the files in the sandbox's agent directory
    /// its entrypoint writes (see `start_on_agent`), followed until the container stops.
    pub(super) async fn entrypoint_output_on_agent(
        &self,
        id: &SandboxId,
        stream: OutputStream,
        offset: u64,
    ) -> Result<ByteStream> {
        let inspect = self.inspect_ours(id.as_str()).await?;
        // Not `agent_of`: a stopped container's output is read too.
        let Some(dir) = sandbox::Leftovers::of(&inspect)
            .agent_dir
            .filter(|dir| self.agent.owns(dir))
        else {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "reading an entrypoint's output without sandkit's agent",
            ));
        };
        let (docker, container) = (self.engine.docker.clone(), id.0.clone());
        let ended = move || {
            let (docker, container) = (docker.clone(), container.clone());
            async move {
                match docker.inspect_container(&container, None).await {
                    Ok(inspect) => !inspect.state.and_then(|s| s.running).unwrap_or(false),
                    Err(_) => true,
                }
            }
        };
        sandkit_agent_host::entrypoint::follow_output(PROVIDER_NAME, &dir, stream, offset, ended)
    }

    /// [`SandboxProvider::write_entrypoint_stdin`], through the agent.
    pub(super) async fn entrypoint_stdin_on_agent(
        &self,
        id: &SandboxId,
        offset: u64,
        data: Bytes,
        eof: bool,
    ) -> Result<()> {
        let meta = self.unpaused_meta(id, "write_entrypoint_stdin").await?;
        let Some(agent) = &meta.agent else {
            return Err(Error::unsupported(
                PROVIDER_NAME,
                "writing to an entrypoint's stdin without sandkit's agent",
            ));
        };
        let written = agent.write_main_stdin(offset, data, eof).await;
        self.unless_gone(&meta, written).await
    }

    /// What `inspect` says of a sandbox, noting when it is not on the agent and why.
    pub(super) fn info_of(
        &self,
        inspect: &bollard::models::ContainerInspectResponse,
    ) -> SandboxInfo {
        let mut info = sandbox::info_from(inspect);
        if !info.state.is_finished() && self.agent.agent_of(inspect).is_none() {
            let why = self
                .agent
                .fallback()
                .unwrap_or("the sandbox was made without sandkit's agent");
            info.notes.push(format!(
                "commands and files go through the Engine API, not sandkit's agent (no PTY, watch, usage or detached commands): {why}"
            ));
        }
        info
    }

    /// An agent that does not answer usually means the sandbox ended (its lifetime ran
    /// out, its entrypoint ended): that is `NotFound`, as on the Engine path.
    pub(super) async fn unless_gone<T>(&self, meta: &Meta, result: Result<T>) -> Result<T> {
        match result {
            Err(Error::Unavailable { message }) => {
                match self.inspect_info(&meta.container_id).await {
                    Ok(info) if !info.state.is_finished() => Err(Error::Unavailable { message }),
                    Ok(_) | Err(Error::NotFound { .. }) => {
                        self.forget(&meta.container_id);
                        Err(Error::sandbox_not_found(&meta.container_id))
                    }
                    Err(other) => Err(other),
                }
            }
            other => other,
        }
    }
}

/// What the agent starts for `request`: as the image's user unless it names one, in the
/// container's environment with the request's on top.
fn spawn_request(meta: &Meta, request: &ExecRequest) -> SpawnRequest {
    let cwd = request
        .cwd
        .as_deref()
        .map_or_else(|| meta.workdir.clone(), |cwd| meta.absolute(cwd));
    let env = request.env.clone().into_iter().collect();
    SpawnRequest {
        inherit_env: true,
        ..sandkit_agent_host::spawn_request(request, cwd, env)
    }
}

/// A command on the agent, whose `SIGKILL` it did not send is explained as the Engine
/// path explains it: the sandbox ran out of memory, or is gone.
struct AgentEnd {
    engine: Engine,
    meta: Meta,
    /// The cgroup's out-of-memory kill count when the command started.
    oom_before: Option<u64>,
    inner: Box<dyn ExecControl>,
}

#[async_trait]
impl ExecControl for AgentEnd {
    async fn wait(&mut self) -> Result<ExitStatus> {
        let status = self.inner.wait().await?;
        if status.signal != Some(9) {
            return Ok(status);
        }
        if let Some(before) = self.oom_before
            && crate::exec::oom_kills(&self.engine, &self.meta).is_some_and(|now| now > before)
        {
            return Err(Error::ResourceLimitExceeded {
                message: "the command was killed: the sandbox ran out of memory".to_owned(),
            });
        }
        let running = self
            .engine
            .docker
            .inspect_container(&self.meta.container_id, None)
            .await
            .ok()
            .and_then(|inspect| inspect.state?.running);
        if running == Some(true) {
            Ok(status)
        } else {
            Err(Error::sandbox_not_found(&self.meta.container_id))
        }
    }

    async fn kill(&mut self) -> Result<()> {
        self.inner.kill().await
    }

    async fn resize(&mut self, size: sandkit_core::PtySize) -> Result<()> {
        self.inner.resize(size).await
    }

    async fn signal(&mut self, signal: i32) -> Result<()> {
        self.inner.signal(signal).await
    }
}
