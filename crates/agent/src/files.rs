//! File requests: the agent reads and writes the sandbox's files from inside it, so every
//! path resolves as the sandbox's own processes see it (its root, its mounts, its
//! symlinks), and nothing the sandbox does to a path can point the host at its own
//! files. Contents travel through a pipe the host hands over, never through frames.
//!
//! Only regular files are read or written: a FIFO, socket or device is refused at once
//! (opened non-blocking, checked with `fstat` before use), and so is anything on a
//! kernel filesystem (`/proc`, `/sys`, ...), as local-process refuses them.

use std::fs::File;
use std::io::ErrorKind as IoKind;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::OFlags;
use rustix::io::Errno;
use sandkit_agent::kernel;
use sandkit_agent::protocol::{self, DirEntryInfo, ErrorKind, PathInfo, PathKind, Reply};

/// Entries per `entries` frame, well inside the frame limit even with long names.
const ENTRIES_PER_FRAME: usize = 2048;

type Failure = (ErrorKind, String);

fn send(stream: &UnixStream, reply: &Reply) -> bool {
    protocol::send(stream, reply, &[]).is_ok()
}

fn send_result(stream: &UnixStream, result: Result<Reply, Failure>) {
    let reply = result.unwrap_or_else(|(kind, message)| Reply::Error { kind, message });
    send(stream, &reply);
}

/// The protocol's kind of an I/O failure on `path`.
fn failure(error: &std::io::Error) -> Failure {
    let kind = match error.kind() {
        IoKind::NotFound => ErrorKind::NotFound,
        IoKind::PermissionDenied | IoKind::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
        IoKind::IsADirectory => ErrorKind::IsADirectory,
        IoKind::NotADirectory => ErrorKind::NotADirectory,
        IoKind::AlreadyExists => ErrorKind::AlreadyExists,
        IoKind::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
        _ if error.raw_os_error() == Some(Errno::PERM.raw_os_error()) => {
            ErrorKind::PermissionDenied
        }
        _ => ErrorKind::Other,
    };
    let message = if error.raw_os_error() == Some(Errno::LOOP.raw_os_error()) {
        "too many levels of symbolic links".to_owned()
    } else {
        error.to_string()
    };
    (kind, message)
}

fn one_fd(fds: Vec<OwnedFd>) -> Result<OwnedFd, Failure> {
    let count = fds.len();
    <[OwnedFd; 1]>::try_from(fds).map(|[fd]| fd).map_err(|_| {
        (
            ErrorKind::BadRequest,
            format!("expected one descriptor, got {count}"),
        )
    })
}

/// Checks that the open `file` is a regular file off the kernel's filesystems; its size.
fn regular(file: &File) -> Result<u64, Failure> {
    let meta = file.metadata().map_err(|e| failure(&e))?;
    if meta.is_dir() {
        return Err((ErrorKind::IsADirectory, "is a directory".to_owned()));
    }
    if !meta.is_file() {
        return Err((
            ErrorKind::Other,
            "not a regular file or directory (a FIFO, socket or device)".to_owned(),
        ));
    }
    if kernel::is_kernel_file(file).map_err(|e| failure(&e))? {
        return Err((
            ErrorKind::PermissionDenied,
            "a kernel filesystem's files are not read or written".to_owned(),
        ));
    }
    Ok(meta.len())
}

fn open_to_read(path: &str) -> Result<File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Non-blocking: opening a FIFO must not wait for its other end.
    let flags = OFlags::NONBLOCK | OFlags::NOCTTY;
    options.custom_flags(flags.bits() as i32);
    options.open(path).map_err(|e| failure(&e))
}

/// [`protocol::Request::ReadFile`].
pub fn read(stream: &UnixStream, path: &str, fds: Vec<OwnedFd>) {
    let opened = one_fd(fds).and_then(|out| {
        let file = open_to_read(path)?;
        let size = regular(&file)?;
        Ok((file, size, File::from(out)))
    });
    let (mut file, size, mut out) = match opened {
        Ok(opened) => opened,
        Err(failure) => return send_result(stream, Err(failure)),
    };
    if !send(stream, &Reply::FileOpened { size }) {
        return;
    }
    // The standard library moves the bytes in the kernel (`sendfile` to a pipe).
    let copied = std::io::copy(&mut file, &mut out);
    drop(out);
    send_result(stream, copied.map(|_| Reply::Done).map_err(|e| failure(&e)));
}

