//! Focused behaviour of the local-process provider, each case run with bubblewrap and
//! with plain processes where both apply.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sandkit_core::{
    Error, ExecRequest, FileErrorKind, FileKind, ListFilter, NetworkPolicy, SandboxId,
    SandboxProvider, SandboxProviderExt, SandboxSpec, SandboxState,
};
use sandkit_provider_local_process::{Isolation, LocalProcessConfig, LocalProcessProvider};

fn provider_at(state_dir: &Path, isolation: Isolation) -> LocalProcessProvider {
    if isolation == Isolation::Bubblewrap {
        assert!(
            sandkit_provider_local_process::bubblewrap_available(),
            "these tests need bubblewrap: apt-get install bubblewrap"
        );
    }
    LocalProcessProvider::new(LocalProcessConfig {
        state_dir: Some(state_dir.to_path_buf()),
        isolation,
        default_lifetime_secs: 600,
        ..LocalProcessConfig::default()
    })
    .unwrap()
}

fn provider(isolation: Isolation) -> (tempfile::TempDir, LocalProcessProvider) {
    let dir = tempfile::tempdir().unwrap();
    let provider = provider_at(dir.path(), isolation);
    (dir, provider)
}

async fn run(
    provider: &LocalProcessProvider,
    id: &SandboxId,
    argv: &[&str],
) -> sandkit_core::ExecOutput {
    provider
        .run(id, ExecRequest::new(argv.iter().copied()))
        .await
        .unwrap()
}

/// Live processes carrying this sandbox's id in their environment.
fn processes_of(id: &SandboxId) -> Vec<String> {
    let marker = format!("SANDKIT_SANDBOX_ID={id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie
            && environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes())
        {
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

/// Processes naming this sandbox on their command line (its supervisor).
fn supervisors_of(id: &SandboxId) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let cmdline = String::from_utf8_lossy(cmdline);
            cmdline.contains("sandkit-supervisor") && cmdline.contains(id.as_str())
        })
        .count()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

macro_rules! in_both_modes {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bubblewrap() {
                super::$case(super::Isolation::Bubblewrap).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn plain() {
                super::$case(super::Isolation::None).await
            }
        }
    )*};
}

in_both_modes!(
    exec_streams_codes_env_cwd_and_stdin,
    missing_and_non_executable_programs_fail_clearly,
    a_process_killing_itself_is_exit_143,
    paths_cannot_escape_the_root,
    exec_timeout_kills_the_whole_tree,
    snapshots_restore_into_a_new_sandbox,
    pause_stops_and_resume_continues,
    state_on_disk_is_shared_between_providers,
    terminate_is_idempotent_and_final,
    failed_creation_leaves_nothing,
    entrypoint_runs_in_the_background_and_its_end_is_the_sandbox_s_result,
    archives_move_trees,
    expired_sandboxes_are_gone,
    processes_never_outlive_a_deleted_directory,
);

async fn processes_never_outlive_a_deleted_directory(isolation: Isolation) {
    let (dir, provider) = provider(isolation);
    let id = provider
        .create(&SandboxSpec::new().entrypoint(["sleep", "1000"]))
        .await
        .unwrap()
        .id;
    eventually("the entrypoint runs", || !processes_of(&id).is_empty()).await;
    std::fs::remove_dir_all(dir.path().join("sandboxes").join(id.as_str())).unwrap();
    eventually("the supervisor kills what the directory held", || {
        processes_of(&id).is_empty() && supervisors_of(&id) == 0
    })
    .await;
}

