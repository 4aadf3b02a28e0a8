"""A runner's admission decisions with plain values (slots, the queue, when the runner
leaves and rejoins the rpc queue group, a tenant's session quota), then applied by a
real runner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError

from contracts import subjects
from contracts.a2a import QUOTA_EXCEEDED, TaskState
from services.a2a.client import A2AClient
from services.kit.config import load_settings
from services.runner.admission import (
    Capacity,
    Load,
    QuotaFull,
    TenantIndex,
    admit_session,
    admitted,
    arrived,
    gave_up,
    membership,
    refusal,
    released,
)
from services.runner.service import RunnerService
from services.runner.settings import RunnerSettings

CAP = Capacity(max_sessions=2, max_queue=1)
AGENT = subjects.hosted_agent("assistant")


def test_requests_take_slots_then_wait_then_give_back() -> None:
    load = admitted(arrived(Load()))
    assert (load.inflight, load.waiting) == (1, 0)
    load = arrived(arrived(load))
    assert (load.inflight, load.waiting) == (1, 2)
    load = gave_up(load)  # a caller went away while waiting
    assert (load.inflight, load.waiting) == (1, 1)
    load = released(admitted(load))
    assert (load.inflight, load.waiting) == (1, 0)


def test_a_full_runner_leaves_the_group_and_rejoins_with_a_free_slot() -> None:
    full = Load(inflight=2, waiting=1)  # max_sessions + max_queue taken
    assert membership(full, CAP, joined=True, draining=False) == "leave"
    assert membership(full, CAP, joined=False, draining=False) is None
    busy = Load(inflight=2, waiting=0)  # no free slot yet: stays out
    assert membership(busy, CAP, joined=False, draining=False) is None
    room = Load(inflight=1, waiting=0)
    assert membership(room, CAP, joined=False, draining=False) == "join"
    assert membership(room, CAP, joined=True, draining=False) is None


def test_a_draining_runner_never_rejoins() -> None:
    assert membership(Load(), CAP, joined=False, draining=True) is None


def test_a_tenant_opens_sessions_up_to_its_quota() -> None:
    index = TenantIndex(tenant="acme")
    index = admit_session(index, "s1", now=100.0, idle_s=60.0, quota=2)
    index = admit_session(index, "s2", now=101.0, idle_s=60.0, quota=2)
    with pytest.raises(QuotaFull) as refused:
        admit_session(index, "s3", now=102.0, idle_s=60.0, quota=2)
    assert (refused.value.live, refused.value.quota) == (2, 2)
    # Continuing a live session is not a new one.
    again = admit_session(index, "s1", now=103.0, idle_s=60.0, quota=2)
    assert again.live == {"s1": 103.0, "s2": 101.0}


def test_idle_sessions_free_their_place() -> None:
    index = TenantIndex(tenant="acme", live={"old": 0.0, "recent": 90.0})
    index = admit_session(index, "new", now=100.0, idle_s=60.0, quota=2)
    assert set(index.live) == {"recent", "new"}


def test_the_refusal_names_the_quota_and_how_to_proceed() -> None:
    exc = QuotaFull("acme", live=3, quota=3)
    refused = refusal(exc)
    assert refused.code == QUOTA_EXCEEDED
    assert refused.data == {"tenant": "acme", "liveSessions": 3, "maxSessions": 3}
    assert "same contextId" in str(refused)


# -- the decisions applied by a real runner -------------------------------------------------
async def until(cond: Callable[[], bool], timeout_s: float) -> None:
    """Wait until `cond()` holds, failing after `timeout_s`."""
    give_up = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > give_up:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


async def test_a_full_runner_leaves_the_queue_group_until_a_slot_is_free(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    """One slot, no queue: while a task runs, NATS finds no runner for a new request; once
    it has finished the runner takes requests again."""
    settings = load_settings(
        RunnerSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "stop_deadline_s": 2.0,
            "runner": {
                "model": "sim",
                "sim_latency_s": 1.0,
                "sim_jitter": 0.0,
                "unit": "full1",
                "max_sessions": 1,
                "max_queue": 0,
            },
        },
    )
    svc = RunnerService(settings, nats_url=nats_url)
    await svc.start()
    client = A2AClient(nc, AGENT, tenant="acme", timeout_s=10)

    def joined() -> bool:
        agents: Any = svc.status()["agents"]
        return bool(agents["assistant"]["joined"])

    try:
        assert joined()
        first = await client.send("take the only slot", return_immediately=True)
        await until(lambda: not joined(), 5)
        probe = msgspec.json.encode(
            {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": first.id}}
        )
        with pytest.raises(NoRespondersError):
            await nc.request(subjects.a2a_rpc(AGENT), probe, timeout=2)
        await until(joined, 10)
        done = await client.get(first.id)
        assert done.status.state == TaskState.COMPLETED
        second = await client.send("now there is room")
        assert second.status.state == TaskState.COMPLETED
    finally:
        await svc.stop()
