"""One exception class per sandkit error kind.

Every class derives from :class:`SandkitError`, and also from the builtin exception that
means the same thing where Python has one, so ``except TimeoutError`` or
``except FileNotFoundError`` work as they would for local code. The native module raises
these with the error's fields set as attributes (``field`` on :class:`InvalidSpec`,
``stdout``/``stderr`` on :class:`CommandTimeout`, ``path`` on file errors, ...). Messages
never carry a secret.
"""

from __future__ import annotations


class SandkitError(Exception):
    """Base of every sandkit error. ``kind`` is the core error's stable name
    (``invalid_spec``, ``command_timeout``, ...); ``retryable`` says whether repeating the
    call later may succeed."""

    kind: str = "sandkit"
    retryable: bool = False


class InvalidSpec(SandkitError, ValueError):
    """A field of a spec or request has a bad value; ``field`` is its dotted path
    (``gpu.count``, ``env.PATH``) and ``reason`` says why."""

    field: str = ""
    reason: str = ""


class InvalidConfig(SandkitError, ValueError):
    """A provider's configuration is invalid (``provider``, ``reason``)."""


class Unsupported(SandkitError, NotImplementedError):
    """The provider cannot do what was asked; nothing was attempted (``provider``,
    ``feature``)."""


class UnknownProvider(SandkitError, LookupError):
    """No provider is registered under ``name``; ``known`` lists the registered ones."""


class ConfigFileError(SandkitError, ValueError):
    """A configuration file such as ``sandkit.toml`` is wrong (``path``, ``line``,
    ``reason``)."""


class NoPoolAvailable(SandkitError):
    """No pool of a router can take the sandbox."""


class AuthenticationFailed(SandkitError):
    """Credentials were missing or rejected."""


class PermissionDenied(SandkitError, PermissionError):
    """The credentials are valid but not allowed to do this."""


class SandboxNotFound(SandkitError, LookupError):
    """The sandbox (or snapshot, image, volume) does not exist or has finished
    (``what``)."""


NotFound = SandboxNotFound


class AlreadyExists(SandkitError):
    """Something with this name already exists (``what``)."""


class CreationFailed(SandkitError):
    """The provider failed to create the sandbox."""


class ExecFailed(SandkitError, PermissionError):
    """The command could not be started although its program may exist (not
    executable, a directory...); ``program`` is ``argv[0]``. A ``PermissionError``, as
    the shell's exit 126 is."""


class ProgramNotFound(SandkitError, FileNotFoundError):
    """The command's program does not exist (``program``)."""


class CommandTimeout(SandkitError, TimeoutError):
    """The command ran past its timeout and its process tree was killed. ``stdout`` and
    ``stderr`` hold the output so far (``bytes``); ``timeout`` is in seconds."""

    stdout: bytes = b""
    stderr: bytes = b""
    timeout: float = 0.0


class OperationTimeout(SandkitError, TimeoutError):
    """An operation other than a command took too long (``operation``, ``timeout``)."""


class ResourceLimitExceeded(SandkitError):
    """A cpu, memory, pids, disk or quota limit was hit."""


class RateLimited(SandkitError):
    """The provider asks the caller to slow down; ``retry_after`` in seconds, or
    ``None``."""


class Unavailable(SandkitError, ConnectionError):
    """The provider could not be reached or is temporarily failing."""


class InvalidState(SandkitError):
    """The sandbox's state forbids the operation (``sandbox_id``, ``state``,
    ``operation``): a paused sandbox refuses exec and file operations, a running one
    refuses resume."""


class FileOperationError(SandkitError, OSError):
    """A file operation inside a sandbox failed; ``path`` as given, ``file_error`` in
    words."""

    path: str = ""


class FileNotFound(FileOperationError, FileNotFoundError):
    """No file or directory at the path."""


class IsADirectory(FileOperationError, IsADirectoryError):
    """The path is a directory where a file was expected."""


class NotADirectory(FileOperationError, NotADirectoryError):
    """A component of the path, or the path itself, is not a directory."""


class FilePermissionDenied(FileOperationError, PermissionError):
    """The sandbox's permissions forbid the operation."""


class FileExists(FileOperationError, FileExistsError):
    """Something already exists at the path."""


class PathOutsideSandbox(FileOperationError, PermissionError):
    """The path resolves outside the sandbox (``..``, absolute or symlink escapes)."""


class DirectoryNotEmpty(FileOperationError):
    """A directory that must be empty is not."""


class FileTooLarge(FileOperationError):
    """The file is larger than the provider can transfer."""


class VolumeError(SandkitError):
    """A volume could not be created, found or mounted."""


class ProviderError(SandkitError):
    """Any other provider failure (``provider``)."""


__all__ = [name for name, value in globals().items() if isinstance(value, type)]
