//! sandkit errors as instances of the Python classes in `sandkit/_errors.py`: one class
//! per `Error::kind()`, and per file error kind, with the variant's fields as attributes.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sandkit::{Error, FileErrorKind};

/// Converts a sandkit error into the matching Python exception.
pub(crate) fn to_py(error: Error) -> PyErr {
    Python::attach(|py| build(py, error).unwrap_or_else(|failure| failure))
}

/// A JSON document from the Python layer that does not fit its type. The Python layer
/// checks types first, so this names the document and serde's reason.
pub(crate) fn bad_json(what: &str, error: serde_json::Error) -> PyErr {
    Python::attach(|py| {
        build(py, Error::invalid_spec(what, error.to_string())).unwrap_or_else(|failure| failure)
    })
}

/// Parses a JSON object into `T` (a `deny_unknown_fields` serde type such as
/// `SandboxSpec`); a field that does not fit is `InvalidSpec` naming that field, found by
/// parsing each field alone.
pub(crate) fn parse_fields<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|error| bad_json(what, error))?;
    serde_json::from_value(value.clone()).map_err(|error| {
        let field = value.as_object().and_then(|object| {
            object.iter().find_map(|(key, field_value)| {
                let alone = serde_json::json!({ key: field_value });
                serde_json::from_value::<T>(alone)
                    .err()
                    .map(|error| (key.clone(), error))
            })
        });
        match field {
            Some((key, error)) => to_py(Error::invalid_spec(key, error.to_string())),
            None => bad_json(what, error),
        }
    })
}

/// A value that must serialise (core types do); a failure is a bug, reported as such.
pub(crate) fn to_json(value: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(|error| PyValueError::new_err(error.to_string()))
}

fn class_of(error: &Error) -> &'static str {
    match error {
        Error::InvalidSpec { .. } => "InvalidSpec",
        Error::InvalidConfig { .. } => "InvalidConfig",
        Error::Unsupported { .. } => "Unsupported",
        Error::UnknownProvider { .. } => "UnknownProvider",
        Error::ConfigFile { .. } => "ConfigFileError",
        Error::NoPoolAvailable { .. } => "NoPoolAvailable",
        Error::AuthenticationFailed { .. } => "AuthenticationFailed",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::NotFound { .. } => "SandboxNotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::CreationFailed { .. } => "CreationFailed",
        Error::ExecFailed { .. } => "ExecFailed",
        Error::ProgramNotFound { .. } => "ProgramNotFound",
        Error::CommandTimeout { .. } => "CommandTimeout",
        Error::Timeout { .. } => "OperationTimeout",
        Error::ResourceLimitExceeded { .. } => "ResourceLimitExceeded",
        Error::RateLimited { .. } => "RateLimited",
        Error::Unavailable { .. } => "Unavailable",
        Error::InvalidState { .. } => "InvalidState",
        Error::FileOperation { kind, .. } => match kind {
            FileErrorKind::NotFound => "FileNotFound",
            FileErrorKind::IsADirectory => "IsADirectory",
            FileErrorKind::NotADirectory => "NotADirectory",
            FileErrorKind::PermissionDenied => "FilePermissionDenied",
            FileErrorKind::AlreadyExists => "FileExists",
            FileErrorKind::OutsideSandbox => "PathOutsideSandbox",
            FileErrorKind::DirectoryNotEmpty => "DirectoryNotEmpty",
            FileErrorKind::TooLarge => "FileTooLarge",
            _ => "FileOperationError",
        },
        Error::Volume { .. } => "VolumeError",
        Error::Provider { .. } => "ProviderError",
        _ => "SandkitError",
    }
}

fn build(py: Python<'_>, error: Error) -> PyResult<PyErr> {
    let module = py.import("sandkit._errors")?;
    let class = module.getattr(class_of(&error))?;
    let exception = class.call1((error.to_string(),))?;
    exception.setattr("kind", error.kind())?;
    exception.setattr("retryable", error.is_retryable())?;
    match error {
        Error::InvalidSpec { field, reason } => {
            exception.setattr("field", field)?;
            exception.setattr("reason", reason)?;
        }
        Error::InvalidConfig { provider, reason } => {
            exception.setattr("provider", provider)?;
            exception.setattr("reason", reason)?;
        }
        Error::Unsupported { provider, feature } => {
            exception.setattr("provider", provider)?;
            exception.setattr("feature", feature)?;
        }
        Error::UnknownProvider { name, known } => {
            exception.setattr("name", name)?;
            exception.setattr("known", known)?;
        }
        Error::ConfigFile { path, line, reason } => {
            exception.setattr("path", path)?;
            exception.setattr("line", line)?;
            exception.setattr("reason", reason)?;
        }
        Error::NotFound { what } | Error::AlreadyExists { what } => {
            exception.setattr("what", what)?;
        }
        Error::ExecFailed { program, .. } | Error::ProgramNotFound { program } => {
            exception.setattr("program", program)?;
        }
        Error::CommandTimeout {
            timeout,
            stdout,
            stderr,
        } => {
            exception.setattr("timeout", timeout.as_secs_f64())?;
            exception.setattr("stdout", PyBytes::new(py, &stdout))?;
            exception.setattr("stderr", PyBytes::new(py, &stderr))?;
        }
        Error::Timeout { operation, timeout } => {
            exception.setattr("operation", operation)?;
            exception.setattr("timeout", timeout.as_secs_f64())?;
        }
        Error::RateLimited { retry_after } => {
            exception.setattr("retry_after", retry_after.map(|d| d.as_secs_f64()))?;
        }
        Error::InvalidState {
            id,
            state,
            operation,
        } => {
            exception.setattr("sandbox_id", id.0)?;
            exception.setattr("state", state.to_string())?;
            exception.setattr("operation", operation)?;
        }
        Error::FileOperation { path, kind } => {
            exception.setattr("path", path)?;
            exception.setattr("file_error", kind.to_string())?;
        }
        Error::Provider { provider, .. } => {
            exception.setattr("provider", provider)?;
        }
        _ => {}
    }
    Ok(PyErr::from_value(exception))
}
