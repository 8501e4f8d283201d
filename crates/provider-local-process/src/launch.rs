//! Starting a sandbox: its layout on disk, its generated `/etc`, the bubblewrap command
//! line, its network, and the detached supervisor that runs the agent (the sandbox's
//! init) and removes the sandbox once it has ended.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sandkit_core::{Error, Result};

use crate::error::internal;
use crate::process::{self, Proc};
use crate::state::{AGENT_OUT_FILE, Isolated, Record};

/// `PATH` inside a sandbox unless the spec or request sets one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a bubblewrap sandbox sees the agent.
const AGENT_IN_SANDBOX: &str = "/.sandkit/agent";

/// Where a bubblewrap sandbox's agent sees the sandbox's marker file.
const MARKER_IN_SANDBOX: &str = "/.sandkit/alive";

/// The working directory of a sandbox whose spec names none.
pub(crate) const DEFAULT_WORKDIR: &str = "/workspace";

/// Host directories a sandbox without an image sees read-only (when they exist); on
/// merged-/usr systems the top-level ones are symlinks and are recreated as such.
const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Writable directories of a sandbox without an image, kept in its layer.
const WRITABLE_DIRS: [&str; 5] = ["/tmp", "/root", "/home", "/run", DEFAULT_WORKDIR];

/// Host `/etc` entries a sandbox may see (read-only): what programs need to run (shared
/// library configuration, certificates, the `alternatives` symlinks, time zones, the
/// defaults and PAM rules `adduser` follows), never accounts, keys (`ssl/private`) or
/// the host's own configuration.
const HOST_ETC: [&str; 24] = [
    "alternatives",
    "ca-certificates",
    "ssl/certs",
    "ssl/openssl.cnf",
    "login.defs",
    "adduser.conf",
    "deluser.conf",
    "skel",
    "default/useradd",
    "pam.d",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "inputrc",
    "bash.bashrc",
    "profile",
    "debian_version",
    "gai.conf",
    "terminfo",
];

/// Looks for an executable: `configured` when given (as a path), else on `PATH`.
fn find_program(name: &str, configured: Option<&Path>) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match configured {
        Some(path) => vec![path.to_path_buf()],
        None => std::env::var("PATH")
            .as_deref()
            .unwrap_or(DEFAULT_PATH)
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(dir).join(name))
            .collect(),
    };
    candidates.into_iter().find_map(|candidate| {
        let meta = std::fs::metadata(&candidate).ok()?;
        let executable = meta.is_file() && meta.permissions().mode() & 0o111 != 0;
        // Absolute, but not resolved: `pasta` is a symlink to `passt`, which behaves by
        // the name it is started under.
        executable.then(|| std::path::absolute(&candidate).unwrap_or(candidate))
    })
}

/// The `bwrap` to use (absolute), when it exists and can build a sandbox here.
pub(crate) fn bubblewrap(configured: Option<&Path>) -> Option<PathBuf> {
    static ON_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    let check = |bwrap: PathBuf| {
        // Namespaces can be forbidden (nested containers, sysctls): try one.
        let works = Command::new(&bwrap)
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
    };
    match configured {
        Some(path) => find_program("bwrap", Some(path)).and_then(check),
        None => ON_PATH
            .get_or_init(|| find_program("bwrap", None).and_then(check))
            .clone(),
    }
}

/// `pasta` (Debian's `passt`), the user-mode network stack for outbound traffic.
pub(crate) fn pasta(configured: Option<&Path>) -> Option<PathBuf> {
    static ON_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    match configured {
        Some(path) => find_program("pasta", Some(path)),
        None => ON_PATH.get_or_init(|| find_program("pasta", None)).clone(),
    }
}

/// Where things live for one sandbox.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `<state_dir>/sandboxes/<id>`.
    pub dir: PathBuf,
    /// Its writable files.
    pub layer: PathBuf,
    /// Its generated `/etc`.
    pub etc: PathBuf,
    /// The mount point of an image sandbox's root (the overlay of image and layer).
    pub rootfs: PathBuf,
    /// Overlayfs' work directory.
    pub overlay_work: PathBuf,
    /// The agent's socket.
    pub socket: PathBuf,
    /// A file that exists as long as the directory does: the agent ends the sandbox
    /// once it is unlinked.
    pub marker: PathBuf,
}

impl Layout {
    /// The layout of the sandbox in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            layer: dir.join("layer"),
            etc: dir.join("etc"),
            rootfs: dir.join("rootfs"),
            overlay_work: dir.join("overlay-work"),
            socket: dir.join("agent.sock"),
            marker: dir.join("alive"),
            dir,
        }
    }

    /// The sandbox's agent, at its socket.
    pub fn agent(&self) -> sandkit_agent_host::Agent {
        sandkit_agent_host::Agent::new(crate::NAME, &self.socket)
    }

    /// How the sandbox names the root directory of its files: `/` in bubblewrap, the
    /// host path of its layer without.
    pub fn seen_root(&self, record: &Record) -> PathBuf {
        if record.bubblewrap() {
            PathBuf::from("/")
        } else {
            self.layer.clone()
        }
    }
}

