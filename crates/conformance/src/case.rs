//! A case: a name, what it needs from the provider, and the check itself; plus the context
//! every check runs in, which terminates whatever the check created.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sandkit_core::{
    Capabilities, Error, ExecOutput, ExecProcess, ExecRequest, Feature, SandboxId, SandboxInfo,
    SandboxProvider, SandboxProviderExt, SandboxSpec,
};

use crate::suite::Suite;

/// The tag key carrying the id of a conformance run, on every sandbox the suite creates.
pub const TAG_RUN: &str = "conformance-run";
/// The tag key carrying the name of the case that created a sandbox.
pub const TAG_CASE: &str = "conformance-case";

/// What a case needs from a provider's capabilities to run.
#[derive(Clone, Copy)]
pub enum Need {
    /// Runs on every provider.
    Nothing,
    /// Runs when the provider offers the feature.
    Has(Feature),
    /// The negative twin: runs when the provider lacks the feature, which it declares.
    Lacks(Feature),
    /// Runs when every one of these is offered.
    All(&'static [Feature]),
    /// A need that is not one feature (a maximum, a GPU kind the provider lacks, ...).
    Custom {
        /// Whether capabilities meet the need.
        check: fn(&Capabilities) -> bool,
        /// Why the case is skipped when `check` says no, e.g. "needs a `max_cpu`".
        reason: &'static str,
    },
}

impl Need {
    /// Runs on every provider.
    pub const NOTHING: Need = Need::Nothing;

    /// Whether `capabilities` meet the need.
    pub fn met_by(&self, capabilities: &Capabilities) -> bool {
        match self {
            Need::Nothing => true,
            Need::Has(feature) => feature.offered_by(capabilities),
            Need::Lacks(feature) => !feature.offered_by(capabilities),
            Need::All(features) => features.iter().all(|f| f.offered_by(capabilities)),
            Need::Custom { check, .. } => check(capabilities),
        }
    }

    /// Why a case with this need is skipped on a provider that does not meet it.
    pub fn reason(&self) -> String {
        let rules = |features: &[Feature]| {
            features
                .iter()
                .map(|f| format!("`{}`", f.rule()))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        match self {
            Need::Nothing => String::new(),
            Need::Has(feature) => format!("needs {}", rules(&[*feature])),
            Need::Lacks(feature) => format!(
                "negative twin: runs only when the provider lacks {}, which it declares",
                rules(&[*feature])
            ),
            Need::All(features) => format!("needs {}", rules(features)),
            Need::Custom { reason, .. } => (*reason).to_owned(),
        }
    }
}

impl fmt::Debug for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Need").field(&self.reason()).finish()
    }
}

