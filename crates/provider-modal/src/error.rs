//! Mapping gRPC statuses and fs-tools failures into sandkit's errors.
//!
//! Only the status code and the server's message are used: metadata (which carries tokens
//! and JWTs) never reaches an error.

use std::time::Duration;

use sandkit_core::{Error, FileErrorKind};
use serde::Deserialize;
use tonic::{Code, Status};

use crate::NAME;
use crate::retry::server_retry_after;

/// A failed control-plane call: the server's status and what the call was about. `?` maps
/// it into sandkit's error with [`from_status`]; callers that treat some codes otherwise
/// look at [`CallError::code`] first.
#[derive(Debug)]
pub(crate) struct CallError {
    status: Status,
    subject: String,
}

impl CallError {
    /// `status` from a call about `subject`.
    pub fn new(status: Status, subject: &str) -> Self {
        Self {
            status,
            subject: subject.to_owned(),
        }
    }

    /// The status code the server answered.
    pub fn code(&self) -> Code {
        self.status.code()
    }
}

impl From<CallError> for Error {
    fn from(error: CallError) -> Self {
        from_status(&error.status, &error.subject)
    }
}

/// Maps a failed call about `subject` (e.g. "sandbox `sb-…`") into a core error.
pub(crate) fn from_status(status: &Status, subject: &str) -> Error {
    let message = status.message();
    match status.code() {
        Code::NotFound => Error::NotFound {
            what: describe(subject, message),
        },
        Code::AlreadyExists => Error::AlreadyExists {
            what: describe(subject, message),
        },
        Code::Unauthenticated => Error::AuthenticationFailed {
            message: format!("Modal rejected the credentials: {message}"),
        },
        Code::PermissionDenied => Error::PermissionDenied {
            message: describe(subject, message),
        },
        Code::ResourceExhausted => Error::RateLimited {
            retry_after: server_retry_after(status),
        },
        Code::InvalidArgument | Code::OutOfRange => Error::InvalidSpec {
            field: subject.to_owned(),
            reason: message.to_owned(),
        },
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal => {
            Error::Unavailable {
                message: format!("Modal: {}", describe(subject, message)),
            }
        }
        Code::DeadlineExceeded => match router_wait(status) {
            Some(waited) => Error::Timeout {
                operation: format!("{subject}: {message}"),
                timeout: waited,
            },
            None => Error::Timeout {
                operation: format!("Modal call about {subject}"),
                timeout: Duration::ZERO,
            },
        },
        Code::FailedPrecondition | Code::Aborted => {
            Error::provider(NAME, format!("conflict: {}", describe(subject, message)))
        }
        Code::Unimplemented => Error::unsupported(
            NAME,
            format!("{subject} (the server does not implement this call: {message})"),
        ),
        Code::Ok | Code::DataLoss => Error::provider(
            NAME,
            format!("{}: {}", status.code(), describe(subject, message)),
        ),
    }
}

/// Marks the status [`router_not_ready`] makes, with the wait in milliseconds. A server
/// sending this key in its trailers could only change the wait an error reports.
const ROUTER_WAIT_KEY: &str = "x-sandkit-router-wait-ms";

/// The failure of a first router call whose router never accepted calls within `waited`:
/// `DEADLINE_EXCEEDED` saying what was waited for and the last answer, which
/// [`from_status`] reports as [`Error::Timeout`] of that length.
pub(crate) fn router_not_ready(task_id: &str, waited: Duration, last: &Status) -> Status {
    let mut status = Status::deadline_exceeded(format!(
        "waiting for the command router of task `{task_id}` to accept calls (the task \
         starting on its worker): none accepted within {} s; last answer: {:?}: {}",
        waited.as_secs(),
        last.code(),
        last.message()
    ));
    if let Ok(value) = waited.as_millis().to_string().parse() {
        status.metadata_mut().insert(ROUTER_WAIT_KEY, value);
    }
    status
}

/// How long a first router call waited, when `status` is [`router_not_ready`]'s.
pub(crate) fn router_wait(status: &Status) -> Option<Duration> {
    if status.code() != Code::DeadlineExceeded {
        return None;
    }
    let millis = status.metadata().get(ROUTER_WAIT_KEY)?.to_str().ok()?;
    millis.parse().ok().map(Duration::from_millis)
}

fn describe(subject: &str, message: &str) -> String {
    if message.is_empty() {
        subject.to_owned()
    } else {
        format!("{subject}: {message}")
    }
}

/// The error report `modal-sandbox-fs-tools` prints on stderr when it fails.
#[derive(Debug, Deserialize)]
struct FsToolsError {
    error_kind: String,
    #[serde(default)]
    message: String,
}

