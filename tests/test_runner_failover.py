"""A runner killed with SIGKILL under load loses no task: every task it had accepted
ends terminal (failed explicitly with a retry hint) once its lease lapses, and the
surviving runner completes the rest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.a2a import (
    TERMINAL_STATES,
    Message,
    Part,
    Role,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
    iso_now,
)
from services.a2a.client import A2AClient
from services.runner.taskstore import LeasedTaskStore

AGENT = subjects.hosted_agent("assistant")
REPO = Path(__file__).resolve().parents[1]


def start_runner(nats_url: str, tmp_path: Path, unit: str) -> tuple[subprocess.Popen[bytes], Path]:
    ready = tmp_path / f"{unit}.ready"
    env = {
        **os.environ,
        "FLEET_RUNNER__MODEL": "sim",
        "FLEET_RUNNER__SIM_LATENCY_S": "3.0",
        "FLEET_RUNNER__UNIT": unit,
        "FLEET_RUNNER__READY_FILE": str(ready),
        "FLEET_RUNNER__LEASE_S": "1.5",
        "FLEET_RUNNER__REAP_INTERVAL_S": "0.5",
        "FLEET_RUNNER__TENANT_RATE_LIMIT_PER_MIN": "100000",
        "FLEET_STORE__DIR": str(tmp_path),
        "FLEET_LOG__LEVEL": "warning",
    }
    env.pop("FLEET_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools", "run", "runner", "--nats", nats_url],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"{unit}.log", "wb"),
    )
    return proc, ready


async def wait_ready(procs: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    give_up = time.monotonic() + 30
    while not all(ready.exists() for _, ready in procs):
        assert all(p.poll() is None for p, _ in procs), "a runner exited while starting"
        assert time.monotonic() < give_up, "runners did not become ready in 30 s"
        await asyncio.sleep(0.1)


async def test_a_runner_killed_mid_task_loses_no_task(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    runners = [start_runner(nats_url, tmp_path, unit) for unit in ("k1", "k2")]
    try:
        await wait_ready(runners)
        client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)
        tasks = []
        for i in range(40):
            msg = client.user_message(f"work {i}", context_id=f"c{i}")
            tasks.append(await client.send(msg, return_immediately=True))
        victim = runners[0][0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)

        final = {}
        async with asyncio.timeout(40):
            while len(final) < len(tasks):
                for t in tasks:
                    if t.id not in final:
                        got = await client.get(t.id)
                        if got.status.state in TERMINAL_STATES:
                            final[t.id] = got
                await asyncio.sleep(0.3)
        states = [t.status.state for t in final.values()]
        assert set(states) <= {TaskState.COMPLETED, TaskState.FAILED}
        failed = [t for t in final.values() if t.status.state == TaskState.FAILED]
        assert failed, "the killed runner held some of the tasks"
        assert states.count(TaskState.COMPLETED) > 0
        for t in failed:
            assert t.status.message is not None
            reason = t.status.message.parts[0].text or ""
            assert "k1" in reason and "send the message again" in reason
    finally:
        for proc, _ in runners:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in runners:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def test_a_running_task_is_claimed_before_it_is_stored_and_reaped_when_its_runner_dies(
    nc: Client,
) -> None:
    js = nc.jetstream()
    dead = await LeasedTaskStore.open(js, AGENT, "runner-a", lease_s=0.5)
    alive = await LeasedTaskStore.open(js, AGENT, "runner-b", lease_s=30)
    message = Message(message_id="m1", role=Role.USER, parts=[Part(text="hi")], context_id="c1")

    def task(task_id: str, state: TaskState) -> Task:
        status = TaskStatus(state=state, timestamp=iso_now())
        return Task(id=task_id, context_id="c1", status=status, history=[message])

    await dead.put(task("t-running", TaskState.WORKING), "acme")  # no claim() beforehand
    await dead.put(task("t-done", TaskState.COMPLETED), "acme")  # ended before any store
    records = await alive.records()
    assert records["runner-a"].tasks == {"t-running": "acme"}

    heard: list[tuple[str, StreamResponse]] = []

    async def publish(task_id: str, item: StreamResponse) -> None:
        heard.append((task_id, item))

    failed = await alive.reap(publish, now=time.time() + 1)  # runner-a's lease has lapsed
    assert failed == ["t-running"]
    got = await alive.get("t-running", "acme")
    assert got is not None and got.status.state == TaskState.FAILED
    assert heard[0][0] == "t-running"
    done = await alive.get("t-done", "acme")
    assert done is not None and done.status.state == TaskState.COMPLETED
