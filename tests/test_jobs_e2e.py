"""Jobs through the real services: routed by the provisioner's live offers onto the sim
units of two pools with different GPUs, and held back by the real cost-guard's budget."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from contracts.events import UnitEvent
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.config import load_settings
from services.kit.jobexec import simulated
from services.kit.jobworker import JobWorker
from services.provisioner.service import ProvisionerService
from tests.clocks import noon_clock
from tests.jobs_helpers import JobWatch, gateway, submit
from tests.provisioner_helpers import Watch, approve, settings, states
from tests.signing_helpers import publish_event, signing

TWO_POOLS: dict[str, Any] = {
    "big": {"gpu_model": "H100", "providers": ["sim"], "unit_capacity": 4},
    "small": {"gpu_model": "L4", "providers": ["sim"], "unit_capacity": 4},
}


async def test_200_jobs_across_two_pools_land_only_where_their_requirements_are_met(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    prov = ProvisionerService(settings(tmp_path / "prov", TWO_POOLS), nats_url=nats_url)
    gw = gateway(tmp_path / "gw", nats_url, TWO_POOLS)
    await prov.start()
    await gw.start()
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    watch = await JobWatch(nc).start()
    try:
        for pool in TWO_POOLS:
            await approve(nc, ProvisionRequest(id=f"p-{pool}", requester="t", pool=pool, count=2))
        await units.until(lambda ev: len(states(ev, "ready")) == 4)

        kinds: list[tuple[dict[str, Any], set[str]]] = [
            ({"min_vram_gb": 40}, {"big"}),  # only the H100 has the memory
            ({}, {"small"}),  # anything fits: the cheaper L4
            ({"gpu_models": ["H100", "A100-80GB"]}, {"big"}),
            ({"vendor": "nvidia", "min_vram_gb": 16}, {"small"}),
        ]
        calls = [kinds[i % len(kinds)] for i in range(200)]
        replies = await asyncio.gather(
            *(submit(nc, est_s=0.02, requirements=req) for req, _ in calls)
        )
        expected = {r.id: allowed for r, (_, allowed) in zip(replies, calls, strict=True)}
        assert all(r.decision == "routed" for r in replies), replies[:3]
        refused = await submit(nc, requirements={"min_vram_gb": 400})
        assert refused.decision == "refused" and "80 GB < 400 GB VRAM" in refused.reason

        await watch.until(
            lambda: all("succeeded" in watch.states(j) for j in expected),
            60,
            "all 200 jobs to succeed",
        )
        ran_on: dict[str, set[str]] = {"big": set(), "small": set()}
        for job_id, allowed in expected.items():
            done = [e for e in watch.events[job_id] if e.state in ("started", "succeeded")]
            assert {e.pool for e in done} <= allowed, (job_id, done)
            for e in done:
                ran_on[e.pool or ""].add(e.unit or "")
        assert all(len(ran_on[p]) == 2 for p in ran_on), ran_on  # both units of each pool
        assert watch.states(refused.id) == ["refused"]
    finally:
        await watch.stop()
        await units.stop()
        await gw.stop()
        await prov.stop()


async def test_under_a_binding_budget_low_priority_waits_and_high_priority_runs(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"l4": {"gpu_model": "L4", "vram_gb": 24, "vendor": "NVIDIA", "max_usd_per_hour": 0.5}}
    guard = CostGuard(
        load_settings(
            CostguardSettings,
            env={},
            overrides={
                "store": {"dir": str(tmp_path / "guard")},
                "signing": signing("costguard"),
                "stop_deadline_s": 2.0,
                "budget": {"daily_usd": 5.0, "hard_cap_usd": 1000.0},
                "pools": pools,
            },
        ),
        nats_url=nats_url,
    )
    # At noon of a chosen day: a $40/h unit's projected spend binds the $5 budget (in the
    # last minutes of a real day it would not: too few hours are left to spend it).
    guard.clock = noon_clock(time.time())  # type: ignore[method-assign]
    gw = gateway(tmp_path / "gw", nats_url, pools)
    await guard.start()
    await gw.start()
    watch = await JobWatch(nc).start()
    unit = JobWorker(nc, "l4", "u1", simulated(10.0), slots=4)
    try:
        await unit.start()
        # A unit billing $40/h: the day's projected spend passes the $5 budget.
        pricey = UnitEvent(pool="l4", unit="pricey", state="ready", provider="sim",
                           gpu_model="L4", usd_per_hour=40.0)  # fmt: skip
        await publish_event(nc, pricey)

        async def binding() -> None:
            """Until the cost-guard's ledger has the unit (it reads the event stream)."""
            while True:
                reply = await nc.request(subjects.api("budget"), b"{}", timeout=5)
                if b'"burn_usd_per_hour":40' in reply.data:
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(binding(), 10)
        low = await submit(nc, priority="low", est_s=0.1)
        high = await submit(nc, priority="high", est_s=0.1)
        assert low.decision == "queued" and "waiting for budget" in low.reason
        assert "low-priority work waits" in low.reason
        assert high.decision == "routed" and high.pool == "l4"
        await watch.until(lambda: "succeeded" in watch.states(high.id), 10, "the high job to run")
        queued = watch.events[low.id][0]
        assert queued.state == "queued" and "projected spend" in queued.reason

        queue = await nc.request(subjects.api("jobs.queue"), b"{}", timeout=5)
        assert b'"held":{"low":1}' in queue.data

        # The expensive unit goes away: the budget no longer binds and the low job runs.
        gone = UnitEvent(pool="l4", unit="pricey", state="terminated", provider="sim")
        await publish_event(nc, gone)
        await watch.until(lambda: "succeeded" in watch.states(low.id), 20, "the low job to run")
        assert watch.states(low.id)[:2] == ["queued", "routed"]
    finally:
        await unit.stop()
        await watch.stop()
        await gw.stop()
        await guard.stop()
