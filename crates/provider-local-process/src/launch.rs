//! Starting processes in a sandbox: the environment, the bubblewrap (or plain) command
//! line, the entrypoint wrapper and the lifetime supervisor.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use sandkit_core::{Error, Result};
use tokio::process::Command;

use crate::error::internal;
use crate::process::Group;
use crate::state::{EXIT_FILE, GROUPS_FILE, Record};

/// `PATH` inside a sandbox unless the spec or request sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host directories a bubblewrap sandbox sees read-only (when they exist); on merged-/usr
/// systems the top-level ones are symlinks and are recreated as such.
const READ_ONLY_DIRS: [&str; 8] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
];

/// The `bwrap` binary, when it is on `PATH` and can build a sandbox here.
pub(crate) fn bubblewrap() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let bwrap = find_on_path(
                "bwrap",
                std::env::var("PATH").as_deref().unwrap_or(DEFAULT_PATH),
            )?;
            // Namespaces can be forbidden (nested containers, sysctls): try one.
            let works = std::process::Command::new(&bwrap)
                .args([
                    "--unshare-all",
                    "--ro-bind",
                    "/",
                    "/",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--",
                    "true",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            works.then_some(bwrap)
        })
        .as_deref()
}

fn find_on_path(program: &str, path: &str) -> Option<PathBuf> {
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Where things live for one sandbox.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `<state_dir>/sandboxes/<id>`.
    pub dir: PathBuf,
    /// Its `root/`.
    pub root: PathBuf,
    /// Its `tmp/`.
    pub tmp: PathBuf,
}

impl Layout {
    /// The layout of the sandbox in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            root: dir.join("root"),
            tmp: dir.join("tmp"),
            dir,
        }
    }
}

/// The environment of a process: a small clean base, then the spec's variables and
/// secrets, then the request's, and `SANDKIT_SANDBOX_ID`.
pub(crate) fn environment(
    record: &Record,
    layout: &Layout,
    secrets: BTreeMap<String, String>,
    request: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let tmp = if record.bubblewrap {
        "/tmp".to_owned()
    } else {
        layout.tmp.display().to_string()
    };
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), record.workdir.display().to_string()),
        ("TMPDIR".to_owned(), tmp),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ]);
    env.extend(record.env.clone());
    env.extend(secrets);
    env.extend(request.clone());
    // Set last: terminate and the supervisor find stray processes by it.
    env.insert("SANDKIT_SANDBOX_ID".to_owned(), record.id.clone());
    env
}

/// Where a path the sandbox sees lives on the host, or `None` when the sandbox cannot
/// see it at all.
fn host_path(record: &Record, layout: &Layout, seen: &Path) -> Option<PathBuf> {
    if !record.bubblewrap || seen.starts_with(&layout.root) {
        return Some(seen.to_path_buf());
    }
    if let Ok(rest) = seen.strip_prefix("/tmp") {
        return Some(layout.tmp.join(rest));
    }
    let visible = READ_ONLY_DIRS
        .iter()
        .chain(&["/proc", "/dev"])
        .any(|dir| seen.starts_with(dir));
    visible.then(|| seen.to_path_buf())
}

/// Checks that `program` names an executable the sandbox can start, as `execvp` would
/// look it up, so a missing or non-executable program is a clear error rather than a
/// message from bubblewrap.
pub(crate) fn check_program(
    record: &Record,
    layout: &Layout,
    program: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<()> {
    let failed = |reason: &str| Error::ExecFailed {
        program: program.to_owned(),
        reason: reason.to_owned(),
    };
    let check = |seen: PathBuf| -> std::result::Result<(), &'static str> {
        let host = host_path(record, layout, &seen).ok_or("no such file or directory")?;
        let meta = std::fs::metadata(&host).map_err(|_| "no such file or directory")?;
        if meta.is_dir() {
            Err("is a directory")
        } else if meta.permissions().mode() & 0o111 == 0 {
            Err("permission denied: not executable")
        } else {
            Ok(())
        }
    };
    if program.contains('/') {
        return check(cwd.join(program)).map_err(failed);
    }
    let path = env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
    let mut first_problem = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(dir)
        };
        match check(dir.join(program)) {
            Ok(()) => return Ok(()),
            Err("no such file or directory") => {}
            Err(problem) => {
                first_problem.get_or_insert(problem);
            }
        }
    }
    Err(failed(first_problem.unwrap_or("not found in PATH")))
}

/// The command line that runs `argv` in the sandbox: bubblewrap's arguments followed by
/// `argv`, or `argv` alone.
pub(crate) fn command_line(
    record: &Record,
    layout: &Layout,
    bwrap: Option<&Path>,
    argv: &[String],
    cwd: &Path,
    die_with_parent: bool,
) -> Vec<String> {
    let Some(bwrap) = bwrap.filter(|_| record.bubblewrap) else {
        return argv.to_vec();
    };
    let mut line: Vec<String> = vec![bwrap.display().to_string(), "--unshare-all".into()];
    if !record.network_blocked {
        line.push("--share-net".into());
    }
    if die_with_parent {
        line.push("--die-with-parent".into());
    }
    line.extend(["--new-session", "--cap-drop", "ALL"].map(String::from));
    for dir in READ_ONLY_DIRS {
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(dir) {
                line.extend(["--symlink".into(), target.display().to_string(), dir.into()]);
            }
        } else if meta.is_dir() {
            line.extend(["--ro-bind".into(), dir.into(), dir.into()]);
        }
    }
    let root = layout.root.display().to_string();
    line.extend(["--proc", "/proc", "--dev", "/dev", "--bind"].map(String::from));
    line.extend([layout.tmp.display().to_string(), "/tmp".into()]);
    line.extend(["--bind".into(), root.clone(), root]);
    line.extend(["--chdir".into(), cwd.display().to_string(), "--".into()]);
    line.extend(argv.iter().cloned());
    line
}