async fn exec_streams_codes_env_cwd_and_stdin(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let spec = SandboxSpec::new()
        .env("FROM_SPEC", "spec")
        .secret("TOKEN", "s3cret");
    let info = provider.create(&spec).await.unwrap();
    let id = &info.id;
    assert!(Path::new(&info.workdir).is_absolute());

    let output = run(
        &provider,
        id,
        &["sh", "-c", "printf 'out\\377'; printf err >&2; exit 7"],
    )
    .await;
    assert_eq!(output.stdout, &b"out\xff"[..]);
    assert_eq!(output.stderr, "err");
    assert_eq!(output.status.code, 7);

    let request = ExecRequest::new(["sh", "-c", "echo $FROM_SPEC $TOKEN $FROM_REQUEST $HOME"])
        .env("FROM_REQUEST", "request");
    let output = provider.run(id, request).await.unwrap();
    let home = if isolation == Isolation::None {
        info.workdir.clone()
    } else {
        "/root".to_owned()
    };
    assert_eq!(
        output.stdout_lossy(),
        format!("spec s3cret request {home}\n")
    );

    provider.make_dir(id, "sub/dir").await.unwrap();
    let output = provider
        .run(id, ExecRequest::new(["pwd"]).cwd("sub"))
        .await
        .unwrap();
    assert_eq!(
        output.stdout_lossy().trim(),
        format!("{}/sub", info.workdir)
    );
    let absolute = format!("{}/sub/dir", info.workdir);
    let output = provider
        .run(id, ExecRequest::new(["pwd"]).cwd(&absolute))
        .await
        .unwrap();
    assert_eq!(output.stdout_lossy().trim(), absolute);
    // `/etc` is the sandbox's own under bubblewrap, and outside its root without.
    let etc = provider
        .exec(id, ExecRequest::new(["pwd"]).cwd("/etc"))
        .await;
    if isolation == Isolation::None {
        assert!(matches!(
            etc,
            Err(Error::FileOperation {
                kind: FileErrorKind::OutsideSandbox,
                ..
            })
        ));
    } else {
        assert_eq!(
            etc.unwrap().output().await.unwrap().stdout_lossy(),
            "/etc\n"
        );
    }

    let process = provider
        .exec(id, ExecRequest::new(["cat"]).stdin())
        .await
        .unwrap();
    let output = process
        .output_with_stdin(Bytes::from_static(b"\x00binary\xfe"))
        .await
        .unwrap();
    assert_eq!(output.stdout, &b"\x00binary\xfe"[..]);

    let odd = ["printf", "%s|", "$HOME", "a b", "'q'", "*", ";"];
    let output = run(&provider, id, &odd).await;
    assert_eq!(output.stdout_lossy(), "$HOME|a b|'q'|*|;|");
    provider.terminate(id).await.unwrap();
}

async fn missing_and_non_executable_programs_fail_clearly(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
    for argv in [["no-such-program-anywhere"], ["./missing"]] {
        match provider.exec(&id, ExecRequest::new(argv)).await {
            Err(Error::ProgramNotFound { program }) => assert_eq!(program, argv[0]),
            other => panic!("expected ProgramNotFound, got {other:?}"),
        }
    }
    provider
        .write_file(
            &id,
            "script.sh",
            Bytes::from_static(b"#!/bin/sh\necho hi\n"),
        )
        .await
        .unwrap();
    match provider.exec(&id, ExecRequest::new(["./script.sh"])).await {
        Err(Error::ExecFailed { reason, .. }) => assert!(reason.contains("permission"), "{reason}"),
        other => panic!("expected ExecFailed, got {other:?}"),
    }
    run(&provider, &id, &["chmod", "+x", "script.sh"]).await;
    assert_eq!(
        run(&provider, &id, &["./script.sh"]).await.stdout_lossy(),
        "hi\n"
    );
    provider.terminate(&id).await.unwrap();
}

async fn a_process_killing_itself_is_exit_143(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
    let request = ExecRequest::new(["sh", "-c", "kill -TERM $$"]).timeout(Duration::from_secs(30));
    let output = provider.run(&id, request).await.unwrap();
    assert_eq!(output.status.code, 143);
    provider.terminate(&id).await.unwrap();
}

