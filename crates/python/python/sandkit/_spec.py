"""Turning Python arguments into the JSON documents the native module takes.

Types are checked here, so a wrong type is a ``TypeError`` naming the argument; values
are checked by sandkit's own validation, so a bad value is :class:`InvalidSpec` naming
the field, as it is for Rust callers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

_MISSING = object()

# SandboxSpec fields a caller may pass, with their Python types.
SPEC_FIELDS = (
    "image",
    "entrypoint",
    "env",
    "secrets",
    "workdir",
    "cpu",
    "memory_mib",
    "gpu",
    "lifetime_secs",
    "idle_timeout_secs",
    "lease_secs",
    "network",
    "volumes",
    "files",
    "name",
    "tags",
    "region",
    "ports",
    "provider_options",
)


def _type_error(argument: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"`{argument}` must be {expected}, not {type(value).__name__}")


def check_str(argument: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _type_error(argument, "a str", value)
    return value


def check_optional_str(argument: str, value: Any) -> str | None:
    return None if value is None else check_str(argument, value)


def check_int(argument: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(argument, "an int", value)
    return value


def check_number(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(argument, "a number", value)
    return float(value)


def check_str_map(argument: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _type_error(argument, "a dict of str to str", value)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"`{argument}` must map str to str; `{key!r}` maps to {type(item).__name__}")
    return dict(value)


def check_argv(argument: str, value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _type_error(argument, "a list of str", value)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"`{argument}[{index}]` must be a str, not {type(item).__name__}")
    return list(value)


def _image(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"kind": "registry", "reference": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise _type_error("image", "a str (registry reference) or a dict", value)


def _network(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        modes = {"allow_all": "allow_all", "allow-all": "allow_all", "block_all": "block_all", "block-all": "block_all"}
        if value not in modes:
            from ._errors import InvalidSpec

            error = InvalidSpec(f"invalid spec: `network`: `{value}` is not allow_all or block_all")
            error.field, error.reason, error.kind = "network", "not a network mode", "invalid_spec"
            raise error
        return {"mode": modes[value]}
    if isinstance(value, Mapping):
        policy = dict(value)
        policy.setdefault("mode", "allow_list")
        return policy
    raise _type_error("network", "'allow_all', 'block_all' or a dict", value)


def _gpu(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        kind, _, count = value.partition(":")
        return {"kind": kind, "count": int(count) if count.isdigit() else count or 1}
    if isinstance(value, Mapping):
        return {"count": 1, **value}
    raise _type_error("gpu", "a str such as 'H100' or 'H100:2', or a dict", value)


def _files(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = [(entry["path"], entry["contents"]) for entry in value]
    else:
        raise _type_error("files", "a dict of path to bytes or str", value)
    files = []
    for path, contents in items:
        check_str("files (path)", path)
        if isinstance(contents, str):
            contents = contents.encode()
        if not isinstance(contents, (bytes, bytearray)):
            raise _type_error(f"files[{path!r}]", "bytes or str", contents)
        files.append({"path": path, "contents": list(contents)})
    return files


_CHECKS = {
    "image": _image,
    "entrypoint": lambda v: check_argv("entrypoint", v),
    "env": lambda v: check_str_map("env", v),
    "secrets": lambda v: check_str_map("secrets", v),
    "workdir": lambda v: check_str("workdir", v),
    "cpu": lambda v: check_number("cpu", v),
    "memory_mib": lambda v: check_int("memory_mib", v),
    "gpu": _gpu,
    "lifetime_secs": lambda v: check_int("lifetime_secs", v),
    "idle_timeout_secs": lambda v: check_int("idle_timeout_secs", v),
    "lease_secs": lambda v: check_int("lease_secs", v),
    "network": _network,
    "volumes": lambda v: [dict(volume) for volume in v],
    "files": _files,
    "name": lambda v: check_str("name", v),
    "tags": lambda v: check_str_map("tags", v),
    "region": lambda v: check_str("region", v),
    "ports": lambda v: [check_int("ports", port) for port in v],
    "provider_options": lambda v: dict(v),
}


def spec_document(spec: Any = None, **fields: Any) -> dict[str, Any]:
    """A SandboxSpec document from a dict, a dataclass, an object with the fields as
    attributes, and/or keyword arguments (keywords win)."""
    merged: dict[str, Any] = {}
    if spec is not None:
        if isinstance(spec, Mapping):
            merged.update(spec)
        elif dataclasses.is_dataclass(spec) and not isinstance(spec, type):
            merged.update({f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})
        else:
            raise _type_error("spec", "a dict or a dataclass", spec)
    merged.update(fields)
    document: dict[str, Any] = {}
    for key, value in merged.items():
        if key not in _CHECKS:
            from ._errors import InvalidSpec

            error = InvalidSpec(f"invalid spec: `{key}`: unknown field; known: {', '.join(SPEC_FIELDS)}")
            error.field, error.reason, error.kind = key, "unknown field", "invalid_spec"
            raise error
        if value is None:
            continue
        document[key] = _CHECKS[key](value)
    return document


def request_document(
    argv: Any,
    *,
    cwd: Any = None,
    env: Any = None,
    user: Any = None,
    timeout: Any = None,
    output_limit_bytes: Any = None,
    stdin: bool = False,
) -> str:
    """An ExecRequest document as JSON."""
    request: dict[str, Any] = {"argv": check_argv("argv", argv), "stdin": stdin}
    if cwd is not None:
        request["cwd"] = check_str("cwd", cwd)
    if env is not None:
        request["env"] = check_str_map("env", env)
    if user is not None:
        request["user"] = check_str("user", user)
    if timeout is not None:
        request["timeout_secs"] = check_number("timeout", timeout)
    if output_limit_bytes is not None:
        request["output_limit_bytes"] = check_int("output_limit_bytes", output_limit_bytes)
    return json.dumps(request)


def input_bytes(argument: str, value: Any) -> bytes | None:
    """Command input or file contents as bytes (str is encoded as UTF-8)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise _type_error(argument, "bytes or str", value)