/// The environment of a process: a small clean base, then the image's and spec's
/// variables and secrets, then the request's, and `SANDKIT_SANDBOX_ID`. A command run as
/// a named `user` gets no base `HOME`: the agent sets the user's own.
pub(crate) fn environment(
    record: &Record,
    layout: &Layout,
    secrets: BTreeMap<String, String>,
    request: &BTreeMap<String, String>,
    user: Option<&str>,
) -> BTreeMap<String, String> {
    let (home, tmp) = if record.bubblewrap() {
        ("/root".to_owned(), "/tmp".to_owned())
    } else {
        (
            record.workdir.display().to_string(),
            layout.layer.join("tmp").display().to_string(),
        )
    };
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOME".to_owned(), home),
        ("TMPDIR".to_owned(), tmp),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ]);
    if user.is_some() {
        env.remove("HOME");
    }
    env.extend(record.env.clone());
    env.extend(secrets);
    env.extend(request.clone());
    env.insert("SANDKIT_SANDBOX_ID".to_owned(), record.id.clone());
    env
}

/// Creates the layer's directories and, under bubblewrap without an image, the generated
/// `/etc`.
pub(crate) fn prepare(record: &Record, layout: &Layout) -> Result<()> {
    let create = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("creating {}", dir.display()), e))
    };
    create(&layout.layer)?;
    let tmp = layout.layer.join("tmp");
    create(&tmp)?;
    if !record.bubblewrap() {
        return create(&record.workdir);
    }
    if record.image.is_some() {
        create(&layout.rootfs)?;
        create(&layout.overlay_work)?;
        create(&layout.layer.join(&DEFAULT_WORKDIR[1..]))?;
    } else {
        for dir in WRITABLE_DIRS {
            create(&layout.layer.join(&dir[1..]))?;
        }
    }
    // Any of the sandbox's users may write its `/tmp` (with the sticky bit), as
    // everywhere. (Outside bubblewrap it is a host directory, and stays private.)
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| internal(format!("setting the mode of {}", tmp.display()), e))?;
    // Inside a writable directory, or (outside them) bound on its own.
    create(
        &layout
            .layer
            .join(record.workdir.strip_prefix("/").unwrap_or(&record.workdir)),
    )?;
    create(&layout.etc)?;
    write_etc(record, layout)
}

fn write_etc(record: &Record, layout: &Layout) -> Result<()> {
    let hostname = &record.id;
    let nameservers: String = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("nameserver"))
        // A loopback resolver is the host's, out of the sandbox's reach.
        .filter(|line| !line.contains("127.") && !line.contains("::1"))
        .map(|line| format!("{line}\n"))
        .collect();
    let os_release = std::fs::read_to_string("/usr/lib/os-release").unwrap_or_default();
    let files: [(&str, String); 9] = [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".into(),
        ),
        ("group", "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n".into()),
        // No password anywhere: `*` cannot be matched.
        ("shadow", "root:*:20000:0:99999:7:::\nnobody:*:20000:0:99999:7:::\n".into()),
        ("gshadow", "root:*::\nusers:*::\nnogroup:*::\n".into()),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"),
        ),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", nameservers),
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".into()),
        ("os-release", os_release),
    ];
    for (name, contents) in files {
        let path = layout.etc.join(name);
        let mode = if name.ends_with("shadow") {
            0o600
        } else {
            0o644
        };
        std::fs::write(&path, contents)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| internal(format!("writing {}", path.display()), e))?;
    }
    // Mount points for the host entries bubblewrap binds over them.
    for name in HOST_ETC {
        let host = Path::new("/etc").join(name);
        let Ok(meta) = std::fs::metadata(&host) else {
            continue;
        };
        let point = layout.etc.join(name);
        let made = if meta.is_dir() {
            std::fs::create_dir_all(&point)
        } else {
            point
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&point, b""))
        };
        made.map_err(|e| internal(format!("creating {}", point.display()), e))?;
    }
    Ok(())
}

