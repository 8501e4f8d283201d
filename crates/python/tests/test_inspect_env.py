"""The sandkit inspect environment's own contract beyond self_check: output limits,
decoding, users and the connection, on local-process."""

from __future__ import annotations

import os

import pytest
from inspect_ai.util import OutputLimitExceededError, SandboxUserUnsupportedError
from inspect_ai.util._sandbox.limits import override_max_exec_output_size

from sandkit.inspect_env import SandkitEnvironmentConfig, SandkitSandboxEnvironment


@pytest.fixture
async def env():
    config = SandkitEnvironmentConfig(spec={"lifetime_secs": 300})
    environments = await SandkitSandboxEnvironment.sample_init("inspect_env", config, {})
    yield environments["default"]
    await SandkitSandboxEnvironment.sample_cleanup("inspect_env", config, environments, False)


async def test_exec_output_over_the_limit_raises_with_the_kept_part(env) -> None:
    with override_max_exec_output_size(16):
        with pytest.raises(OutputLimitExceededError) as caught:
            await env.exec(["sh", "-c", "printf '%0100d' 0"])
    assert caught.value.truncated_output == "0" * 16


async def test_a_text_read_of_binary_is_a_unicode_decode_error(env) -> None:
    await env.write_file("binary", b"\xc3\x28")
    with pytest.raises(UnicodeDecodeError):
        await env.read_file("binary", text=True)
    assert await env.read_file("binary", text=False) == b"\xc3\x28"


async def test_another_user_runs_as_that_user_or_is_unsupported(env) -> None:
    # local-process maps a range of users when sandkit runs as root (as in CI).
    if os.geteuid() == 0:
        result = await env.exec(["sh", "-c", "whoami; id -u"], user="nobody")
        assert result.success and result.stdout.split() == ["nobody", "65534"]
        root = await env.exec(["sh", "-c", "grep CapEff /proc/self/status"], user="root")
        default = await env.exec(["sh", "-c", "grep CapEff /proc/self/status"])
        assert root.stdout.split()[1] != "0000000000000000", root.stdout
        assert default.stdout.split()[1] == "0000000000000000", default.stdout
    else:
        with pytest.raises(SandboxUserUnsupportedError):
            await env.exec(["whoami"], user="nobody")


async def test_an_unknown_user_is_a_failed_result_naming_it(env) -> None:
    if os.geteuid() != 0:
        with pytest.raises(SandboxUserUnsupportedError):
            await env.exec(["whoami"], user="no-such-user")
        return
    result = await env.exec(["whoami"], user="no-such-user")
    assert not result.success and result.returncode == 126
    assert "no-such-user" in result.stderr


async def test_a_missing_program_is_a_failed_result(env) -> None:
    result = await env.exec(["no-such-program-here"])
    assert not result.success and result.returncode == 127


async def test_the_connection_names_the_sandbox(env) -> None:
    connection = await env.connection()
    assert env.sandbox.id in connection.command and connection.type == "sandkit"
