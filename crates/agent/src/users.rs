//! Who a command runs as: names and numbers looked up in the sandbox's own `/etc/passwd`
//! (a static binary has no NSS, and the host's accounts mean nothing here), and the
//! capability sets that make `root` differ from the default user.
//!
//! Capabilities are per thread in Linux, and a child gets those of the thread that forks
//! it. So one thread keeps root's capabilities inheritable and starts every `root`
//! command; the agent's other threads have an empty bounding set, so what they start as
//! uid 0 gets no capability at all. Nothing runs between `fork` and `exec` but what the
//! standard library does (`Command::uid` and `gid` for another user).
//!
//! Speed: the standard library starts a command with `posix_spawn` (a `vfork`, which
//! copies nothing) unless it must run code in the child, and in a static binary changing
//! directory is such code. A `fork` of the agent, many threads deep under load, costs
//! far more than the command. So a thread that starts commands has a working directory
//! of its own (`unshare(CLONE_FS)`) and changes into the command's before spawning it:
//! the child inherits it (see [`start_in`] for where it cannot). Another user's command
//! still forks, to switch users.

use std::cell::Cell;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::sync::mpsc;

use nix::sched::CloneFlags;

use rustix::thread::{CapabilitySet, CapabilitySets};

/// How commands may run in this sandbox, fixed when the agent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Users {
    /// The sandbox maps one user: commands run as the agent does, and a request that
    /// names a user is refused.
    Single,
    /// The sandbox maps a range of users and the agent holds the capabilities of a
    /// container's root. A command that names no user runs as uid 0 without any
    /// capability (so permissions apply to it); `root` has the capabilities; any other
    /// user is switched to and has none.
    Many,
    /// The agent is a container's init, as its root with the container's capabilities:
    /// a command runs as the default user when it names none (root's capabilities for
    /// root, as an engine's exec does), and any other user is switched to.
    Container {
        /// Who a command that names no user runs as (the image's user).
        default: Option<&'static str>,
    },
}

/// Who one command runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// The sandbox's default user.
    Default,
    /// uid 0 with a container root's capabilities.
    Root,
    /// Another user, with no capability.
    User {
        /// Its uid.
        uid: u32,
        /// Its primary group (supplementary groups are not set).
        gid: u32,
    },
}

/// Why a user could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// This sandbox maps one user only.
    Single,
    /// No such user in the sandbox's `/etc/passwd` (and not a number).
    Unknown(String),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single => f.write_str("this sandbox runs every command as one user"),
            Self::Unknown(name) => write!(
                f,
                "unable to find user {name}: no matching entry in the sandbox's /etc/passwd"
            ),
        }
    }
}

/// Who `user` is, from the sandbox's `/etc/passwd`, and the home directory it names.
pub fn resolve(users: Users, user: Option<&str>) -> Result<(RunAs, Option<String>), UserError> {
    let user = match (users, user) {
        (Users::Single, Some(_)) => return Err(UserError::Single),
        (Users::Container { default }, None) => default.unwrap_or("0"),
        (_, None) => return Ok((RunAs::Default, None)),
        (_, Some(user)) => user,
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    run_as(&passwd, user).ok_or_else(|| UserError::Unknown(user.to_owned()))
}

/// `user` (a name, or a number with or without an entry) in `passwd`, and its home.
fn run_as(passwd: &str, user: &str) -> Option<(RunAs, Option<String>)> {
    let number: Option<u32> = user.parse().ok();
    let entry = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, uid, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
        let uid: u32 = uid.parse().ok()?;
        let gid: u32 = gid.parse().ok()?;
        let home = fields.get(5).filter(|home| home.starts_with('/'));
        (*name == user || number == Some(uid)).then(|| (uid, gid, home.map(|h| h.to_string())))
    });
    // A number without an entry runs as that uid and the group of the same number.
    let (uid, gid, home) = entry.or(number.map(|uid| (uid, uid, None)))?;
    let run_as = if uid == 0 {
        RunAs::Root
    } else {
        RunAs::User { uid, gid }
    };
    Some((run_as, home))
}

type Job = (Command, String, mpsc::Sender<std::io::Result<Child>>);

/// Starts commands, each from a thread with the right capabilities.
pub struct Spawner {
    users: Users,
    /// The thread that starts `root` commands ([`Users::Many`] only).
    root: Option<Mutex<mpsc::Sender<Job>>>,
}

