//! Engine errors mapped into sandkit's errors. Nothing here is public: callers only ever
//! see [`sandkit_core::Error`].

use bollard::errors::Error as BollardError;
use sandkit_core::{Error, FileErrorKind, SandboxId, SandboxState};

use crate::provider::PROVIDER_NAME;

/// What a failed request was about, so that a 404 or a 409 becomes the right error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// The engine itself (info, version, list).
    Engine,
    /// A sandbox (container) by id.
    Sandbox(&'a str),
    /// A sandbox about to be created under this name.
    NewSandbox(Option<&'a str>),
    /// A command in a sandbox.
    Exec(&'a str),
    /// An image by reference.
    Image(&'a str),
    /// A snapshot (an image sandkit committed) by id.
    Snapshot(&'a str),
    /// A path in a sandbox, as the caller gave it.
    Path {
        /// The sandbox.
        sandbox: &'a str,
        /// The path as the caller wrote it.
        path: &'a str,
    },
}

/// The source carried by [`Error::Provider`] when no sandkit variant fits.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    /// The engine answered with an error status.
    #[error("engine answered {status}: {message}")]
    Engine {
        /// HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// Anything else the client reported (bad response, decoding, I/O).
    #[error(transparent)]
    Client(BollardError),
}

/// A sandkit error from anything this crate can describe in words.
pub(crate) fn other(message: impl Into<String>) -> Error {
    Error::provider(
        PROVIDER_NAME,
        DockerError::Engine {
            status: 0,
            message: message.into(),
        },
    )
}

/// The hint every "engine unreachable" error carries.
pub(crate) const START_ENGINE_HINT: &str =
    "is dockerd running? `scripts/docker-engine.sh` starts one as root";

/// Maps an engine error about `subject` into sandkit's error.
pub(crate) fn map(error: BollardError, subject: Subject<'_>) -> Error {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => map_status(status_code, message, subject),
        BollardError::RequestTimeoutError => Error::Unavailable {
            message: "the Docker Engine did not answer in time".to_owned(),
        },
        BollardError::SocketNotFoundError(path) => Error::Unavailable {
            message: format!("no Docker Engine socket at {path}; {START_ENGINE_HINT}"),
        },
        BollardError::HyperLegacyError { err } => Error::Unavailable {
            message: format!("cannot talk to the Docker Engine: {err}; {START_ENGINE_HINT}"),
        },
        BollardError::IOError { err } => Error::Unavailable {
            message: format!("connection to the Docker Engine failed: {err}"),
        },
        BollardError::DockerStreamError { error } => match subject {
            Subject::Image(image) => Error::CreationFailed {
                message: format!("image `{image}`: {error}"),
            },
            _ => other(error),
        },
        error => Error::provider(PROVIDER_NAME, DockerError::Client(error)),
    }
}

fn map_status(status: u16, message: String, subject: Subject<'_>) -> Error {
    let lower = message.to_ascii_lowercase();
    let no_such_container = lower.contains("no such container");
    match (status, subject) {
        // A container that is gone (or was never ours) is the same as a finished one.
        (404, Subject::Sandbox(id) | Subject::Exec(id)) => Error::sandbox_not_found(id),
        (404, Subject::Path { sandbox, .. }) if no_such_container => {
            Error::sandbox_not_found(sandbox)
        }
        (404, Subject::Path { path, .. }) => Error::file(path, FileErrorKind::NotFound),
        (404, Subject::Image(image)) => Error::NotFound {
            what: format!("image `{image}`"),
        },
        (404, Subject::Snapshot(id)) => Error::NotFound {
            what: format!("snapshot `{id}`"),
        },
        (409, Subject::NewSandbox(Some(name))) => Error::AlreadyExists {
            what: format!("sandbox named `{name}`"),
        },
        (409, Subject::Sandbox(id) | Subject::Exec(id) | Subject::Path { sandbox: id, .. })
            if lower.contains("not running") || lower.contains("is restarting") =>
        {
            Error::sandbox_not_found(id)
        }
        // "Container <id> is paused, unpause the container before exec".
        (409, Subject::Sandbox(id) | Subject::Exec(id) | Subject::Path { sandbox: id, .. })
            if lower.contains("is paused") =>
        {
            let operation = match subject {
                Subject::Exec(_) => "exec",
                Subject::Path { .. } => "reach its files",
                _ => "act on it",
            };
            Error::invalid_state(&SandboxId::from(id), SandboxState::Paused, operation)
        }
        (400 | 500, Subject::Path { path, .. }) if lower.contains("not a directory") => {
            Error::file(path, FileErrorKind::NotADirectory)
        }
        (400 | 500, Subject::Path { path, .. })
            if lower.contains("cannot overwrite directory") || lower.contains("is a directory") =>
        {
            Error::file(path, FileErrorKind::IsADirectory)
        }
        (400 | 500, Subject::Path { path, .. })
            if lower.contains("cannot overwrite non-directory") =>
        {
            Error::file(path, FileErrorKind::NotADirectory)
        }
        (400 | 500, Subject::Path { path, .. }) if lower.contains("permission denied") => {
            Error::file(path, FileErrorKind::PermissionDenied)
        }
        (400 | 500, Subject::Path { path, .. }) if lower.contains("read-only file system") => {
            Error::file(path, FileErrorKind::PermissionDenied)
        }
        (_, _) if lower.contains("no space left on device") => Error::ResourceLimitExceeded {
            message: format!("the engine's disk is full: {message}"),
        },
        (400 | 500, Subject::Path { path, .. }) if lower.contains("file name too long") => {
            Error::file(path, FileErrorKind::Other("file name too long".to_owned()))
        }
        (400 | 500, Subject::Path { path, .. })
            if lower.contains("too many links") || lower.contains("too many levels") =>
        {
            Error::file(
                path,
                FileErrorKind::Other("too many levels of symbolic links".to_owned()),
            )
        }
        // Any other refusal of a path: a file error, with the engine's reason but not
        // its host paths (`lstat /var/lib/docker/overlay2/...: reason`).
        (400 | 500, Subject::Path { path, .. }) => Error::file(
            path,
            FileErrorKind::Other(format!(
                "the engine refused the path: {}",
                message.rsplit(": ").next().unwrap_or_default().trim()
            )),
        ),
        (400 | 500, Subject::NewSandbox(_) | Subject::Image(_)) => {
            Error::CreationFailed { message }
        }
        (401, _) => Error::AuthenticationFailed { message },
        (403, _) => Error::PermissionDenied { message },
        (429, _) => Error::RateLimited { retry_after: None },
        (502..=504, _) => Error::Unavailable { message },
        (status, _) => Error::provider(PROVIDER_NAME, DockerError::Engine { status, message }),
    }
}

/// Whether `error` is the engine saying the thing is missing (any 404).
pub(crate) fn is_not_found(error: &BollardError) -> bool {
    matches!(
        error,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `error` may be the engine refusing a pause or unpause for the container's
/// state: a 409, or a 500 (Docker 20.10 answers "Container ... is already paused" and
/// "... is not paused" with 500). Only the state, asked afresh, tells such a refusal from
/// another failure.
pub(crate) fn is_state_refusal(error: &BollardError) -> bool {
    matches!(
        error,
        BollardError::DockerResponseServerError {
            status_code: 409 | 500,
            ..
        }
    )
}

/// Whether `error` is a 409 conflict.
pub(crate) fn is_conflict(error: &BollardError) -> bool {
    matches!(
        error,
        BollardError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn missing_containers_are_not_found_sandboxes() {
        let error = map(
            server(404, "No such container: abc"),
            Subject::Sandbox("abc"),
        );
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
        let error = map(
            server(409, "Container abc is not running"),
            Subject::Exec("abc"),
        );
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    }

    #[test]
    fn an_exec_on_a_paused_container_is_invalid_state() {
        let error = map(
            server(
                409,
                "Container abc is paused, unpause the container before exec",
            ),
            Subject::Exec("abc"),
        );
        match error {
            Error::InvalidState {
                id,
                state,
                operation,
            } => {
                assert_eq!(id.as_str(), "abc");
                assert_eq!(state, SandboxState::Paused);
                assert_eq!(operation, "exec");
            }
            other => panic!("expected InvalidState, got {other:?}"),
        }
    }

    #[test]
    fn path_errors_keep_the_path_and_tell_container_from_file() {
        let path = Subject::Path {
            sandbox: "abc",
            path: "a/b.txt",
        };
        match map(
            server(404, "Could not find the file /w/a/b.txt in container abc"),
            path,
        ) {
            Error::FileOperation { path, kind } => {
                assert_eq!(path, "a/b.txt");
                assert_eq!(kind, FileErrorKind::NotFound);
            }
            other => panic!("expected a file error, got {other:?}"),
        }
        let error = map(server(404, "No such container: abc"), path);
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    }

    #[test]
    fn engine_refusals_of_a_path_are_file_errors_without_host_paths() {
        let path = Subject::Path {
            sandbox: "abc",
            path: "long-aaaa",
        };
        for message in [
            "lstat /var/lib/docker/overlay2/5df9/merged/long-aaaa: file name too long",
            "evalSymlinksInScope: too many links in /var/lib/docker/overlay2/5df9/merged/deep",
            "lstat /var/lib/docker/overlay2/5df9/merged/x: invalid argument",
        ] {
            match map(server(500, message), path) {
                Error::FileOperation {
                    path,
                    kind: FileErrorKind::Other(reason),
                } => {
                    assert_eq!(path, "long-aaaa");
                    assert!(!reason.contains("/var/lib/docker"), "{reason}");
                }
                other => panic!("expected a file error for {message:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_taken_name_is_already_exists() {
        let error = map(
            server(409, "Conflict. The container name \"/x\" is already in use"),
            Subject::NewSandbox(Some("x")),
        );
        assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
    }

    #[test]
    fn an_unreachable_engine_is_retryable() {
        let error = map(
            BollardError::SocketNotFoundError("/nope.sock".into()),
            Subject::Engine,
        );
        assert!(error.is_retryable(), "{error:?}");
        assert!(error.to_string().contains("docker-engine.sh"), "{error}");
    }
}
