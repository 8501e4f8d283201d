//! Specs: bad values rejected by field, resources and placement honoured or refused.

use anyhow::{Context, Result, bail, ensure};
use sandkit_core::{Error, GpuKind, ImageSource, ListFilter, SandboxSpec};

use crate::case::{Cx, TAG_CASE, TAG_RUN, expect_unsupported};

/// Fails unless creating `spec` is `InvalidSpec` naming `field`, and nothing was created.
pub(crate) async fn expect_invalid(cx: &Cx, spec: &SandboxSpec, field: &str) -> Result<()> {
    match cx.provider().create(spec).await {
        Err(Error::InvalidSpec { field: named, .. }) if named == field => {}
        Err(Error::InvalidSpec {
            field: named,
            reason,
        }) => {
            bail!("InvalidSpec names `{named}` ({reason}), expected `{field}`")
        }
        Err(error) => bail!(
            "expected InvalidSpec for `{field}`, got {} error: {error}",
            error.kind()
        ),
        Ok(info) => {
            cx.track(cx.provider(), &info.id);
            bail!(
                "a spec with a bad `{field}` was accepted (sandbox {})",
                info.id
            )
        }
    }
    expect_nothing_created(cx).await
}

/// With tags and listing by tags, checks the case left no sandbox behind its rejection.
async fn expect_nothing_created(cx: &Cx) -> Result<()> {
    let caps = cx.caps();
    if !(caps.tags && caps.list_by_tags) {
        return Ok(());
    }
    let spec = cx.spec();
    let (Some(run), Some(case)) = (spec.tags.get(TAG_RUN), spec.tags.get(TAG_CASE)) else {
        return Ok(());
    };
    let filter = ListFilter::all().tag(TAG_RUN, run).tag(TAG_CASE, case);
    let listed = cx
        .provider()
        .list(&filter)
        .await
        .map_err(|e| anyhow::anyhow!("list: {e}"))?;
    ensure!(
        listed.is_empty(),
        "a rejected spec still left sandboxes: {:?}",
        listed.iter().map(|i| &i.id).collect::<Vec<_>>()
    );
    Ok(())
}

pub(crate) async fn invalid_spec_cpu_zero(cx: Cx) -> Result<()> {
    expect_invalid(&cx, &cx.spec().cpu(0.0), "cpu").await
}

pub(crate) async fn invalid_spec_memory_zero(cx: Cx) -> Result<()> {
    expect_invalid(&cx, &cx.spec().memory_mib(0), "memory_mib").await
}

pub(crate) async fn invalid_spec_relative_workdir(cx: Cx) -> Result<()> {
    expect_invalid(&cx, &cx.spec().workdir("relative/dir"), "workdir").await
}

pub(crate) async fn invalid_spec_env_name_with_equals(cx: Cx) -> Result<()> {
    expect_invalid(&cx, &cx.spec().env("BAD=NAME", "x"), "env.BAD=NAME").await
}

pub(crate) async fn invalid_spec_reserved_tag_key(cx: Cx) -> Result<()> {
    expect_invalid(
        &cx,
        &cx.spec().tag("sandkit.owner", "someone-else"),
        "tags.sandkit.owner",
    )
    .await
}

pub(crate) async fn invalid_spec_zero_lifetime(cx: Cx) -> Result<()> {
    expect_invalid(&cx, &cx.spec().lifetime_secs(0), "lifetime_secs").await
}

pub(crate) async fn unknown_provider_option_rejected(cx: Cx) -> Result<()> {
    let key = "conformance-no-such-option";
    let spec = cx
        .spec()
        .provider_option(key, serde_json::Value::Bool(true));
    match cx.provider().create(&spec).await {
        Err(Error::Unsupported { feature, .. }) if feature.contains(key) => Ok(()),
        Err(Error::InvalidSpec { field, reason })
            if field.contains(key) || reason.contains(key) =>
        {
            Ok(())
        }
        Err(error) => bail!(
            "an unknown provider option must be Unsupported or InvalidSpec naming `{key}`, got {} error: {error}",
            error.kind()
        ),
        Ok(info) => {
            cx.track(cx.provider(), &info.id);
            bail!("an unknown provider option was silently accepted")
        }
    }
}

pub(crate) async fn region_not_offered_rejected(cx: Cx) -> Result<()> {
    let spec = cx.spec().region("conformance-nowhere-1");
    expect_unsupported(
        cx.provider().create(&spec).await,
        "a region the provider does not offer",
    )
}

