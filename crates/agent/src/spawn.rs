//! Starting a command: its standard streams (the host's pipes, the agent's own for a
//! detached command, a terminal), who it runs as, and the thread that reports its end.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustix::io::Errno;
use sandkit_agent::protocol::{self, ErrorKind, Reply, SPAWN_FDS, SpawnRequest};

use crate::{Agent, error, kill_tree, main_ended, pty, report_end, users};

/// Starts a command in its own process group and a thread that reports its end.
pub(crate) fn start(
    agent: &Agent,
    writer: &Arc<Mutex<UnixStream>>,
    spawn: SpawnRequest,
    fds: Vec<OwnedFd>,
) -> Result<i32, Reply> {
    let Some((program, args)) = spawn.argv.split_first() else {
        return Err(error(ErrorKind::BadRequest, "argv is empty"));
    };
    let (run_as, home) = users::resolve(agent.spawner.users(), spawn.user.as_deref())
        .map_err(|why| error(ErrorKind::UnknownUser, why.to_string()))?;
    // A detached command writes into pipes of the agent's, drained as it writes.
    let mut detached_pipes = None;
    let fds = if spawn.detached {
        if !fds.is_empty() || spawn.pty.is_some() || spawn.main {
            return Err(error(
                ErrorKind::BadRequest,
                "a detached command takes no descriptors, terminal or entrypoint role",
            ));
        }
        let pipes = (|| -> std::io::Result<_> {
            let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
            Ok(((out_r, err_r), vec![null, out_w, err_w]))
        })()
        .map_err(|e| {
            error(
                ErrorKind::Other,
                format!("pipes for a detached command: {e}"),
            )
        })?;
        detached_pipes = Some(pipes.0);
        pipes.1
    } else if spawn.keep_stdin {
        // The entrypoint reads a pipe of the agent's, written by `main-stdin` requests.
        let Ok([stdout, stderr]) = <[OwnedFd; 2]>::try_from(fds) else {
            return Err(error(
                ErrorKind::BadRequest,
                "an entrypoint with keep_stdin takes two descriptors: stdout, stderr",
            ));
        };
        if !spawn.main || spawn.pty.is_some() {
            return Err(error(
                ErrorKind::BadRequest,
                "keep_stdin is for an entrypoint without a terminal",
            ));
        }
        let stdin = agent
            .main_stdin
            .open()
            .map_err(|e| error(ErrorKind::Other, format!("the entrypoint's stdin: {e}")))?;
        vec![stdin, stdout, stderr]
    } else {
        fds
    };
    let (mut command, [stdin, stdout, stderr], master) = match spawn.pty {
        // An entrypoint without descriptors writes where the agent does (a container's
        // log), and reads nothing.
        None if fds.is_empty() && spawn.main => {
            let inherited = || -> std::io::Result<[OwnedFd; SPAWN_FDS]> {
                Ok([
                    std::fs::File::open("/dev/null")?.into(),
                    std::io::stdout().as_fd().try_clone_to_owned()?,
                    std::io::stderr().as_fd().try_clone_to_owned()?,
                ])
            };
            let stdio = inherited()
                .map_err(|e| error(ErrorKind::Other, format!("standard streams: {e}")))?;
            (launch(program, args, &spawn), stdio, None)
        }
        None => {
            let Ok(stdio) = <[OwnedFd; SPAWN_FDS]>::try_from(fds) else {
                return Err(error(
                    ErrorKind::BadRequest,
                    "spawn needs three descriptors: stdin, stdout, stderr",
                ));
            };
            (launch(program, args, &spawn), stdio, None)
        }
        Some(size) => {
            if !fds.is_empty() {
                return Err(error(
                    ErrorKind::BadRequest,
                    "a spawn on a pseudo-terminal takes no descriptors",
                ));
            }
            let path = spawn
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str());
            let Some(found) = pty::find_program(program, path, &spawn.cwd) else {
                return Err(error(ErrorKind::NotFound, format!("{program}: not found")));
            };
            let (terminal, stdio) = pty::open(size)
                .and_then(|t| {
                    Ok([t.slave.try_clone()?, t.slave.try_clone()?, t.slave]).map(|s| (t.master, s))
                })
                .map_err(|e| error(ErrorKind::Other, format!("opening a pseudo-terminal: {e}")))?;
            // The launcher makes a new session, which a group leader cannot: no
            // `process_group` here (the session's group has the command's pid anyway).
            let mut command = Command::new(agent_binary());
            command
                .arg(pty::LAUNCHER)
                .arg(found)
                .arg(program)
                .args(args);
            (command, stdio, Some(terminal))
        }
    };
    if spawn.inherit_env {
        command.env_remove("HOME");
    } else {
        command.env_clear();
    }
    // The user's home, unless the host set `HOME` (it leaves it out for a named user).
    if let Some(home) = home {
        command.env("HOME", home);
    }
    command
        .envs(spawn.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    let (status_tx, status_rx) = mpsc::channel();
    agent
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .spawning += 1;
    let started = agent.spawner.spawn(command, &spawn.cwd, run_as);
    let mut children = agent.children.lock().unwrap_or_else(|e| e.into_inner());
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            children.spawned();
            return Err(spawn_failure(program, &spawn.cwd, &e));
        }
    };
    let pid = child.id() as i32;
    // Never waited through `Child`: the reaper collects every exit.
    drop(child);
    if spawn.main {
        children.main = Some(pid);
    }
    match children.early.remove(&pid) {
        Some(status) => {
            let _ = status_tx.send(status);
            if spawn.main {
                main_ended(status);
            }
        }
        None => {
            children.waiting.insert(pid, status_tx);
        }
    }
    children.spawned();
    drop(children);
    if let Some(reaper) = agent.reaper.get() {
        reaper.unpark();
    }
    let detached =
        detached_pipes.map(|(out, err)| agent.detached.add(spawn.argv.clone(), pid, out, err));
    {
        let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
        let master: Vec<_> = master.iter().map(|fd| fd.as_fd()).collect();
        let command = detached.as_ref().map(|d| d.id());
        let _ = protocol::send(&*writer, &Reply::Spawned { pid, command }, &master);
    }
    let writer = writer.clone();
    let timeout = spawn.timeout_ms.map(Duration::from_millis);
    crate::threads::run(move || {
        let (status, timed_out) = match timeout {
            None => (status_rx.recv().ok(), false),
            Some(timeout) => match status_rx.recv_timeout(timeout) {
                Ok(status) => (Some(status), false),
                Err(RecvTimeoutError::Timeout) => {
                    kill_tree(pid);
                    (status_rx.recv().ok(), true)
                }
                Err(RecvTimeoutError::Disconnected) => (None, false),
            },
        };
        let (code, signal) = (
            status.and_then(|s| s.exit_status()),
            status.and_then(|s| s.terminating_signal()),
        );
        match detached {
            Some(detached) => detached.ended(code, signal, timed_out),
            None => report_end(&writer, code, signal, timed_out),
        }
    });
    Ok(pid)
}