async fn paths_cannot_escape_the_root(isolation: Isolation) {
    let (dir, provider) = provider(isolation);
    let info = provider.create(&SandboxSpec::new()).await.unwrap();
    let id = &info.id;
    // A decoy next to the sandbox, with what an escape would read.
    let decoy = dir.path().join("decoy.txt");
    std::fs::write(&decoy, "decoy").unwrap();
    let never_outside = |result: sandkit_core::Result<Bytes>| match result {
        Ok(bytes) => assert_ne!(bytes, "decoy"),
        Err(Error::FileOperation { kind, .. }) => assert!(
            matches!(
                kind,
                FileErrorKind::OutsideSandbox | FileErrorKind::NotFound
            ),
            "{kind:?}"
        ),
        Err(other) => panic!("{other}"),
    };
    let decoy_path = decoy.display().to_string();
    never_outside(provider.read_file(id, "../../../../decoy.txt").await);
    never_outside(provider.read_file(id, &decoy_path).await);
    never_outside(provider.read_file(id, "/etc/shadow").await);
    // A symlink made inside the sandbox may point anywhere; it resolves inside.
    run(&provider, id, &["ln", "-s", &decoy_path, "decoy-link"]).await;
    run(
        &provider,
        id,
        &["ln", "-s", dir.path().to_str().unwrap(), "dir-link"],
    )
    .await;
    run(&provider, id, &["ln", "-s", "../../../../../..", "up"]).await;
    never_outside(provider.read_file(id, "decoy-link").await);
    never_outside(provider.read_file(id, "up/decoy.txt").await);
    let _ = provider.write_file(id, "dir-link/evil", Bytes::new()).await;
    let _ = provider.write_file(id, "up/evil", Bytes::new()).await;
    let _ = provider.make_dir(id, "up/evil-dir").await;
    assert!(!dir.path().join("evil").exists() && !dir.path().join("evil-dir").exists());
    assert!(!Path::new("/evil").exists() && !Path::new("/evil-dir").exists());
    assert_eq!(
        provider.stat(id, "decoy-link").await.unwrap().kind,
        FileKind::Symlink
    );
    // Inside the root, absolute paths and symlinks work.
    let absolute = format!("{}/inside.txt", info.workdir);
    provider
        .write_file(id, &absolute, Bytes::from_static(b"ok"))
        .await
        .unwrap();
    run(&provider, id, &["ln", "-s", "inside.txt", "link"]).await;
    assert_eq!(provider.read_file(id, "link").await.unwrap(), "ok");
    provider.remove(id, "decoy-link", false).await.unwrap();
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "decoy");
    provider.terminate(id).await.unwrap();
}

async fn exec_timeout_kills_the_whole_tree(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
    let request = ExecRequest::new(["sh", "-c", "echo partial; sleep 1234 & sleep 1235"])
        .timeout(Duration::from_millis(700));
    let started = Instant::now();
    match provider.run(&id, request).await {
        Err(Error::CommandTimeout { stdout, .. }) => assert_eq!(stdout, "partial\n"),
        other => panic!("expected CommandTimeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let left = processes_of(&id);
    assert!(left.is_empty(), "processes survived the timeout: {left:?}");
    // The sandbox itself is still usable.
    assert_eq!(
        run(&provider, &id, &["echo", "alive"]).await.stdout_lossy(),
        "alive\n"
    );
    provider.terminate(&id).await.unwrap();
}

async fn snapshots_restore_into_a_new_sandbox(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
    provider
        .write_file(&id, "data/file.txt", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    run(&provider, &id, &["ln", "-s", "data/file.txt", "link"]).await;
    let snapshot = provider.snapshot(&id).await.unwrap();
    provider.terminate(&id).await.unwrap();

    let restored = provider
        .create(&SandboxSpec::new().from_snapshot(&snapshot.id))
        .await
        .unwrap()
        .id;
    assert_eq!(
        provider
            .read_file(&restored, "data/file.txt")
            .await
            .unwrap(),
        "kept"
    );
    assert_eq!(
        run(&provider, &restored, &["cat", "link"])
            .await
            .stdout_lossy(),
        "kept"
    );
    provider.terminate(&restored).await.unwrap();

    provider.delete_snapshot(&snapshot.id).await.unwrap();
    provider.delete_snapshot(&snapshot.id).await.unwrap();
    let gone = provider
        .create(&SandboxSpec::new().from_snapshot(&snapshot.id))
        .await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
    assert!(provider.list(&ListFilter::all()).await.unwrap().is_empty());
}

async fn pause_stops_and_resume_continues(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let spec = SandboxSpec::new().entrypoint([
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > count.tmp; mv count.tmp count; sleep 0.05; done",
    ]);
    let id = provider.create(&spec).await.unwrap().id;
    // Read on the host: a paused sandbox refuses file operations.
    let counter = format!("{}/count", provider_workdir(&provider, &id));
    let count = || {
        std::fs::read_to_string(&counter)
            .map(|text| text.trim().parse::<u64>().unwrap())
            .unwrap()
    };
    eventually("the entrypoint counts", || Path::new(&counter).exists()).await;

    provider.pause(&id).await.unwrap();
    assert_eq!(
        provider.info(&id).await.unwrap().state,
        SandboxState::Paused
    );
    let first = count();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count(), first, "the entrypoint kept running while paused");
    let refused = provider.exec(&id, ExecRequest::new(["true"])).await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidState {
                state: SandboxState::Paused,
                ..
            })
        ),
        "{refused:?}"
    );

    provider.resume(&id).await.unwrap();
    assert_eq!(
        provider.info(&id).await.unwrap().state,
        SandboxState::Running
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(count() > first, "the entrypoint did not continue");
    provider.terminate(&id).await.unwrap();
}