pub(crate) async fn region_honoured(cx: Cx) -> Result<()> {
    let region = cx
        .caps()
        .regions
        .first()
        .cloned()
        .context("the provider offers regions")?;
    let info = cx.create(&cx.spec().region(&region)).await?;
    ensure!(
        info.region.as_deref() == Some(region.as_str()),
        "asked for region {region}, info says {:?}",
        info.region
    );
    Ok(())
}

pub(crate) async fn gpu_not_offered_rejected(cx: Cx) -> Result<()> {
    let kind = GpuKind::ALL
        .into_iter()
        .find(|kind| !cx.caps().gpu_kinds.contains(kind))
        .context("the provider offers every GPU kind")?;
    let spec = cx.spec().gpu(kind, 1);
    expect_unsupported(cx.provider().create(&spec).await, &format!("GPU {kind}"))
}

pub(crate) async fn cpu_limit_applied(cx: Cx) -> Result<()> {
    let cores = cx.caps().max_cpu.map_or(1.0, |max| max.min(1.0));
    let info = cx.create(&cx.spec().cpu(cores)).await?;
    ensure!(
        info.cpu == Some(cores),
        "asked for {cores} cpu cores, info says {:?}",
        info.cpu
    );
    Ok(())
}

pub(crate) async fn cpu_over_max_is_invalid(cx: Cx) -> Result<()> {
    let max = cx
        .caps()
        .max_cpu
        .context("the provider declares a cpu maximum")?;
    expect_invalid(&cx, &cx.spec().cpu(max * 2.0 + 1.0), "cpu").await
}

pub(crate) async fn cpu_limit_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(
        cx.provider().create(&cx.spec().cpu(1.0)).await,
        "a cpu limit",
    )
}

pub(crate) async fn memory_limit_applied(cx: Cx) -> Result<()> {
    let mib = cx.caps().max_memory_mib.map_or(256, |max| max.min(256));
    let info = cx.create(&cx.spec().memory_mib(mib)).await?;
    ensure!(
        info.memory_mib == Some(mib),
        "asked for {mib} MiB, info says {:?}",
        info.memory_mib
    );
    Ok(())
}

pub(crate) async fn memory_over_max_is_invalid(cx: Cx) -> Result<()> {
    let max = cx
        .caps()
        .max_memory_mib
        .context("the provider declares a memory maximum")?;
    expect_invalid(
        &cx,
        &cx.spec().memory_mib(max.saturating_mul(2).max(max + 1)),
        "memory_mib",
    )
    .await
}

pub(crate) async fn memory_limit_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(
        cx.provider().create(&cx.spec().memory_mib(256)).await,
        "a memory limit",
    )
}

pub(crate) async fn workdir_from_spec(cx: Cx) -> Result<()> {
    let workdir = "/tmp/conformance-workdir";
    let info = cx.create(&cx.spec().workdir(workdir)).await?;
    // A provider with a root filesystem of its own uses the path as given; one without
    // (local processes) places it under the sandbox's root. Either way info says where,
    // and commands start there.
    ensure!(
        info.workdir == workdir || info.workdir.ends_with(workdir),
        "asked for workdir {workdir}, info says {:?}",
        info.workdir
    );
    let pwd = cx.sh(&info.id, "pwd").await?;
    ensure!(
        pwd.trim_end() == info.workdir,
        "commands start in {:?}, info.workdir is {:?}",
        pwd.trim_end(),
        info.workdir
    );
    cx.sh(&info.id, "printf here > workdir-marker").await?;
    let marker = crate::cases::exec::join(&info.workdir, "workdir-marker");
    let read = cx.sh(&info.id, &format!("cat '{marker}'")).await?;
    ensure!(
        read == "here",
        "a file written in the workdir is not at {marker}"
    );
    Ok(())
}

pub(crate) async fn image_registry_unsupported(cx: Cx) -> Result<()> {
    let mut spec = cx.spec();
    spec.image = Some(ImageSource::Registry {
        reference: "busybox:latest".into(),
    });
    expect_unsupported(
        cx.provider().create(&spec).await,
        "an image from a registry",
    )
}

pub(crate) async fn image_dockerfile_unsupported(cx: Cx) -> Result<()> {
    let mut spec = cx.spec();
    spec.image = Some(ImageSource::Dockerfile {
        context_dir: std::env::temp_dir(),
        dockerfile: None,
    });
    expect_unsupported(
        cx.provider().create(&spec).await,
        "an image built from a Dockerfile",
    )
}
