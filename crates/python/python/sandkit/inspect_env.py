"""An inspect_ai sandbox environment named ``sandkit``: one sandkit sandbox per sample.

Use it as ``sandbox=("sandkit", "sandkit.toml")`` (a pools file: each sample's sandbox
goes to the first pool that fits) or ``sandbox=("sandkit", {"provider": "local-docker",
"spec": {"image": "python:3.12"}})``. The config's fields are those of
:class:`SandkitEnvironmentConfig`. ``inspect sandbox cleanup sandkit [RUN_ID]`` ends the
sandboxes this environment made (found by sandkit's ownership tags and its own
``inspect.sandbox-env`` tag) on every provider it can open.
"""

from __future__ import annotations

import errno
import json
import shlex
from typing import Any, Literal, Union, overload

from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from inspect_ai.util._sandbox.environment import SandboxUnavailableError
from pydantic import BaseModel, Field

import sandkit

from . import _errors

ENV_TAG = "inspect.sandbox-env"
TASK_TAG = "inspect.task"
# Sandboxes outlive a crashed eval by at most this long when the config sets no lifetime.
DEFAULT_LIFETIME_SECS = 2 * 60 * 60
# Checks a path as the sandbox's own user sees it: 3 for a directory, 4 when that user
# may not read (r) or write (w) it.
_ACCESS_CHECK = 'if [ -d "$2" ]; then exit 3; elif [ -e "$2" ] && [ ! "-$1" "$2" ]; then exit 4; fi'


class SandkitEnvironmentConfig(BaseModel, frozen=True):
    """Configuration of the ``sandkit`` sandbox environment."""

    provider: str = "local-process"
    """The provider's registry name (ignored when ``pools`` is set)."""

    config: dict[str, Any] | None = None
    """The provider's own configuration (as ``sandkit --config``)."""

    pools: str | None = None
    """A ``sandkit.toml`` pools file: sandboxes are routed by its router."""

    spec: dict[str, Any] = Field(default_factory=dict)
    """The sandbox spec (``image``, ``env``, ``lifetime_secs``, ``network``, ...)."""

    user: str | None = None
    """Who commands run as when ``exec`` names no user (needs ``exec_run_as_user``)."""

    check_access: bool | None = None
    """Check read and write permission of a path from inside the sandbox, as its user,
    before a file operation. On by default for local-process, whose file operations run
    with the host's privileges while its commands run without capabilities."""

    def __hash__(self) -> int:
        # inspect hashes sandbox specs; the dict fields are hashed through their JSON.
        return hash(self.model_dump_json())


def _config_of(config: SandboxEnvironmentConfigType | None) -> SandkitEnvironmentConfig:
    if config is None:
        return SandkitEnvironmentConfig()
    if isinstance(config, SandkitEnvironmentConfig):
        return config
    if isinstance(config, str):
        if config.endswith(".toml"):
            return SandkitEnvironmentConfig(pools=config)
        with open(config, encoding="utf-8") as file:
            return SandkitEnvironmentConfig(**json.load(file))
    if isinstance(config, BaseModel):
        return SandkitEnvironmentConfig(**config.model_dump())
    raise TypeError(f"sandkit: unsupported sandbox config {config!r}")


def _key(config: SandkitEnvironmentConfig) -> str:
    return config.model_dump_json()


