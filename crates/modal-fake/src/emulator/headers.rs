//! The client headers Modal's control plane insists on before anything else: every
//! official client sends `x-modal-client-type` and `x-modal-client-version` on every call,
//! and Modal's servers refuse a call without a version ("Client version is required") or
//! from a client older than they support ("Old client", `FAILED_PRECONDITION`).

use tonic::{Request, Status};

use super::header;

/// The oldest client version served: what libmodal's Go and JS clients announce ("behaves
/// like Python client 1.0.0"), so the oldest Modal's servers accept today.
const MIN_CLIENT_VERSION: (u64, u64) = (1, 0);

/// Checks a control-plane call's client headers (a tonic interceptor).
pub(super) fn check_client_headers(request: Request<()>) -> Result<Request<()>, Status> {
    let metadata = request.metadata();
    if header(metadata, "x-modal-client-type").is_none_or(str::is_empty) {
        return Err(Status::failed_precondition(
            "x-modal-client-type is required (Modal's clients send their `ClientType` number)",
        ));
    }
    let Some(version) = header(metadata, "x-modal-client-version").filter(|v| !v.is_empty()) else {
        return Err(Status::failed_precondition(
            "Client version is required: send x-modal-client-version",
        ));
    };
    match major_minor(version) {
        Some(found) if found >= MIN_CLIENT_VERSION => Ok(request),
        Some(_) => Err(Status::failed_precondition(format!(
            "Old client: x-modal-client-version `{version}` is older than {}.{}",
            MIN_CLIENT_VERSION.0, MIN_CLIENT_VERSION.1
        ))),
        None => Err(Status::failed_precondition(format!(
            "x-modal-client-version `{version}` is not a version"
        ))),
    }
}

/// The major and minor numbers of a version such as `1.6.4`, `1.6.0.dev3` or `424242`.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        None => 0,
        Some(part) => {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()?
        }
    };
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(headers: &[(&'static str, &str)]) -> Result<Request<()>, Status> {
        let mut request = Request::new(());
        for (name, value) in headers {
            request.metadata_mut().insert(*name, value.parse().unwrap());
        }
        check_client_headers(request)
    }

    #[test]
    fn official_clients_pass_and_missing_or_old_versions_are_refused() {
        for version in ["1.6.4", "1.0.0", "1.6.0.dev3", "424242"] {
            assert!(
                call(&[
                    ("x-modal-client-type", "1"),
                    ("x-modal-client-version", version)
                ])
                .is_ok(),
                "{version}"
            );
        }
        let refused = |headers: &[(&'static str, &str)]| call(headers).unwrap_err();
        let missing = refused(&[("x-modal-client-type", "1")]);
        assert_eq!(missing.code(), tonic::Code::FailedPrecondition);
        assert!(missing.message().contains("Client version is required"));
        let old = refused(&[
            ("x-modal-client-type", "1"),
            ("x-modal-client-version", "0.73.2"),
        ]);
        assert!(old.message().starts_with("Old client"), "{}", old.message());
        let garbage = refused(&[
            ("x-modal-client-type", "1"),
            ("x-modal-client-version", "latest"),
        ]);
        assert!(garbage.message().contains("not a version"));
        let typeless = refused(&[("x-modal-client-version", "1.6.4")]);
        assert!(typeless.message().contains("x-modal-client-type"));
    }
}
