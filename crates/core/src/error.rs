//! The one error type every provider maps its failures into.

use std::time::Duration;

use bytes::Bytes;

use crate::provider::{SandboxId, SandboxState};

/// Result alias used across sandkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a file operation inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileErrorKind {
    /// No file or directory at the path.
    NotFound,
    /// The path is a directory where a file was expected.
    IsADirectory,
    /// A component of the path, or the path itself, is not a directory.
    NotADirectory,
    /// The sandbox's permissions forbid the operation.
    PermissionDenied,
    /// Something already exists at the path.
    AlreadyExists,
    /// The path resolves outside the sandbox (through `..`, an absolute path or a symlink).
    OutsideSandbox,
    /// A directory that must be empty is not.
    DirectoryNotEmpty,
    /// The file is larger than the provider can transfer in one call.
    TooLarge,
    /// Anything else, described in words.
    Other(String),
}

impl std::fmt::Display for FileErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such file or directory"),
            Self::IsADirectory => f.write_str("is a directory"),
            Self::NotADirectory => f.write_str("not a directory"),
            Self::PermissionDenied => f.write_str("permission denied"),
            Self::AlreadyExists => f.write_str("already exists"),
            Self::OutsideSandbox => f.write_str("path escapes the sandbox"),
            Self::DirectoryNotEmpty => f.write_str("directory not empty"),
            Self::TooLarge => f.write_str("file too large"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl FileErrorKind {
    /// Maps an I/O error kind onto the portable file error kinds.
    pub fn from_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::NotFound => Self::NotFound,
            // A read-only filesystem forbids the write just as permissions would.
            K::PermissionDenied | K::ReadOnlyFilesystem => Self::PermissionDenied,
            K::AlreadyExists => Self::AlreadyExists,
            K::IsADirectory => Self::IsADirectory,
            K::NotADirectory => Self::NotADirectory,
            K::DirectoryNotEmpty => Self::DirectoryNotEmpty,
            K::FileTooLarge => Self::TooLarge,
            _ => Self::Other(error.to_string()),
        }
    }
}