/// Where the sandbox's working directory lives on the host: in its layer (under
/// bubblewrap, `/workspace` is bound from there; without, it is the workdir itself).
fn provider_workdir(provider: &LocalProcessProvider, id: &SandboxId) -> String {
    let layer = format!("{}/sandboxes/{id}/layer", provider.state_dir().display());
    if provider.capabilities().container_paths {
        format!("{layer}/workspace")
    } else {
        layer
    }
}

async fn state_on_disk_is_shared_between_providers(isolation: Isolation) {
    let (dir, first) = provider(isolation);
    let spec = SandboxSpec::new().name("shared-one").tag("team", "evals");
    let id = first.create(&spec).await.unwrap().id;
    let duplicate = first.create(&SandboxSpec::new().name("shared-one")).await;
    assert!(
        matches!(duplicate, Err(Error::AlreadyExists { .. })),
        "{duplicate:?}"
    );

    let second = provider_at(dir.path(), isolation);
    assert_eq!(
        second.info(&id).await.unwrap().name.as_deref(),
        Some("shared-one")
    );
    assert_eq!(second.find_by_name("shared-one").await.unwrap().id, id);
    let tagged = second
        .list(&ListFilter::all().tag("team", "evals"))
        .await
        .unwrap();
    assert_eq!(tagged.iter().map(|i| &i.id).collect::<Vec<_>>(), [&id]);
    assert!(
        second
            .list(&ListFilter::all().tag("team", "other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        run(&second, &id, &["echo", "from the second"])
            .await
            .stdout_lossy(),
        "from the second\n"
    );

    second.terminate(&id).await.unwrap();
    assert!(matches!(first.info(&id).await, Err(Error::NotFound { .. })));
    // The name is free again.
    let again = first
        .create(&SandboxSpec::new().name("shared-one"))
        .await
        .unwrap();
    first.terminate(&again.id).await.unwrap();
}

async fn terminate_is_idempotent_and_final(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let info = provider
        .create(&SandboxSpec::new().entrypoint(["sleep", "1000"]))
        .await
        .unwrap();
    let id = &info.id;
    let running = provider
        .exec(id, ExecRequest::new(["sleep", "1001"]))
        .await
        .unwrap();
    // A daemon leaves the command's group and parent; terminate finds it all the same.
    let daemon = "setsid sleep 1002 </dev/null >/dev/null 2>&1 &";
    run(&provider, id, &["sh", "-c", daemon]).await;
    eventually("the sleeps run", || {
        let running = processes_of(id);
        let has = |argv: &str| running.iter().any(|cmdline| cmdline.starts_with(argv));
        has("sleep 1000") && has("sleep 1001") && has("sleep 1002")
    })
    .await;
    provider.terminate(id).await.unwrap();
    provider.terminate(id).await.unwrap();
    provider
        .terminate(&SandboxId::from("lp-000000000000"))
        .await
        .unwrap();
    provider
        .terminate(&SandboxId::from("not/an/id"))
        .await
        .unwrap();
    assert!(processes_of(id).is_empty(), "{:?}", processes_of(id));
    assert_eq!(supervisors_of(id), 0);
    assert!(
        !provider
            .state_dir()
            .join("sandboxes")
            .join(id.as_str())
            .exists()
    );
    let status = running.output().await.unwrap().status;
    assert_eq!(status.code, 137, "{status:?}");
    let not_found = |r: sandkit_core::Result<()>| matches!(r, Err(Error::NotFound { .. }));
    assert!(not_found(provider.info(id).await.map(|_| ())));
    assert!(not_found(
        provider
            .exec(id, ExecRequest::new(["true"]))
            .await
            .map(|_| ())
    ));
    assert!(not_found(provider.read_file(id, "x").await.map(|_| ())));
    assert!(not_found(provider.write_file(id, "x", Bytes::new()).await));
    assert!(not_found(provider.pause(id).await));
    assert!(not_found(provider.snapshot(id).await.map(|_| ())));
}

async fn failed_creation_leaves_nothing(isolation: Isolation) {
    let (dir, provider) = provider(isolation);
    let spec = SandboxSpec::new().entrypoint(["no-such-entrypoint"]);
    let result = provider.create(&spec).await;
    assert!(
        matches!(result, Err(Error::CreationFailed { .. })),
        "{result:?}"
    );
    let escaping = SandboxSpec::new().file("../outside", b"x".to_vec());
    assert!(provider.create(&escaping).await.is_err());
    let limited = SandboxSpec::new().memory_mib(64);
    assert!(matches!(
        provider.create(&limited).await,
        Err(Error::Unsupported { .. })
    ));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sandboxes"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!dir.path().join("outside").exists());
}

async fn entrypoint_runs_in_the_background_and_its_end_is_the_sandbox_s_result(
    isolation: Isolation,
) {
    let (_dir, provider) = provider(isolation);
    let spec = SandboxSpec::new()
        .file("go", b"".to_vec())
        .secret("KEY", "v")
        .entrypoint([
            "sh",
            "-c",
            "echo $KEY > started; while [ -e go ]; do sleep 0.05; done; exit 3",
        ]);
    let info = provider.create(&spec).await.unwrap();
    assert_eq!(info.state, SandboxState::Running);
    let marker = format!("{}/started", provider_workdir(&provider, &info.id));
    eventually("the entrypoint starts", || Path::new(&marker).exists()).await;
    assert_eq!(
        provider.read_file(&info.id, "started").await.unwrap(),
        "v\n"
    );
    provider.remove(&info.id, "go", false).await.unwrap();
    let dir = provider
        .state_dir()
        .join("sandboxes")
        .join(info.id.as_str());
    let id = info.id.clone();
    let mut ended = None;
    for _ in 0..200 {
        let state = provider.info(&id).await.unwrap().state;
        if state.is_finished() {
            ended = Some(state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ended, with the entrypoint's exit code as its result; kept (output and all) until
    // it is terminated, but nothing runs in it any more.
    assert_eq!(ended, Some(SandboxState::Terminated { exit_code: Some(3) }));
    let refused = provider.exec(&id, ExecRequest::new(["true"])).await;
    assert!(
        matches!(refused, Err(Error::NotFound { .. })),
        "{refused:?}"
    );
    let running = provider.list(&ListFilter::all()).await.unwrap();
    assert!(running.iter().all(|info| info.id != id));
    let finished = ListFilter {
        include_finished: true,
        ..ListFilter::all()
    };
    assert!(
        provider
            .list(&finished)
            .await
            .unwrap()
            .iter()
            .any(|info| info.id == id)
    );
    assert!(dir.exists());
    provider.terminate(&id).await.unwrap();
    assert!(!dir.exists());
    assert!(matches!(
        provider.info(&id).await,
        Err(Error::NotFound { .. })
    ));
}

async fn archives_move_trees(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
    provider
        .write_file(&id, "tree/a.txt", Bytes::from_static(b"a"))
        .await
        .unwrap();
    provider
        .write_file(&id, "tree/deep/b.bin", Bytes::from_static(b"\xff"))
        .await
        .unwrap();
    let archive = provider.download_archive(&id, "tree").await.unwrap();
    provider.upload_archive(&id, "copy", archive).await.unwrap();
    assert_eq!(
        provider
            .read_file(&id, "copy/tree/deep/b.bin")
            .await
            .unwrap(),
        &b"\xff"[..]
    );
    let output = run(&provider, &id, &["cat", "copy/tree/a.txt"]).await;
    assert_eq!(output.stdout_lossy(), "a");
    provider.terminate(&id).await.unwrap();
}

async fn expired_sandboxes_are_gone(isolation: Isolation) {
    let (_dir, provider) = provider(isolation);
    // No network under bubblewrap: with one, pasta may still be attaching when a
    // one-second sandbox ends on a loaded machine, and this test is about expiry. (Plain
    // processes have no network of their own, and so cannot block it.)
    let mut spec = SandboxSpec::new().lifetime_secs(1);
    if isolation == Isolation::Bubblewrap {
        spec = spec.network(sandkit_core::NetworkPolicy::BlockAll);
    }
    let info = provider.create(&spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(matches!(
        provider.info(&info.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(provider.list(&ListFilter::all()).await.unwrap().is_empty());
    assert!(!Path::new(&info.workdir).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_all_network_really_blocks() {
    let (_dir, provider) = provider(Isolation::Bubblewrap);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let probe =
        || ExecRequest::new(["bash", "-c", connect.as_str()]).timeout(Duration::from_secs(20));
    let interfaces = |output: sandkit_core::ExecOutput| {
        output
            .stdout_lossy()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|name| name.trim().to_owned()))
            .collect::<Vec<_>>()
    };

    // The default network is the sandbox's own: outbound through pasta, never the
    // host's loopback.
    let open = provider.create(&SandboxSpec::new()).await.unwrap().id;
    let output = provider.run(&open, probe()).await.unwrap();
    assert_ne!(
        output.status.code, 0,
        "the host's loopback was reached: {output:?}"
    );
    let names = interfaces(run(&provider, &open, &["cat", "/proc/net/dev"]).await);
    if provider.capabilities().egress_default == sandkit_core::EgressDefault::AllowAll {
        assert!(names.iter().any(|name| name != "lo"), "{names:?}");
    }

    let blocked = provider
        .create(&SandboxSpec::new().network(NetworkPolicy::BlockAll))
        .await
        .unwrap()
        .id;
    let output = provider.run(&blocked, probe()).await.unwrap();
    assert_ne!(output.status.code, 0, "{output:?}");
    assert!(output.stdout.is_empty());
    let names = interfaces(run(&provider, &blocked, &["cat", "/proc/net/dev"]).await);
    assert_eq!(names, ["lo"]);
    provider.terminate(&open).await.unwrap();
    provider.terminate(&blocked).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bubblewrap_network_policy_is_unsupported() {
    let (_dir, provider) = provider(Isolation::None);
    let caps = provider.capabilities();
    assert!(!caps.network_block_all);
    assert_eq!(caps.isolation, sandkit_core::Isolation::None);
    let result = provider
        .create(&SandboxSpec::new().network(NetworkPolicy::BlockAll))
        .await;
    assert!(
        matches!(result, Err(Error::Unsupported { .. })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bubblewrap_hides_the_host_and_other_sandboxes() {
    let (dir, provider) = provider(Isolation::Bubblewrap);
    assert_eq!(
        provider.capabilities().isolation,
        sandkit_core::Isolation::Namespaces
    );
    let one = provider.create(&SandboxSpec::new()).await.unwrap();
    let other = provider.create(&SandboxSpec::new()).await.unwrap();
    provider
        .write_file(&other.id, "secret.txt", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let other_file = format!("{}/secret.txt", other.workdir);
    let state = dir.path().join("sandboxes").display().to_string();
    let probe = format!("test -e {other_file} || ls {state}/*/state.json");
    let output = run(&provider, &one.id, &["sh", "-c", &probe]).await;
    assert_ne!(output.status.code, 0, "{output:?}");
    // Its own pid namespace: the command is pid 1's child, not a host pid.
    let pid = run(&provider, &one.id, &["sh", "-c", "echo $$"])
        .await
        .stdout_lossy();
    assert!(pid.trim().parse::<u32>().unwrap() < 100, "{pid}");
    provider.terminate(&one.id).await.unwrap();
    provider.terminate(&other.id).await.unwrap();
}

/// Environment variable naming the state directory for the creator process below.
const CREATOR_STATE_DIR: &str = "SANDKIT_TEST_CREATOR_STATE_DIR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: the creator process of lifetime_holds_after_the_creator_is_killed, run by it"]
async fn creator_process() {
    let state_dir = std::env::var(CREATOR_STATE_DIR)
        .expect("run by lifetime_holds_after_the_creator_is_killed");
    let isolation = match std::env::var("SANDKIT_TEST_CREATOR_ISOLATION").as_deref() {
        Ok("none") => Isolation::None,
        _ => Isolation::Bubblewrap,
    };
    let provider = provider_at(Path::new(&state_dir), isolation);
    // Either a short lifetime, or a long one with a short lease.
    let spec = if std::env::var("SANDKIT_TEST_CREATOR_LEASE").is_ok() {
        SandboxSpec::new().lifetime_secs(3600).lease_secs(5)
    } else {
        SandboxSpec::new().lifetime_secs(2)
    }
    .entrypoint(["sleep", "1000"]);
    let id = provider.create(&spec).await.unwrap().id;
    let _command = provider
        .exec(&id, ExecRequest::new(["sleep", "1001"]))
        .await
        .unwrap();
    println!("SANDBOX {id}");
    tokio::time::sleep(Duration::from_secs(1000)).await;
}

async fn lifetime_holds_after_the_creator_is_killed(isolation: Isolation) {
    sandbox_ends_after_its_creator_is_killed(isolation, false).await
}

async fn a_leased_sandbox_ends_soon_after_its_creator_is_killed(isolation: Isolation) {
    sandbox_ends_after_its_creator_is_killed(isolation, true).await
}

/// A creator process makes a sandbox (with a 2 s lifetime, or a 1 h lifetime and a 5 s
/// lease) and runs a command in it, then is SIGKILLed: the sandbox, its processes and its
/// directory must be gone within 15 s.
async fn sandbox_ends_after_its_creator_is_killed(isolation: Isolation, lease: bool) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut creator = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "creator_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CREATOR_STATE_DIR, dir.path())
        .env(
            "SANDKIT_TEST_CREATOR_ISOLATION",
            if isolation == Isolation::None {
                "none"
            } else {
                "bubblewrap"
            },
        )
        .envs(lease.then_some(("SANDKIT_TEST_CREATOR_LEASE", "1")))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(creator.stdout.take().unwrap());
    let id = stdout
        .lines()
        .map_while(|line| line.ok())
        // libtest prints the test's name on the same line first.
        .find_map(|line| {
            line.split_once("SANDBOX ")
                .map(|(_, id)| id.trim().to_owned())
        })
        .expect("the creator printed its sandbox id");
    let id = SandboxId(id);
    assert!(!processes_of(&id).is_empty());
    creator.kill().unwrap();
    creator.wait().unwrap();

    let sandbox_dir = dir.path().join("sandboxes").join(id.as_str());
    let deadline = Instant::now() + Duration::from_secs(15);
    while sandbox_dir.exists() || !processes_of(&id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the sandbox outlived its lifetime: {:?}",
            processes_of(&id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

in_both_modes!(
    lifetime_holds_after_the_creator_is_killed,
    a_leased_sandbox_ends_soon_after_its_creator_is_killed
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_workdir_is_taken_inside_the_root() {
    let (_dir, provider) = provider(Isolation::None);
    let info = provider
        .create(
            &SandboxSpec::new()
                .workdir("/app")
                .file("main.txt", b"m".to_vec()),
        )
        .await
        .unwrap();
    assert!(info.workdir.ends_with("/layer/app"), "{}", info.workdir);
    let output = run(&provider, &info.id, &["cat", "main.txt"]).await;
    assert_eq!(output.stdout_lossy(), "m");
    provider.terminate(&info.id).await.unwrap();
}

#[tokio::test]
async fn concurrent_commands_and_sandboxes_on_one_thread() {
    let (_dir, provider) = provider(Isolation::Bubblewrap);
    let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
    let commands = (0..16).map(|i| {
        let provider = &provider;
        let id = &id;
        async move {
            let argv = ["sh", "-c", "sleep 0.1; echo $0", &i.to_string()];
            provider
                .run(id, ExecRequest::new(argv))
                .await
                .unwrap()
                .stdout_lossy()
        }
    });
    let creations = (0..4).map(|_| async {
        let id = provider.create(&SandboxSpec::new()).await.unwrap().id;
        provider.terminate(&id).await.unwrap();
    });
    let (outputs, ()) = tokio::join!(futures::future::join_all(commands), async {
        futures::future::join_all(creations).await;
    });
    for (i, output) in outputs.iter().enumerate() {
        assert_eq!(output, &format!("{i}\n"));
    }
    provider.terminate(&id).await.unwrap();
    assert!(provider.list(&ListFilter::all()).await.unwrap().is_empty());
}

/// The busybox test image in the local registry that `scripts/registry.sh` starts.
const REGISTRY_IMAGE: &str = "127.0.0.1:5000/sandkit-test-busybox:latest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_from_a_registry_is_the_root_and_snapshots_keep_their_base() {
    let (_dir, provider) = provider(Isolation::Bubblewrap);
    assert!(provider.capabilities().image_registry);
    let spec = SandboxSpec::new().image(REGISTRY_IMAGE);
    let info = match provider.create(&spec).await {
        Ok(info) => info,
        Err(error) => panic!("{error} (is the local registry up? run scripts/registry.sh)"),
    };
    // The image's own busybox, not the host's /usr: its shell is busybox's.
    let output = run(
        &provider,
        &info.id,
        &["sh", "-c", "readlink -f /bin/sh; pwd"],
    )
    .await;
    assert_eq!(
        output.stdout_lossy(),
        "/bin/busybox\n/workspace\n",
        "{output:?}"
    );
    // The base is the image's, writable through the sandbox's own layer.
    run(
        &provider,
        &info.id,
        &["sh", "-c", "echo mine > /etc/marker"],
    )
    .await;
    let snapshot = provider.snapshot(&info.id).await.unwrap();
    provider.terminate(&info.id).await.unwrap();
    let restored = provider
        .create(&SandboxSpec::new().from_snapshot(&snapshot.id))
        .await
        .unwrap();
    let output = run(
        &provider,
        &restored.id,
        &["sh", "-c", "cat /etc/marker; readlink -f /bin/sh"],
    )
    .await;
    assert_eq!(output.stdout_lossy(), "mine\n/bin/busybox\n");
    provider.terminate(&restored.id).await.unwrap();
    provider.delete_snapshot(&snapshot.id).await.unwrap();
    // A fresh sandbox of the same image does not see the other's changes.
    let fresh = provider.create(&spec).await.unwrap();
    let output = provider
        .run(&fresh.id, ExecRequest::new(["cat", "/etc/marker"]))
        .await
        .unwrap();
    assert_ne!(output.status.code, 0);
    provider.terminate(&fresh.id).await.unwrap();
}

/// The `Terminated` event carries what the sandbox's processes used, measured by its
/// agent, so cost reports see real cpu time beside the allocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminated_event_carries_measured_usage() {
    let (_dir, provider) = provider(Isolation::Bubblewrap);
    let (events, mut received) = tokio::sync::broadcast::channel(16);
    let layered = sandkit_core::layers::standard(
        std::sync::Arc::new(provider),
        sandkit_core::layers::LayerOptions {
            events: Some(events),
            ..Default::default()
        },
    );
    let id = layered.create(&SandboxSpec::new()).await.unwrap().id;
    let script = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done";
    let output = layered
        .run(&id, ExecRequest::new(["sh", "-c", script]))
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    layered.terminate(&id).await.unwrap();
    let mut terminated = None;
    while let Ok(event) = received.try_recv() {
        if event.kind == sandkit_core::LifecycleKind::Terminated {
            terminated = Some(event);
        }
    }
    let event = terminated.expect("a Terminated event");
    let measured = event.measured.expect("measured usage on the event");
    assert!(measured.cpu_secs >= 0.05, "{measured:?}");
    assert!(measured.peak_memory_bytes > 0, "{measured:?}");
}
