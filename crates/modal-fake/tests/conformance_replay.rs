//! The shared conformance suite for the `modal` provider against replays of committed
//! cassettes: no network, no Docker, no credentials. Every case runs twice, once creating
//! V2 sandboxes (`v2::<case>`, cassettes in `cassettes/v2/`, the provider's default) and
//! once V1 (`v1::<case>`, `cassettes/v1/`).
//!
//! Each case gets its own replay server serving its own cassette, and its own provider, so
//! cases cannot answer each other's calls. Cases run one at a time, with fixed ownership
//! tags and run id, so recording and replay send the same requests.
//!
//! Re-recording (the one command; Docker needed for `emulator`, credentials for `modal`):
//!
//! ```text
//! SANDKIT_MODAL_RECORD=emulator cargo test -p sandkit-modal-fake --test conformance_replay
//! SANDKIT_MODAL_RECORD=emulator cargo test -p sandkit-modal-fake --test conformance_replay -- v2::
//! SANDKIT_MODAL_RECORD=modal MODAL_TOKEN_ID=ak-... MODAL_TOKEN_SECRET=as-... \
//!     cargo test -p sandkit-modal-fake --test conformance_replay
//! ```
//!
//! `emulator` records through the emulator over Docker (the busybox test image); `modal`
//! records against `https://api.modal.com` with Modal's default image.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use sandkit_conformance::{Options, Outcome};
use sandkit_core::{Capabilities, Ownership, SandboxProvider, SandboxSpec};
use sandkit_modal_fake::{
    Cassette, RecordOptions, ReplayOptions, ServerHandle, UpstreamKind, serve_recorder,
    serve_replayer,
};
use sandkit_provider_modal::Protocol;

/// Cases whose payloads (tens of MiB of random bytes) are too large to commit as
/// cassettes; `conformance_emulator` and `conformance_faults` run them live.
const TOO_LARGE: [&str; 4] = [
    "exec_large_output_streamed",
    "exec_both_streams_large",
    "exec_stdin_16mib",
    "file_64mib",
];

/// The two ways of creating sandboxes, each with its own cassettes.
const FAMILIES: [(&str, Protocol); 2] = [("v2", Protocol::V2), ("v1", Protocol::V1)];

/// Where one family's cassettes live.
fn cassette_dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cassettes")
        .join(family)
}

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Emulator,
    Modal,
}

/// What the cassettes were (or are being) recorded from.
fn source(recording: Option<Source>) -> Source {
    if let Some(source) = recording {
        return source;
    }
    let from_modal = std::fs::read_dir(cassette_dir("v1"))
        .into_iter()
        .flatten()
        .flatten()
        .find(|entry| entry.path().extension().is_some_and(|e| e == "json"))
        .and_then(|entry| Cassette::load(&entry.path()).ok())
        .is_some_and(|cassette| cassette.recorded_from == "modal");
    if from_modal {
        Source::Modal
    } else {
        Source::Emulator
    }
}

/// Options identical between recording and replay.
fn options(case: &str, source: Source) -> Options {
    let base_spec = match source {
        Source::Emulator => SandboxSpec::new().image(common::DOCKER_TEST_IMAGE),
        Source::Modal => SandboxSpec::new(),
    };
    Options {
        base_spec,
        filter: Some(case.to_owned()),
        concurrency: 1,
        run_id: "cassette".to_owned(),
        ownership: Ownership {
            owner: "sandkit-cassette".to_owned(),
            run_id: "cassette".to_owned(),
        },
        ..Options::default()
    }
}

/// The capabilities the suite proves: Modal's, less the Docker backend's gaps when the
/// cassettes come from the emulator. Static capabilities, so replay needs no engine.
fn capabilities(modal: &Capabilities, source: Source) -> Capabilities {
    match source {
        Source::Modal => modal.clone(),
        Source::Emulator => {
            let docker = sandkit_core::registry::find("local-docker")
                .map(|registration| registration.capabilities())
                .unwrap_or_default();
            common::narrowed(modal, &docker)
        }
    }
}

