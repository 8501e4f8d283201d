"""inspect_ai's entry point: importing this registers the ``sandkit`` sandbox
environment."""

from .inspect_env import SandkitSandboxEnvironment

__all__ = ["SandkitSandboxEnvironment"]