impl Spawner {
    /// Sets up the threads for `users`. Call it before any other thread is started: in
    /// [`Users::Many`] it empties the calling thread's bounding set, which every thread
    /// started later inherits.
    pub fn new(users: Users) -> std::io::Result<Self> {
        if users != Users::Many {
            return Ok(Self { users, root: None });
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel();
        std::thread::spawn(move || {
            // The capabilities this thread holds become inheritable, so a program it
            // starts as uid 0 has them after `exec`.
            let raised = rustix::thread::capabilities(None).and_then(|mut sets| {
                sets.inheritable = sets.permitted;
                rustix::thread::set_capabilities(None, sets)
            });
            let failed = raised.is_err();
            let _ = ready.send(raised);
            if failed {
                return;
            }
            for (command, cwd, answer) in queue {
                let _ = answer.send(start_in(command, &cwd, false));
            }
        });
        started
            .recv()
            .map_err(|_| std::io::Error::other("the root spawner did not start"))??;
        for capability in CapabilitySet::all().iter() {
            match rustix::thread::remove_capability_from_bounding_set(capability) {
                // Capabilities this kernel does not know.
                Err(rustix::io::Errno::INVAL) => {}
                other => other?,
            }
        }
        // And none is inheritable here (uid 0 inherits what is).
        let mut sets: CapabilitySets = rustix::thread::capabilities(None)?;
        sets.inheritable = CapabilitySet::empty();
        rustix::thread::set_capabilities(None, sets)?;
        Ok(Self {
            users,
            root: Some(Mutex::new(jobs)),
        })
    }

    /// How commands may run here.
    pub fn users(&self) -> Users {
        self.users
    }

    /// Starts `command` as `run_as`, in the working directory `cwd`.
    pub fn spawn(&self, mut command: Command, cwd: &str, run_as: RunAs) -> std::io::Result<Child> {
        match (run_as, &self.root) {
            (RunAs::Root, Some(root)) => {
                let (answer, result) = mpsc::channel();
                let sent = root.lock().unwrap_or_else(|e| e.into_inner()).send((
                    command,
                    cwd.to_owned(),
                    answer,
                ));
                if sent.is_err() {
                    return Err(std::io::Error::other("the root spawner has ended"));
                }
                result
                    .recv()
                    .map_err(|_| std::io::Error::other("the root spawner has ended"))?
            }
            (RunAs::User { uid, gid }, _) if self.users != Users::Single => {
                // The standard library drops supplementary groups, then switches.
                command.gid(gid).uid(uid).current_dir(cwd);
                command.spawn()
            }
            // The default user of a sandbox of many is uid 0 without capabilities: it
            // may enter only what permissions let it.
            (RunAs::Default, _) => start_in(command, cwd, self.users == Users::Many),
            _ => start_in(command, cwd, false),
        }
    }
}

thread_local! {
    /// Whether this thread has a working directory of its own (`None`: not tried yet).
    static OWN_DIRECTORY: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Starts `command` in `cwd` without running code in the child where it can: from this
/// thread's own working directory, changed to `cwd`; or, where a thread cannot have one
/// (Docker's seccomp profile refuses `unshare`), from the agent's, when that is `cwd`
/// (a container's commands mostly run where its init does). Otherwise the child changes
/// directory. `unprivileged`: enter `cwd` without this thread's capabilities, as the
/// command would.
fn start_in(mut command: Command, cwd: &str, unprivileged: bool) -> std::io::Result<Child> {
    let own = OWN_DIRECTORY.with(|own| {
        let made = own
            .get()
            .unwrap_or_else(|| nix::sched::unshare(CloneFlags::CLONE_FS).is_ok());
        own.set(Some(made));
        made
    });
    if !own {
        if unprivileged || !is_agents_directory(cwd) {
            command.current_dir(cwd);
        }
        return command.spawn();
    }
    if unprivileged {
        let sets = rustix::thread::capabilities(None)?;
        let without = CapabilitySets {
            effective: CapabilitySet::empty(),
            ..sets
        };
        rustix::thread::set_capabilities(None, without)?;
        let entered = rustix::process::chdir(cwd);
        rustix::thread::set_capabilities(None, sets)?;
        entered?;
    } else {
        rustix::process::chdir(cwd)?;
    }
    command.spawn()
}

/// Whether `cwd` is the directory the agent's shared working directory is in (the same
/// inode: a directory removed and made again under the same name is another).
fn is_agents_directory(cwd: &str) -> bool {
    match (rustix::fs::stat(cwd), rustix::fs::stat(".")) {
        (Ok(wanted), Ok(ours)) => (wanted.st_dev, wanted.st_ino) == (ours.st_dev, ours.st_ino),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ntoor:x:0:0::/:/bin/sh\nalice:x:1000:1001::/home/alice:/bin/sh\nbroken\n";

    #[test]
    fn names_and_numbers() {
        let alice = RunAs::User {
            uid: 1000,
            gid: 1001,
        };
        let home = |path: &str| Some(path.to_owned());
        assert_eq!(run_as(PASSWD, "alice"), Some((alice, home("/home/alice"))));
        assert_eq!(run_as(PASSWD, "1000"), Some((alice, home("/home/alice"))));
        assert_eq!(run_as(PASSWD, "root"), Some((RunAs::Root, home("/root"))));
        assert_eq!(run_as(PASSWD, "toor"), Some((RunAs::Root, home("/"))));
        assert_eq!(run_as(PASSWD, "0"), Some((RunAs::Root, home("/root"))));
        let stranger = RunAs::User {
            uid: 65534,
            gid: 65534,
        };
        assert_eq!(run_as(PASSWD, "65534"), Some((stranger, None)));
        assert_eq!(run_as(PASSWD, "mallory"), None);
        assert_eq!(run_as(PASSWD, "x"), None);
        assert_eq!(run_as(PASSWD, ""), None);
    }

    #[test]
    fn a_container_runs_unnamed_commands_as_its_default_user() {
        let root = resolve(Users::Container { default: None }, None);
        assert!(matches!(root, Ok((RunAs::Root, _))), "{root:?}");
        let nobody = resolve(
            Users::Container {
                default: Some("65534"),
            },
            None,
        );
        assert!(
            matches!(nobody, Ok((RunAs::User { uid: 65534, .. }, _))),
            "{nobody:?}"
        );
    }

    #[test]
    fn a_single_user_sandbox_refuses_names() {
        assert_eq!(resolve(Users::Single, Some("root")), Err(UserError::Single));
        assert_eq!(resolve(Users::Single, None), Ok((RunAs::Default, None)));
    }
}
