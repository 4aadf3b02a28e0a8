"""Backlog drives scaling: 500 queued jobs scale a sim pool up through the cost-guard
(the scaler's policy untouched: queued jobs are queue depth in PoolMetrics), and once
the queue is empty the pool goes back to `min`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest, Verdict
from contracts.events import UnitEvent
from contracts.telemetry import PoolMetrics
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.config import load_settings
from services.provisioner.service import ProvisionerService
from services.scaler.service import Scaler, ScalerSettings
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from tests.jobs_helpers import JobWatch, gateway, submit
from tests.provisioner_helpers import Watch, settings
from tests.signing_helpers import signing

POOL: dict[str, Any] = {
    "gpu_model": "L4",
    "providers": ["sim"],
    "max_usd_per_hour": 1.0,
    "min": 1,
    "max": 6,
    "unit_capacity": 4,
    "target_utilization": 0.8,
    "cooldown_up_s": 0,
    "cooldown_down_s": 1,
    "stable_window_s": 2,
    "panic_window_s": 1,
    "lead_time_s": 1,
    "tick_s": 0.2,
    "repropose_s": 1,
    "drain_deadline_s": 3,
    "idle_cleanup_s": 0,
}
POOLS = {"batch": POOL}


def ready_now(events: list[UnitEvent]) -> int:
    """Units whose latest event is `ready`."""
    last: dict[str, str] = {}
    for e in events:
        last[e.unit] = e.state
    return sum(1 for s in last.values() if s == "ready")


async def test_a_backlog_of_500_jobs_scales_the_pool_up_and_an_empty_queue_back_to_min(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    def common(name: str) -> dict[str, Any]:
        return {"store": {"dir": str(tmp_path / name)}, "stop_deadline_s": 1.0, "pools": POOLS}

    watcher = Watcher(
        load_settings(
            WatcherSettings,
            env={},
            overrides={**common("watcher"), "watcher": {"tick_s": 0.2, "window_s": 0.2}},
        ),
        nats_url=nats_url,
    )
    scaler = Scaler(
        load_settings(ScalerSettings, env={}, overrides=common("scaler")), nats_url=nats_url
    )
    guard = CostGuard(
        load_settings(
            CostguardSettings,
            env={},
            overrides={
                **common("guard"),
                "signing": signing("costguard"),
                "budget": {"daily_usd": 1000, "approval_threshold_usd_per_hour": 100},
            },
        ),
        nats_url=nats_url,
    )
    prov = ProvisionerService(
        settings(tmp_path / "prov", POOLS, sim={"telemetry_interval_s": 0.2}),
        nats_url=nats_url,
    )
    gw = gateway(tmp_path / "gw", nats_url, POOLS)
    services = [guard, prov, watcher, scaler, gw]
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    approved = await Watch(Verdict).start(nc, subjects.BUDGET_APPROVED)
    metrics = await Watch(PoolMetrics).start(nc, subjects.metrics("batch"))
    watch = JobWatch(nc)
    try:
        for svc in services:
            await svc.start()
        await watch.start()  # the services made the streams
        await units.until(lambda ev: ready_now(ev) == 1, 30)  # the scaler brings up `min`

        jobs = [await submit(nc, est_s=0.06, priority="normal") for _ in range(500)]
        assert {j.pool for j in jobs} == {"batch"}
        await metrics.until(lambda ms: any(m.jobs_queued >= 100 for m in ms), 10)
        await units.until(lambda ev: ready_now(ev) >= 4, 40)
        # Every unit came through the cost-guard's approval.
        ups = [v.command for v in approved.items if isinstance(v.command, ProvisionRequest)]
        assert sum(r.count for r in ups if r.pool == "batch") >= 4, ups

        await watch.until(
            lambda: sum("succeeded" in watch.states(j.id) for j in jobs) == 500,
            90,
            "all 500 jobs to succeed",
        )
        assert watch.count("succeeded") == 500
        await units.until(lambda ev: ready_now(ev) == 1, 60)
        peak = max(m.jobs_queued for m in metrics.items)
        oldest = max(m.oldest_job_age_s for m in metrics.items)
        assert peak >= 100 and oldest > 0
        last = msgspec.structs.asdict(metrics.items[-1])
        assert last["jobs_queued"] == 0
    finally:
        for svc in reversed(services):
            await svc.stop()
        await watch.stop()
        for w in (units, approved, metrics):
            await w.stop()
