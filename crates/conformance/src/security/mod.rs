//! The outside referee for the sandbox boundary: real attacks, replayed with bounded loops,
//! against the public provider API only.
//!
//! Every attack checks that nothing outside the sandbox was read or written, using decoy
//! files on the host checked by content (a fresh random token per attack):
//!
//! - **symlink-swap races** against `write_file`, `read_file`, `download_archive` and
//!   `upload_archive`: inside the sandbox a loop swaps a directory `d` with a symlink
//!   `d -> <host decoy dir>` (`renameat2(RENAME_EXCHANGE)` through `python3` and ctypes
//!   when the sandbox has python3, else an `mv`/`ln -s` shell loop, which races less
//!   well), while the host calls the file API on `d/...` a few hundred times;
//! - **path escapes** (`..`, absolute paths, absolute and relative symlinks) for every file
//!   operation and for an exec `cwd`; paths with NUL bytes or longer than `PATH_MAX` must be
//!   typed errors naming the path;
//! - **path-shaped sandbox ids** (`../../etc`, `/etc/passwd`, empty, very long, with NUL,
//!   aliases of a real sandbox): `NotFound` everywhere, `Ok` for terminate, nothing touched;
//! - **from inside**: the host's `/etc/shadow`, a TCP listener on the host's `127.0.0.1`
//!   and an abstract Unix socket bound on the host must all be out of reach;
//! - **special files**: a FIFO, character devices and a socket are typed file errors, never
//!   a hang; a 1 GiB sparse file copied out does not blow up host memory.
//!
//! Each attack declares what it needs from the provider's
//! [`Capabilities`] (`files`, `batch_transfer`, isolation); an
//! attack that does not apply is reported as ignored with the reason, never silently
//! dropped. Counts (race attempts, swaps made, which swap loop ran) go to standard error.
//!
//! [`security_trials`] builds the trials for one provider; [`security_main`] is the `main`
//! of a `harness = false` test target running them.

mod decoy;
mod escapes;
mod ids;
mod inside;
mod race;
mod special;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion};
use sandkit_core::{Capabilities, Feature, Isolation, Ownership, SandboxProvider, SandboxSpec};

use crate::case::{Case, Need};
use crate::report::Outcome;
use crate::suite::{Options, Suite};

pub(crate) use decoy::Decoy;
/// The libtest-mimic types a security target needs for trials of its own.
pub use libtest_mimic::{Failed, Trial};

/// How to run the security attacks.
#[derive(Debug, Clone)]
pub struct SecurityOptions {
    /// The spec every attack's sandbox starts from (a Docker provider passes its image).
    pub base_spec: SandboxSpec,
    /// Put before every trial name, e.g. `bubblewrap::`, so one test binary can run the
    /// attacks against several provider configurations.
    pub name_prefix: String,
    /// Host directory the decoy directories are made in (default: the system temporary
    /// directory). Must be outside every sandbox.
    pub decoy_parent: PathBuf,
    /// Host directories (such as the provider's state directory) searched, with their
    /// parents, for files that path-shaped sandbox ids must not create.
    pub watch_dirs: Vec<PathBuf>,
    /// Most file-API calls one race makes.
    pub race_attempts: u32,
    /// Longest time one race runs (the in-sandbox swap loop stops a little after).
    pub race_time_limit: Duration,
    /// How long one attack may take, sandbox creation and cleanup included.
    pub attack_timeout: Duration,
    /// Tags every sandbox of this run carries under `conformance-run`.
    pub run_id: String,
    /// Ownership tags given by the standard layers.
    pub ownership: Ownership,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        let conformance = Options::default();
        Self {
            base_spec: SandboxSpec::default(),
            name_prefix: String::new(),
            decoy_parent: std::env::temp_dir(),
            watch_dirs: Vec::new(),
            race_attempts: 600,
            race_time_limit: Duration::from_secs(30),
            attack_timeout: Duration::from_secs(240),
            run_id: conformance.run_id,
            ownership: conformance.ownership,
        }
    }
}

macro_rules! attack {
    ($module:ident :: $name:ident, $needs:expr, $summary:expr $(,)?) => {
        Case {
            name: stringify!($name),
            summary: $summary,
            needs: $needs,
            run: |cx| Box::pin($module::$name(cx)),
        }
    };
}

const FILES: Need = Need::Has(Feature::Files);
const BATCH: Need = Need::Has(Feature::BatchTransfer);
const ISOLATED: Need = Need::Custom {
    check: isolated,
    reason: "no isolation",
};

