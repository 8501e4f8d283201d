//! Threads for connections and for the commands' waiters, kept a while for the next one:
//! a thread made and torn down per exec (its stack mapped, guarded, released, and the
//! other threads' TLBs flushed) cost the agent a third of its time under many execs at
//! once. There is no bound: every job may block for as long as its connection or its
//! command lasts, so none may wait for another to finish.

use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle thread waits for another job before it ends.
const KEEP_IDLE: Duration = Duration::from_secs(10);

/// The idle threads, each by a number of its own and where its next job goes.
static IDLE: Mutex<Vec<(u64, mpsc::Sender<Job>)>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);

/// Runs `job` on an idle thread, or on a new one when none is idle.
pub fn run(job: impl FnOnce() + Send + 'static) {
    let mut job: Job = Box::new(job);
    loop {
        let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some((_, worker)) = idle else { break };
        match worker.send(job) {
            Ok(()) => return,
            // It ended just now: try the next.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    let id = {
        let mut next = NEXT_ID.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    std::thread::spawn(move || work(id, job));
}

fn work(id: u64, mut job: Job) {
    let (sender, jobs) = mpsc::channel::<Job>();
    loop {
        job();
        IDLE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, sender.clone()));
        job = match jobs.recv_timeout(KEEP_IDLE) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => {
                IDLE.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(idle, _)| *idle != id);
                // A job handed over before this thread left the list is still run; one
                // handed over later fails to send and goes elsewhere.
                match jobs.try_recv() {
                    Ok(next) => next,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}
