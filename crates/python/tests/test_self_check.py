"""inspect_ai's own sandbox conformance checks (``inspect_ai.util._sandbox.self_check``),
imported from the installed package, against the ``sandkit`` environment on every
enabled provider. A check known not to pass on a provider is listed in ``KNOWN_FAILURES``
with the reason and runs as a strict xfail: it still runs, and passing would fail the
run, so the list cannot go stale."""

from __future__ import annotations

import pytest
from inspect_ai.util._sandbox.self_check import *  # noqa: F403

from conftest import SPECS
from sandkit.inspect_env import SandkitEnvironmentConfig, SandkitSandboxEnvironment

KNOWN_FAILURES: dict[str, dict[str, str]] = {
    "local-process": {},
    "local-docker": {},
    "modal": {},
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