/// [`protocol::Request::WriteFile`]: into a new file beside `path`, renamed over it
/// on `commit`, so a write cut short leaves nothing.
pub fn write(stream: &UnixStream, path: &str, fds: Vec<OwnedFd>) {
    let opened = one_fd(fds).and_then(|input| {
        let target = Path::new(path);
        let (Some(parent), Some(_)) = (target.parent(), target.file_name()) else {
            return Err((ErrorKind::IsADirectory, "is a directory".to_owned()));
        };
        // A file where a parent should be is in the path's way, not at its end.
        make_dirs(parent).map_err(|(kind, message)| match kind {
            ErrorKind::AlreadyExists => (ErrorKind::NotADirectory, message),
            kind => (kind, message),
        })?;
        if std::fs::symlink_metadata(target).is_ok_and(|meta| meta.is_dir()) {
            return Err((ErrorKind::IsADirectory, "is a directory".to_owned()));
        }
        let (temporary, file) = new_file_in(parent)?;
        Ok((temporary, file, File::from(input)))
    });
    let (temporary, mut file, mut input) = match opened {
        Ok(opened) => opened,
        Err(failure) => return send_result(stream, Err(failure)),
    };
    let written =
        send(stream, &Reply::FileOpened { size: 0 }).then(|| std::io::copy(&mut input, &mut file));
    drop(file);
    let outcome = match written {
        // The host is gone: nothing to answer.
        None => None,
        Some(Err(e)) => Some(Err(failure(&e))),
        Some(Ok(_)) => match protocol::receive::<protocol::Request>(stream) {
            Ok((protocol::Request::Commit, _)) => Some(
                std::fs::rename(&temporary, path)
                    .map(|()| Reply::Done)
                    .map_err(|e| failure(&e)),
            ),
            // No commit: the host gave up (its source failed) or went away.
            _ => None,
        },
    };
    if !matches!(outcome, Some(Ok(_))) {
        let _ = std::fs::remove_file(&temporary);
    }
    if let Some(outcome) = outcome {
        send_result(stream, outcome);
    }
}

/// A new, empty regular file in `dir` (mode 0644), under a name of its own.
fn new_file_in(dir: &Path) -> Result<(std::path::PathBuf, File), Failure> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = if dir.as_os_str().is_empty() {
        Path::new("/")
    } else {
        dir
    };
    let directory = File::open(dir).map_err(|e| failure(&e))?;
    if kernel::is_kernel_file(&directory).map_err(|e| failure(&e))? {
        return Err((
            ErrorKind::PermissionDenied,
            "a kernel filesystem's files are not read or written".to_owned(),
        ));
    }
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!(".sandkit-write-{}-{n}", std::process::id());
        let candidate = dir.join(name);
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&candidate);
        match created {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == IoKind::AlreadyExists => continue,
            Err(e) => return Err(failure(&e)),
        }
    }
}

fn kind_of(file_type: std::fs::FileType) -> PathKind {
    if file_type.is_symlink() {
        PathKind::Symlink
    } else if file_type.is_dir() {
        PathKind::Directory
    } else if file_type.is_file() {
        PathKind::File
    } else {
        PathKind::Other
    }
}

/// [`protocol::Request::Stat`].
pub fn stat(stream: &UnixStream, path: &str) {
    let info = std::fs::symlink_metadata(path).map(|meta| {
        Reply::PathInfo(PathInfo {
            kind: kind_of(meta.file_type()),
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            modified_secs: u64::try_from(meta.mtime()).ok(),
        })
    });
    send_result(stream, info.map_err(|e| failure(&e)));
}

/// [`protocol::Request::ListDir`].
pub fn list(stream: &UnixStream, path: &str) {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => return send_result(stream, Err(failure(&e))),
    };
    let mut batch = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return send_result(stream, Err(failure(&e))),
        };
        // An entry removed since the directory was read is no longer an entry.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        batch.push(DirEntryInfo {
            name: String::from_utf8_lossy(entry.file_name().as_bytes()).into_owned(),
            kind: kind_of(meta.file_type()),
            size: meta.len(),
        });
        if batch.len() == ENTRIES_PER_FRAME {
            let entries = std::mem::take(&mut batch);
            if !send(stream, &Reply::Entries { entries }) {
                return;
            }
        }
    }
    if !batch.is_empty() && !send(stream, &Reply::Entries { entries: batch }) {
        return;
    }
    send(stream, &Reply::Done);
}

/// Makes `path` and its missing parents; a non-directory in the way is `already-exists`
/// at the end of the path and `not-a-directory` before it.
fn make_dirs(path: &Path) -> Result<(), Failure> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == IoKind::AlreadyExists => Err((
            ErrorKind::AlreadyExists,
            format!("{}: exists and is not a directory", path.display()),
        )),
        Err(e) => Err(failure(&e)),
    }
}

/// [`protocol::Request::MakeDir`].
pub fn make_dir(stream: &UnixStream, path: &str) {
    send_result(stream, make_dirs(Path::new(path)).map(|()| Reply::Done));
}

/// [`protocol::Request::Remove`].
pub fn remove(stream: &UnixStream, path: &str, recursive: bool) {
    let removed = (|| {
        if Path::new(path).parent().is_none() {
            return Err(std::io::Error::from(IoKind::PermissionDenied));
        }
        let meta = std::fs::symlink_metadata(path)?;
        match (meta.is_dir(), recursive) {
            (false, _) => std::fs::remove_file(path),
            // The standard library's removal never follows a symlink met on the way.
            (true, true) => std::fs::remove_dir_all(path),
            (true, false) => std::fs::remove_dir(path),
        }
    })();
    send_result(
        stream,
        removed.map(|()| Reply::Done).map_err(|e| failure(&e)),
    );
}
