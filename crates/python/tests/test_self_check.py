"""inspect_ai's own sandbox conformance checks (``inspect_ai.util._sandbox.self_check``),
imported from the installed package, against the ``sandkit`` environment on every
enabled provider. A check known not to pass on a provider is listed in ``KNOWN_FAILURES``
with the reason and runs as a strict xfail: it still runs, and passing would fail the
run, so the list cannot go stale."""

from __future__ import annotations

import os

import pytest
from inspect_ai.util._sandbox.self_check import *  # noqa: F403

from conftest import SPECS
from sandkit.inspect_env import SandkitEnvironmentConfig, SandkitSandboxEnvironment

AS_ROOT = (
    "commands and file operations run as root with CAP_DAC_OVERRIDE, which reads and "
    "writes a file whatever its mode"
)
MODAL_FILES = (
    "the file API runs with more privilege than the sandbox's commands (the emulator's "
    "local-process backend); `check_access: true` in the config checks as the sandbox's user"
)
KNOWN_FAILURES: dict[str, dict[str, str]] = {
    # Run as root with bubblewrap (as in CI), local-process passes every check.
    "local-process": {}
    if os.geteuid() == 0
    else {
        "test_exec_as_user": "local-process runs commands as other users only when sandkit "
        "runs as root (an unprivileged bubblewrap maps one user)",
    },
    "local-docker": {
        "test_cwd_custom": "the busybox test image has no /usr/bin (its tools live in /bin)",
        "test_exec_as_user": "the busybox test image has no adduser",
        "test_read_file_not_allowed": AS_ROOT,
        "test_write_text_file_without_permissions": AS_ROOT,
        "test_write_binary_file_without_permissions": AS_ROOT,
    },
    "modal": {
        "test_exec_as_user": "Modal has no exec_run_as_user (the protocol runs every command "
        "as the image's user)",
        "test_read_file_not_allowed": MODAL_FILES,
        "test_write_text_file_without_permissions": MODAL_FILES,
        "test_write_binary_file_without_permissions": MODAL_FILES,
    },
}


@pytest.fixture(params=[name for name in ("local-process", "local-docker", "modal") if name in __import__("conftest").enabled_providers()])
async def sandbox_env(request: pytest.FixtureRequest):
    provider = request.param
    reason = KNOWN_FAILURES[provider].get(request.node.originalname)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    config = SandkitEnvironmentConfig(provider=provider, spec={**SPECS[provider], "lifetime_secs": 900})
    environments = await SandkitSandboxEnvironment.sample_init("self_check", config, {})
    try:
        yield environments["default"]
    finally:
        await SandkitSandboxEnvironment.sample_cleanup("self_check", config, environments, False)
