"""The asyncio API: providers, sandboxes, commands and files."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from . import _native
from ._spec import (
    check_int,
    check_str,
    input_bytes,
    request_document,
    spec_document,
)


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """How a command ended and what it printed. A non-zero exit is a result, not an
    error. ``returncode`` is ``128 + signal`` when a signal killed it."""

    returncode: int
    stdout: bytes
    stderr: bytes
    signal: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def success(self) -> bool:
        """Exit code 0."""
        return self.returncode == 0

    @property
    def truncated(self) -> bool:
        """Whether either stream was cut at the output limit."""
        return self.stdout_truncated or self.stderr_truncated


class OutputStream:
    """An output stream of a started command: ``async for chunk in stream`` yields
    ``bytes`` chunks as they come."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._native.__aiter__()

    async def read(self) -> bytes:
        """Everything until the end of the stream."""
        return b"".join([chunk async for chunk in self._native])


class Process:
    """A started command (:meth:`Sandbox.start`). Read ``stdout``/``stderr`` while it
    runs (a command whose output nobody reads may block); ``await wait()`` for its exit
    code. A process dropped before it was seen to finish is killed."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.stdout = OutputStream(native.stdout)
        self.stderr = OutputStream(native.stderr)

    async def write_stdin(self, data: bytes | str) -> None:
        """Writes to standard input (start the command with ``stdin=True``)."""
        await self._native.write_stdin(input_bytes("data", data))

    async def close_stdin(self) -> None:
        """Closes standard input: the command reads end of file."""
        await self._native.close_stdin()

    async def wait(self) -> int:
        """Waits for the command to end and returns its exit code (``128 + signal`` when
        a signal killed it). A timeout raises :class:`CommandTimeout`."""
        code, _signal = await self._native.wait()
        return code

    async def kill(self) -> None:
        """Kills the command's whole process tree; killing a finished one is fine."""
        await self._native.kill()

    def __repr__(self) -> str:
        return "<sandkit.Process>"


class Sandbox:
    """One sandbox at a provider. Create one with :meth:`Provider.create` or attach with
    :meth:`Provider.sandbox`. Relative paths resolve against ``info['workdir']``.
    ``async with`` terminates it on exit."""

    def __init__(self, provider: Provider, info: dict[str, Any]) -> None:
        self.provider = provider
        self.info = info
        self.id: str = info["id"]

    def __repr__(self) -> str:
        return f"<sandkit.Sandbox {self.id} at {self.provider.name}>"

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.terminate()

    async def refresh(self) -> dict[str, Any]:
        """Fetches current information (state, tags, workdir...)."""
        self.info = json.loads(await self.provider._native.info(self.id))
        return self.info

    async def exec(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        stdin: bytes | str | None = None,
        output_limit_bytes: int | None = None,
    ) -> ExecResult:
        """Runs ``argv`` (no implicit shell) to completion. ``timeout`` seconds kills the
        process tree and raises :class:`CommandTimeout` carrying the output so far;
        ``stdin`` is fed whole and closed; at most ``output_limit_bytes`` of each stream
        are kept (the ``*_truncated`` flags say when more came). Cancelling the await
        kills the command."""
        request = request_document(
            argv,
            cwd=cwd,
            env=env,
            user=user,
            timeout=timeout,
            output_limit_bytes=output_limit_bytes,
        )
        data = input_bytes("stdin", stdin)
        code, signal, out, err, out_cut, err_cut = await self.provider._native.exec(self.id, request, data)
        return ExecResult(code, out, err, signal, out_cut, err_cut)

    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        stdin: bool = False,
    ) -> Process:
        """Starts ``argv`` with streaming output; ``stdin=True`` opens its input."""
        if not isinstance(stdin, bool):
            raise TypeError(f"`stdin` must be a bool, not {type(stdin).__name__}")
        request = request_document(argv, cwd=cwd, env=env, user=user, timeout=timeout, stdin=stdin)
        return Process(await self.provider._native.start(self.id, request))

    async def read_file(self, path: str) -> bytes:
        """A whole file, streamed from the sandbox into one buffer."""
        return await self.provider._native.read_file(self.id, check_str("path", path))

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A whole file decoded as text (``UnicodeDecodeError`` when it is not)."""
        return (await self.read_file(path)).decode(encoding)

    async def write_file(self, path: str, contents: bytes | str) -> None:
        """Creates or replaces a file, creating missing parent directories. ``str`` is
        written as UTF-8; ``bytes`` are streamed in slices without a copy."""
        data = input_bytes("contents", contents)
        await self.provider._native.write_file(self.id, check_str("path", path), data)

    async def stat(self, path: str) -> dict[str, Any]:
        """``{"kind", "size_bytes", "mode", "modified_unix_secs"}``, not following a final
        symlink."""
        return json.loads(await self.provider._native.stat(self.id, check_str("path", path)))

    async def list_dir(self, path: str = ".") -> list[dict[str, Any]]:
        """Entries of a directory, sorted by name: ``{"name", "kind", "size_bytes"}``."""
        return json.loads(await self.provider._native.list_dir(self.id, check_str("path", path)))

    async def mkdir(self, path: str) -> None:
        """Creates a directory and its missing parents; an existing one is fine."""
        await self.provider._native.make_dir(self.id, check_str("path", path))

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Removes a file, or a directory (with its contents when ``recursive``)."""
        await self.provider._native.remove(self.id, check_str("path", path), bool(recursive))

    async def snapshot(self) -> dict[str, Any]:
        """Snapshots the filesystem: ``{"id", "source"}``; create from it with
        ``provider.create(image={"kind": "snapshot", "id": ...})``."""
        return json.loads(await self.provider._native.snapshot(self.id))

    async def pause(self) -> None:
        """Pauses every process of the sandbox."""
        await self.provider._native.pause(self.id)

    async def resume(self) -> None:
        """Resumes a paused sandbox."""
        await self.provider._native.resume(self.id)

    async def tunnels(self) -> list[dict[str, Any]]:
        """Routes to the sandbox's exposed ports: ``{"port", "url"}``."""
        return json.loads(await self.provider._native.tunnels(self.id))

    async def entrypoint_output(self, stream: str = "stdout", *, offset: int = 0) -> OutputStream:
        """The entrypoint's ``"stdout"`` or ``"stderr"`` from byte ``offset`` on, followed
        until the entrypoint ends: ``async for chunk in ...``, or ``await ....read()``.
        Reading again from the offset reached resumes a cut stream."""
        if check_int("offset", offset) < 0:
            raise ValueError(f"`offset` must be 0 or more, not {offset}")
        native = await self.provider._native.entrypoint_output(
            self.id, check_str("stream", stream), offset
        )
        return OutputStream(native)

    async def write_entrypoint_stdin(self, data: bytes | str, *, offset: int, eof: bool = False) -> None:
        """Writes ``data`` to the entrypoint's stdin at byte ``offset`` of it (bytes
        before what was written already are skipped, so a retry is applied once), then
        closes it when ``eof``."""
        if check_int("offset", offset) < 0:
            raise ValueError(f"`offset` must be 0 or more, not {offset}")
        await self.provider._native.write_entrypoint_stdin(self.id, offset, input_bytes("data", data), bool(eof))

    async def terminate(self) -> None:
        """Ends the sandbox and frees what it holds; idempotent."""
        await self.provider._native.terminate(self.id)


