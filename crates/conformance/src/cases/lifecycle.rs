//! Create, info, list, terminate, ownership tags, reaping, names and lifetimes.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sandkit_core::layers::{self, LayerOptions};
use sandkit_core::ownership::{
    MANAGED_BY_VALUE, TAG_CREATED_AT, TAG_EXPIRES_AT, TAG_MANAGED_BY, TAG_OWNER, TAG_RUN_ID,
    unix_now,
};
use sandkit_core::{
    Error, ExecRequest, ListFilter, Ownership, ReapFilter, SandboxId, SandboxState, reap,
};

use crate::case::{Cx, TAG_CASE, TAG_RUN, expect_not_found, expect_unsupported};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// An id no provider has handed out.
fn unknown_id() -> SandboxId {
    SandboxId(unique("conformance-no-such-sandbox"))
}

/// Polls `info` until the sandbox is gone (NotFound) or finished; fails after `limit`.
async fn await_gone(cx: &Cx, id: &SandboxId, limit: Duration, why: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match cx.provider().info(id).await {
            Err(Error::NotFound { .. }) => return Ok(()),
            Ok(info) if info.state.is_finished() => return Ok(()),
            Ok(info) if tokio::time::Instant::now() >= deadline => {
                bail!("the sandbox is still {} {limit:?} after {why}", info.state)
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(error) => bail!("info while waiting for the sandbox to end: {error}"),
        }
    }
}

pub(crate) async fn create_returns_running_sandbox(cx: Cx) -> Result<()> {
    let info = cx.create(&cx.spec()).await?;
    ensure!(!info.id.as_str().is_empty(), "create returned an empty id");
    ensure!(
        info.state == SandboxState::Running,
        "create returned a sandbox in state {}",
        info.state
    );
    ensure!(
        info.provider == cx.provider().name(),
        "info.provider is {:?}, the provider is named {:?}",
        info.provider,
        cx.provider().name()
    );
    ensure!(
        info.workdir.starts_with('/'),
        "info.workdir {:?} is not absolute",
        info.workdir
    );
    // Create returns once commands can run.
    let output = cx.sh(&info.id, "echo ready").await?;
    ensure!(output == "ready\n", "the first command printed {output:?}");
    Ok(())
}

pub(crate) async fn info_describes_the_sandbox(cx: Cx) -> Result<()> {
    let before = unix_now();
    let created = cx.create(&cx.spec()).await?;
    let after = unix_now();
    let info = cx
        .provider()
        .info(&created.id)
        .await
        .map_err(|e| anyhow::anyhow!("info: {e}"))?;
    ensure!(
        info.id == created.id,
        "info returned id {}, asked for {}",
        info.id,
        created.id
    );
    ensure!(
        info.state == SandboxState::Running,
        "state is {}",
        info.state
    );
    ensure!(
        info.workdir == created.workdir,
        "workdir changed from {:?} to {:?}",
        created.workdir,
        info.workdir
    );
    // Remote clocks may differ a little from ours.
    ensure!(
        info.created_at_unix_secs + 120 >= before && info.created_at_unix_secs <= after + 120,
        "created_at {} is not between {before} and {after}",
        info.created_at_unix_secs
    );
    Ok(())
}