/// What serves one case: a recorder in front of the upstream, or a replayer.
async fn server_for(
    path: &Path,
    upstream: Option<&str>,
    kind: UpstreamKind,
) -> Result<ServerHandle, String> {
    match upstream {
        Some(upstream) => {
            let mut options = RecordOptions::new(upstream, path);
            options.upstream_kind = Some(kind);
            serve_recorder(common::any_port(), options)
                .await
                .map_err(|error| error.to_string())
        }
        None => {
            // A case with no cassette made no call when recorded; replay an empty one.
            let cassette = if path.exists() {
                Cassette::load(path).map_err(|error| error.to_string())?
            } else {
                Cassette::new("emulator", "", "no calls were recorded for this case")
            };
            serve_replayer(common::any_port(), ReplayOptions::new(cassette))
                .await
                .map_err(|error| error.to_string())
        }
    }
}

async fn run_case(
    case: &'static str,
    (family, protocol): (&'static str, Protocol),
    upstream: Option<String>,
    source: Source,
) -> Result<Completion, Failed> {
    let kind = match source {
        Source::Emulator => UpstreamKind::Emulator,
        Source::Modal => UpstreamKind::Modal,
    };
    let path = cassette_dir(family).join(format!("{case}.json"));
    let server = server_for(&path, upstream.as_deref(), kind).await?;
    let modal = if upstream.is_some() && source == Source::Modal {
        // Recording from Modal: the real credentials, from the environment.
        common::modal_provider_with_env_credentials(&server.url(), protocol).await
    } else {
        common::modal_provider_speaking(&server.url(), protocol).await
    }
    .map_err(|error| error.to_string())?;
    let caps = capabilities(modal.capabilities(), source);
    let provider = Arc::new(sandkit_core::layers::CapabilityOverride::new(modal, caps))
        as Arc<dyn SandboxProvider>;
    let report = sandkit_conformance::run(provider, &options(case, source), &|_| {}).await;
    server.shutdown().await.map_err(|error| error.to_string())?;
    if upstream.is_some() {
        // Keep only cassettes that recorded something.
        if Cassette::load(&path).is_ok_and(|cassette| cassette.exchanges.is_empty()) {
            let _ = std::fs::remove_file(&path);
        }
    }
    let result = report
        .results
        .into_iter()
        .find(|result| result.name == case)
        .ok_or_else(|| format!("the suite did not run `{case}`"))?;
    match result.outcome {
        Outcome::Passed => Ok(Completion::Completed),
        Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
        Outcome::Failed { message } => Err(message.into()),
    }
}

fn main() {
    let mut arguments = Arguments::from_args();
    // One case at a time: recording and replay must send the same calls in the same order.
    arguments.test_threads = Some(1);
    let recording = match std::env::var("SANDKIT_MODAL_RECORD").ok().as_deref() {
        None | Some("") => None,
        Some("emulator") => Some(Source::Emulator),
        Some("modal") => Some(Source::Modal),
        Some(other) => {
            eprintln!("SANDKIT_MODAL_RECORD must be `emulator` or `modal`, not `{other}`");
            std::process::exit(2);
        }
    };
    let source = source(recording);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    // When recording from the emulator, one emulator serves every case's recorder.
    let upstream: Option<String> = match recording {
        None => None,
        Some(Source::Modal) => Some(
            std::env::var("MODAL_SERVER_URL")
                .unwrap_or_else(|_| sandkit_provider_modal::DEFAULT_SERVER_URL.to_owned()),
        ),
        Some(Source::Emulator) => {
            let (server, _) = runtime
                .block_on(common::docker_emulator(Default::default()))
                .unwrap_or_else(|error| {
                    eprintln!("cannot start the emulator to record from: {error}");
                    std::process::exit(1);
                });
            let url = server.url();
            std::mem::forget(server);
            Some(url)
        }
    };
    let trials = FAMILIES
        .iter()
        .flat_map(|&family| {
            sandkit_conformance::cases()
                .iter()
                .map(move |case| (family, case.name))
        })
        .map(|(family, name)| {
            let handle = runtime.handle().clone();
            let upstream = upstream.clone();
            Trial::ignorable_test(format!("{}::{name}", family.0), move || {
                if TOO_LARGE.contains(&name) {
                    return Ok(Completion::ignored_with(
                        "its payload is too large for a committed cassette; \
                         conformance_emulator runs it live",
                    ));
                }
                handle.block_on(run_case(name, family, upstream, source))
            })
        })
        .collect::<Vec<_>>();
    let conclusion = libtest_mimic::run(&arguments, trials);
    drop(runtime);
    conclusion.exit();
}