/// A command for `line` with a clean environment, in its own process group.
pub(crate) fn command(line: &[String], cwd: &Path, env: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new(&line[0]);
    command
        .args(&line[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .process_group(0)
        .kill_on_drop(false);
    command
}

/// Starts the entrypoint in the background. A small shell wrapper records its exit code
/// so the sandbox ends when its main process does, even if nobody is watching.
pub(crate) fn spawn_entrypoint(
    line: &[String],
    layout: &Layout,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Group> {
    let log = std::fs::File::create(layout.dir.join("entrypoint.log"))
        .map_err(|e| internal("creating the entrypoint log", e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| internal("creating the entrypoint log", e))?;
    let mut wrapped = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        r#"exit_file=$1; shift; "$@"; code=$?; echo "$code" > "$exit_file.tmp" && mv "$exit_file.tmp" "$exit_file""#
            .to_owned(),
        "sandkit-entrypoint".to_owned(),
        layout.dir.join(EXIT_FILE).display().to_string(),
    ];
    wrapped.extend(line.iter().cloned());
    let child = command(&wrapped, cwd, env)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| internal("starting the entrypoint", e))?;
    // Not waited on: tokio reaps it in the background when it ends.
    let pid = child
        .id()
        .ok_or_else(|| internal("starting the entrypoint", std::io::ErrorKind::Other.into()))?;
    Ok(Group::of_leader(pid as i32))
}

/// The lifetime supervisor: sleeps until the sandbox expires, then (holding the state
/// lock, when `flock` is installed) moves the sandbox out of sight, kills every recorded
/// process group and their descendants, and removes the directory. It runs detached
/// from the creating process, so the lifetime holds even if that process is killed.
///
/// It wakes every few seconds to remember the recorded groups: when the directory
/// vanishes early (terminated, or the state directory was deleted), it kills the groups
/// it last saw, so processes never outlive their directory, and exits. Processes that
/// left their group and lost their parent are found by the `SANDKIT_SANDBOX_ID`
/// variable every sandbox process starts with.
const SUPERVISOR: &str = r#"
dir=$1 state=$2 id=$3 expires=$4 trash=""
known=""
vanished=""
while :; do
  if [ -f "$dir/GROUPS_FILE" ]; then
    known=$(cat "$dir/GROUPS_FILE" 2>/dev/null) || known=""
  elif [ ! -d "$dir" ]; then
    vanished=1
    break
  fi
  now=$(date +%s) || exit 1
  [ "$now" -ge "$expires" ] && break
  left=$((expires - now))
  [ "$left" -gt 5 ] && left=5
  sleep "$left"
done
if [ -z "$vanished" ]; then
  trash="$state/trash/$id-expired-$$"
  if command -v flock >/dev/null 2>&1; then
    exec 9>>"$state/lock"
    flock 9
  fi
  if mv "$dir" "$trash" 2>/dev/null; then
    known=$(cat "$trash/GROUPS_FILE" 2>/dev/null)
  else
    trash=""
  fi
  exec 9>&-
fi
start_time() {
  read -r stat < "/proc/$1/stat" 2>/dev/null || return 0
  set -- ${stat##*) }
  shift 19
  echo "$1"
}
groups=" "
while read -r pgid start; do
  [ -n "$pgid" ] || continue
  now_start=$(start_time "$pgid")
  if [ -z "$now_start" ] || [ "$now_start" = "$start" ]; then groups="$groups$pgid "; fi
done <<EOF_GROUPS
$known
EOF_GROUPS
tree() {
  found=" "
  changed=1
  while [ "$changed" = 1 ]; do
    changed=0
    for f in /proc/[0-9]*/stat; do
      read -r stat < "$f" 2>/dev/null || continue
      pid=${f#/proc/}; pid=${pid%/stat}
      case "$found" in *" $pid "*) continue ;; esac
      set -- ${stat##*) }
      [ "$1" = Z ] && continue
      case "$groups" in *" $3 "*) found="$found$pid "; changed=1; continue ;; esac
      case "$found" in *" $2 "*) found="$found$pid "; changed=1 ;; esac
    done
  done
  echo $found
}
marked() {
  for e in /proc/[0-9]*/environ; do
    tr '\0' '\n' < "$e" 2>/dev/null | grep -qxF "SANDKIT_SANDBOX_ID=$id" || continue
    p=${e#/proc/}
    echo "${p%/environ}"
  done
}
for round in 1 2 3 4 5 6 7 8 9 10; do
  pids="$(tree) $(marked)"
  for g in $groups; do kill -9 -"$g" 2>/dev/null; done
  [ -z "${pids# }" ] && break
  kill -9 $pids 2>/dev/null
  sleep 0.2
done
[ -n "$trash" ] && rm -rf "$trash"
exit 0
"#;

/// Starts the supervisor of a sandbox expiring at `expires_at_unix_secs`.
pub(crate) fn spawn_supervisor(
    state_dir: &Path,
    layout: &Layout,
    id: &str,
    expires_at_unix_secs: u64,
) -> Result<Group> {
    let script = SUPERVISOR.replace("GROUPS_FILE", GROUPS_FILE);
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sandkit-supervisor")
        .arg(&layout.dir)
        .arg(state_dir)
        .arg(id)
        .arg(expires_at_unix_secs.to_string())
        .current_dir("/")
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| internal("starting the lifetime supervisor", e))?;
    let pid = child.id().ok_or_else(|| {
        internal(
            "starting the lifetime supervisor",
            std::io::ErrorKind::Other.into(),
        )
    })?;
    Ok(Group::of_leader(pid as i32))
}
