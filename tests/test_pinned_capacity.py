"""Explicit capacity end to end: provision_gpu of 2 A100s with a duration, through the
gateway, the cost-guard, the provisioner (sim) and the scaler, on zero load. The scaler
is tuned to scale in at once, so only the pin keeps the units; when the duration ends
they are released through the cost-guard, with audit records for both.

The duration here is 6 s; `tests/test_scaler_pins.py` runs the same decisions with a
two-hour duration on an injected clock."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.api.replies import CommandAnswer, ScalingReply
from contracts.commands import ReleaseRequest, ScaleProposal, Verdict
from contracts.events import AuditRecord, UnitEvent
from tests.fleet_helpers import fleet
from tests.provisioner_helpers import Watch, states

POOLS = {"h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10, "min": 0}}
DURATION_S = 6.0
EAGER = {"cooldown_down_s": 0, "stable_window_s": 0.5, "panic_window_s": 0.2, "repropose_s": 1}


def _guard(records: list[AuditRecord], pool: str) -> list[AuditRecord]:
    return [r for r in records if r.actor == "costguard" and r.refs.get("pool") == pool]


async def _scaling(nc: Client, pool: str) -> Any:
    """The scaler's row for `pool` once it has decided on the pool's (zero) load."""
    for _ in range(100):
        reply = await nc.request("fleet.api.scaling", b"{}", 5)
        row = msgspec.json.decode(reply.data, type=ScalingReply).pools.get(pool)
        if row is not None and row.last_metrics_ts is not None:
            return row
        await asyncio.sleep(0.1)  # the watcher's next tick; bounded by the loop
    raise AssertionError(f"the scaler never decided on {pool}")


async def test_a_pinned_provision_survives_zero_load_and_is_released_when_it_ends(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    services = fleet(
        nats_url, tmp_path, POOLS, scaler={"default_policy": EAGER, "pin_check_s": 0.2}
    )
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    verdicts = await Watch(Verdict).start(nc, "fleet.budget.*")
    proposals = await Watch(ScaleProposal).start(nc, subjects.SCALE_PROPOSED_ALL)
    audits = await Watch(AuditRecord).start(nc, subjects.AUDIT_ALL)
    for svc in services:
        await svc.start()
    try:
        body = {"gpu_model": "A100", "count": 2, "duration": DURATION_S, "requester": "ops"}
        reply = await nc.request("fleet.api.gpu.provision", msgspec.json.encode(body), 15)
        answer = msgspec.json.decode(reply.data, type=CommandAnswer)
        assert answer.decision == "approved", answer
        started = time.time()
        pool = answer.request["pool"]
        assert pool == "adhoc-a100"  # no pool runs A100s: an ad-hoc one, priced from offers
        assert "offer" in answer.reason or answer.usd_per_hour > 0

        ready = await units.until(lambda ev: len(states(ev, "ready")) == 2, 20)
        pinned_units = states(ready, "ready")
        # The scaler sees zero load and would go to 0, but the pin holds them; status
        # shows desired = max(load, pinned).
        row = await _scaling(nc, pool)
        assert (row.load_desired, row.pinned, row.desired) == (0, 2, 2)
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tools", "status", "--nats", nats_url],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "COLUMNS": "200"},
        )
        [line] = [x for x in status.stdout.splitlines() if pool in x]
        assert "2 (2 pinned)" in line, status.stdout
        await audits.until(lambda a: any(r.action == "pin.set" for r in a), 5)

        # Nothing is drained before the duration ends.
        ended = await units.until(
            lambda ev: bool(states(ev, "draining") | states(ev, "terminated")),
            DURATION_S + 20,
        )
        gone_at = min(e.ts for e in ended if e.state in ("draining", "terminated"))
        assert gone_at >= started + DURATION_S - 1.0, gone_at - started
        assert not [p for p in proposals.items if p.pool == pool and p.desired < 2]

        # Released through the cost-guard, with audit records for the provision and the end.
        await units.until(lambda ev: states(ev, "terminated") >= pinned_units, 20)
        releases = [
            v
            for v in verdicts.items
            if isinstance(v.request, ReleaseRequest) and v.request.pool == pool
        ]
        assert [v.decision for v in releases] == ["approved"]
        assert releases[0].request.requester == "scaler"  # type: ignore[union-attr]
        assert "ended after" in releases[0].request.reason
        seen = await audits.until(
            lambda a: (
                {"pin.set", "pin.expired"} <= {r.action for r in a} and len(_guard(a, pool)) >= 2
            ),
            10,
        )
        assert [r.action for r in _guard(seen, pool)] == [
            "approved ProvisionRequest",
            "approved ReleaseRequest",
        ]
    finally:
        for svc in reversed(services):
            await svc.stop()
        for w in (units, verdicts, proposals, audits):
            await w.stop()
        await asyncio.sleep(0)
