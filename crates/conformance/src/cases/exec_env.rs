//! Commands' environment and working directory: the spec's env, the request's, secrets,
//! the default workdir, relative and absolute `cwd`, and a missing one.

use anyhow::{Result, bail, ensure};
use sandkit_core::{Error, ExecRequest};

use super::exec::{join, outcome_within, sh};
use crate::case::{Cx, expect_success, expect_unsupported, show};

pub(crate) async fn exec_spec_env(cx: Cx) -> Result<()> {
    let spec = cx.spec().env("CONFORMANCE_SPEC_VAR", "from the spec");
    let id = cx.create(&spec).await?.id;
    let output = cx.sh(&id, r#"printf %s "$CONFORMANCE_SPEC_VAR""#).await?;
    ensure!(
        output == "from the spec",
        "CONFORMANCE_SPEC_VAR was {output:?}"
    );
    Ok(())
}

pub(crate) async fn exec_request_env(cx: Cx) -> Result<()> {
    let spec = cx.spec().env("CONF_A", "spec-a").env("CONF_B", "spec-b");
    let id = cx.create(&spec).await?.id;
    let special = "a b=c;$HOME 'q' \"dq\" * ✓";
    let request = sh(r#"printf '%s|%s|%s' "$CONF_A" "$CONF_B" "$CONF_C""#)
        .env("CONF_B", "request-b")
        .env("CONF_C", special);
    let output = cx.run(&id, request).await?;
    expect_success(&output, "printf env")?;
    let expected = format!("spec-a|request-b|{special}");
    ensure!(
        output.stdout == expected.as_bytes(),
        "env seen was {}, expected {expected:?} (request env overrides the spec's; values pass unchanged)",
        show(&output.stdout)
    );
    Ok(())
}

pub(crate) async fn exec_secret_env(cx: Cx) -> Result<()> {
    let spec = cx.spec().secret("CONFORMANCE_SECRET", "s3cr3t-value");
    let info = cx.create(&spec).await?;
    let output = cx
        .sh(&info.id, r#"printf %s "$CONFORMANCE_SECRET""#)
        .await?;
    ensure!(output == "s3cr3t-value", "the secret arrived as {output:?}");
    let shown = format!("{info:?}");
    ensure!(
        !shown.contains("s3cr3t-value"),
        "the secret appears in the sandbox info"
    );
    Ok(())
}

pub(crate) async fn secrets_unsupported(cx: Cx) -> Result<()> {
    let spec = cx.spec().secret("CONFORMANCE_SECRET", "value");
    expect_unsupported(cx.provider().create(&spec).await, "a spec with secrets")
}

pub(crate) async fn exec_cwd_default_is_workdir(cx: Cx) -> Result<()> {
    let info = cx.create(&cx.spec()).await?;
    let output = cx.sh(&info.id, "pwd").await?;
    ensure!(
        output.trim_end() == info.workdir,
        "commands start in {:?}, but info.workdir is {:?}",
        output.trim_end(),
        info.workdir
    );
    Ok(())
}

pub(crate) async fn exec_cwd_relative(cx: Cx) -> Result<()> {
    let info = cx.create(&cx.spec()).await?;
    cx.sh(&info.id, "mkdir -p sub/dir").await?;
    let output = cx
        .run(&info.id, ExecRequest::new(["pwd"]).cwd("sub/dir"))
        .await?;
    expect_success(&output, "pwd")?;
    let expected = join(&info.workdir, "sub/dir");
    ensure!(
        output.stdout_lossy().trim_end() == expected,
        "cwd `sub/dir` ran in {:?}, expected {expected:?}",
        output.stdout_lossy().trim_end()
    );
    Ok(())
}

pub(crate) async fn exec_cwd_absolute(cx: Cx) -> Result<()> {
    let info = cx.create(&cx.spec()).await?;
    cx.sh(&info.id, "mkdir -p absolute-target").await?;
    let target = join(&info.workdir, "absolute-target");
    let output = cx
        .run(&info.id, ExecRequest::new(["pwd"]).cwd(&target))
        .await?;
    expect_success(&output, "pwd")?;
    ensure!(
        output.stdout_lossy().trim_end() == target,
        "cwd {target:?} ran in {:?}",
        output.stdout_lossy().trim_end()
    );
    Ok(())
}

pub(crate) async fn exec_cwd_missing_is_error(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let request = ExecRequest::new(["pwd"]).cwd("conformance-no-such-directory");
    match outcome_within(&cx, &id, request).await? {
        Ok(output) => bail!(
            "a command with a missing cwd ran anyway ({}, stdout {}); it must be an error",
            output.status,
            show(&output.stdout)
        ),
        Err(Error::ExecFailed { .. } | Error::FileOperation { .. } | Error::InvalidSpec { .. }) => {
            Ok(())
        }
        Err(error) => bail!(
            "a missing cwd must be ExecFailed, FileOperation or InvalidSpec, got {} error: {error}",
            error.kind()
        ),
    }
}
