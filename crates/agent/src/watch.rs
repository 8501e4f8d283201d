//! Watching a directory for the host, with inotify, on the connection that asked: the
//! watch lasts until the host closes the connection. Events name paths relative to the
//! watched directory; a rename within the watch is one event (the kernel pairs its two
//! halves by cookie), a move out of it is a deletion and a move in a creation. What a new
//! directory held before its own watch was in place is reported as created (so an
//! entry may be reported twice, never missed).

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use sandkit_agent::protocol::{self, ErrorKind, Reply, WatchEventKind};

/// The most directories one watch follows (each is an inotify watch).
const MAX_DIRECTORIES: usize = 8192;

/// The watches of one request: inotify's descriptor and, per watch, its directory
/// relative to the watched one ("" for the watched one itself).
struct Watches {
    inotify: OwnedFd,
    root: PathBuf,
    recursive: bool,
    dirs: HashMap<i32, PathBuf>,
}

impl Watches {
    /// Watches `relative` (and, when recursive, the directories under it). With
    /// `found`, what is already in it is reported there as created: a directory that
    /// appeared during the watch may have been filled before its own watch was in place.
    fn add(&mut self, relative: &Path, mut found: Option<&mut Vec<Reply>>) {
        if self.dirs.len() >= MAX_DIRECTORIES {
            return;
        }
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DONT_FOLLOW;
        let Ok(wd) = inotify::add_watch(&self.inotify, self.root.join(relative), flags) else {
            return;
        };
        self.dirs.insert(wd, relative.to_path_buf());
        if !self.recursive {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.root.join(relative)) else {
            return;
        };
        for entry in entries.flatten() {
            let path = relative.join(entry.file_name());
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if let Some(found) = found.as_deref_mut() {
                found.push(event(WatchEventKind::Created, &path, None, is_dir));
            }
            if is_dir {
                self.add(&path, found.as_deref_mut());
            }
        }
    }
}

fn event(kind: WatchEventKind, path: &Path, from: Option<&Path>, is_dir: bool) -> Reply {
    Reply::FileEvent {
        kind,
        path: path.to_string_lossy().into_owned(),
        from: from.map(|from| from.to_string_lossy().into_owned()),
        is_dir,
    }
}

/// Serves a `watch` request until the host closes `stream`.
pub fn serve(stream: &UnixStream, path: &str, recursive: bool) {
    let send = |reply: &Reply| protocol::send(stream, reply, &[]).is_ok();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            send(&Reply::Error {
                kind: ErrorKind::NotADirectory,
                message: format!("{path} is not a directory"),
            });
            return;
        }
        Err(error) => {
            send(&Reply::Error {
                kind: ErrorKind::NotFound,
                message: format!("{path}: {error}"),
            });
            return;
        }
    }
    let inotify = match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
        Ok(fd) => fd,
        Err(error) => {
            send(&Reply::Error {
                kind: ErrorKind::Other,
                message: format!("inotify: {error}"),
            });
            return;
        }
    };
    let mut watches = Watches {
        inotify,
        root: PathBuf::from(path),
        recursive,
        dirs: HashMap::new(),
    };
    watches.add(Path::new(""), None);
    if !send(&Reply::Watching) {
        return;
    }
    let mut buffer = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let mut fds = [
            PollFd::new(&watches.inotify, PollFlags::IN),
            PollFd::new(stream, PollFlags::IN),
        ];
        if rustix::event::poll(&mut fds, None).is_err() {
            continue;
        }
        // Anything from the host (or its end) ends the watch: it sends nothing else.
        if !fds[1].revents().is_empty() {
            return;
        }
        if !fds[0].revents().contains(PollFlags::IN) {
            continue;
        }
        let replies = read_events(&mut watches, &mut buffer);
        if !replies.iter().all(send) {
            return;
        }
    }
}

/// Everything inotify has now, as replies.
fn read_events(watches: &mut Watches, buffer: &mut [MaybeUninit<u8>]) -> Vec<Reply> {
    let mut replies = Vec::new();
    // A rename's first half, waiting for its second in the same read.
    let mut moved_from: HashMap<u32, (PathBuf, bool)> = HashMap::new();
    let mut new_dirs = Vec::new();
    // The reader borrows the descriptor while `watches` gains new directories.
    let Ok(inotify) = watches.inotify.try_clone() else {
        return replies;
    };
    let mut reader = inotify::Reader::new(inotify.as_fd(), buffer);
    while let Ok(raw) = reader.next() {
        let flags = raw.events();
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            replies.push(Reply::Error {
                kind: ErrorKind::Other,
                message: "events were lost: the kernel's queue overflowed".into(),
            });
            continue;
        }
        if flags.contains(ReadFlags::IGNORED) {
            watches.dirs.remove(&raw.wd());
            continue;
        }
        let (Some(dir), Some(name)) = (watches.dirs.get(&raw.wd()), raw.file_name()) else {
            continue;
        };
        let path = dir.join(std::ffi::OsStr::new(&*name.to_string_lossy()));
        let is_dir = flags.contains(ReadFlags::ISDIR);
        if flags.contains(ReadFlags::MOVED_FROM) {
            moved_from.insert(raw.cookie(), (path, is_dir));
            continue;
        }
        let reply = if flags.contains(ReadFlags::MOVED_TO) {
            match moved_from.remove(&raw.cookie()) {
                Some((from, _)) => event(WatchEventKind::Renamed, &path, Some(&from), is_dir),
                None => event(WatchEventKind::Created, &path, None, is_dir),
            }
        } else if flags.contains(ReadFlags::CREATE) {
            event(WatchEventKind::Created, &path, None, is_dir)
        } else if flags.contains(ReadFlags::DELETE) {
            event(WatchEventKind::Deleted, &path, None, is_dir)
        } else if flags.contains(ReadFlags::MODIFY) {
            event(WatchEventKind::Modified, &path, None, is_dir)
        } else {
            continue;
        };
        if is_dir && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            new_dirs.push(path);
        }
        // A write in many pieces is one modification per read.
        if replies.last() != Some(&reply) {
            replies.push(reply);
        }
    }
    // A move out of the watch has no second half here.
    for (_, (path, is_dir)) in moved_from {
        replies.push(event(WatchEventKind::Deleted, &path, None, is_dir));
    }
    if watches.recursive {
        for dir in new_dirs {
            watches.add(&dir, Some(&mut replies));
        }
    }
    replies
}
