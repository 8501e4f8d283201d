//! Private errors of the local-process provider and their mapping into
//! [`sandkit_core::Error`].

use std::fmt;
use std::io;

use sandkit_core::{Error, FileErrorKind};

use crate::NAME;

/// An I/O failure of the provider's own bookkeeping, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
struct IoFailure {
    context: String,
    #[source]
    source: io::Error,
}

/// A failure of the provider itself (state directory, process spawning), as
/// [`Error::Provider`].
pub(crate) fn internal(context: impl fmt::Display, source: io::Error) -> Error {
    Error::provider(
        NAME,
        IoFailure {
            context: context.to_string(),
            source,
        },
    )
}

/// A failure of a file operation on `path` (the caller's spelling).
pub(crate) fn file(path: &str, source: &io::Error) -> Error {
    Error::file(path, file_kind(source))
}

/// The portable kind of an I/O error, naming `ELOOP` (a symlink we refused to follow)
/// too.
pub(crate) fn file_kind(source: &io::Error) -> FileErrorKind {
    if source.raw_os_error() == Some(nix::libc::ELOOP) {
        return FileErrorKind::Other("too many levels of symbolic links".into());
    }
    FileErrorKind::from_io(source)
}

/// A path that leaves the sandbox root.
pub(crate) fn outside(path: &str) -> Error {
    Error::file(path, FileErrorKind::OutsideSandbox)
}