/// Every failure sandkit reports, whichever provider produced it.
///
/// Providers map their transport errors (Docker, gRPC, HTTP) into these variants; no
/// transport error type appears in a public signature. Nothing here ever carries a token
/// or other secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of a spec or request has a bad value.
    #[error("invalid spec: `{field}`: {reason}")]
    InvalidSpec {
        /// Dotted path of the offending field, e.g. `gpu.count` or `env.PATH`.
        field: String,
        /// Why the value is rejected.
        reason: String,
    },
    /// A provider's configuration is invalid.
    #[error("invalid configuration for provider `{provider}`: {reason}")]
    InvalidConfig {
        /// Registry name of the provider.
        provider: String,
        /// What is wrong, naming the field where known.
        reason: String,
    },
    /// The provider cannot do what was asked; nothing was attempted.
    #[error("provider `{provider}` does not support {feature}")]
    Unsupported {
        /// Registry name of the provider.
        provider: String,
        /// The operation or option, in words.
        feature: String,
    },
    /// No provider is registered under this name.
    #[error("unknown provider `{name}`; known providers: {}", known.join(", "))]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// Every registered name.
        known: Vec<String>,
    },
    /// A configuration file (such as `sandkit.toml`) is wrong.
    #[error("{path}{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    ConfigFile {
        /// The file, or the pool the problem belongs to.
        path: String,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong and what was expected, naming the field.
        reason: String,
    },
    /// No pool can take the job: every pool's reasons, rule by rule, and every failure.
    #[error("no pool can run this sandbox: {}", describe_no_pool(rejected, failed))]
    NoPoolAvailable {
        /// Pools that do not meet the requirements, with their unmet rules.
        rejected: Vec<crate::requirements::Rejection>,
        /// Pools that were tried and failed, with the error message.
        failed: Vec<(String, String)>,
    },
    /// Credentials were missing or rejected.
    #[error("authentication failed: {message}")]
    AuthenticationFailed {
        /// Details, never including the credentials.
        message: String,
    },
    /// The credentials are valid but not allowed to do this.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// Details.
        message: String,
    },
    /// The sandbox (or snapshot, image, volume...) does not exist or has finished.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// Something with this name already exists.
    #[error("already exists: {what}")]
    AlreadyExists {
        /// What collided.
        what: String,
    },
    /// The provider failed to create the sandbox.
    #[error("sandbox creation failed: {message}")]
    CreationFailed {
        /// Details.
        message: String,
    },
    /// The command could not be started although its program may exist: not executable,
    /// a directory, a missing working directory... (shells exit 126). A program that does
    /// not exist is [`Error::ProgramNotFound`]; a provider that cannot tell the two apart
    /// reports this one.
    #[error("cannot execute `{program}`: {reason}")]
    ExecFailed {
        /// `argv[0]`.
        program: String,
        /// Why it could not start.
        reason: String,
    },
    /// The command's program does not exist: nothing at the path `argv[0]` names, nothing
    /// of that name on `PATH`, or a script whose interpreter is missing (shells exit 127).
    #[error("cannot execute `{program}`: program not found")]
    ProgramNotFound {
        /// `argv[0]`.
        program: String,
    },
    /// A command ran past its timeout; its process tree was killed.
    #[error("command timed out after {timeout:?}")]
    CommandTimeout {
        /// The timeout that expired.
        timeout: Duration,
        /// Standard output produced before the kill (empty when the caller streamed it).
        stdout: Bytes,
        /// Standard error produced before the kill (empty when the caller streamed it).
        stderr: Bytes,
    },
    /// An operation other than a command took too long.
    #[error("{operation} timed out after {timeout:?}")]
    Timeout {
        /// The operation, in words.
        operation: String,
        /// How long was allowed.
        timeout: Duration,
    },
    /// A cpu, memory, pids, disk or quota limit was hit (e.g. an out-of-memory kill).
    #[error("resource limit exceeded: {message}")]
    ResourceLimitExceeded {
        /// Details.
        message: String,
    },
    /// The provider asks the caller to slow down.
    #[error("rate limited{}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// How long the provider asked the caller to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached or is temporarily failing.
    #[error("provider unavailable: {message}")]
    Unavailable {
        /// Details.
        message: String,
    },
    /// The sandbox's state forbids the operation; nothing was done. Not retryable: the
    /// state changes only when someone acts on the sandbox. The same rules on every
    /// provider:
    ///
    /// - a paused sandbox refuses `exec`, every file operation (files, streams, archives)
    ///   and `pause` (pausing twice is an error, not a no-op);
    /// - a running sandbox refuses `resume`;
    /// - `info`, `list` and `terminate` work in any state.
    ///
    /// A finished sandbox is [`Error::NotFound`] for every operation, not this; one still
    /// being created is [`Error::Unavailable`], as that state ends by itself.
    #[error("sandbox {id} is {state}: cannot {operation}")]
    InvalidState {
        /// The sandbox.
        id: SandboxId,
        /// The state it is in.
        state: SandboxState,
        /// What was attempted: the [`SandboxProvider`](crate::SandboxProvider) method, such
        /// as `exec`, `read_file` or `resume`.
        operation: String,
    },
    /// A file operation inside a sandbox failed.
    #[error("`{path}`: {kind}")]
    FileOperation {
        /// The path as the caller gave it.
        path: String,
        /// What went wrong.
        kind: FileErrorKind,
    },
    /// A volume could not be created, found or mounted.
    #[error("volume error: {message}")]
    Volume {
        /// Details.
        message: String,
    },
    /// Any other provider failure, with the provider's own error as the source.
    #[error("provider `{provider}`: {source}")]
    Provider {
        /// Registry name of the provider.
        provider: String,
        /// The underlying error (never containing secrets).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether repeating the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Timeout { .. }
        )
    }

    /// The wait the provider asked for, when it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Shorthand for [`Error::InvalidSpec`].
    pub fn invalid_spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(provider: impl Into<String>, feature: impl Into<String>) -> Self {
        Self::Unsupported {
            provider: provider.into(),
            feature: feature.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`] about a sandbox id.
    pub fn sandbox_not_found(id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            what: format!("sandbox `{id}`"),
        }
    }

    /// Shorthand for [`Error::InvalidState`].
    pub fn invalid_state(
        id: &SandboxId,
        state: SandboxState,
        operation: impl Into<String>,
    ) -> Self {
        Self::InvalidState {
            id: id.clone(),
            state,
            operation: operation.into(),
        }
    }

    /// Shorthand for [`Error::FileOperation`].
    pub fn file(path: impl Into<String>, kind: FileErrorKind) -> Self {
        Self::FileOperation {
            path: path.into(),
            kind,
        }
    }

    /// Shorthand for [`Error::Provider`].
    pub fn provider(
        provider: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Provider {
            provider: provider.into(),
            source: source.into(),
        }
    }

    /// A short stable name of the variant, for reports and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Unsupported { .. } => "unsupported",
            Self::UnknownProvider { .. } => "unknown_provider",
            Self::ConfigFile { .. } => "config_file",
            Self::NoPoolAvailable { .. } => "no_pool_available",
            Self::AuthenticationFailed { .. } => "authentication_failed",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::CreationFailed { .. } => "creation_failed",
            Self::ExecFailed { .. } => "exec_failed",
            Self::ProgramNotFound { .. } => "program_not_found",
            Self::CommandTimeout { .. } => "command_timeout",
            Self::Timeout { .. } => "timeout",
            Self::ResourceLimitExceeded { .. } => "resource_limit_exceeded",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::InvalidState { .. } => "invalid_state",
            Self::FileOperation { .. } => "file_operation",
            Self::Volume { .. } => "volume",
            Self::Provider { .. } => "provider",
        }
    }
}

fn describe_no_pool(
    rejected: &[crate::requirements::Rejection],
    failed: &[(String, String)],
) -> String {
    let mut parts: Vec<String> = rejected
        .iter()
        .map(|r| {
            let rules: Vec<String> = r.unmet.iter().map(ToString::to_string).collect();
            format!("`{}` rejected ({})", r.name, rules.join("; "))
        })
        .collect();
    parts.extend(
        failed
            .iter()
            .map(|(pool, error)| format!("`{pool}` failed ({error})")),
    );
    if parts.is_empty() {
        "no pools are configured".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        assert!(Error::RateLimited { retry_after: None }.is_retryable());
        assert!(
            Error::Unavailable {
                message: "x".into()
            }
            .is_retryable()
        );
        assert!(!Error::sandbox_not_found("sb-1").is_retryable());
        assert!(!Error::invalid_spec("cpu", "zero").is_retryable());
    }

    #[test]
    fn invalid_state_names_sandbox_state_and_operation_and_is_final() {
        let error = Error::invalid_state(&SandboxId::from("sb-1"), SandboxState::Paused, "exec");
        assert_eq!(error.to_string(), "sandbox sb-1 is paused: cannot exec");
        assert_eq!(error.kind(), "invalid_state");
        // Waiting does not resume a sandbox: only someone's resume does.
        assert!(!error.is_retryable());
    }

    #[test]
    fn invalid_spec_names_the_field() {
        let message = Error::invalid_spec("gpu.count", "must be at least 1").to_string();
        assert!(message.contains("gpu.count"), "{message}");
    }

    #[test]
    fn unknown_provider_lists_known_names() {
        let error = Error::UnknownProvider {
            name: "nope".into(),
            known: vec!["local-process".into(), "modal".into()],
        };
        assert_eq!(
            error.to_string(),
            "unknown provider `nope`; known providers: local-process, modal"
        );
    }
}
