"""Which providers the tests run on: ``SANDKIT_PYTHON_PROVIDERS`` (comma-separated;
``local-process`` when unset). scripts/python.sh sets all three, with the Modal emulator
running and its ``MODAL_*`` variables exported."""

from __future__ import annotations

import os
from typing import Any

import pytest

# The spec each provider's sandboxes get in the tests: Docker runs the busybox test
# image scripts/docker-engine.sh builds; the others run their default images.
SPECS: dict[str, dict[str, Any]] = {
    "local-process": {},
    "local-docker": {"image": "sandkit-test-busybox:latest"},
    "modal": {},
}


def enabled_providers() -> list[str]:
    names = os.environ.get("SANDKIT_PYTHON_PROVIDERS", "local-process")
    return [name.strip() for name in names.split(",") if name.strip()]


@pytest.fixture(params=enabled_providers())
def provider_name(request: pytest.FixtureRequest) -> str:
    return request.param