pub(crate) async fn ownership_tags_on_every_sandbox(cx: Cx) -> Result<()> {
    let spec = cx.spec().tag("team", "conformance");
    let lifetime = spec
        .lifetime_secs
        .context("the suite's spec has a lifetime")?;
    let info = cx.create(&spec).await?;
    let info = cx
        .provider()
        .info(&info.id)
        .await
        .map_err(|e| anyhow::anyhow!("info: {e}"))?;
    let tag = |key: &str| {
        info.tags
            .get(key)
            .cloned()
            .with_context(|| format!("tag `{key}` is missing; tags are {:?}", info.tags))
    };
    let ownership = &cx.suite().options.ownership;
    ensure!(
        tag(TAG_MANAGED_BY)? == MANAGED_BY_VALUE,
        "{TAG_MANAGED_BY} is {:?}",
        tag(TAG_MANAGED_BY)?
    );
    ensure!(
        tag(TAG_OWNER)? == ownership.owner,
        "{TAG_OWNER} is {:?}, expected {:?}",
        tag(TAG_OWNER)?,
        ownership.owner
    );
    ensure!(
        tag(TAG_RUN_ID)? == ownership.run_id,
        "{TAG_RUN_ID} is {:?}, expected {:?}",
        tag(TAG_RUN_ID)?,
        ownership.run_id
    );
    let created: u64 = tag(TAG_CREATED_AT)?
        .parse()
        .context("created-at is not a number")?;
    let expires: u64 = tag(TAG_EXPIRES_AT)?
        .parse()
        .context("expires-at is not a number")?;
    ensure!(
        expires == created + lifetime,
        "expires-at {expires} is not created-at {created} + lifetime {lifetime}"
    );
    ensure!(
        tag("team")? == "conformance",
        "the user's tag `team` is {:?}",
        tag("team")?
    );
    ensure!(
        tag(TAG_CASE)? == "ownership_tags_on_every_sandbox",
        "the case tag is {:?}",
        tag(TAG_CASE)?
    );
    Ok(())
}

pub(crate) async fn list_includes_running_sandbox(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    let all = cx
        .provider()
        .list(&ListFilter::all())
        .await
        .map_err(|e| anyhow::anyhow!("list: {e}"))?;
    ensure!(
        all.iter().any(|info| info.id == id),
        "list() does not include the running sandbox {id}"
    );
    Ok(())
}

pub(crate) async fn list_by_tags_finds_only_matching(cx: Cx) -> Result<()> {
    let (first_value, second_value) = (unique("first"), unique("second"));
    let first = cx
        .create(&cx.spec().tag("conformance-probe", &first_value))
        .await?
        .id;
    let second = cx
        .create(&cx.spec().tag("conformance-probe", &second_value))
        .await?
        .id;
    let listed = cx
        .provider()
        .list(&ListFilter::all().tag("conformance-probe", &first_value))
        .await
        .map_err(|e| anyhow::anyhow!("list by tag: {e}"))?;
    let ids: Vec<_> = listed.iter().map(|info| info.id.clone()).collect();
    ensure!(
        ids == [first.clone()],
        "listing by the first sandbox's tag gave {ids:?}, expected [{first}]"
    );
    let run = cx
        .provider()
        .list(
            &ListFilter::all()
                .tag(TAG_RUN, &cx.suite().run_id)
                .tag(TAG_CASE, "list_by_tags_finds_only_matching"),
        )
        .await
        .map_err(|e| anyhow::anyhow!("list by two tags: {e}"))?;
    let mut ids: Vec<_> = run.iter().map(|info| info.id.clone()).collect();
    ids.sort();
    let mut expected = vec![first, second];
    expected.sort();
    ensure!(
        ids == expected,
        "listing by run and case tags gave {ids:?}, expected {expected:?}"
    );
    Ok(())
}

pub(crate) async fn list_by_tags_unsupported(cx: Cx) -> Result<()> {
    let result = cx
        .provider()
        .list(&ListFilter::all().tag("conformance-probe", "x"))
        .await;
    expect_unsupported(result, "listing by tags")
}

pub(crate) async fn list_omits_terminated(cx: Cx) -> Result<()> {
    let id = cx.terminated_sandbox().await?;
    let all = cx
        .provider()
        .list(&ListFilter::all())
        .await
        .map_err(|e| anyhow::anyhow!("list: {e}"))?;
    ensure!(
        !all.iter().any(|info| info.id == id),
        "list() still shows the terminated sandbox {id}"
    );
    Ok(())
}

pub(crate) async fn terminate_is_idempotent(cx: Cx) -> Result<()> {
    let id = cx.sandbox().await?;
    cx.provider()
        .terminate(&id)
        .await
        .map_err(|e| anyhow::anyhow!("first terminate: {e}"))?;
    cx.provider()
        .terminate(&id)
        .await
        .map_err(|e| anyhow::anyhow!("second terminate must be Ok: {e}"))?;
    Ok(())
}