class Provider:
    """An open provider (:func:`open`), wrapped in sandkit's standard layers: capability
    checks, retries, tracing and ownership tags."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.name: str = native.name

    def __repr__(self) -> str:
        return f"<sandkit.Provider {self.name}>"

    @property
    def capabilities(self) -> dict[str, Any]:
        """What this provider can do, as plain data (the ``Capabilities`` fields)."""
        return json.loads(self._native.capabilities_json())

    async def create(self, spec: Any = None, /, **fields: Any) -> Sandbox:
        """Creates a sandbox from a spec given as a dict, a dataclass and/or keyword
        arguments (``image``, ``env``, ``secrets``, ``workdir``, ``lifetime_secs``,
        ``network``, ``tags``, ``cpu``, ``memory_mib``, ``gpu``, ``files``, ...). A bad
        value raises :class:`InvalidSpec` naming the field."""
        document = spec_document(spec, **fields)
        info = json.loads(await self._native.create(json.dumps(document)))
        return Sandbox(self, info)

    async def sandbox(self, sandbox_id: str) -> Sandbox:
        """Attaches to an existing sandbox by id."""
        info = json.loads(await self._native.info(check_str("sandbox_id", sandbox_id)))
        return Sandbox(self, info)

    async def list(self, *, tags: Mapping[str, str] | None = None, include_finished: bool = False) -> list[dict[str, Any]]:
        """Sandboxes carrying every one of ``tags``."""
        document = {"tags": dict(tags or {}), "include_finished": bool(include_finished)}
        return json.loads(await self._native.list(json.dumps(document)))

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Deletes a snapshot; an unknown id is fine."""
        await self._native.delete_snapshot(check_str("snapshot_id", snapshot_id))

    async def reap(
        self,
        *,
        owner: str | None = None,
        run_id: str | None = None,
        include_unexpired: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Finds sandkit-made sandboxes (by their ownership tags) matching the filter and,
        unless ``dry_run``, terminates them. Only expired or finished ones unless
        ``include_unexpired``. Returns ``{"matched", "terminated", "failed", "dry_run"}``."""
        document = {"owner": owner, "run_id": run_id, "include_unexpired": bool(include_unexpired)}
        return json.loads(await self._native.reap(json.dumps(document), bool(dry_run)))


async def open(name: str = "local-process", config: Mapping[str, Any] | None = None) -> Provider:  # noqa: A001
    """Opens the provider registered as ``name`` (``local-process``, ``local-docker``,
    ``modal``) with its JSON-shaped configuration."""
    check_str("name", name)
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"`config` must be a dict, not {type(config).__name__}")
    return Provider(await _native.open(name, json.dumps(config)))


def providers() -> list[dict[str, Any]]:
    """Every registered provider: ``{"name", "summary", "capabilities"}``."""
    return json.loads(_native.providers_json())


def select(requirements: Mapping[str, Any] | None = None, /, *, providers: Sequence[str] | None = None, **fields: Any) -> dict[str, Any]:
    """Which providers meet ``requirements`` (a dict in the ``Requirements`` shape, and/or
    keyword arguments such as ``gpu_kind="H100"``, ``lifetime_secs=3600``,
    ``features=["fs_snapshot"]``), judged on their default capabilities. Returns
    ``{"chosen": [names], "rejected": [{"name", "unmet": [{"rule", "reason"}]}]}``."""
    document = dict(requirements or {})
    document.update(fields)
    names = None if providers is None else [check_str("providers", name) for name in providers]
    return json.loads(_native.select_json(json.dumps(document), names))


async def reap(name: str = "local-process", config: Mapping[str, Any] | None = None, **filter: Any) -> dict[str, Any]:
    """:meth:`Provider.reap` on the provider ``name``."""
    provider = await open(name, config)
    return await provider.reap(**filter)


__all__ = [
    "ExecResult",
    "OutputStream",
    "Process",
    "Provider",
    "Sandbox",
    "check_int",
    "open",
    "providers",
    "reap",
    "select",
]
