"""The asyncio API on every enabled provider, and its argument checking."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

import sandkit
from conftest import SPECS


@pytest.fixture
async def provider(provider_name: str) -> sandkit.Provider:
    return await sandkit.open(provider_name)


@pytest.fixture
async def sandbox(provider: sandkit.Provider):
    created = await provider.create(SPECS[provider.name], lifetime_secs=600, tags={"test": "python"})
    yield created
    await created.terminate()


async def test_exec_returns_code_and_raw_bytes(sandbox: sandkit.Sandbox) -> None:
    result = await sandbox.exec(["sh", "-c", "printf 'a\\377'; printf err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, b"a\xff", b"err")
    assert not result.success and not result.truncated


async def test_exec_cwd_env_and_stdin(sandbox: sandkit.Sandbox) -> None:
    result = await sandbox.exec(["sh", "-c", 'pwd; echo "$GREETING"; cat'], cwd="/tmp", env={"GREETING": "hi"}, stdin="in")
    assert result.stdout == b"/tmp\nhi\nin"


async def test_output_limit_sets_the_truncated_flag_of_that_stream(sandbox: sandkit.Sandbox) -> None:
    result = await sandbox.exec(["sh", "-c", "echo 0123456789; echo ok >&2"], output_limit_bytes=4)
    assert result.stdout == b"0123" and result.stdout_truncated
    assert result.stderr == b"ok\n" and not result.stderr_truncated


async def test_a_timeout_is_a_timeout_error_carrying_the_output_so_far(sandbox: sandkit.Sandbox) -> None:
    with pytest.raises(sandkit.CommandTimeout) as caught:
        await sandbox.exec(["sh", "-c", "echo started; sleep 30"], timeout=1)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.stdout == b"started\n"
    assert caught.value.kind == "command_timeout"


async def test_cancelling_an_exec_kills_the_command(sandbox: sandkit.Sandbox) -> None:
    task = asyncio.ensure_future(sandbox.exec(["sh", "-c", "echo $$ > /tmp/pid; exec sleep 60"]))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = (await sandbox.read_file("/tmp/pid")).decode().strip()
    for _ in range(50):
        alive = await sandbox.exec(["sh", "-c", f"kill -0 {pid} 2>/dev/null"])
        if not alive.success:
            break
        await asyncio.sleep(0.1)
    assert not alive.success, "the cancelled command still runs"


async def test_streaming_output_stdin_and_wait(sandbox: sandkit.Sandbox) -> None:
    process = await sandbox.start(["sh", "-c", "cat; echo done >&2; exit 5"], stdin=True)
    await process.write_stdin(b"chunk")
    await process.close_stdin()
    chunks = [chunk async for chunk in process.stdout]
    assert b"".join(chunks) == b"chunk"
    assert await process.stderr.read() == b"done\n"
    assert await process.wait() == 5


async def test_kill_ends_a_started_command(sandbox: sandkit.Sandbox) -> None:
    process = await sandbox.start(["sleep", "60"])
    started = time.monotonic()
    waiter = asyncio.ensure_future(process.wait())
    await asyncio.sleep(0.5)
    await process.kill()
    code = await asyncio.wait_for(waiter, 20)
    assert code != 0 and time.monotonic() - started < 20


async def test_files_round_trip_and_list(sandbox: sandkit.Sandbox) -> None:
    await sandbox.write_file("dir/a.bin", b"\x00\xff" * 1000)
    await sandbox.write_file("dir/b.txt", "héllo")
    assert await sandbox.read_file("dir/a.bin") == b"\x00\xff" * 1000
    assert await sandbox.read_text("dir/b.txt") == "héllo"
    stat = await sandbox.stat("dir/a.bin")
    assert (stat["kind"], stat["size_bytes"]) == ("file", 2000)
    assert [entry["name"] for entry in await sandbox.list_dir("dir")] == ["a.bin", "b.txt"]
    await sandbox.mkdir("dir/sub/deeper")
    await sandbox.remove("dir", recursive=True)
    with pytest.raises(FileNotFoundError):
        await sandbox.stat("dir")


async def test_a_large_file_streams_both_ways(sandbox: sandkit.Sandbox) -> None:
    data = bytes(range(256)) * (24 * 4096)  # 24 MiB
    await sandbox.write_file("/tmp/large", data)
    assert await sandbox.read_file("/tmp/large") == data


async def test_file_errors_subclass_the_builtins(sandbox: sandkit.Sandbox) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        await sandbox.read_file("no/such/file")
    assert isinstance(missing.value, sandkit.FileNotFound) and "no/such/file" in str(missing.value)
    with pytest.raises(IsADirectoryError):
        await sandbox.read_file("/tmp")


async def test_capabilities_are_plain_data(provider: sandkit.Provider) -> None:
    capabilities = provider.capabilities
    assert isinstance(capabilities, dict) and isinstance(capabilities["files"], bool)


async def test_snapshot_pause_and_resume_where_declared(provider: sandkit.Provider, sandbox: sandkit.Sandbox) -> None:
    capabilities = provider.capabilities
    if capabilities["fs_snapshot"]:
        await sandbox.write_file("/tmp/kept", b"kept")
        snapshot = await sandbox.snapshot()
        restored = await provider.create(SPECS[provider.name], image={"kind": "snapshot", "id": snapshot["id"]}, lifetime_secs=600)
        try:
            assert await restored.read_file("/tmp/kept") == b"kept"
        finally:
            await restored.terminate()
            await provider.delete_snapshot(snapshot["id"])
    else:
        with pytest.raises(sandkit.Unsupported):
            await sandbox.snapshot()
    if capabilities["pause"] != "no":
        await sandbox.pause()
        with pytest.raises(sandkit.InvalidState):
            await sandbox.exec(["true"])
        await sandbox.resume()
        assert (await sandbox.exec(["true"])).success
    else:
        with pytest.raises(sandkit.Unsupported):
            await sandbox.pause()


async def test_entrypoint_output_where_declared(provider: sandkit.Provider) -> None:
    if not provider.capabilities["entrypoint_output"]:
        created = await provider.create(SPECS[provider.name], lifetime_secs=600)
        try:
            with pytest.raises(sandkit.Unsupported):
                await created.entrypoint_output()
        finally:
            await created.terminate()
        return
    entrypoint = ["sh", "-c", "echo out; echo err >&2; exit 6"]
    created = await provider.create(SPECS[provider.name], lifetime_secs=600, entrypoint=entrypoint)
    try:
        assert await (await created.entrypoint_output()).read() == b"out\n"
        assert await (await created.entrypoint_output("stderr")).read() == b"err\n"
        assert await (await created.entrypoint_output(offset=1)).read() == b"ut\n"
        with pytest.raises(ValueError):
            await created.entrypoint_output(offset=-1)
        with pytest.raises(sandkit.InvalidSpec):
            await created.entrypoint_output("stdin")
    finally:
        await created.terminate()


async def test_entrypoint_stdin_where_declared(provider: sandkit.Provider) -> None:
    if not provider.capabilities["entrypoint_stdin"]:
        created = await provider.create(SPECS[provider.name], lifetime_secs=600)
        try:
            with pytest.raises(sandkit.Unsupported):
                await created.write_entrypoint_stdin(b"x", offset=0)
        finally:
            await created.terminate()
        return
    entrypoint = ["sh", "-c", "while read -r line; do echo \"got $line\"; done"]
    created = await provider.create(SPECS[provider.name], lifetime_secs=600, entrypoint=entrypoint)
    try:
        await created.write_entrypoint_stdin("one\n", offset=0)
        await created.write_entrypoint_stdin("one\n", offset=0)  # a retry: applied once
        await created.write_entrypoint_stdin(b"two\n", offset=4, eof=True)
        assert await (await created.entrypoint_output()).read() == b"got one\ngot two\n"
    finally:
        await created.terminate()


async def test_terminate_is_idempotent_and_then_not_found(provider: sandkit.Provider) -> None:
    created = await provider.create(SPECS[provider.name], lifetime_secs=600)
    await created.terminate()
    await created.terminate()
    with pytest.raises(sandkit.SandboxNotFound):
        await created.exec(["true"])


async def test_reap_ends_what_this_run_left(provider: sandkit.Provider) -> None:
    created = await provider.create(SPECS[provider.name], lifetime_secs=600, tags={"test": "reap"})
    run_id = created.info["tags"]["sandkit.run-id"]
    dry = await provider.reap(run_id=run_id, include_unexpired=True, dry_run=True)
    assert created.id in [info["id"] for info in dry["matched"]] and dry["terminated"] == []
    report = await provider.reap(run_id=run_id, include_unexpired=True)
    assert created.id in report["terminated"]
    assert await provider.list(tags={"sandkit.run-id": run_id}) == []


async def test_an_invalid_spec_names_the_field() -> None:
    provider = await sandkit.open("local-process")
    with pytest.raises(sandkit.InvalidSpec) as bad_cpu:
        await provider.create(cpu=-1)
    assert bad_cpu.value.field == "cpu" and isinstance(bad_cpu.value, ValueError)
    with pytest.raises(sandkit.InvalidSpec) as bad_gpu:
        await provider.create(gpu="X100")
    assert bad_gpu.value.field == "gpu"
    with pytest.raises(sandkit.InvalidSpec) as unknown:
        await provider.create(colour="blue")
    assert unknown.value.field == "colour"


async def test_a_wrong_type_is_a_type_error_naming_the_argument() -> None:
    provider = await sandkit.open("local-process")
    with pytest.raises(TypeError, match="lifetime_secs"):
        await provider.create(lifetime_secs="600")
    with pytest.raises(TypeError, match="env"):
        await provider.create(env={"A": 1})
    with pytest.raises(TypeError, match="config"):
        await sandkit.open("local-process", config="{}")
    async with await provider.create(lifetime_secs=60) as created:
        with pytest.raises(TypeError, match="argv"):
            await created.exec("echo hi")
        with pytest.raises(TypeError, match="timeout"):
            await created.exec(["true"], timeout="1")
        with pytest.raises(TypeError, match="contents"):
            await created.write_file("f", 3)


async def test_spec_from_a_dataclass() -> None:
    @dataclasses.dataclass
    class Job:
        lifetime_secs: int = 60
        env: dict | None = None

    provider = await sandkit.open("local-process")
    async with await provider.create(Job(env={"JOB": "7"})) as created:
        assert (await created.exec(["sh", "-c", "echo $JOB"])).stdout == b"7\n"


async def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(sandkit.UnknownProvider) as caught:
        await sandkit.open("nope")
    assert "local-process" in caught.value.known


def test_select_explains_every_rejection() -> None:
    selection = sandkit.select(gpu_kind="H100", gpu_count=1)
    assert selection["chosen"] == ["modal"]
    rejected = {r["name"]: [u["rule"] for u in r["unmet"]] for r in selection["rejected"]}
    assert set(rejected) == {"local-docker", "local-process"}
    assert all(rules and all(rule.startswith("gpu") for rule in rules) for rules in rejected.values())


def test_no_secret_in_any_repr() -> None:
    from sandkit import sync

    provider = sync.open("local-process")
    with provider.create(secrets={"TOKEN": "s3cr3t-value"}, lifetime_secs=60) as created:
        assert created.exec(["sh", "-c", "printf %s $TOKEN"]).stdout == b"s3cr3t-value"
        for shown in (repr(provider), repr(created), str(created.info), repr(created._sandbox)):
            assert "s3cr3t-value" not in shown


def test_the_sync_wrapper_runs_without_an_event_loop() -> None:
    from sandkit import sync

    provider = sync.open("local-process")
    with provider.create(lifetime_secs=60) as created:
        assert created.exec(["echo", "hi"]).stdout == b"hi\n"
        created.write_file("f", b"x")
        assert created.read_file("f") == b"x"
        process = created.start(["sh", "-c", "echo a; echo b"])
        assert b"".join(process.stdout()) == b"a\nb\n"
        assert process.wait() == 0


async def test_the_router_routes_by_pools_file(tmp_path) -> None:
    pools = tmp_path / "sandkit.toml"
    pools.write_text('[[pool]]\nname = "local"\nprovider = "local-process"\n[pool.spec]\nlifetime_secs = 120\n')
    router = await sandkit.Router.from_file(pools)
    assert router.pools == ["local"]
    created = await router.create(tags={"test": "router"})
    try:
        assert created.decision["chosen"] == "local"
        assert (await created.exec(["true"])).success
    finally:
        await created.terminate()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[pool]]\nname = "x"\nprovider = "local-process"\nmax_concurent = 3\n')
    with pytest.raises(sandkit.ConfigFileError):
        await sandkit.Router.from_file(bad)