/// The command for `program` in its own process group. A program found on the search
/// path is named by its path (`argv[0]` stays as asked): the standard library searches
/// the path itself only in a forked child. One not found is left to that search, which
/// reports why as `execvp` does.
fn launch(program: &str, args: &[String], spawn: &SpawnRequest) -> Command {
    let path = spawn
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let path = path.or_else(|| {
        spawn
            .inherit_env
            .then(|| std::env::var("PATH").ok())
            .flatten()
    });
    let found = (!program.contains('/'))
        .then(|| pty::find_program(program, path.as_deref(), &spawn.cwd))
        .flatten();
    let mut command = match found {
        Some(found) => {
            let mut command = Command::new(found);
            command.arg0(program);
            command
        }
        None => Command::new(program),
    };
    command.args(args).process_group(0);
    command
}

/// This binary, as the sandbox sees it (the launcher of commands on a terminal).
fn agent_binary() -> std::path::PathBuf {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()))
        .clone()
}

fn spawn_failure(program: &str, cwd: &str, failure: &std::io::Error) -> Reply {
    let kind = match failure.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::IsADirectory => ErrorKind::IsADirectory,
        _ if failure.raw_os_error() == Some(Errno::ISDIR.raw_os_error()) => ErrorKind::IsADirectory,
        _ => ErrorKind::Other,
    };
    if !std::fs::metadata(cwd).is_ok_and(|m| m.is_dir()) {
        return error(
            ErrorKind::NoWorkingDirectory,
            format!("working directory {cwd}: {failure}"),
        );
    }
    error(kind, format!("{program}: {failure}"))
}
