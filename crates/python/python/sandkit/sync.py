"""A synchronous face of sandkit for scripts: the same calls without ``await``.

Every call runs on one private asyncio event loop in a daemon thread, so it works from
plain scripts and from code that already runs an event loop (a notebook, say)::

    from sandkit import sync as sandkit

    provider = sandkit.open("local-docker")
    with provider.create(image="alpine:3.21") as sandbox:
        print(sandbox.exec(["echo", "hi"]).stdout)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from . import _client, _router
from ._client import ExecResult

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="sandkit-sync", daemon=True).start()
    future = asyncio.run_coroutine_threadsafe(coroutine, _loop)
    try:
        return future.result()
    except BaseException:
        # Ctrl-C while waiting: cancel the call, which kills a running command.
        future.cancel()
        raise


class SyncProcess:
    """A started command (:meth:`SyncSandbox.start`)."""

    def __init__(self, process: _client.Process) -> None:
        self._process = process

    def stdout(self) -> Iterator[bytes]:
        """Standard output chunks as they come."""
        return _iterate(self._process.stdout)

    def stderr(self) -> Iterator[bytes]:
        """Standard error chunks as they come."""
        return _iterate(self._process.stderr)

    def write_stdin(self, data: bytes | str) -> None:
        """Writes to standard input."""
        _run(self._process.write_stdin(data))

    def close_stdin(self) -> None:
        """Closes standard input."""
        _run(self._process.close_stdin())

    def wait(self) -> int:
        """Waits and returns the exit code."""
        return _run(self._process.wait())

    def kill(self) -> None:
        """Kills the process tree."""
        _run(self._process.kill())


def _iterate(stream: _client.OutputStream) -> Iterator[bytes]:
    iterator = stream.__aiter__()

    async def step() -> bytes | None:
        try:
            return await iterator.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := _run(step())) is not None:
        yield chunk


class SyncSandbox:
    """A sandbox; ``with`` terminates it on exit. Methods as :class:`sandkit.Sandbox`."""

    def __init__(self, sandbox: _client.Sandbox) -> None:
        self._sandbox = sandbox
        self.id = sandbox.id
        self.info = sandbox.info

    def __repr__(self) -> str:
        return f"<sandkit.sync.SyncSandbox {self.id}>"

    def __enter__(self) -> SyncSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def exec(self, argv: Sequence[str], **options: Any) -> ExecResult:
        """Runs a command to completion (options as :meth:`sandkit.Sandbox.exec`)."""
        return _run(self._sandbox.exec(argv, **options))

    def start(self, argv: Sequence[str], **options: Any) -> SyncProcess:
        """Starts a command with streaming output."""
        return SyncProcess(_run(self._sandbox.start(argv, **options)))

    def read_file(self, path: str) -> bytes:
        """A whole file."""
        return _run(self._sandbox.read_file(path))

    def write_file(self, path: str, contents: bytes | str) -> None:
        """Creates or replaces a file."""
        _run(self._sandbox.write_file(path, contents))

    def stat(self, path: str) -> dict[str, Any]:
        """Metadata of a path."""
        return _run(self._sandbox.stat(path))

    def list_dir(self, path: str = ".") -> list[dict[str, Any]]:
        """Entries of a directory."""
        return _run(self._sandbox.list_dir(path))

    def mkdir(self, path: str) -> None:
        """Creates a directory and its parents."""
        _run(self._sandbox.mkdir(path))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Removes a file or directory."""
        _run(self._sandbox.remove(path, recursive=recursive))

    def snapshot(self) -> dict[str, Any]:
        """Snapshots the filesystem."""
        return _run(self._sandbox.snapshot())

    def pause(self) -> None:
        """Pauses the sandbox."""
        _run(self._sandbox.pause())

    def resume(self) -> None:
        """Resumes the sandbox."""
        _run(self._sandbox.resume())

    def refresh(self) -> dict[str, Any]:
        """Fetches current information."""
        self.info = _run(self._sandbox.refresh())
        return self.info

    def entrypoint_output(self, stream: str = "stdout", *, offset: int = 0) -> Iterator[bytes]:
        """The entrypoint's ``"stdout"`` or ``"stderr"`` chunks from ``offset`` on, until
        the entrypoint ends."""
        return _iterate(_run(self._sandbox.entrypoint_output(stream, offset=offset)))

    def write_entrypoint_stdin(self, data: bytes | str, *, offset: int, eof: bool = False) -> None:
        """Writes to the entrypoint's stdin at ``offset``; ``eof`` closes it."""
        _run(self._sandbox.write_entrypoint_stdin(data, offset=offset, eof=eof))

    def terminate(self) -> None:
        """Ends the sandbox; idempotent."""
        _run(self._sandbox.terminate())


class SyncProvider:
    """An open provider; methods as :class:`sandkit.Provider`, without ``await``."""

    def __init__(self, provider: _client.Provider) -> None:
        self._provider = provider
        self.name = provider.name

    def __repr__(self) -> str:
        return f"<sandkit.sync.SyncProvider {self.name}>"

    @property
    def capabilities(self) -> dict[str, Any]:
        """What the provider can do, as plain data."""
        return self._provider.capabilities

    def create(self, spec: Any = None, /, **fields: Any) -> SyncSandbox:
        """Creates a sandbox."""
        return SyncSandbox(_run(self._provider.create(spec, **fields)))

    def sandbox(self, sandbox_id: str) -> SyncSandbox:
        """Attaches to an existing sandbox."""
        return SyncSandbox(_run(self._provider.sandbox(sandbox_id)))

    def list(self, **options: Any) -> list[dict[str, Any]]:
        """Sandboxes matching tags."""
        return _run(self._provider.list(**options))

    def reap(self, **options: Any) -> dict[str, Any]:
        """Finds and ends sandkit-made leftovers."""
        return _run(self._provider.reap(**options))


class SyncRouter:
    """A router over a pools file; methods as :class:`sandkit.Router`."""

    def __init__(self, router: _router.Router) -> None:
        self._router = router
        self.pools = router.pools

    @classmethod
    def from_file(cls, path: str) -> SyncRouter:
        """Loads a pools file."""
        return cls(_run(_router.Router.from_file(path)))

    def plan(self, spec: Any = None, /, **fields: Any) -> dict[str, Any]:
        """Which pools could take the spec."""
        return self._router.plan(spec, **fields)

    def create(self, spec: Any = None, /, **fields: Any) -> SyncSandbox:
        """Creates a sandbox on the first pool that fits."""
        return SyncSandbox(_run(self._router.create(spec, **fields)))


def open(name: str = "local-process", config: Mapping[str, Any] | None = None) -> SyncProvider:  # noqa: A001
    """Opens a provider (see :func:`sandkit.open`)."""
    return SyncProvider(_run(_client.open(name, config)))


select = _client.select
providers = _client.providers
Router = SyncRouter


def reap(name: str = "local-process", config: Mapping[str, Any] | None = None, **filter: Any) -> dict[str, Any]:
    """Finds and ends sandkit-made leftovers at provider ``name``."""
    return _run(_client.reap(name, config, **filter))


__all__ = ["Router", "SyncProcess", "SyncProvider", "SyncRouter", "SyncSandbox", "open", "providers", "reap", "select"]