/// bubblewrap's arguments for a sandbox: namespaces, the filesystem, then the agent.
fn bwrap_args(record: &Record, layout: &Layout, agent: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(items.iter().map(|item| item.as_ref().to_owned()));
    };
    if record.users() {
        // The supervisor opened the namespace with a range of users as descriptor 3.
        push(&[
            &"--userns",
            &"3",
            &"--unshare-ipc",
            &"--unshare-pid",
            &"--unshare-net",
            &"--unshare-uts",
            &"--unshare-cgroup-try",
            &"--cap-drop",
            &"ALL",
        ]);
        for capability in crate::users::ROOT_CAPABILITIES {
            push(&[&"--cap-add", &capability]);
        }
    } else {
        push(&[&"--unshare-all", &"--cap-drop", &"ALL"]);
    }
    // `--die-with-parent`: the sandbox ends when its supervisor does.
    push(&[&"--new-session", &"--die-with-parent"]);
    push(&[&"--hostname", &record.id]);
    if record.image.is_some() {
        push(&[&"--bind", &layout.rootfs, &"/"]);
        for name in ["hosts", "hostname", "resolv.conf"] {
            let inside = format!("/etc/{name}");
            push(&[&"--ro-bind", &layout.etc.join(name), &inside]);
        }
    } else {
        for dir in SYSTEM_DIRS {
            let Ok(meta) = std::fs::symlink_metadata(dir) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(dir) {
                    push(&[&"--symlink", &target, &dir]);
                }
            } else if meta.is_dir() {
                push(&[&"--ro-bind", &dir, &dir]);
            }
        }
        // Writable, as a container's: `adduser` edits it.
        push(&[&"--bind", &layout.etc, &"/etc"]);
        for name in HOST_ETC {
            let host = Path::new("/etc").join(name);
            if host.exists() {
                push(&[&"--ro-bind", &host, &host]);
            }
        }
        for dir in WRITABLE_DIRS {
            push(&[&"--bind", &layout.layer.join(&dir[1..]), &dir]);
        }
        if !WRITABLE_DIRS
            .iter()
            .any(|dir| record.workdir.starts_with(dir))
        {
            let host = layout
                .layer
                .join(record.workdir.strip_prefix("/").unwrap_or(&record.workdir));
            push(&[&"--bind", &host, &record.workdir]);
        }
    }
    push(&[&"--proc", &"/proc", &"--dev", &"/dev"]);
    push(&[&"--ro-bind", &agent, &AGENT_IN_SANDBOX]);
    push(&[&"--ro-bind", &layout.marker, &MARKER_IN_SANDBOX]);
    if record.image.is_none() {
        push(&[&"--remount-ro", &"/"]);
    }
    push(&[&"--chdir", &record.workdir, &"--", &AGENT_IN_SANDBOX]);
    push(&[&"--watch-file", &MARKER_IN_SANDBOX]);
    if record.users() {
        push(&[&"--users"]);
    }
    args
}

/// Runs the sandbox, then removes it once it has ended (an entrypoint's end leaves the
/// directory, with its exit code, for the provider to read and remove).
const SUPERVISOR: &str = r#"
dir=$1 state=$2 id=$3
shift 3
if [ -n "$SANDKIT_USERNS" ]; then
  exec 3<"$SANDKIT_USERNS" || exit 1
  unset SANDKIT_USERNS
fi
"$@"
[ -d "$dir" ] || exit 0
if [ -f "$dir/pasta.pid" ]; then
  p=$(cat "$dir/pasta.pid")
  case "$(cat "/proc/$p/comm" 2>/dev/null)" in pas*) kill "$p" ;; esac
fi
[ -d "$dir/rootfs" ] && umount -l "$dir/rootfs" 2>/dev/null
grep -q '^exit ' "$dir/AGENT_OUT" 2>/dev/null && exit 0
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$state/lock"
  flock 9
fi
trash="$state/trash/$id-ended-$$"
mv "$dir" "$trash" 2>/dev/null || exit 0
exec 9>&-
rm -rf "$trash"
"#;

/// What [`start`] started.
pub(crate) struct Started {
    pub supervisor: Proc,
    pub init: Proc,
}