pub(crate) type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One behaviour every provider shares (or, for a negative twin, the `Unsupported` answer
/// of a provider that lacks a capability).
pub struct Case {
    /// A stable snake_case name, e.g. `exec_timeout_kills_process_tree`.
    pub name: &'static str,
    /// The behaviour checked, in one sentence.
    pub summary: &'static str,
    /// What the provider must declare for the case to run.
    pub needs: Need,
    pub(crate) run: fn(Cx) -> CaseFuture,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

/// Returned (as an error) by a check that finds at run time that it cannot prove anything
/// here; the case is reported as skipped with this reason.
#[derive(Debug)]
pub(crate) struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// Ends a check as skipped, with the reason.
pub(crate) fn skip(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Skip(reason.into()))
}

/// A sandbox a case created, with the provider (layer stack) that created it.
type Created = (Arc<dyn SandboxProvider>, SandboxId);

/// The context of one case: the provider, the base spec, and a record of every sandbox
/// and snapshot the case created, so they are removed whatever happens to the case.
#[derive(Clone)]
pub(crate) struct Cx {
    suite: Arc<Suite>,
    case: &'static str,
    created: Arc<Mutex<Vec<Created>>>,
    snapshots: Arc<Mutex<Vec<String>>>,
}

impl Cx {
    pub(crate) fn new(suite: Arc<Suite>, case: &'static str) -> Self {
        Self {
            suite,
            case,
            created: Arc::default(),
            snapshots: Arc::default(),
        }
    }

    /// The provider, in the standard layers.
    pub(crate) fn provider(&self) -> &Arc<dyn SandboxProvider> {
        &self.suite.provider
    }

    /// The provider with no layers.
    pub(crate) fn bare(&self) -> &Arc<dyn SandboxProvider> {
        &self.suite.bare
    }

    pub(crate) fn suite(&self) -> &Suite {
        &self.suite
    }

    /// The name of the case this context runs.
    pub(crate) fn name(&self) -> &'static str {
        self.case
    }

    pub(crate) fn caps(&self) -> &Capabilities {
        self.suite.provider.capabilities()
    }

    /// The base spec with the run's and the case's tags, and a bounded lifetime so even a
    /// sandbox whose termination failed ends on its own.
    pub(crate) fn spec(&self) -> SandboxSpec {
        let mut spec = self.suite.options.base_spec.clone();
        if self.caps().tags {
            spec.tags.insert(TAG_RUN.into(), self.suite.run_id.clone());
            spec.tags.insert(TAG_CASE.into(), self.case.into());
        }
        if spec.lifetime_secs.is_none() {
            let cap = self.caps().max_lifetime_secs.unwrap_or(u64::MAX);
            spec.lifetime_secs = Some(crate::suite::DEFAULT_LIFETIME_SECS.min(cap));
        }
        spec
    }

    /// Creates a sandbox through the layered provider and records it for termination.
    pub(crate) async fn create(&self, spec: &SandboxSpec) -> anyhow::Result<SandboxInfo> {
        let provider = Arc::clone(self.provider());
        self.create_with(&provider, spec).await
    }

    /// Creates a sandbox through `provider` and records it for termination.
    pub(crate) async fn create_with(
        &self,
        provider: &Arc<dyn SandboxProvider>,
        spec: &SandboxSpec,
    ) -> anyhow::Result<SandboxInfo> {
        let info = provider
            .create(spec)
            .await
            .map_err(|error| anyhow::anyhow!("create failed: {error}"))?;
        self.track(provider, &info.id);
        Ok(info)
    }

    /// Records a sandbox created some other way, for termination at the end of the case.
    pub(crate) fn track(&self, provider: &Arc<dyn SandboxProvider>, id: &SandboxId) {
        self.created
            .lock()
            .expect("tracking lock")
            .push((Arc::clone(provider), id.clone()));
    }

    /// Creates a sandbox from [`Cx::spec`].
    pub(crate) async fn sandbox(&self) -> anyhow::Result<SandboxId> {
        Ok(self.create(&self.spec()).await?.id)
    }

    /// The id of a sandbox that was created and then terminated.
    pub(crate) async fn terminated_sandbox(&self) -> anyhow::Result<SandboxId> {
        let id = self.sandbox().await?;
        self.provider()
            .terminate(&id)
            .await
            .map_err(|e| anyhow::anyhow!("terminate: {e}"))?;
        Ok(id)
    }

    /// Records a snapshot for deletion at the end of the case.
    pub(crate) fn track_snapshot(&self, snapshot_id: &str) {
        self.snapshots
            .lock()
            .expect("tracking lock")
            .push(snapshot_id.to_owned());
    }

    /// Runs a request to completion.
    pub(crate) async fn run(
        &self,
        id: &SandboxId,
        request: ExecRequest,
    ) -> anyhow::Result<ExecOutput> {
        let argv = describe_argv(&request.argv);
        self.provider()
            .run(id, request)
            .await
            .map_err(|error| anyhow::anyhow!("exec {argv} failed: {error}"))
    }

    /// Runs `sh -c script`, requires exit 0 and returns standard output as text.
    pub(crate) async fn sh(&self, id: &SandboxId, script: &str) -> anyhow::Result<String> {
        let output = self.run(id, ExecRequest::new(["sh", "-c", script])).await?;
        expect_success(&output, script)?;
        Ok(output.stdout_lossy())
    }

    /// Starts a command without waiting for it.
    pub(crate) async fn start(
        &self,
        id: &SandboxId,
        request: ExecRequest,
    ) -> anyhow::Result<ExecProcess> {
        let argv = describe_argv(&request.argv);
        self.provider()
            .exec(id, request)
            .await
            .map_err(|error| anyhow::anyhow!("exec {argv} failed to start: {error}"))
    }

    /// Terminates every sandbox and deletes every snapshot the case created. Returns what
    /// could not be cleaned up.
    pub(crate) async fn cleanup(&self) -> Result<(), String> {
        let created = std::mem::take(&mut *self.created.lock().expect("tracking lock"));
        let snapshots = std::mem::take(&mut *self.snapshots.lock().expect("tracking lock"));
        let mut problems = Vec::new();
        for (provider, id) in created {
            match tokio::time::timeout(CLEANUP_TIMEOUT, provider.terminate(&id)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => problems.push(format!("terminate {id}: {error}")),
                Err(_) => problems.push(format!(
                    "terminate {id}: no answer within {CLEANUP_TIMEOUT:?}"
                )),
            }
        }
        for snapshot in snapshots {
            match tokio::time::timeout(CLEANUP_TIMEOUT, self.provider().delete_snapshot(&snapshot))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => problems.push(format!("delete snapshot {snapshot}: {error}")),
                Err(_) => problems.push(format!(
                    "delete snapshot {snapshot}: no answer within {CLEANUP_TIMEOUT:?}"
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `argv` for messages, shortened so a 60 KiB argument does not flood a report.
pub(crate) fn describe_argv(argv: &[String]) -> String {
    let joined = format!("{argv:?}");
    shorten(&joined, 160)
}

/// At most `max` characters of `text`, marking the cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}… ({} bytes)", text.len())
    }
}

/// Bytes for messages: lossy text, shortened.
pub(crate) fn show(bytes: &[u8]) -> String {
    shorten(&format!("{:?}", String::from_utf8_lossy(bytes)), 200)
}

/// Fails unless the command exited 0, showing its output.
pub(crate) fn expect_success(output: &ExecOutput, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        output.status.success(),
        "`{}` exited with {}; stdout {}, stderr {}",
        shorten(what, 160),
        output.status,
        show(&output.stdout),
        show(&output.stderr)
    );
    Ok(())
}

/// Fails unless `result` is an error that `wanted` accepts; returns the error.
pub(crate) fn expect_error<T>(
    result: sandkit_core::Result<T>,
    expected: &str,
    wanted: impl Fn(&Error) -> bool,
) -> anyhow::Result<Error> {
    match result {
        Ok(_) => anyhow::bail!("expected {expected}, but the call succeeded"),
        Err(error) if wanted(&error) => Ok(error),
        Err(error) => anyhow::bail!("expected {expected}, got {} error: {error}", error.kind()),
    }
}

/// Fails unless `result` is [`Error::Unsupported`].
pub(crate) fn expect_unsupported<T>(
    result: sandkit_core::Result<T>,
    what: &str,
) -> anyhow::Result<()> {
    expect_error(result, &format!("Unsupported for {what}"), |e| {
        matches!(e, Error::Unsupported { .. })
    })?;
    Ok(())
}

/// Fails unless `result` is [`Error::NotFound`].
pub(crate) fn expect_not_found<T>(
    result: sandkit_core::Result<T>,
    what: &str,
) -> anyhow::Result<()> {
    expect_error(result, &format!("NotFound for {what}"), |e| {
        matches!(e, Error::NotFound { .. })
    })?;
    Ok(())
}

/// What a streamed command produced, counted rather than kept.
pub(crate) struct Drained {
    pub stdout: Bytes,
    pub stderr: Bytes,
    pub result: sandkit_core::Result<sandkit_core::ExitStatus>,
}

/// Reads both streams to their end (keeping at most `keep` bytes of each) and waits.
pub(crate) async fn drain(mut process: ExecProcess, keep: usize) -> anyhow::Result<Drained> {
    async fn read(stream: &mut sandkit_core::ByteStream, keep: usize) -> anyhow::Result<Bytes> {
        let mut kept = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| anyhow::anyhow!("reading output: {error}"))?;
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(Bytes::from(kept))
    }
    drop(process.stdin.take());
    let (stdout, stderr) = tokio::join!(
        read(&mut process.stdout, keep),
        read(&mut process.stderr, keep)
    );
    let result = process.wait().await;
    Ok(Drained {
        stdout: stdout?,
        stderr: stderr?,
        result,
    })
}

/// Reads standard output until `marker` has appeared (the command is then running its
/// script, handlers installed) and returns what was read.
pub(crate) async fn read_until(process: &mut ExecProcess, marker: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let mut seen = Vec::new();
    let read = async {
        while let Some(chunk) = process.stdout.next().await {
            seen.extend_from_slice(&chunk.context("reading output")?);
            if String::from_utf8_lossy(&seen).contains(marker) {
                return Ok(());
            }
        }
        anyhow::bail!("the output ended before `{marker}`: {}", show(&seen))
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .with_context(|| format!("no `{marker}` within 60 s"))??;
    Ok(seen)
}
