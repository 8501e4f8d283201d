//! Detached commands: started without a client, their output kept (the latest
//! [`KEPT_BYTES`] of each stream) for whoever attaches later, by id, from an offset.
//!
//! The command never waits for a reader: its pipes are drained by a thread each as it
//! writes, and what is older than the kept window is dropped. An attach streams what is
//! kept from its offset into the host's pipes, then follows the output live, then
//! reports the end.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use std::os::unix::net::UnixStream;

use sandkit_agent::protocol::{self, CommandSummary, ErrorKind, Reply};

/// Output kept per stream of one detached command.
pub const KEPT_BYTES: usize = 4 << 20;
/// Ended commands remembered (the oldest ended one is forgotten beyond this).
const ENDED_KEPT: usize = 256;

/// One stream's kept output.
#[derive(Default)]
struct Kept {
    bytes: VecDeque<u8>,
    /// Bytes ever written: the offset just past the newest kept byte.
    total: u64,
    /// The command's side closed: no more will come.
    closed: bool,
}

impl Kept {
    fn first(&self) -> u64 {
        self.total - self.bytes.len() as u64
    }
}

#[derive(Default)]
struct State {
    streams: [Kept; 2],
    /// How it ended: exit code, signal, timed out.
    end: Option<(Option<i32>, Option<i32>, bool)>,
}

/// A detached command.
pub struct Detached {
    id: u64,
    argv: Vec<String>,
    pid: i32,
    state: Mutex<State>,
    changed: Condvar,
}

impl Detached {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the command's end.
    pub fn ended(&self, code: Option<i32>, signal: Option<i32>, timed_out: bool) {
        self.state().end = Some((code, signal, timed_out));
        self.changed.notify_all();
    }

    /// How it ended, waiting for that.
    pub fn wait_end(&self) -> (Option<i32>, Option<i32>, bool) {
        let mut state = self.state();
        loop {
            if let Some(end) = state.end {
                return end;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Every detached command of the sandbox.
#[derive(Default)]
pub struct Registry {
    next: Mutex<u64>,
    commands: Mutex<BTreeMap<u64, Arc<Detached>>>,
}

impl Registry {
    /// Registers a started command whose output comes from `stdout` and `stderr` (the
    /// read ends of its pipes), and starts draining them.
    pub fn add(
        &self,
        argv: Vec<String>,
        pid: i32,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Arc<Detached> {
        let id = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let command = Arc::new(Detached {
            id,
            argv,
            pid,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        for (which, pipe) in [stdout, stderr].into_iter().enumerate() {
            let command = command.clone();
            std::thread::spawn(move || drain(&command, which, pipe));
        }
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        let ended: Vec<u64> = commands
            .values()
            .filter(|c| c.state().end.is_some())
            .map(|c| c.id)
            .collect();
        for old in ended
            .iter()
            .take(ended.len().saturating_sub(ENDED_KEPT - 1))
        {
            commands.remove(old);
        }
        commands.insert(id, command.clone());
        command
    }

    pub fn get(&self, id: u64) -> Option<Arc<Detached>> {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn list(&self) -> Vec<CommandSummary> {
        let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        commands
            .values()
            .map(|command| {
                let state = command.state();
                CommandSummary {
                    command: command.id,
                    argv: command.argv.clone(),
                    pid: command.pid,
                    code: state.end.and_then(|end| end.0),
                    signal: state.end.and_then(|end| end.1),
                    running: state.end.is_none(),
                    stdout_bytes: state.streams[0].total,
                    stderr_bytes: state.streams[1].total,
                }
            })
            .collect()
    }
}

/// Reads one of the command's pipes into its kept window until the command's side
/// closes.
fn drain(command: &Detached, which: usize, pipe: OwnedFd) {
    let mut pipe = std::fs::File::from(pipe);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut state = command.state();
        let kept = &mut state.streams[which];
        kept.bytes.extend(&chunk[..read]);
        kept.total += read as u64;
        let excess = kept.bytes.len().saturating_sub(KEPT_BYTES);
        kept.bytes.drain(..excess);
        drop(state);
        command.changed.notify_all();
    }
    command.state().streams[which].closed = true;
    command.changed.notify_all();
}

/// Copies stream `which` of `command` into `into` from byte `from` (or the oldest kept),
/// following it until it closes; stops early when the host closes its end.
pub fn follow(command: &Detached, which: usize, mut from: u64, into: OwnedFd) {
    let mut into = std::fs::File::from(into);
    loop {
        let chunk = {
            let mut state = command.state();
            loop {
                let kept = &state.streams[which];
                from = from.max(kept.first());
                if from < kept.total {
                    let skip = (from - kept.first()) as usize;
                    let take = (kept.total - from).min(64 * 1024) as usize;
                    break Some(
                        kept.bytes
                            .range(skip..skip + take)
                            .copied()
                            .collect::<Vec<u8>>(),
                    );
                }
                if kept.closed {
                    break None;
                }
                state = command
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(chunk) = chunk else { return };
        if into.write_all(&chunk).is_err() {
            return;
        }
        from += chunk.len() as u64;
    }
}

/// Attaches a connection to detached command `id`: its output from `from` (stdout,
/// stderr) into the two descriptors that came, then its end on the connection. Returns
/// its pid, which a `signal` on the connection then reaches.
pub fn attach(
    registry: &Registry,
    writer: &Arc<Mutex<UnixStream>>,
    id: u64,
    from: [u64; 2],
    fds: Vec<OwnedFd>,
) -> Result<i32, Reply> {
    let Some(command) = registry.get(id) else {
        return Err(crate::error(
            ErrorKind::NotFound,
            format!("no detached command {id}"),
        ));
    };
    let Ok(pipes) = <[OwnedFd; 2]>::try_from(fds) else {
        return Err(crate::error(
            ErrorKind::BadRequest,
            "attach needs two descriptors: stdout, stderr",
        ));
    };
    {
        let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
        let spawned = Reply::Spawned {
            pid: command.pid,
            command: Some(id),
        };
        let _ = protocol::send(&*writer, &spawned, &[]);
    }
    for (which, pipe) in pipes.into_iter().enumerate() {
        let command = command.clone();
        std::thread::spawn(move || follow(&command, which, from[which], pipe));
    }
    let (writer, pid) = (writer.clone(), command.pid);
    std::thread::spawn(move || {
        let (code, signal, timed_out) = command.wait_end();
        crate::report_end(&writer, code, signal, timed_out);
    });
    Ok(pid)
}