/// Starts the supervisor, which runs the agent (in bubblewrap when the record says so),
/// detached from this process so the sandbox outlives it.
pub(crate) fn start(
    state_dir: &Path,
    record: &Record,
    layout: &Layout,
    agent: &Path,
) -> Result<Started> {
    std::fs::write(&layout.marker, b"")
        .map_err(|e| internal(format!("creating {}", layout.marker.display()), e))?;
    let listener = UnixListener::bind(&layout.socket)
        .map_err(|e| internal(format!("binding {}", layout.socket.display()), e))?;
    let out = std::fs::File::create(layout.dir.join(AGENT_OUT_FILE))
        .map_err(|e| internal("creating the agent's output file", e))?;
    let log = std::fs::File::create(layout.dir.join("agent.log"))
        .map_err(|e| internal("creating the agent's log", e))?;
    let mut command = Command::new("/bin/sh");
    command
        .env_clear()
        .arg("-c")
        .arg(SUPERVISOR.replace("AGENT_OUT", AGENT_OUT_FILE))
        .arg("sandkit-supervisor")
        .arg(&layout.dir)
        .arg(state_dir)
        .arg(&record.id);
    let expires = record.expires_at_unix_secs.to_string();
    // Held until bubblewrap has joined it (the init is found inside), then let go.
    let namespace = record
        .users()
        .then(crate::users::UserNamespace::new)
        .transpose()?;
    if let Some(namespace) = &namespace {
        command.env("SANDKIT_USERNS", namespace.path());
    }
    match &record.isolation {
        Isolated::Bubblewrap { bwrap, .. } => {
            command.arg(bwrap).args(bwrap_args(record, layout, agent));
        }
        Isolated::None => {
            command
                .arg(agent)
                .arg("--watch-file")
                .arg(&layout.marker)
                .current_dir(&record.workdir);
        }
    }
    command.args(["--expires-at", &expires]);
    let child = command
        .env("PATH", DEFAULT_PATH)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(out)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| internal("starting the sandbox's supervisor", e))?;
    let supervisor_pid = child.id() as i32;
    // Never waited through `Child`: the supervisor outlives this process.
    drop(child);
    let supervisor = Proc::of(supervisor_pid)
        .ok_or_else(|| creation_failed(layout, "the supervisor ended at once"))?;
    // The init is the supervisor's child (the agent), or bubblewrap's child (pid 1 of
    // the sandbox's namespaces).
    let depth = if record.bubblewrap() { 2 } else { 1 };
    for _ in 0..500 {
        let mut pid = supervisor_pid;
        for _ in 0..depth {
            // Skip anything that is not the sandbox (a shell between fork and exec).
            let child = process::children(pid).into_iter().find(|child| {
                std::fs::read_to_string(format!("/proc/{child}/comm"))
                    .is_ok_and(|comm| comm.trim() != "sleep")
            });
            match child {
                Some(child) => pid = child,
                None => break,
            }
        }
        // Under bubblewrap, only once pid 1 is in the sandbox's namespaces (and has
        // started the agent) is it the sandbox's init.
        let in_sandbox = |pid: i32| {
            ["net", "mnt"].iter().all(|ns| {
                let of = |who: &str| std::fs::read_link(format!("/proc/{who}/ns/{ns}")).ok();
                of(&pid.to_string()).is_some_and(|theirs| Some(theirs) != of("self"))
            }) && !process::children(pid).is_empty()
        };
        if pid != supervisor_pid
            && let Some(init) = Proc::of(pid)
            && (depth == 1 || in_sandbox(init.pid))
        {
            return Ok(Started { supervisor, init });
        }
        if !supervisor.is_alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(creation_failed(layout, "the sandbox did not start"))
}

/// Connects `pasta` to the sandbox's network namespace for outbound traffic: no port is
/// forwarded in either direction, and the gateway is not mapped to the host's loopback.
pub(crate) fn start_network(pasta: &Path, layout: &Layout, init: &Proc) -> Result<Proc> {
    // pasta sometimes fails to open its tap device when many sandboxes start at once;
    // a second try succeeds.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_pasta(pasta, layout, init) {
            Err(_) if attempt < 4 && init.is_alive() => {
                std::thread::sleep(Duration::from_millis(50 * attempt));
            }
            done => return done,
        }
    }
}

fn start_pasta(pasta: &Path, layout: &Layout, init: &Proc) -> Result<Proc> {
    let pid_file = layout.dir.join("pasta.pid");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(layout.dir.join("agent.log"))
        .map_err(|e| internal("opening the sandbox's log", e))?;
    let mut command = Command::new(pasta);
    command
        .args(["--config-net", "--no-map-gw", "--quiet"])
        .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        .arg("--netns")
        .arg(format!("/proc/{}/ns/net", init.pid))
        .arg("--pid")
        .arg(&pid_file);
    if rustix::process::geteuid().is_root() {
        // pasta drops root to `nobody` unless told otherwise; as nobody it cannot open
        // the sandbox's namespace. Root needs no user namespace to enter it.
        command.args(["--netns-only", "--runas", "0"]);
    } else {
        // Unprivileged bubblewrap made a user namespace, which owns the network one.
        command
            .arg("--userns")
            .arg(format!("/proc/{}/ns/user", init.pid));
    }
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| internal("starting pasta", e))?;
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
        .filter(|_| status.success());
    pid.and_then(Proc::of).ok_or_else(|| {
        let ns = |pid: String| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .map(|link| link.display().to_string())
                .unwrap_or_default()
        };
        let what = format!(
            "pasta could not connect the sandbox's network (init {} in {}, host in {})",
            init.pid,
            ns(init.pid.to_string()),
            ns("self".into())
        );
        creation_failed(layout, &what)
    })
}

fn creation_failed(layout: &Layout, what: &str) -> Error {
    let log = std::fs::read_to_string(layout.dir.join("agent.log")).unwrap_or_default();
    let log = log.trim();
    Error::CreationFailed {
        message: if log.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {}", log.chars().take(2000).collect::<String>())
        },
    }
}