/// Maps a failed fs-tools run on `path` (its exit code and stderr) into a core error.
pub(crate) fn from_fs_tools(path: &str, exit_code: i32, stderr: &[u8]) -> Error {
    let Ok(report) = serde_json::from_slice::<FsToolsError>(trim_ascii(stderr)) else {
        let text = String::from_utf8_lossy(stderr);
        let text = text.trim();
        return Error::file(
            path,
            FileErrorKind::Other(if text.is_empty() {
                format!("file operation failed with exit code {exit_code}")
            } else {
                format!("file operation failed with exit code {exit_code}: {text}")
            }),
        );
    };
    let kind = match report.error_kind.as_str() {
        "NotFound" => FileErrorKind::NotFound,
        // `IsFile`: a file where a directory was expected.
        "NotDirectory" | "IsFile" => FileErrorKind::NotADirectory,
        "IsDirectory" => FileErrorKind::IsADirectory,
        "PermissionDenied" => FileErrorKind::PermissionDenied,
        "PathAlreadyExists" | "AlreadyExists" => FileErrorKind::AlreadyExists,
        "DirectoryNotEmpty" => FileErrorKind::DirectoryNotEmpty,
        "FileTooLarge" => FileErrorKind::TooLarge,
        other => FileErrorKind::Other(if report.message.is_empty() {
            other.to_owned()
        } else {
            format!("{other}: {}", report.message)
        }),
    };
    Error::file(path, kind)
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::retry_policy_details;

    #[test]
    fn statuses_map_to_the_matching_core_errors() {
        let subject = "sandbox `sb-1`";
        assert!(matches!(
            from_status(&Status::not_found("gone"), subject),
            Error::NotFound { what } if what.contains("sb-1") && what.contains("gone")
        ));
        assert!(matches!(
            from_status(&Status::already_exists("dup"), subject),
            Error::AlreadyExists { .. }
        ));
        assert!(matches!(
            from_status(&Status::unauthenticated("bad token"), subject),
            Error::AuthenticationFailed { .. }
        ));
        assert!(matches!(
            from_status(&Status::permission_denied("no"), subject),
            Error::PermissionDenied { .. }
        ));
        assert!(matches!(
            from_status(&Status::unavailable("down"), subject),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            from_status(&Status::invalid_argument("timeout too big"), "timeout_secs"),
            Error::InvalidSpec { field, .. } if field == "timeout_secs"
        ));
        assert!(matches!(
            from_status(&Status::resource_exhausted("slow"), subject),
            Error::RateLimited { retry_after: None }
        ));
    }

    #[test]
    fn resource_exhausted_carries_the_servers_retry_after() {
        let status = Status::with_details(
            Code::ResourceExhausted,
            "slow",
            retry_policy_details(Code::ResourceExhausted, "slow", Duration::from_secs(2)).into(),
        );
        assert!(matches!(
            from_status(&status, "x"),
            Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn metadata_never_reaches_the_message() {
        let mut status = Status::unauthenticated("nope");
        status
            .metadata_mut()
            .insert("x-modal-token-secret", "as-secret".parse().unwrap());
        let message = from_status(&status, "app").to_string();
        assert!(!message.contains("as-secret"), "{message}");
    }

    #[test]
    fn fs_tools_errors_map_to_file_error_kinds() {
        let cases = [
            ("NotFound", FileErrorKind::NotFound),
            ("NotDirectory", FileErrorKind::NotADirectory),
            ("IsFile", FileErrorKind::NotADirectory),
            ("IsDirectory", FileErrorKind::IsADirectory),
            ("PermissionDenied", FileErrorKind::PermissionDenied),
            ("PathAlreadyExists", FileErrorKind::AlreadyExists),
            ("DirectoryNotEmpty", FileErrorKind::DirectoryNotEmpty),
            ("FileTooLarge", FileErrorKind::TooLarge),
        ];
        for (kind, expected) in cases {
            let stderr = format!(r#"{{"version":1,"error_kind":"{kind}","message":"m"}}"#);
            match from_fs_tools("/a", 1, stderr.as_bytes()) {
                Error::FileOperation { path, kind } => {
                    assert_eq!(path, "/a");
                    assert_eq!(kind, expected);
                }
                other => panic!("{other:?}"),
            }
        }
        match from_fs_tools("/a", 3, b"segfault\n") {
            Error::FileOperation {
                kind: FileErrorKind::Other(message),
                ..
            } => assert!(message.contains("segfault") && message.contains('3')),
            other => panic!("{other:?}"),
        }
    }
}