pub(crate) async fn terminate_unknown_id_is_ok(cx: Cx) -> Result<()> {
    let id = unknown_id();
    cx.provider()
        .terminate(&id)
        .await
        .map_err(|e| anyhow::anyhow!("terminate of an unknown id must be Ok: {e}"))
}

pub(crate) async fn info_unknown_id_not_found(cx: Cx) -> Result<()> {
    expect_not_found(
        cx.provider().info(&unknown_id()).await,
        "info of an unknown id",
    )
}

pub(crate) async fn info_after_terminate_not_found(cx: Cx) -> Result<()> {
    let id = cx.terminated_sandbox().await?;
    expect_not_found(
        cx.provider().info(&id).await,
        "info of a terminated sandbox",
    )
}

pub(crate) async fn exec_after_terminate_not_found(cx: Cx) -> Result<()> {
    let id = cx.terminated_sandbox().await?;
    let result = match cx.provider().exec(&id, ExecRequest::new(["true"])).await {
        Ok(process) => process.output().await.map(|_| ()),
        Err(error) => Err(error),
    };
    expect_not_found(result, "exec in a terminated sandbox")?;
    expect_not_found(
        cx.provider()
            .exec(&unknown_id(), ExecRequest::new(["true"]))
            .await
            .map(|_| ()),
        "exec in an unknown sandbox",
    )
}

pub(crate) async fn find_by_name(cx: Cx) -> Result<()> {
    let name = unique("conformance");
    let id = cx.create(&cx.spec().name(&name)).await?.id;
    let found = cx
        .provider()
        .find_by_name(&name)
        .await
        .map_err(|e| anyhow::anyhow!("find_by_name: {e}"))?;
    ensure!(
        found.id == id,
        "find_by_name({name}) returned {}, created {id}",
        found.id
    );
    ensure!(
        found.name.as_deref() == Some(name.as_str()),
        "info.name is {:?}",
        found.name
    );
    cx.provider()
        .terminate(&id)
        .await
        .map_err(|e| anyhow::anyhow!("terminate: {e}"))?;
    expect_not_found(
        cx.provider().find_by_name(&name).await,
        "find_by_name after terminate",
    )?;
    expect_not_found(
        cx.provider()
            .find_by_name(&unique("conformance-unknown"))
            .await,
        "an unknown name",
    )
}

pub(crate) async fn find_by_name_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(
        cx.provider().find_by_name("conformance").await,
        "find_by_name",
    )?;
    expect_unsupported(
        cx.provider()
            .create(&cx.spec().name(unique("conformance")))
            .await,
        "a named sandbox",
    )
}

pub(crate) async fn tags_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(
        cx.provider()
            .create(&cx.spec().tag("team", "conformance"))
            .await,
        "a spec with tags",
    )
}

pub(crate) async fn reap_dry_run_then_reap(cx: Cx) -> Result<()> {
    // A run id of its own, so reaping cannot touch the other cases' sandboxes.
    let run_id = unique("conformance-reap");
    let reaper = layers::standard(
        std::sync::Arc::clone(cx.bare()),
        LayerOptions {
            ownership: Ownership {
                owner: cx.suite().options.ownership.owner.clone(),
                run_id: run_id.clone(),
            },
            ..LayerOptions::default()
        },
    );
    let id = cx.create_with(&reaper, &cx.spec()).await?.id;
    let filter = ReapFilter {
        run_id: Some(run_id),
        include_unexpired: true,
        ..ReapFilter::default()
    };
    let expired_only = ReapFilter {
        include_unexpired: false,
        ..filter.clone()
    };
    let report = reap(&*reaper, &expired_only, true)
        .await
        .map_err(|e| anyhow::anyhow!("reap: {e}"))?;
    ensure!(
        report.matched.is_empty(),
        "reaping only expired sandboxes matched one whose lifetime has not ended"
    );
    let report = reap(&*reaper, &filter, true)
        .await
        .map_err(|e| anyhow::anyhow!("dry-run reap: {e}"))?;
    let matched: Vec<_> = report.matched.iter().map(|info| info.id.clone()).collect();
    ensure!(
        matched == [id.clone()],
        "dry-run reap matched {matched:?}, expected [{id}]"
    );
    ensure!(
        report.terminated.is_empty(),
        "a dry run terminated {:?}",
        report.terminated
    );
    let info = cx
        .provider()
        .info(&id)
        .await
        .map_err(|e| anyhow::anyhow!("info after a dry run: {e}"))?;
    ensure!(
        info.state == SandboxState::Running,
        "after a dry run the sandbox is {}",
        info.state
    );
    let report = reap(&*reaper, &filter, false)
        .await
        .map_err(|e| anyhow::anyhow!("reap: {e}"))?;
    ensure!(
        report.terminated == [id.clone()],
        "reap terminated {:?}, expected [{id}]",
        report.terminated
    );
    ensure!(
        report.failed.is_empty(),
        "reap failed for {:?}",
        report.failed
    );
    expect_not_found(cx.provider().info(&id).await, "info of a reaped sandbox")
}

