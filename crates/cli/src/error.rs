//! What can go wrong in a command, and the exit code each failure gets.

use std::path::{Path, PathBuf};

use sandkit::Error;

/// A failed command. Printed as `error: <message>`, or as `{"error": {...}}` with `--json`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Whatever sandkit or the provider reported.
    #[error(transparent)]
    Sandkit(#[from] Error),
    /// A flag or argument that parsed but makes no sense; names the flag.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The local path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The command ran but did not succeed (nothing chosen, conformance failures, ...).
    #[error("{0}")]
    Failed(String),
    /// A signal arrived; everything was cleaned up before exiting.
    #[error("interrupted by signal {signal}{}", cleanup.as_deref().map(|c| format!("; {c}")).unwrap_or_default())]
    Interrupted {
        /// The signal number (2 for SIGINT, 15 for SIGTERM).
        signal: i32,
        /// What was cleaned up, in words.
        cleanup: Option<String>,
    },
}

impl CliError {
    /// A usage error naming the flag.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// An I/O error on a local path.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_owned(),
            source,
        }
    }

    /// A short stable name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sandkit(error) => error.kind(),
            Self::Usage(_) => "usage",
            Self::Io { .. } => "io",
            Self::Failed(_) => "failed",
            Self::Interrupted { .. } => "interrupted",
        }
    }

    /// The process exit code (documented in `sandkit --help`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::Sandkit(
                Error::InvalidSpec { .. }
                | Error::InvalidConfig { .. }
                | Error::ConfigFile { .. }
                | Error::UnknownProvider { .. },
            ) => 2,
            Self::Sandkit(Error::CommandTimeout { .. }) => 124,
            Self::Sandkit(Error::ExecFailed { .. }) => 126,
            Self::Sandkit(Error::ProgramNotFound { .. }) => 127,
            Self::Interrupted { signal, .. } => 128 + signal,
            Self::Sandkit(_) | Self::Io { .. } | Self::Failed(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_and_failures_exit_1() {
        let invalid = CliError::from(Error::invalid_spec("cpu", "must be positive"));
        assert_eq!(invalid.exit_code(), 2);
        assert_eq!(invalid.kind(), "invalid_spec");
        assert_eq!(CliError::usage("--gpu: bad").exit_code(), 2);
        let missing = CliError::from(Error::sandbox_not_found("sb-1"));
        assert_eq!(missing.exit_code(), 1);
    }

    #[test]
    fn exec_failures_follow_shell_conventions() {
        let missing = Error::ProgramNotFound {
            program: "/no/such".into(),
        };
        assert_eq!(CliError::from(missing).exit_code(), 127);
        let denied = Error::ExecFailed {
            program: "./data.txt".into(),
            reason: "permission denied: not executable".into(),
        };
        assert_eq!(CliError::from(denied).exit_code(), 126);
        // The type decides, not the words: a reason that mentions "not found" is still 126.
        let cwd = Error::ExecFailed {
            program: "true".into(),
            reason: "working directory /x: not found".into(),
        };
        assert_eq!(CliError::from(cwd).exit_code(), 126);
        let interrupted = CliError::Interrupted {
            signal: 2,
            cleanup: None,
        };
        assert_eq!(interrupted.exit_code(), 130);
    }
}
