//! Timing as Modal's official clients have it, against the small in-process server
//! (`support`): scheduling polls through transient `SandboxGetTaskId` failures until its
//! deadline, a sandbox's first router call waits for a router that is still starting, both
//! give up as typed timeouts saying what they waited for, and snapshots carry their TTL.

mod support;

use std::time::{Duration, Instant};

use sandkit_core::{Error, ExecRequest, SandboxProvider, SandboxProviderExt, SandboxSpec};

use support::{State, id, serve, serve_with};

fn calls(fake: &support::Fake, method: &str) -> usize {
    let state = fake.state.lock().unwrap();
    state.calls.iter().filter(|(m, _)| *m == method).count()
}

#[tokio::test]
async fn scheduling_polls_through_more_transient_failures_than_one_call_retries() {
    // Six failures: more than the three retries of one control-plane call.
    let (provider, fake) = serve(State {
        task_id_unavailable: 6,
        ..Default::default()
    })
    .await;
    let info = provider.create(&SandboxSpec::new()).await.unwrap();
    assert_eq!(info.id, id());
    assert_eq!(calls(&fake, "SandboxGetTaskId"), 7);
}

#[tokio::test]
async fn scheduling_gives_up_at_its_deadline_as_a_timeout() {
    let (provider, fake) = serve_with(
        State {
            task_id_unavailable: u32::MAX,
            ..Default::default()
        },
        |config| sandkit_provider_modal::ModalConfig {
            schedule_timeout_secs: Some(1),
            ..config
        },
    )
    .await;
    let started = Instant::now();
    let error = provider.create(&SandboxSpec::new()).await.unwrap_err();
    let Error::Timeout { operation, timeout } = &error else {
        panic!("not a timeout: {error:?}");
    };
    assert_eq!(*timeout, Duration::from_secs(1));
    assert!(operation.contains("to be scheduled"), "{operation}");
    assert!(operation.contains("scheduler busy"), "{operation}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Polled more than once: the first failure did not end the wait.
    assert!(calls(&fake, "SandboxGetTaskId") > 4);
    // The sandbox nobody will get is terminated.
    assert!(calls(&fake, "SandboxTerminate") >= 1);
}

#[tokio::test]
async fn the_first_router_call_outlasts_the_ordinary_router_retries() {
    // Eleven refusals: one more than the ten retries of an ordinary router call.
    let (provider, fake) = serve(State {
        router_unavailable: 11,
        ..Default::default()
    })
    .await;
    let output = provider
        .run(&id(), ExecRequest::new(["emit", "5"]))
        .await
        .unwrap();
    assert_eq!(output.stdout.len(), 5);
    assert_eq!(fake.state.lock().unwrap().router_unavailable, 0);
}

#[tokio::test]
async fn a_router_that_never_starts_is_a_timeout_naming_the_router() {
    let (provider, _fake) = serve_with(
        State {
            router_unavailable: u32::MAX,
            ..Default::default()
        },
        |config| sandkit_provider_modal::ModalConfig {
            router_connect_timeout_secs: Some(2),
            ..config
        },
    )
    .await;
    let started = Instant::now();
    let error = provider
        .run(&id(), ExecRequest::new(["emit", "5"]))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let Error::Timeout { operation, timeout } = &error else {
        panic!("not a timeout: {error:?}");
    };
    assert_eq!(*timeout, Duration::from_secs(2));
    assert!(operation.contains("command router"), "{operation}");
    assert!(operation.contains("connection refused"), "{operation}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn once_the_router_answered_an_outage_gets_the_ordinary_retries() {
    let (provider, fake) = serve_with(State::default(), |config| {
        sandkit_provider_modal::ModalConfig {
            router_connect_timeout_secs: Some(600),
            ..config
        }
    })
    .await;
    provider
        .run(&id(), ExecRequest::new(["emit", "1"]))
        .await
        .unwrap();
    fake.state.lock().unwrap().router_unavailable = u32::MAX;
    let started = Instant::now();
    let error = provider
        .run(&id(), ExecRequest::new(["emit", "1"]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    // Ten retries of at most 5 s each, far from the 600 s window.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn snapshots_send_the_configured_ttl() {
    let (provider, fake) = serve(State::default()).await;
    let snapshot = provider.snapshot(&id()).await.unwrap();
    assert_eq!(snapshot.id, "im-snapshot");
    let (provider, kept) = serve_with(State::default(), |config| {
        sandkit_provider_modal::ModalConfig {
            snapshot_ttl_secs: Some(-1),
            ..config
        }
    })
    .await;
    provider.snapshot(&id()).await.unwrap();
    let ttl = |fake: &support::Fake| fake.state.lock().unwrap().snapshots[0].ttl_seconds;
    // 30 days, as Modal's Python client sends by default; -1 keeps the image.
    assert_eq!(ttl(&fake), Some(2_592_000));
    assert_eq!(ttl(&kept), Some(-1));
}
