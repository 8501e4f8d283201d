"""A small inspect eval end to end on each enabled provider: a task whose solver runs a
command in its sample's sandbox, with the mockllm model, leaving no sandbox behind."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from inspect_ai import Task, eval_async
from inspect_ai.dataset import Sample
from inspect_ai.scorer import Score, Target, accuracy, scorer
from inspect_ai.solver import Generate, TaskState, solver
from inspect_ai.util import sandbox

import sandkit
from conftest import SPECS
from sandkit.inspect_env import ENV_TAG


@solver
def compute_in_sandbox():
    async def solve(state: TaskState, generate: Generate) -> TaskState:
        # No model call: the point is the sandbox (and mockllm would count tokens with
        # an encoding it downloads).
        result = await sandbox().exec(["sh", "-c", 'echo "$((6 * 7))"; hostname'])
        await sandbox().write_file("answer.txt", result.stdout.splitlines()[0])
        state.metadata["answer"] = await sandbox().read_file("answer.txt")
        return state

    return solve


@scorer(metrics=[accuracy()])
def answer_matches():
    async def score(state: TaskState, target: Target) -> Score:
        return Score(value="C" if state.metadata.get("answer") == target.text else "I")

    return score


def leftovers(provider: str) -> list[str]:
    """Sandboxes this environment made that are still listed, by the command line when
    ``SANDKIT_CLI`` names the binary, else by the Python API."""
    cli = os.environ.get("SANDKIT_CLI")
    if cli:
        listed = subprocess.run(
            [cli, "--provider", provider, "ls", "--json", "--tag", f"{ENV_TAG}=sandkit"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [info["id"] for info in json.loads(listed)]
    from sandkit import sync

    return [info["id"] for info in sync.open(provider).list(tags={ENV_TAG: "sandkit"})]


async def test_an_eval_runs_its_solver_in_sandkit_sandboxes(provider_name: str) -> None:
    assert leftovers(provider_name) == [], "sandboxes left before the eval"
    task = Task(
        dataset=[Sample(input=f"sample {n}", target="42") for n in range(3)],
        solver=compute_in_sandbox(),
        scorer=answer_matches(),
        sandbox=("sandkit", {"provider": provider_name, "spec": SPECS[provider_name]}),
    )
    logs = await eval_async(task, model="mockllm/model", log_dir=os.environ.get("INSPECT_LOG_DIR", "/tmp/sandkit-inspect-logs"))
    log = logs[0]
    assert log.status == "success", log.error
    assert log.results is not None
    assert log.results.scores[0].metrics["accuracy"].value == 1.0
    assert leftovers(provider_name) == [], "the eval left sandboxes behind"


async def test_a_pools_file_routes_each_sample(tmp_path) -> None:
    pools = tmp_path / "sandkit.toml"
    pools.write_text('[[pool]]\nname = "local"\nprovider = "local-process"\n[pool.spec]\nlifetime_secs = 300\n')
    task = Task(
        dataset=[Sample(input="x", target="42")],
        solver=compute_in_sandbox(),
        scorer=answer_matches(),
        sandbox=("sandkit", str(pools)),
    )
    logs = await eval_async(task, model="mockllm/model", log_dir=str(tmp_path / "logs"))
    assert logs[0].status == "success", logs[0].error
    assert logs[0].results.scores[0].metrics["accuracy"].value == 1.0
    assert leftovers("local-process") == []


def test_cli_cleanup_ends_what_the_environment_left() -> None:
    from sandkit import sync
    from sandkit.inspect_env import SandkitSandboxEnvironment

    provider = sync.open("local-process")
    left = provider.create(lifetime_secs=600, tags={ENV_TAG: "sandkit"})
    mine = provider.create(lifetime_secs=600, tags={"not": "inspect"})
    try:
        import asyncio

        asyncio.run(SandkitSandboxEnvironment.cli_cleanup(left.info["tags"]["sandkit.run-id"]))
        ids = [info["id"] for info in provider.list()]
        assert left.id not in ids and mine.id in ids
    finally:
        mine.terminate()
        left.terminate()
