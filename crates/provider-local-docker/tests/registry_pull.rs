//! A sandbox from an image the engine must pull through a real registry: the local one on
//! 127.0.0.1:5000 that `scripts/registry.sh` starts and fills. Without it (or without an
//! engine) this fails saying which script to run.

use std::sync::{Arc, Mutex, OnceLock};

use bollard::Docker;
use bollard::query_parameters::RemoveImageOptionsBuilder;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::{ExecRequest, SandboxProvider, SandboxProviderExt, SandboxSpec};
use sandkit_provider_local_docker::{LocalDockerConfig, LocalDockerProvider};

const REGISTRY: &str = "127.0.0.1:5000";
const IMAGE: &str = "127.0.0.1:5000/sandkit-test-busybox:latest";

/// A `pull progress` event: (image, layer, status).
type Event = (String, String, String);

fn events() -> &'static Mutex<Vec<Event>> {
    static EVENTS: OnceLock<Mutex<Vec<Event>>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        tracing::subscriber::set_global_default(Recorder).expect("a subscriber");
        Mutex::new(Vec::new())
    })
}

/// A minimal subscriber that keeps the fields of every `pull progress` event.
struct Recorder;

#[derive(Default)]
struct Fields {
    message: String,
    image: String,
    layer: String,
    status: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "image" => self.image = text,
            "layer" => self.layer = text,
            "status" => self.status = text,
            _ => {}
        }
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == "pull progress" {
            events()
                .lock()
                .expect("events")
                .push((fields.image, fields.layer, fields.status));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

async fn untag(docker: &Docker) {
    let options = RemoveImageOptionsBuilder::default().noprune(true).build();
    match docker.remove_image(IMAGE, Some(options), None).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => panic!("cannot remove the tag {IMAGE} from the engine: {e}"),
    }
}

#[tokio::test]
async fn a_sandbox_image_is_pulled_through_the_local_registry_with_progress() {
    events();
    let registry_answers = std::net::TcpStream::connect_timeout(
        &REGISTRY.parse().expect("address"),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        registry_answers,
        "no registry answers on {REGISTRY}: run `scripts/registry.sh` (as root) first"
    );
    let bare = LocalDockerProvider::connect(LocalDockerConfig::default())
        .await
        .unwrap_or_else(|e| panic!("no Docker Engine ({e}); run scripts/docker-engine.sh"));
    let provider: Arc<dyn SandboxProvider> =
        layers::standard(Arc::new(bare), LayerOptions::default());
    let docker = Docker::connect_with_defaults().expect("docker client");

    // The engine must not have the tag, so creating really pulls it.
    untag(&docker).await;
    let spec = SandboxSpec::new()
        .image(IMAGE)
        .lifetime_secs(300)
        .tag("suite", "local-docker-registry-pull")
        .build()
        .expect("spec");
    let created = provider.create(&spec).await;
    let result = async {
        let info = created.expect("create from the registry image");
        let output = provider
            .run(&info.id, ExecRequest::new(["busybox", "echo", "pulled"]))
            .await
            .expect("run");
        provider.terminate(&info.id).await.expect("terminate");
        output
    }
    .await;
    // What this test created: the sandbox (terminated above) and the pulled tag.
    untag(&docker).await;

    assert_eq!(result.stdout_lossy().trim(), "pulled");
    let seen: Vec<Event> = events()
        .lock()
        .expect("events")
        .iter()
        .filter(|(image, _, _)| image == IMAGE)
        .cloned()
        .collect();
    assert!(
        seen.iter()
            .any(|(_, _, status)| status.starts_with("Digest: sha256:")),
        "no digest in the pull progress: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, _, status)| status.contains("Downloaded newer image")),
        "the engine did not pull: {seen:?}"
    );
}
