//! Commands on a pseudo-terminal. The agent opens the terminal in the sandbox's own
//! `devpts` (so `tty` inside names a device that exists there) and hands its master side
//! to the host. The command must lead a new session with the terminal as its controlling
//! one, which takes `setsid` and `TIOCSCTTY` between `fork` and `exec`: rather than
//! run code there, the agent starts itself as a launcher (`--pty-exec`) that does both
//! and then `exec`s the command.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use sandkit_agent::protocol::TerminalSize;

/// The argument that makes the agent a launcher.
pub const LAUNCHER: &str = "--pty-exec";

/// A new terminal: the master side for the host, the other for the command.
pub struct Terminal {
    /// The master side.
    pub master: OwnedFd,
    /// The command's side.
    pub slave: OwnedFd,
}

/// Opens a terminal of `size`.
pub fn open(size: TerminalSize) -> std::io::Result<Terminal> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let winsize = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&slave, winsize)?;
    Ok(Terminal { master, slave })
}

/// Where `program` is, looked up as `execvp` would in `path` from `cwd`: a missing
/// program is then reported before anything starts, as without a terminal.
pub fn find_program(program: &str, path: Option<&str>, cwd: &str) -> Option<PathBuf> {
    let executable = |candidate: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let candidate = Path::new(cwd).join(program);
        return executable(&candidate).then_some(candidate);
    }
    path.unwrap_or("/usr/bin:/bin")
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .map(|candidate| Path::new(cwd).join(candidate))
        .find(|candidate| executable(candidate))
}

/// The launcher: `--pty-exec PROGRAM ARGV0 ARGS...`. Standard input is the terminal.
pub fn launch(mut args: impl Iterator<Item = OsString>) -> ! {
    let (Some(program), Some(argv0)) = (args.next(), args.next()) else {
        eprintln!("sandkit-agent: {LAUNCHER} needs a program and its argv[0]");
        std::process::exit(126);
    };
    let stdin = std::io::stdin();
    let made = rustix::process::setsid()
        .map_err(std::io::Error::from)
        .and_then(|_| rustix::process::ioctl_tiocsctty(stdin.as_fd()).map_err(Into::into));
    if let Err(error) = made {
        eprintln!("sandkit-agent: cannot make the terminal the command's own: {error}");
        std::process::exit(126);
    }
    let error = Command::new(&program).arg0(&argv0).args(args).exec();
    eprintln!("sandkit-agent: {}: {error}", program.to_string_lossy());
    std::process::exit(if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    });
}