@sandboxenv(name="sandkit")
class SandkitSandboxEnvironment(SandboxEnvironment):
    """A sandkit sandbox as an inspect_ai sandbox environment."""

    _providers: dict[str, sandkit.Provider] = {}
    _routers: dict[str, sandkit.Router] = {}

    def __init__(self, sandbox: sandkit.Sandbox, config: SandkitEnvironmentConfig) -> None:
        super().__init__()
        self.sandbox = sandbox
        self._config = config
        capabilities = sandbox.provider.capabilities
        self._run_as_user = bool(capabilities.get("exec_run_as_user"))
        check = config.check_access
        self._check_access = sandbox.provider.name == "local-process" if check is None else check

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return SandkitEnvironmentConfig(**config)

    @classmethod
    async def _create(cls, task_name: str, config: SandkitEnvironmentConfig) -> sandkit.Sandbox:
        spec = dict(config.spec)
        spec.setdefault("lifetime_secs", DEFAULT_LIFETIME_SECS)
        tags = dict(spec.get("tags") or {})
        tags[ENV_TAG] = "sandkit"
        tags[TASK_TAG] = task_name[:256]
        spec["tags"] = tags
        if config.pools is not None:
            router = cls._routers.get(config.pools)
            if router is None:
                router = await sandkit.Router.from_file(config.pools)
                cls._routers[config.pools] = router
            return await router.create(spec)
        key = _key(config)
        provider = cls._providers.get(key)
        if provider is None:
            provider = await sandkit.open(config.provider, config.config)
            cls._providers[key] = provider
        return await provider.create(spec)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        parsed = _config_of(config)
        if parsed.pools is not None:
            if parsed.pools not in cls._routers:
                cls._routers[parsed.pools] = await sandkit.Router.from_file(parsed.pools)
        elif _key(parsed) not in cls._providers:
            cls._providers[_key(parsed)] = await sandkit.open(parsed.provider, parsed.config)

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        parsed = _config_of(config)
        sandbox = await cls._create(task_name, parsed)
        return {"default": cls(sandbox, parsed)}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for environment in environments.values():
            if isinstance(environment, SandkitSandboxEnvironment):
                await environment.sandbox.terminate()

    @classmethod
    async def task_cleanup(cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool) -> None:
        # Samples end their own sandboxes; this catches those a cancelled sample left.
        if cleanup:
            providers = list(cls._providers.values())
            for router in cls._routers.values():
                providers.extend(p for p in (router.provider(pool) for pool in router.pools) if p is not None)
            for provider in providers:
                await _end_tagged(provider, {TASK_TAG: task_name[:256]})
        cls._providers.clear()
        cls._routers.clear()

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        tags = {} if id is None else {"sandkit.run-id": id}
        for name in sandkit.LINKED_PROVIDERS:
            try:
                provider = await sandkit.open(name)
            except sandkit.SandkitError as error:
                print(f"sandkit: {name}: skipped ({error})")
                continue
            ended = await _end_tagged(provider, tags)
            print(f"sandkit: {name}: ended {len(ended)} sandbox(es) {' '.join(ended)}".rstrip())

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        user = user if user is not None else self._config.user
        if user is not None and not self._run_as_user:
            raise SandboxUserUnsupportedError(
                f"sandkit provider {self.sandbox.provider.name} cannot run commands as {user!r}"
            )
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        try:
            result = await self.sandbox.exec(
                cmd,
                cwd=cwd,
                env=env,
                user=user,
                timeout=timeout,
                stdin=input,
                output_limit_bytes=limit,
            )
        except _errors.ProgramNotFound as error:
            return ExecResult(False, 127, "", f"{error}\n")
        except _errors.InvalidSpec as error:
            if error.field != "user":
                raise
            # As `docker exec --user` reports a user the container does not have.
            return ExecResult(False, 126, "", f"{error}\n")
        except (_errors.SandboxNotFound, _errors.InvalidState, _errors.Unavailable) as error:
            raise SandboxUnavailableError(str(error)) from error
        if result.truncated:
            kept = result.stdout if result.stdout_truncated else result.stderr
            raise OutputLimitExceededError(
                limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
                truncated_output=kept.decode("utf-8", errors="replace"),
            )
        return ExecResult(
            result.returncode == 0,
            result.returncode,
            result.stdout.decode("utf-8", errors="replace"),
            result.stderr.decode("utf-8", errors="replace"),
        )

    async def _access(self, mode: Literal["r", "w"], file: str) -> None:
        if not self._check_access:
            return
        checked = await self.sandbox.exec(["/bin/sh", "-c", _ACCESS_CHECK, "sh", mode, file])
        if checked.returncode == 3:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
        if checked.returncode == 4:
            raise PermissionError(errno.EACCES, "Permission denied", file)

    async def write_file(self, file: str, contents: str | bytes) -> None:
        await self._access("w", file)
        await self.sandbox.write_file(file, contents)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> Union[str, bytes]:
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        stat = await self.sandbox.stat(file)
        if stat["kind"] == "directory":
            raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
        if stat["size_bytes"] > limit:
            raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None)
        await self._access("r", file)
        contents = await self.sandbox.read_file(file)
        if len(contents) > limit:
            raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None)
        return contents.decode("utf-8") if text else contents

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        provider = self.sandbox.provider.name
        command = f"sandkit --provider {shlex.quote(provider)} exec {shlex.quote(self.sandbox.id)} -- sh"
        return SandboxConnection(type="sandkit", command=command, container=self.sandbox.id)

    def default_polling_interval(self) -> float:
        return 0.2


async def _end_tagged(provider: sandkit.Provider, tags: dict[str, str]) -> list[str]:
    """Terminates the sandboxes this environment made at ``provider`` that carry
    ``tags``; returns their ids."""
    wanted = {"sandkit.managed-by": "sandkit", ENV_TAG: "sandkit", **tags}
    ended = []
    for info in await provider.list(tags=wanted, include_finished=True):
        await provider._native.terminate(info["id"])
        ended.append(info["id"])
    return ended
