//! Leases: a sandbox that ends once its creator is gone. On the agent, the creator holds
//! a connection the kernel closes when it dies; otherwise the main process is the lease
//! keeper, renewed by a signal.

use sandkit_agent_host::Agent;

use super::*;

impl LocalDockerProvider {
    /// Renews a sandbox's lease from a background task of this process: `SIGUSR1` to the
    /// container's main process every third of the lease, until the container is gone.
    pub(super) fn renew_lease(&self, id: &str, lease_secs: u64) {
        let docker = self.engine.docker.clone();
        let container = id.to_owned();
        let every = std::time::Duration::from_millis(lease_secs * 1000 / 3);
        let renewal = tokio::spawn(async move {
            let options = bollard::query_parameters::KillContainerOptionsBuilder::new()
                .signal("USR1")
                .build();
            loop {
                tokio::time::sleep(every).await;
                match docker
                    .kill_container(&container, Some(options.clone()))
                    .await
                {
                    Ok(()) => {}
                    // Gone, or no longer running: nothing left to keep.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404 | 409,
                        ..
                    }) => return,
                    // The engine may be restarting: the next renewal may get through.
                    Err(error) => {
                        tracing::debug!(sandbox = %container, %error, "lease renewal failed")
                    }
                }
            }
        });
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), renewal.abort_handle());
    }

    /// Holds the sandbox's lease on its agent for as long as this process lives: once
    /// the connection closes and none is taken within `lease_secs`, the agent ends it.
    pub(super) async fn hold_lease(&self, id: &str, agent: &Agent, lease_secs: u64) -> Result<()> {
        let lease = agent.lease(lease_secs).await?;
        let holder = tokio::spawn(async move {
            // Nothing comes on a lease connection; it ends with the sandbox.
            let Ok(()) = lease.set_nonblocking(true) else {
                return;
            };
            if let Ok(mut lease) = tokio::net::UnixStream::from_std(lease) {
                let mut byte = [0u8; 1];
                let _ = tokio::io::AsyncReadExt::read(&mut lease, &mut byte).await;
            }
        });
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), holder.abort_handle());
        Ok(())
    }
}
