//! Snapshots: the sandbox's filesystem as an image that holds none of its environment.

use super::*;

impl LocalDockerProvider {
    /// Snapshots the sandbox's filesystem (see [`LocalDockerProvider::commit_without_secrets`]).
    pub(super) async fn take_snapshot(&self, id: &SandboxId) -> Result<Snapshot> {
        let meta = self.meta(id).await?;
        let container = meta.container_id.as_str();
        let inspect = self
            .engine
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| error::map(e, Subject::Sandbox(container)))?;
        let config = inspect.config.clone().unwrap_or_default();
        // Only the image's own environment goes into the snapshot: the spec's env and
        // secrets stay out.
        let image_config = match inspect.image.as_deref() {
            Some(image) => self
                .engine
                .docker
                .inspect_image(image)
                .await
                .ok()
                .and_then(|i| i.config)
                .unwrap_or_default(),
            None => Default::default(),
        };
        let image_env = image_config.env.clone().unwrap_or_default();
        // A container on the agent runs the agent as root: the snapshot gets the image's
        // own user and entrypoint instead.
        let label = |key: &str| config.labels.as_ref().and_then(|l| l.get(key)).cloned();
        let on_agent = label(LABEL_AGENT_DIR).is_some_and(|dir| !dir.is_empty());
        let (user, entrypoint, cmd) = if on_agent {
            (
                label(LABEL_IMAGE_USER).filter(|u| !u.is_empty()),
                image_config.entrypoint.clone(),
                image_config.cmd.clone(),
            )
        } else {
            (
                config.user.clone(),
                config.entrypoint.clone(),
                config.cmd.clone(),
            )
        };
        let mut labels = Self::snapshot_labels(container, config.labels.as_ref());
        labels.retain(|_, value| !value.is_empty());
        let snapshot_config = ContainerConfig {
            user,
            env: Some(image_env),
            cmd,
            entrypoint,
            working_dir: config.working_dir.clone(),
            exposed_ports: config.exposed_ports.clone(),
            volumes: config.volumes.clone(),
            stop_signal: config.stop_signal.clone(),
            shell: config.shell.clone(),
            labels: Some(labels),
            ..Default::default()
        };
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let paused = inspect
            .state
            .as_ref()
            .is_some_and(|state| state.running == Some(true) && state.paused != Some(true));
        self.commit_without_secrets(container, &tag, paused, snapshot_config)
            .await?;
        Ok(Snapshot {
            id: format!("{SNAPSHOT_REPOSITORY}:{tag}"),
            source: SandboxId(container.to_owned()),
        })
    }

    /// Makes image `SNAPSHOT_REPOSITORY:tag` from the filesystem of `container`, with
    /// `config` as its configuration, such that no field of the image holds the
    /// container's environment (its secrets).
    ///
    /// `docker commit` cannot do that: whatever config it is given, the engine stores
    /// the container's own configuration, environment and all, as the image's
    /// `ContainerConfig`, and a second commit on top keeps the first image as a parent.
    /// So the filesystem is exported and imported as a base image with no history, a
    /// helper container that never starts is created from it with `config`, and that
    /// container is committed: `Config` and `ContainerConfig` are both `config`. The base
    /// stays only as the untagged parent, holding nothing but the filesystem; deleting
    /// the snapshot deletes it too. With `pause`, the container is paused while its
    /// filesystem is read.
    async fn commit_without_secrets(
        &self,
        container: &str,
        tag: &str,
        pause: bool,
        config: ContainerConfig,
    ) -> Result<()> {
        let docker = &self.engine.docker;
        let sandbox_error = |e| error::map(e, Subject::Sandbox(container));
        let base = format!("{SNAPSHOT_REPOSITORY}:{tag}-base");
        if pause {
            docker
                .pause_container(container)
                .await
                .map_err(sandbox_error)?;
        }
        let imported = self.import_filesystem(container, tag).await;
        if pause && let Err(e) = docker.unpause_container(container).await {
            tracing::warn!(container, error = %e, "could not unpause after a snapshot");
        }
        if let Err(error) = imported {
            self.remove_image_quietly(&base, true).await;
            return Err(error);
        }

        let helper_body = ContainerCreateBody {
            image: Some(base.clone()),
            user: config.user.clone(),
            env: config.env.clone(),
            // The engine wants a command even for a container that never starts.
            cmd: match (&config.cmd, &config.entrypoint) {
                (None, None) => Some(vec!["true".to_owned()]),
                (cmd, _) => cmd.clone(),
            },
            entrypoint: config.entrypoint.clone(),
            working_dir: config.working_dir.clone(),
            exposed_ports: config.exposed_ports.clone(),
            volumes: config.volumes.clone(),
            stop_signal: config.stop_signal.clone(),
            shell: config.shell.clone(),
            labels: config.labels.clone(),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let helper_name = format!("sandkit-snapshot-{tag}");
        let options = CreateContainerOptionsBuilder::default()
            .name(&helper_name)
            .build();
        let helper = match docker.create_container(Some(options), helper_body).await {
            Ok(created) => created.id,
            Err(e) => {
                self.remove_image_quietly(&base, true).await;
                return Err(sandbox_error(e));
            }
        };
        let options = CommitContainerOptionsBuilder::default()
            .container(&helper)
            .repo(SNAPSHOT_REPOSITORY)
            .tag(tag)
            .comment(&format!("sandkit snapshot of {container}"))
            .pause(false)
            .build();
        let committed = docker.commit_container(options, config).await;
        let _ = self.remove_container(&helper).await;
        // Untags the base; the image stays as the snapshot's parent.
        self.remove_image_quietly(&base, false).await;
        committed.map(|_| ()).map_err(sandbox_error)
    }

    /// Streams the filesystem of `container` into the image `SNAPSHOT_REPOSITORY:tag-base`
    /// (`docker export | docker import`): one layer, no history, an empty configuration.
    async fn import_filesystem(&self, container: &str, tag: &str) -> Result<()> {
        let docker = &self.engine.docker;
        let export = docker
            .export_container(container)
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(SNAPSHOT_REPOSITORY)
            .tag(&format!("{tag}-base"))
            .message(&format!("sandkit snapshot filesystem of {container}"))
            .build();
        let mut progress =
            docker.create_image(Some(options), Some(bollard::body_try_stream(export)), None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| error::map(e, Subject::Sandbox(container)))?;
        }
        Ok(())
    }

    /// Labels of a snapshot of a container with `labels`: sandkit's ownership tags (so a
    /// leak check finds the image), the source, and blanks over every internal label
    /// (the engine copies the container's labels onto the image).
    fn snapshot_labels(
        id: &str,
        labels: Option<&HashMap<String, String>>,
    ) -> HashMap<String, String> {
        let mut snapshot: HashMap<String, String> = labels
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.starts_with(RESERVED_TAG_PREFIX))
            .map(|(key, _)| (key.clone(), String::new()))
            .collect();
        for (key, value) in labels.into_iter().flatten() {
            if key.starts_with(RESERVED_TAG_PREFIX) && !key.starts_with("sandkit.docker.") {
                snapshot.insert(key.clone(), value.clone());
            }
        }
        snapshot.insert(LABEL_SNAPSHOT_OF.to_owned(), id.to_owned());
        snapshot
    }
}
