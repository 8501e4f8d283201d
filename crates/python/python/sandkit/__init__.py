"""sandkit: one API over sandbox providers (local processes under bubblewrap, the local
Docker Engine, Modal), from Python.

The asyncio API mirrors the Rust one::

    import sandkit

    provider = await sandkit.open("local-process")
    sandbox = await provider.create(lifetime_secs=600, network="block_all")
    result = await sandbox.exec(["sh", "-c", "echo hi; exit 3"])
    assert result.returncode == 3 and result.stdout == b"hi\\n"
    await sandbox.terminate()

:mod:`sandkit.sync` has the same calls for scripts, without ``await``. Errors are
subclasses of :class:`SandkitError`, one per core error kind. An inspect_ai sandbox
environment named ``sandkit`` is registered through inspect_ai's entry point.
"""

from __future__ import annotations

import atexit as _atexit
import time as _time

from . import _native
from ._client import (
    ExecResult,
    OutputStream,
    Process,
    Provider,
    Sandbox,
    open,
    providers,
    reap,
    select,
)
from ._errors import *  # noqa: F403
from ._errors import __all__ as _error_names
from ._router import Router

LINKED_PROVIDERS: list[str] = list(_native.LINKED_PROVIDERS)
"""Registry names of the providers this build links."""

__version__ = "0.1.0"


@_atexit.register
def _let_completions_finish() -> None:
    # A tokio thread hands each result to asyncio inside `call_soon_threadsafe`, which
    # lets go of the GIL while it wakes the loop; the woken program can reach interpreter
    # finalization before that thread takes the GIL back to finish, and it then crashes
    # on torn-down state (pyo3-async-runtimes has no shutdown hook, its issue 40).
    # Sleeping here, with the GIL released, lets such a thread finish first.
    _time.sleep(0.05)

__all__ = [
    "ExecResult",
    "LINKED_PROVIDERS",
    "OutputStream",
    "Process",
    "Provider",
    "Router",
    "Sandbox",
    "open",
    "providers",
    "reap",
    "select",
    *_error_names,
]