pub(crate) async fn reap_unsupported(cx: Cx) -> Result<()> {
    let filter = ReapFilter {
        run_id: Some(unique("conformance-reap")),
        ..ReapFilter::default()
    };
    expect_unsupported(
        reap(&**cx.provider(), &filter, true).await,
        "reap (it lists by tags)",
    )
}

pub(crate) async fn lifetime_ends_sandbox(cx: Cx) -> Result<()> {
    let mut spec = cx.spec();
    spec.lifetime_secs = Some(3);
    let id = cx.create(&spec).await?.id;
    await_gone(&cx, &id, Duration::from_secs(90), "a lifetime of 3 s").await?;
    let result = match cx.provider().exec(&id, ExecRequest::new(["true"])).await {
        Ok(process) => process.output().await.map(|_| ()),
        Err(error) => Err(error),
    };
    expect_not_found(result, "exec after the lifetime ended")
}

pub(crate) async fn lifetime_over_max_is_invalid(cx: Cx) -> Result<()> {
    let max = cx
        .caps()
        .max_lifetime_secs
        .context("the provider declares a maximum lifetime")?;
    let mut spec = cx.spec();
    spec.lifetime_secs = Some(max + 1);
    crate::cases::specs::expect_invalid(&cx, &spec, "lifetime_secs").await
}

pub(crate) async fn long_lifetime_accepted_without_max(cx: Cx) -> Result<()> {
    const THIRTY_DAYS_SECS: u64 = 30 * 24 * 3600;
    let mut spec = cx.spec();
    spec.lifetime_secs = Some(THIRTY_DAYS_SECS);
    let info = cx.create(&spec).await?;
    if let Some(expires) = info.tags.get(TAG_EXPIRES_AT) {
        let expires: u64 = expires.parse().context("expires-at is not a number")?;
        let created: u64 = info
            .tags
            .get(TAG_CREATED_AT)
            .context("created-at missing")?
            .parse()?;
        ensure!(
            expires == created + THIRTY_DAYS_SECS,
            "expires-at {expires} is not created-at {created} + 30 days"
        );
    }
    Ok(())
}

pub(crate) async fn idle_timeout_ends_idle_sandbox(cx: Cx) -> Result<()> {
    let id = cx.create(&cx.spec().idle_timeout_secs(3)).await?.id;
    await_gone(&cx, &id, Duration::from_secs(120), "an idle timeout of 3 s").await
}

/// The lease is renewed while the creator (this process) lives, so the sandbox outlasts
/// it. (Its end after the creator dies is proven per provider, by killing a creator
/// process.)
pub(crate) async fn lease_holds_while_its_creator_lives(cx: Cx) -> Result<()> {
    let id = cx.create(&cx.spec().lease_secs(5)).await?.id;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let output = cx.sh(&id, "echo alive").await?;
    ensure!(
        output.trim_end() == "alive",
        "the leased sandbox answered {output:?}"
    );
    Ok(())
}

pub(crate) async fn lease_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(
        cx.provider().create(&cx.spec().lease_secs(30)).await,
        "a lease",
    )
}

pub(crate) async fn idle_timeout_unsupported(cx: Cx) -> Result<()> {
    expect_unsupported(
        cx.provider().create(&cx.spec().idle_timeout_secs(60)).await,
        "an idle timeout",
    )
}
