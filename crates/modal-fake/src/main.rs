//! `modal-fake`: a Modal-compatible gRPC server for tests.
//!
//! ```text
//! modal-fake emulate --port 0 [--backend local-process|local-docker] [--registry-images default|pull] [--faults ...]
//! modal-fake record --upstream https://api.modal.com --cassette FILE --port 0
//! modal-fake replay --cassette FILE --port 0
//! ```
//!
//! Each prints `listening on http://127.0.0.1:PORT` once it serves (so scripts can read
//! the port), then runs until interrupted (Ctrl-C or SIGTERM), cleaning up on the way out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sandkit_modal_fake::{
    Credentials, EmulatorOptions, FaultConfig, RecordOptions, RegistryImages, ReplayOptions,
    RouterScheme, ServerHandle, UpstreamKind,
};

// Link the providers the emulator can run on, so the registry knows them.
use sandkit_provider_local_docker as _;
use sandkit_provider_local_process as _;

#[derive(Parser)]
#[command(
    name = "modal-fake",
    version,
    about = "A Modal-compatible gRPC server for tests"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve Modal's sandbox API over a sandkit provider.
    Emulate {
        #[command(flatten)]
        common: Common,
        /// The sandkit provider sandboxes run on.
        #[arg(long, default_value = "local-process")]
        backend: String,
        /// The backend's configuration as JSON (default: its defaults).
        #[arg(long, value_name = "JSON")]
        backend_config: Option<String>,
        /// What images starting from a registry tag run as: `default` (the backend's
        /// default image; no network needed) or `pull` (the backend pulls the tag).
        #[arg(long, default_value_t = RegistryImages::BackendDefault)]
        registry_images: RegistryImages,
        /// Sandboxes per `SandboxList` page.
        #[arg(long, default_value_t = 10)]
        list_page_size: usize,
        /// Seconds after its create before a V1 sandbox's task id is handed out
        /// (`SandboxGetTaskId` answers without one until then), as while Modal schedules.
        #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs)]
        task_start_delay: Duration,
        /// Seconds after its create before a sandbox's command router answers (router
        /// calls get `UNAVAILABLE` until then), as while a task starts on its worker.
        #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_secs)]
        router_ready_delay: Duration,
        /// Only accept this token id (with --token-secret); default: any.
        #[arg(long, env = "MODAL_FAKE_TOKEN_ID", requires = "token_secret")]
        token_id: Option<String>,
        /// Only accept this token secret (with --token-id).
        #[arg(
            long,
            env = "MODAL_FAKE_TOKEN_SECRET",
            hide_env_values = true,
            requires = "token_id"
        )]
        token_secret: Option<String>,
        /// Serve TLS with a certificate issued by a fresh CA, and write the CA's
        /// certificate (PEM) to this file, for clients that verify the server (the modal
        /// provider's `ca_file`). Without it the certificate is self-signed. Plaintext is served on the same port either way.
        #[arg(long, value_name = "PATH")]
        tls_ca_file: Option<PathBuf>,
    },
    /// Proxy to an upstream (real Modal or the emulator) and write every exchange to a cassette.
    Record {
        #[command(flatten)]
        common: Common,
        /// The upstream control-plane URL, e.g. `https://api.modal.com`.
        #[arg(long)]
        upstream: String,
        /// The cassette to write (JSON).
        #[arg(long)]
        cassette: PathBuf,
        /// What the upstream is, for the cassette's header (default: `emulator` for a
        /// localhost upstream, `modal` otherwise).
        #[arg(long, value_parser = ["emulator", "modal"])]
        upstream_kind: Option<String>,
    },
    /// Serve a cassette: no network, no Docker, no credentials.
    Replay {
        #[command(flatten)]
        common: Common,
        /// The cassette to serve.
        #[arg(long)]
        cassette: PathBuf,
    },
}

#[derive(Args)]
struct Common {
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Faults to inject: comma-separated `unavailable=SHARE`, `exhausted=SHARE`,
    /// `retry-after=SECS`, `cut-stream=BYTES`, `router-unauthenticated-once`, `seed=N`.
    #[arg(long, default_value = "")]
    faults: FaultConfig,
    /// Scheme of the command-router URL handed to clients.
    #[arg(long, default_value = "https")]
    router_scheme: RouterScheme,
}

impl Common {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// A delay given as seconds (fractions allowed), at most a day.
fn parse_secs(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{value}` must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

async fn start(mode: Mode) -> Result<ServerHandle, String> {
    match mode {
        Mode::Emulate {
            common,
            backend,
            backend_config,
            registry_images,
            list_page_size,
            task_start_delay,
            router_ready_delay,
            token_id,
            token_secret,
            tls_ca_file,
        } => {
            let config = match backend_config {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|error| format!("--backend-config is not JSON: {error}"))?,
                None => serde_json::Value::Null,
            };
            let backend = sandkit_modal_fake::backend(&backend, config)
                .await
                .map_err(|error| error.to_string())?;
            let mut options = EmulatorOptions::new(backend);
            options.faults = common.faults.clone();
            options.router_scheme = common.router_scheme;
            options.list_page_size = list_page_size;
            options.registry_images = registry_images;
            options.task_start_delay = task_start_delay;
            options.router_ready_delay = router_ready_delay;
            options.tls_ca_file = tls_ca_file;
            options.credentials =
                token_id
                    .zip(token_secret)
                    .map(|(token_id, token_secret)| Credentials {
                        token_id,
                        token_secret,
                    });
            sandkit_modal_fake::serve_emulator(common.addr(), options)
                .await
                .map_err(|error| error.to_string())
        }
        Mode::Record {
            common,
            upstream,
            cassette,
            upstream_kind,
        } => {
            let kind = match upstream_kind.as_deref() {
                Some("emulator") => Some(UpstreamKind::Emulator),
                Some(_) => Some(UpstreamKind::Modal),
                None => None,
            };
            let mut options = RecordOptions::new(upstream, cassette);
            options.faults = common.faults.clone();
            options.router_scheme = common.router_scheme;
            options.upstream_kind = kind;
            sandkit_modal_fake::serve_recorder(common.addr(), options)
                .await
                .map_err(|error| error.to_string())
        }
        Mode::Replay { common, cassette } => {
            let mut options =
                ReplayOptions::from_file(&cassette).map_err(|error| error.to_string())?;
            options.faults = common.faults.clone();
            options.router_scheme = common.router_scheme;
            sandkit_modal_fake::serve_replayer(common.addr(), options)
                .await
                .map_err(|error| error.to_string())
        }
    }
}

async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MODAL_FAKE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let handle = match start(cli.mode).await {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("modal-fake: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The one line scripts parse; flushed at once because stdout may be a pipe.
    println!("listening on {}", handle.url());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    interrupted().await;
    match tokio::time::timeout(Duration::from_secs(60), handle.shutdown()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("modal-fake: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("modal-fake: cleanup did not finish within 60 s");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn start_delays_are_seconds_within_a_day() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        for bad in ["-1", "nan", "inf", "1e9", "soon"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from([
            "modal-fake",
            "emulate",
            "--task-start-delay",
            "3",
            "--router-ready-delay",
            "6",
        ])
        .unwrap();
        let Mode::Emulate {
            task_start_delay,
            router_ready_delay,
            ..
        } = cli.mode
        else {
            panic!("not emulate");
        };
        assert_eq!(task_start_delay, Duration::from_secs(3));
        assert_eq!(router_ready_delay, Duration::from_secs(6));
    }
}
