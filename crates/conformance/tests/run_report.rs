//! The library entry (`run`, used by `sandkit conformance`) against the local-process
//! provider: the report, the progress callback, an already layered provider, and a run
//! that executes nothing.

use std::sync::{Arc, Mutex};

use sandkit_conformance::{Options, Outcome, run};
use sandkit_core::SandboxProvider;
use sandkit_core::layers::{self, LayerOptions};
use sandkit_provider_local_process::{LocalProcessConfig, LocalProcessProvider};

fn provider() -> Arc<dyn SandboxProvider> {
    let config = LocalProcessConfig {
        state_dir: Some(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-run-report"),
        ),
        ..LocalProcessConfig::default()
    };
    Arc::new(LocalProcessProvider::new(config).expect("local-process provider"))
}

fn options(filter: &str) -> Options {
    Options {
        filter: Some(filter.to_owned()),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filtered_run_reports_each_case_and_calls_progress() {
    let seen = Mutex::new(Vec::new());
    let report = run(provider(), &options("exec_exit_"), &|result| {
        seen.lock().unwrap().push(result.name.clone())
    })
    .await;
    let names: Vec<_> = report.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["exec_exit_0", "exec_exit_1", "exec_exit_42"],
        "{}",
        report.table()
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(report.is_success(), "{}", report.table());
    assert_eq!((report.passed, report.failed, report.skipped), (3, 0, 0));
    assert_eq!(report.provider, "local-process");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["results"][2]["outcome"]["status"], "passed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_already_layered_provider_is_wrapped_once() {
    // Layers applied twice would add ownership tags twice, and the second check would
    // reject them as reserved.
    let layered = layers::standard(provider(), LayerOptions::default());
    let report = run(
        layered,
        &options("ownership_tags_on_every_sandbox"),
        &|_| {},
    )
    .await;
    assert_eq!(report.results.len(), 1);
    assert_eq!(
        report.results[0].outcome,
        Outcome::Passed,
        "{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_executes_nothing_fails() {
    let report = run(provider(), &options("no-case-has-this-name"), &|_| {}).await;
    assert!(report.results.is_empty());
    assert!(!report.is_success());
    assert!(
        report.table().contains("nothing was proven"),
        "{}",
        report.table()
    );
}
