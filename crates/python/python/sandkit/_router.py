"""The router over the pools of a ``sandkit.toml``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from . import _native
from ._client import Provider, Sandbox
from ._spec import spec_document


class Router:
    """Routes sandboxes to the pools of a pools file, most preferred first, falling
    back to the next pool on retryable failures. Build it with :meth:`from_file`."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @classmethod
    async def from_file(cls, path: str | os.PathLike[str]) -> Router:
        """Loads and checks a pools file (a wrong field raises
        :class:`ConfigFileError` with the line) and opens every pool's provider."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a str or a path, not {type(path).__name__}")
        return cls(await _native.router_from_file(os.fspath(path)))

    @property
    def pools(self) -> list[str]:
        """The pools' names, most preferred first."""
        return self._native.pool_names()

    def pool_spec(self, name: str) -> dict[str, Any] | None:
        """The default spec of pool ``name`` (merged under every spec routed to it)."""
        document = self._native.pool_spec_json(name)
        return None if document is None else json.loads(document)

    def provider(self, pool: str) -> Provider | None:
        """The provider behind pool ``pool``."""
        native = self._native.pool_provider(pool)
        return None if native is None else Provider(native)

    def plan(self, spec: Any = None, /, *, requirements: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Which pools could take the spec, creating nothing: ``{"considered",
        "rejected", "failed", "chosen"}``."""
        document = spec_document(spec, **fields)
        return json.loads(self._native.plan_json(json.dumps(document), json.dumps(dict(requirements or {}))))

    async def create(self, spec: Any = None, /, *, requirements: Mapping[str, Any] | None = None, **fields: Any) -> Sandbox:
        """Creates a sandbox on the first pool that fits and has room. The routing
        decision is on the sandbox as ``sandbox.decision``. The sandbox is the caller's
        to terminate (the pool's concurrency slot is not held past creation)."""
        document = spec_document(spec, **fields)
        native_provider, info, decision = await self._native.create(
            json.dumps(document), json.dumps(dict(requirements or {}))
        )
        sandbox = Sandbox(Provider(native_provider), json.loads(info))
        sandbox.decision = json.loads(decision)  # type: ignore[attr-defined]
        return sandbox
