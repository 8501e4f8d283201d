//! The agent binary: a sandbox's init. See the crate documentation for the protocol.
//!
//! Threads, not an async runtime: the agent stays small, and every blocking wait
//! (accept, a connection's next frame, a child's exit) has a thread of its own.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::io::{Errno, FdFlags, fcntl_setfd};
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use sandkit_agent::protocol::{self, ErrorKind, FrameError, PROTOCOL_VERSION, Reply, Request};
use users::{Spawner, Users};

mod detached;
mod files;
mod pty;
mod spawn;
mod stdin;
mod threads;
mod usage;
mod users;
mod watch;

/// Exit code of the agent when the sandbox ends for another reason than its entrypoint.
const ENDED: u8 = 137;

/// Set once the sandbox is ending: the entrypoint killed on the way out is not reported
/// as having ended by itself.
static ENDING: AtomicBool = AtomicBool::new(false);

/// Leases held (open lease connections), and a count of releases, so a timer started by
/// one release knows whether another came since.
static LEASES: Mutex<(u64, u64)> = Mutex::new((0, 0));

/// The running commands, by pid, each with where its exit status goes.
///
/// Spawns run side by side, outside the lock, so a child can end before its pid is
/// here: while any spawn is under way, the reaper keeps the exits it cannot place in
/// `early`, where the spawn looks first. (An orphan reaped meanwhile lands there too,
/// and is dropped when no spawn is under way.)
#[derive(Default)]
struct Children {
    waiting: HashMap<i32, mpsc::Sender<WaitStatus>>,
    main: Option<i32>,
    spawning: usize,
    early: HashMap<i32, WaitStatus>,
}

impl Children {
    /// A spawn has returned: what is kept for spawns under way goes with the last.
    fn spawned(&mut self) {
        self.spawning -= 1;
        if self.spawning == 0 {
            self.early.clear();
        }
    }
}

struct Agent {
    children: Mutex<Children>,
    detached: detached::Registry,
    main_stdin: stdin::MainStdin,
    reaper: OnceLock<Thread>,
    spawner: Spawner,
}

