//! The provider speaks both of Modal's sandbox APIs: `protocol = "auto"` creates V2
//! sandboxes unless a GPU is asked for, `"v1"` and `"v2"` force one, and a sandbox of
//! either kind is found, listed, run in and terminated whichever the provider creates.
//! A recorder in front of the emulator shows which calls went over the wire.

mod common;

use std::sync::Arc;

use sandkit_core::registry::ProviderFactory as _;
use sandkit_core::{
    Error, ExecRequest, GpuKind, ListFilter, SandboxId, SandboxProvider, SandboxProviderExt as _,
    SandboxSpec, SecretString,
};
use sandkit_modal_fake::{Cassette, RecordOptions, serve_recorder};
use sandkit_provider_modal::{ModalConfig, ModalProvider, Protocol};

async fn provider(url: &str, protocol: Protocol) -> Arc<dyn SandboxProvider> {
    let config = ModalConfig {
        server_url: Some(url.to_owned()),
        token_id: Some("ak-protocols".to_owned()),
        token_secret: Some(SecretString::new("as-protocols-secret")),
        config_path: Some(common::state_dir("no-config").join("absent.toml")),
        environment: Some("main".to_owned()),
        app_name: Some("protocols".to_owned()),
        protocol: Some(protocol),
        ..ModalConfig::default()
    };
    Arc::new(ModalProvider::from_config(config).await.unwrap())
}

/// The control-plane methods of a cassette, in order.
fn methods(cassette: &Cassette) -> Vec<&str> {
    cassette
        .exchanges
        .iter()
        .filter(|exchange| exchange.service == "modal.client.ModalClient")
        .map(|exchange| exchange.method.as_str())
        .collect()
}

async fn hello(provider: &Arc<dyn SandboxProvider>, id: &SandboxId) -> String {
    let output = provider
        .run(id, ExecRequest::new(["sh", "-c", "echo \"hi $GREETING\""]))
        .await
        .unwrap();
    output.stdout_lossy().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_of_both_apis_are_made_found_and_ended_by_either_setting() {
    let emulator = common::emulator("protocols", Default::default())
        .await
        .unwrap();
    let path = common::state_dir("protocols").join("calls.json");
    let recorder = serve_recorder(
        common::any_port(),
        RecordOptions::new(emulator.url(), &path),
    )
    .await
    .unwrap();
    let auto = provider(&recorder.url(), Protocol::Auto).await;
    let v1 = provider(&recorder.url(), Protocol::V1).await;
    let v2 = provider(&recorder.url(), Protocol::V2).await;
    let spec = |name: &str| {
        SandboxSpec::new()
            .name(name)
            .tag("suite", "protocols")
            .env("GREETING", "there")
            .lifetime_secs(120)
    };

    let new = auto.create(&spec("made-by-auto")).await.unwrap();
    let old = v1.create(&spec("made-by-v1")).await.unwrap();
    // The id says which API serves a sandbox: Modal's V1 ids are `sb-` and 22 characters.
    assert_ne!(new.id.as_str().len(), 25, "auto made a V1 id: {}", new.id);
    assert_eq!(old.id.as_str().len(), 25, "v1 made a V2 id: {}", old.id);

    // Each provider runs in, finds and lists the other's sandbox.
    for provider in [&auto, &v1, &v2] {
        assert_eq!(hello(provider, &new.id).await, "hi there");
        assert_eq!(hello(provider, &old.id).await, "hi there");
        assert_eq!(provider.info(&old.id).await.unwrap().id, old.id);
        assert_eq!(provider.info(&new.id).await.unwrap().id, new.id);
    }
    for name in ["made-by-auto", "made-by-v1"] {
        assert_eq!(
            auto.find_by_name(name).await.unwrap().name.as_deref(),
            Some(name)
        );
    }
    let listed: Vec<SandboxId> = auto
        .list(&ListFilter::default().tag("suite", "protocols"))
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.id)
        .collect();
    assert!(
        listed.contains(&new.id) && listed.contains(&old.id),
        "{listed:?}"
    );

    // V2 is refused a GPU before anything is sent; auto sends a GPU sandbox to V1, whose
    // backend here has none to give.
    let gpu = SandboxSpec::new().gpu(GpuKind::T4, 1);
    let refused = v2.create(&gpu).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Unsupported { feature, .. } if feature.contains("GPU")),
        "{refused:?}"
    );
    assert!(auto.create(&gpu).await.is_err());

    // Terminated by the other setting's provider, and then gone to both.
    v1.terminate(&new.id).await.unwrap();
    v2.terminate(&old.id).await.unwrap();
    for id in [&new.id, &old.id] {
        let error = auto.exec(id, ExecRequest::new(["true"])).await.unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    }

    recorder.shutdown().await.unwrap();
    let cassette = Cassette::load(&path).unwrap();
    let calls = methods(&cassette);
    let creates: Vec<&&str> = calls
        .iter()
        .filter(|method| method.starts_with("SandboxCreate"))
        .collect();
    // auto, v1, then the GPU sandbox through auto: V2, V1, V1.
    assert_eq!(
        creates,
        [&"SandboxCreateV2", &"SandboxCreate", &"SandboxCreate"],
        "{calls:?}"
    );
    // A V2 sandbox's task and router came with its creation: the only task polls are
    // for the V1 sandboxes, and the V2 sandbox's router is reached by sandbox id.
    assert!(
        calls.contains(&"SandboxGetCommandRouterAccess"),
        "{calls:?}"
    );
    assert!(calls.contains(&"SandboxTerminateV2"), "{calls:?}");
    assert!(calls.contains(&"SandboxTerminate"), "{calls:?}");
    assert!(calls.contains(&"SandboxListV2"), "{calls:?}");
    // Inline environment on V2; V1 has nowhere to put it but an ephemeral secret (the GPU
    // sandbox has no environment).
    let secrets = calls
        .iter()
        .filter(|method| **method == "SecretGetOrCreate")
        .count();
    assert_eq!(secrets, 1, "{calls:?}");
    emulator.shutdown().await.unwrap();
}