fn isolated(capabilities: &Capabilities) -> bool {
    capabilities.isolation != Isolation::None
}

/// Every attack, in report order.
static ATTACKS: &[Case] = &[
    attack!(
        race::race_write_file,
        FILES,
        "write_file on d/... while d swaps with a symlink to a host directory writes nothing there"
    ),
    attack!(
        race::race_read_file,
        FILES,
        "read_file of d/f while d swaps with a symlink to a host directory never returns host content"
    ),
    attack!(
        race::race_download_archive,
        BATCH,
        "download_archive of d while d swaps with a symlink to a host directory never archives host files"
    ),
    attack!(
        race::race_upload_archive,
        BATCH,
        "upload_archive into d while d swaps with a symlink to a host directory writes nothing there"
    ),
    attack!(
        escapes::escape_read_file,
        FILES,
        "read_file through .., absolute paths and symlinks never returns host content"
    ),
    attack!(
        escapes::escape_write_file,
        FILES,
        "write_file through .., absolute paths and symlinks never writes on the host"
    ),
    attack!(
        escapes::escape_stat,
        FILES,
        "stat through .., absolute paths and symlinks never describes a host file"
    ),
    attack!(
        escapes::escape_list_dir,
        FILES,
        "list_dir through .., absolute paths and symlinks never lists a host directory"
    ),
    attack!(
        escapes::escape_make_dir,
        FILES,
        "make_dir through .., absolute paths and symlinks never creates on the host"
    ),
    attack!(
        escapes::escape_remove,
        FILES,
        "remove through .., absolute paths and symlinks never deletes on the host"
    ),
    attack!(
        escapes::escape_download_archive,
        BATCH,
        "download_archive through .., absolute paths and symlinks never archives host files"
    ),
    attack!(
        escapes::escape_upload_archive,
        BATCH,
        "upload_archive through .., absolute paths and symlinks never writes on the host"
    ),
    attack!(
        escapes::escape_exec_cwd,
        ISOLATED,
        "an exec cwd through .., an absolute path or a symlink never runs in a host directory"
    ),
    attack!(
        escapes::malformed_paths_are_typed_errors,
        FILES,
        "paths with NUL bytes or longer than PATH_MAX are FileOperation/InvalidSpec errors naming the path"
    ),
    attack!(
        ids::path_shaped_ids_not_found,
        Need::NOTHING,
        "ids shaped like paths are NotFound for every operation, Ok for terminate, and touch nothing"
    ),
    attack!(
        inside::host_shadow_unreadable,
        ISOLATED,
        "`cat /etc/shadow` inside (and as root: the host's TLS keys) does not return the host's"
    ),
    attack!(
        inside::host_loopback_unreachable,
        ISOLATED,
        "a TCP listener on the host's 127.0.0.1 cannot be reached from inside"
    ),
    attack!(
        inside::host_abstract_socket_unreachable,
        ISOLATED,
        "an abstract Unix socket bound on the host cannot be reached from inside"
    ),
    attack!(
        special::special_fifo,
        FILES,
        "read_file and download_archive of a FIFO are FileOperation errors within 10 s, never a hang"
    ),
    attack!(
        special::special_char_device,
        FILES,
        "read_file of a character device is a FileOperation error within 10 s"
    ),
    attack!(
        special::special_socket,
        FILES,
        "read_file of a Unix socket is a FileOperation error within 10 s"
    ),
    attack!(
        special::sparse_1gib_copy_out,
        BATCH,
        "copying out a 1 GiB sparse file is bounded in host memory or a typed refusal"
    ),
];

/// Every attack, in report order (name, summary and what it needs).
pub fn attacks() -> &'static [Case] {
    ATTACKS
}