/// What the agent was started with.
struct Args {
    /// Where to listen, when the host does not hand over a listening socket (a
    /// container's init, whose socket is in a directory the host bind-mounted in).
    listen: Option<std::path::PathBuf>,
    expires_at: Option<u64>,
    watch_file: Option<std::path::PathBuf>,
    users: Users,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|first| first == pty::LAUNCHER) {
        pty::launch(args);
    }
    let Args {
        listen,
        expires_at,
        watch_file,
        users,
    } = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sandkit-agent: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match &listen {
        Some(path) => match listen_at(path) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "sandkit-agent: cannot listen at {}: {error}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
        // The host hands over the listening socket as standard input; no command
        // inherits it.
        None => {
            let stdin = std::io::stdin();
            let listener = match stdin.as_fd().try_clone_to_owned() {
                Ok(fd) => UnixListener::from(fd),
                Err(error) => {
                    eprintln!("sandkit-agent: no listening socket on standard input: {error}");
                    return ExitCode::from(2);
                }
            };
            let _ = fcntl_setfd(stdin.as_fd(), FdFlags::CLOEXEC);
            listener
        }
    };
    // Orphans of the sandbox's commands become ours, so every process stays findable.
    if let Err(error) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        eprintln!("sandkit-agent: cannot become a subreaper: {error}");
    }
    // Before any other thread: it sets the capabilities every later thread inherits.
    let spawner = match Spawner::new(users) {
        Ok(spawner) => spawner,
        Err(error) => {
            eprintln!("sandkit-agent: cannot set up commands as other users: {error}");
            return ExitCode::from(2);
        }
    };
    let agent = Arc::new(Agent {
        children: Mutex::new(Children::default()),
        detached: detached::Registry::default(),
        main_stdin: stdin::MainStdin::default(),
        reaper: OnceLock::new(),
        spawner,
    });
    let reaper = {
        let agent = agent.clone();
        std::thread::spawn(move || reap(&agent))
    };
    let _ = agent.reaper.set(reaper.thread().clone());
    usage::sample_peak(descendants);
    if let Some(expires_at) = expires_at {
        std::thread::spawn(move || {
            let now = unix_now();
            std::thread::sleep(Duration::from_secs(expires_at.saturating_sub(now)));
            end_sandbox(ENDED);
        });
    }
    if let Some(path) = watch_file {
        // The sandbox's marker file on the host (bound in read-only under bubblewrap):
        // once it is unlinked (the sandbox's directory removed behind sandkit's back),
        // nothing of the sandbox may stay. An open handle sees that as a link count of 0.
        match std::fs::File::open(&path) {
            Ok(marker) => {
                std::thread::spawn(move || {
                    while rustix::fs::fstat(&marker).is_ok_and(|stat| stat.st_nlink > 0) {
                        std::thread::sleep(Duration::from_secs(2));
                    }
                    end_sandbox(ENDED);
                });
            }
            Err(error) => {
                eprintln!("sandkit-agent: cannot open {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    for connection in listener.incoming() {
        match connection {
            // A socket the sandbox's own processes can reach serves the host only.
            Ok(stream) if listen.is_some() && !from_outside(&stream) => drop(stream),
            Ok(stream) => {
                let agent = agent.clone();
                threads::run(move || serve(&agent, stream));
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    Errno::from_io_error(&error),
                    Some(Errno::NOTSOCK | Errno::INVAL | Errno::BADF)
                ) =>
            {
                eprintln!("sandkit-agent: standard input is not a listening socket: {error}");
                end_sandbox(2);
            }
            Err(error) => {
                eprintln!("sandkit-agent: accept failed: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    ExitCode::from(ENDED)
}

/// Listens at `path` (replacing a socket left there). Anyone may connect: the
/// directory's mode keeps strangers out, and [`from_outside`] the sandbox.
fn listen_at(path: &std::path::Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    fcntl_setfd(&listener, FdFlags::CLOEXEC)?;
    Ok(listener)
}

/// Whether the peer is outside the sandbox: its pid is not in this pid namespace (the
/// kernel reports such a peer's pid as 0). A process of the sandbox that finds the
/// socket gets no command started as root from it.
fn from_outside(stream: &UnixStream) -> bool {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .is_ok_and(|cred| cred.pid() == 0)
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let mut listen = None;
    let mut default_user = None;
    let mut container = false;
    let mut expires_at = None;
    let mut watch_file = None;
    let mut users = Users::Single;
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or_default() {
            "--expires-at" => {
                let value = args.next().ok_or("--expires-at needs a value")?;
                let value = value.to_string_lossy();
                expires_at = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--expires-at: `{value}` is not a Unix time"))?,
                );
            }
            "--listen" => listen = Some(args.next().ok_or("--listen needs a value")?.into()),
            // A container's init, as its root: see `Users::Container`.
            "--container-users" => container = true,
            "--default-user" => {
                let user = args.next().ok_or("--default-user needs a value")?;
                let user = user
                    .into_string()
                    .map_err(|_| "--default-user: not UTF-8")?;
                default_user = Some(&*Box::leak(user.into_boxed_str()));
            }
            "--watch-file" => {
                watch_file = Some(args.next().ok_or("--watch-file needs a value")?.into());
            }
            // The sandbox maps a range of users, and the agent holds root's capabilities.
            "--users" => users = Users::Many,
            "--version" => {
                println!("sandkit-agent protocol {PROTOCOL_VERSION}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument `{}`", arg.to_string_lossy())),
        }
    }
    if container {
        users = Users::Container {
            default: default_user,
        };
    }
    Ok(Args {
        listen,
        expires_at,
        watch_file,
        users,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Collects every exit: of the commands we started (their status goes to whoever waits)
/// and of orphans we inherited (just reaped).
fn reap(agent: &Agent) {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let pid = pid.as_raw_nonzero().get();
                let mut children = agent.children.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(waiting) = children.waiting.remove(&pid) {
                    let _ = waiting.send(status);
                } else if children.spawning > 0 {
                    children.early.insert(pid, status);
                }
                if children.main == Some(pid) {
                    main_ended(status);
                }
            }
            Ok(None) => {}
            Err(Errno::CHILD) => std::thread::park_timeout(Duration::from_millis(200)),
            Err(Errno::INTR) => {}
            Err(error) => {
                eprintln!("sandkit-agent: wait failed: {error}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The entrypoint has ended with `status`: so does the sandbox, with its exit code
/// (unless the sandbox is ending already, which is what ended it).
fn main_ended(status: WaitStatus) {
    if ENDING.load(Ordering::SeqCst) {
        return;
    }
    let code = status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
        .unwrap_or(1);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "exit {code}");
    let _ = out.flush();
    end_sandbox(u8::try_from(code).unwrap_or(1));
}

/// One connection: a hello, then requests until it closes.
fn serve(agent: &Agent, stream: UnixStream) {
    match protocol::receive::<Request>(&stream) {
        Ok((Request::Hello { version }, _)) if version == PROTOCOL_VERSION => {
            if reply(&stream, &Reply::Hello { version }).is_err() {
                return;
            }
        }
        Ok((Request::Hello { version }, _)) => {
            let _ = reply(
                &stream,
                &error(
                    ErrorKind::Version,
                    format!(
                        "the host speaks protocol version {version}, this agent speaks version {PROTOCOL_VERSION}"
                    ),
                ),
            );
            return;
        }
        Ok(_) => {
            let _ = reply(
                &stream,
                &error(ErrorKind::BadRequest, "the first message must be `hello`"),
            );
            return;
        }
        Err(_) => return,
    }
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    // Replies come from this thread and from a command's waiter: one frame at a time.
    let writer = Arc::new(Mutex::new(writer));
    let reply = |message: &Reply| -> Result<(), FrameError> {
        let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
        protocol::send(&*writer, message, &[])
    };
    let mut started: Option<i32> = None;
    loop {
        let (request, fds) = match protocol::receive::<Request>(&stream) {
            Ok(frame) => frame,
            // A malformed frame or a closed connection ends this connection only; a
            // command it started goes on (its output still flows through its pipes).
            Err(FrameError::Malformed(why)) => {
                let _ = reply(&error(ErrorKind::BadRequest, why));
                return;
            }
            Err(_) => return,
        };
        let answer = match request {
            Request::Hello { .. } => error(ErrorKind::BadRequest, "hello was already said"),
            Request::Commit => error(ErrorKind::BadRequest, "no file is being written"),
            Request::Spawn(_) if started.is_some() => {
                error(ErrorKind::BadRequest, "one command per connection")
            }
            Request::Spawn(spawn) => match spawn::start(agent, &writer, spawn, fds) {
                // `start` said `spawned` itself, before the end can be reported.
                Ok(pid) => {
                    started = Some(pid);
                    continue;
                }
                Err(failure) => failure,
            },
            Request::Signal { signal } => match (started, Signal::from_named_raw(signal)) {
                (Some(pid), Some(signal)) => {
                    if is_running(agent, pid) {
                        signal_tree(pid, signal);
                    }
                    continue;
                }
                (None, _) => error(ErrorKind::BadRequest, "no command on this connection"),
                (_, None) => error(ErrorKind::BadRequest, format!("no signal {signal}")),
            },
            Request::Lease { grace_secs } => {
                hold_lease(&stream, grace_secs, &reply);
                return;
            }
            Request::Attach { .. } if started.is_some() => {
                error(ErrorKind::BadRequest, "one command per connection")
            }
            Request::Attach {
                command,
                stdout_from,
                stderr_from,
            } => match detached::attach(
                &agent.detached,
                &writer,
                command,
                [stdout_from, stderr_from],
                fds,
            ) {
                Ok(pid) => {
                    started = Some(pid);
                    continue;
                }
                Err(failure) => failure,
            },
            Request::Commands => Reply::Commands {
                commands: agent.detached.list(),
            },
            Request::Usage => usage::report(descendants),
            // Paths are the sandbox's absolute paths: a thread that started a command
            // has a working directory of its own, which must not give one a meaning.
            Request::Watch { path, .. }
            | Request::ReadFile { path }
            | Request::WriteFile { path }
            | Request::Stat { path }
            | Request::ListDir { path }
            | Request::MakeDir { path }
            | Request::Remove { path, .. }
                if !path.starts_with('/') =>
            {
                error(
                    ErrorKind::BadRequest,
                    format!("{path}: not an absolute path"),
                )
            }
            Request::Watch { path, recursive } => {
                watch::serve(&stream, &path, recursive);
                return;
            }
            // One file request per connection, answered on it by the file code alone.
            Request::ReadFile { path } => return files::read(&stream, &path, fds),
            Request::WriteFile { path } => return files::write(&stream, &path, fds),
            Request::Stat { path } => return files::stat(&stream, &path),
            Request::ListDir { path } => return files::list(&stream, &path),
            Request::MakeDir { path } => return files::make_dir(&stream, &path),
            Request::Remove { path, recursive } => {
                return files::remove(&stream, &path, recursive);
            }
            Request::MainStdin { offset, eof } => {
                // The stdin is closed only once the host has its answer: the entrypoint
                // may end at EOF, and the sandbox with it, before a later answer is sent.
                let (answer, closing) = agent.main_stdin.write(offset, eof, fds);
                let _ = reply(&answer);
                drop(closing);
                return;
            }
            Request::Pause => {
                signal_all(Signal::STOP);
                Reply::Done
            }
            Request::Resume => {
                signal_all(Signal::CONT);
                Reply::Done
            }
            Request::Shutdown => {
                let _ = reply(&Reply::Done);
                end_sandbox(ENDED);
            }
        };
        if reply(&answer).is_err() {
            return;
        }
    }
}

/// Holds a lease until its connection closes; then, unless another lease is taken within
/// the grace period, ends the sandbox.
fn hold_lease(
    stream: &UnixStream,
    grace_secs: u64,
    reply: &dyn Fn(&Reply) -> Result<(), FrameError>,
) {
    LEASES.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
    let _ = reply(&Reply::Done);
    // Whatever arrives on a lease connection is ignored; only its end counts.
    while !matches!(
        protocol::receive::<Request>(stream),
        Err(FrameError::Closed | FrameError::Io(_) | FrameError::Malformed(_))
    ) {}
    let release = {
        let mut leases = LEASES.lock().unwrap_or_else(|e| e.into_inner());
        leases.0 -= 1;
        leases.1 += 1;
        leases.1
    };
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(grace_secs));
        let leases = *LEASES.lock().unwrap_or_else(|e| e.into_inner());
        if leases.0 == 0 && leases.1 == release {
            end_sandbox(ENDED);
        }
    });
}

fn reply(stream: &UnixStream, message: &Reply) -> Result<(), FrameError> {
    protocol::send(stream, message, &[])
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
    Reply::Error {
        kind,
        message: message.into(),
    }
}

fn is_running(agent: &Agent, pid: i32) -> bool {
    let children = agent.children.lock().unwrap_or_else(|e| e.into_inner());
    children.waiting.contains_key(&pid) || children.main == Some(pid)
}

/// Says on a command's connection how it ended.
fn report_end(writer: &Mutex<UnixStream>, code: Option<i32>, signal: Option<i32>, timed_out: bool) {
    let exited = Reply::Exited {
        code,
        signal,
        timed_out,
    };
    let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
    let _ = protocol::send(&*writer, &exited, &[]);
}

/// The live descendants of `pid`, through `/proc/PID/task/TID/children`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut pending = vec![pid];
    while let Some(parent) = pending.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if seen.insert(child) {
                    found.push(child);
                    pending.push(child);
                }
            }
        }
    }
    found
}

fn send_signal(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Signals a command's process group and every descendant (those that left the group
/// too).
fn signal_tree(pid: i32, signal: Signal) {
    let tree = descendants(pid);
    if let Some(group) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(group, signal);
    }
    send_signal(pid, signal);
    for member in tree {
        send_signal(member, signal);
    }
}

/// Kills a command's whole tree, again while new processes keep appearing.
fn kill_tree(pid: i32) {
    for _ in 0..10 {
        signal_tree(pid, Signal::KILL);
        if descendants(pid).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Signals every process of the sandbox but the agent, until no new one appears.
fn signal_all(signal: Signal) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut signalled = HashSet::new();
    for _ in 0..10 {
        let fresh: Vec<i32> = descendants(me)
            .into_iter()
            .filter(|pid| signalled.insert(*pid))
            .collect();
        if fresh.is_empty() {
            return;
        }
        for pid in fresh {
            send_signal(pid, signal);
        }
    }
}

/// Kills every process of the sandbox and exits. Under bubblewrap the agent's exit
/// also ends the pid namespace, so the kernel kills whatever is left.
fn end_sandbox(code: u8) -> ! {
    ENDING.store(true, Ordering::SeqCst);
    let me = rustix::process::getpid().as_raw_nonzero().get();
    for _ in 0..50 {
        let all = descendants(me);
        if all.is_empty() {
            break;
        }
        for pid in all {
            send_signal(pid, Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::exit(code.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_in_this_pid_namespace_is_not_from_outside() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        assert!(!from_outside(&ours));
        assert!(!from_outside(&theirs));
    }
}