/// The attacks as libtest-mimic trials for `provider`, named `options.name_prefix` + the
/// attack's name.
///
/// Call it inside the tokio runtime (multi-thread) the provider was built in: the trials
/// run on that runtime. Pass the bare provider; it is wrapped in the standard layers once,
/// as [`crate::run`] does, and attacks call the bare provider so a layer cannot hide what
/// the provider itself does. An attack the provider cannot run is an ignored trial with
/// the reason.
pub fn security_trials(provider: Arc<dyn SandboxProvider>, options: SecurityOptions) -> Vec<Trial> {
    let prefix = options.name_prefix.clone();
    let handle = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle,
        Err(error) => {
            let message = format!("security_trials must be called inside a tokio runtime: {error}");
            return vec![Trial::test(format!("{prefix}setup"), move || {
                Err(Failed::from(message))
            })];
        }
    };
    let conformance = Options {
        base_spec: options.base_spec.clone(),
        case_timeout: options.attack_timeout,
        run_id: options.run_id.clone(),
        ownership: options.ownership.clone(),
        ..Options::default()
    };
    let suite = {
        let _entered = handle.enter();
        Suite::with_security(provider, conformance, Arc::new(options))
    };
    ATTACKS
        .iter()
        .map(|attack| {
            let suite = Arc::clone(&suite);
            let handle = handle.clone();
            Trial::ignorable_test(format!("{prefix}{}", attack.name), move || {
                let result = handle.block_on(suite.run_case(attack));
                match result.outcome {
                    Outcome::Passed => Ok(Completion::Completed),
                    Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
                    Outcome::Failed { message } => Err(Failed::from(message)),
                }
            })
        })
        .collect()
}

/// The `main` of a `harness = false` security test target: builds a tokio multi-thread
/// runtime, calls `build` inside it for the trials (from [`security_trials`], plus any
/// provider-specific ones), runs them with libtest's arguments and exits with the result.
/// A run that executes no trial fails, unless a filter selected none.
pub fn security_main<F, Fut>(build: F) -> !
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Trial>>>,
{
    let args = Arguments::from_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("security: cannot start a tokio runtime: {error}");
            std::process::exit(1);
        }
    };
    let trials = match runtime.block_on(build()) {
        Ok(trials) => trials,
        Err(error) => {
            eprintln!("security: cannot build the trials: {error:#}");
            std::process::exit(1);
        }
    };
    let total = trials.len();
    let conclusion = libtest_mimic::run(&args, trials);
    if args.list {
        std::process::exit(0);
    }
    let executed = conclusion.num_passed + conclusion.num_failed;
    let nothing_selected = total > 0 && conclusion.num_filtered_out as usize == total;
    if executed == 0 && !nothing_selected {
        eprintln!(
            "security: no attack was executed ({} ignored), so nothing was proven; failing the run",
            conclusion.num_ignored
        );
        std::process::exit(1);
    }
    // Exits without dropping the runtime: a provider thread stuck on a special file must
    // not keep the process alive.
    conclusion.exit()
}

/// A line of counts on standard error, so a run shows what each attack did.
pub(crate) fn note(cx: &crate::case::Cx, message: impl std::fmt::Display) {
    eprintln!(
        "security: {}{} [{}]: {message}",
        cx.suite().security.name_prefix,
        cx.name(),
        cx.provider().name()
    );
}

/// Whether the sandbox can run `program` (found on its `PATH`).
pub(crate) async fn has_program(
    cx: &crate::case::Cx,
    id: &sandkit_core::SandboxId,
    program: &str,
) -> bool {
    let script = format!("command -v {program} >/dev/null 2>&1");
    cx.run(id, sandkit_core::ExecRequest::new(["sh", "-c", &script]))
        .await
        .is_ok_and(|output| output.status.success())
}

/// A tar archive of one regular file.
pub(crate) fn one_file_tar(name: &str, contents: &[u8]) -> anyhow::Result<bytes::Bytes> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(contents.len() as u64);
    builder.append_data(&mut header, name, contents)?;
    Ok(bytes::Bytes::from(builder.into_inner()?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn attacks_are_uniquely_named_and_say_why_they_skip() {
        let names: BTreeSet<_> = attacks().iter().map(|a| a.name).collect();
        assert_eq!(names.len(), attacks().len(), "duplicate attack names");
        for attack in attacks() {
            if !attack.needs.met_by(&Capabilities::default()) {
                assert!(
                    !attack.needs.reason().is_empty(),
                    "{} has no reason",
                    attack.name
                );
            }
        }
    }

    #[test]
    fn without_isolation_the_inside_attacks_skip_saying_so() {
        let plain = Capabilities {
            files: true,
            batch_transfer: true,
            ..Capabilities::default()
        };
        let skipped: Vec<_> = attacks()
            .iter()
            .filter(|a| !a.needs.met_by(&plain))
            .map(|a| (a.name, a.needs.reason()))
            .collect();
        assert!(
            skipped
                .iter()
                .any(|(name, _)| *name == "host_shadow_unreadable"),
            "{skipped:?}"
        );
        assert!(
            skipped
                .iter()
                .all(|(_, reason)| reason.starts_with("no isolation"))
        );
    }
}
