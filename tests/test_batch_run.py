"""`fleet batch run` end to end on the simulated marketplace: the GPU-agent guide's
batch (1,000 images, 5 hours on one RTX 4090, under $100), scaled down to seconds.

The real services (provisioner with the sim, cost-guard, watcher, scaler, gateway)
run against the test's nats-server; the CLI runs as a user runs it. The run must
finish every item, release every unit it rented, and cost within 10 % of its plan,
as the cost-guard's own ledger of unit events counts it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts import subjects
from contracts.batch import BatchOption, BatchStatus
from contracts.events import UnitEvent
from services.gateway.batchtally import Tally, summary
from tests.fleet_helpers import fleet
from tests.provisioner_helpers import Watch
from tests.signing_helpers import SEEDS

REPO = Path(__file__).resolve().parents[1]
POOLS: dict[str, Any] = {
    "h100": {"gpu_model": "H100", "providers": ["sim"], "max_usd_per_hour": 10, "min": 0}
}
ITEMS, PER_ITEM_S = 60, 0.5
"""The guide's 1,000 items x 18 s, scaled down: 30 s of RTX 4090 time."""


async def cli(nats_url: str, *args: str, timeout_s: float = 90) -> tuple[int, str, str]:
    """`fleet ARGS --nats URL` in a subprocess, without blocking the services' loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools",
        *args,
        "--nats",
        nats_url,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # `fleet approve|reject` sign as the suite's operator, not with a key of the checkout
        env={**os.environ, "FLEET_OPERATOR_SEED": SEEDS["operator"].decode()},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode(), err.decode()


def billed_usd(events: list[UnitEvent], command_id: str) -> float:
    """What the batch's units cost, as the cost-guard's ledger bills: from the first
    billed state to the end, at the unit's price."""
    since: dict[str, float] = {}
    total = 0.0
    for ev in sorted(events, key=lambda e: e.ts):
        if ev.command_id != command_id and ev.unit not in since:
            continue
        if ev.state in ("booting", "ready", "draining"):
            since.setdefault(ev.unit, ev.ts)
        elif ev.state in ("terminated", "failed") and ev.unit in since:
            total += (ev.ts - since.pop(ev.unit)) * ev.usd_per_hour / 3600.0
    assert not since, f"units never ended: {sorted(since)}"
    return total


async def test_the_guides_batch_finishes_releases_every_unit_and_costs_what_it_planned(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    services = fleet(nats_url, tmp_path, POOLS)
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    for svc in services:
        await svc.start()
    try:
        plan_file = tmp_path / "plan.json"
        code, out, err = await cli(
            nats_url,
            "batch",
            "plan",
            "--items",
            str(ITEMS),
            "--per-item-s",
            str(PER_ITEM_S),
            "--gpu",
            "RTX4090",
            "--max-usd",
            "100",
            "--deadline",
            "12s",
            "--lead-s",
            "1",
            "--json",
        )
        assert code == 0, err
        plan = json.loads(out)
        plan_file.write_text(out)
        chosen = plan["chosen"]
        assert chosen["gpu_model"] == "RTX4090" and chosen["count"] >= 3, chosen
        assert chosen["wall_s"] <= 12 and chosen["cost_usd"] < 100

        code, out, err = await cli(
            nats_url,
            "batch",
            "run",
            "--plan",
            str(plan_file),
            "--jobs-per-gpu",
            "4",
            "--progress-every",
            "5s",
            "--json",
        )
        assert code == 0, (out, err)
        done = json.loads(out)["status"]
        assert done["state"] == "succeeded", done
        assert (done["items_done"], done["items_failed"]) == (ITEMS, 0)

        # Every unit it rented has been released, and the ledger's bill matches the plan.
        rented = set(done["units"])
        assert len(rented) == chosen["count"]
        ended = await units.until(
            lambda ev: rented <= {e.unit for e in ev if e.state == "terminated"}, 20
        )
        actual = billed_usd(ended, done["provision_id"])
        assert abs(actual - done["actual_usd"]) < 1e-6
        assert abs(actual - chosen["cost_usd"]) <= 0.10 * chosen["cost_usd"], (
            f"actual ${actual:.6f} vs planned ${chosen['cost_usd']:.6f}"
        )
        print(
            f"planned {chosen['count']} x RTX4090, {chosen['wall_s']:.1f} s, "
            f"${chosen['cost_usd']:.6f}; actual {done['elapsed_s']:.1f} s, ${actual:.6f}"
        )
    finally:
        for svc in reversed(services):
            await svc.stop()
        await units.stop()


async def test_plan_answers_the_guides_example_and_refuses_bad_input_plainly(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    services = fleet(nats_url, tmp_path, POOLS)
    for svc in services:
        await svc.start()
    try:
        guide = (
            "batch",
            "plan",
            "--items",
            "1000",
            "--per-item-s",
            "18",
            "--gpu",
            "RTX4090",
            "--max-usd",
            "100",
        )
        code, out, err = await cli(nats_url, *guide)
        assert code == 0, err
        assert "1000 items x 18 s on RTX4090" in out
        assert "chosen: cheapest option that costs at most $100.00: 1 x RTX4090 on sim" in out
        code, out, err = await cli(nats_url, *guide, "--json")
        plan = json.loads(out)
        assert plan["ok"] and plan["chosen"]["cost_usd"] < 100
        assert {"gpu_model", "count", "wall_s", "cost_usd"} <= set(plan["options"][0])

        code, out, _ = await cli(nats_url, *guide, "--deadline", "10m", "--max-usd", "2.5")
        assert code == 1 and "none fits: no option finishes within 10m00s" in out
        assert "with a cap of $" in out and "with a deadline of" in out

        code, _, err = await cli(nats_url, "batch", "plan", "--items", "0", "--per-item-s", "1")
        assert code == 1 and "items" in err and ">= 1" in err
        code, out, _ = await cli(
            nats_url, "batch", "plan", "--items", "9", "--per-item-s", "1", "--gpu", "Nope"
        )
        assert code == 1 and "no GPU model can be planned: Nope: no live offer" in out
        code, _, err = await cli(nats_url, "batch", "run", "--plan", str(tmp_path / "none"))
        assert code == 1 and "--plan" in err
        (tmp_path / "unplanned.json").write_text('{"items": 3}')
        code, _, err = await cli(
            nats_url, "batch", "run", "--plan", str(tmp_path / "unplanned.json")
        )
        assert code == 1 and "chose no option: it has no `chosen` option" in err
    finally:
        for svc in reversed(services):
            await svc.stop()


async def test_a_batch_the_cost_guard_holds_waits_and_rents_nothing_when_rejected(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    services = fleet(nats_url, tmp_path, POOLS)
    units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    steps = await Watch(BatchStatus).start(nc, subjects.batch("big"))
    for svc in services:
        await svc.start()
    try:
        # 61+ H100s for five minutes: above the cost-guard's $100/h approval threshold.
        code, out, err = await cli(
            nats_url,
            "batch",
            "run",
            "--id",
            "big",
            "--items",
            "1000",
            "--per-item-s",
            "18",
            "--gpu",
            "H100",
            "--deadline",
            "5m",
            "--lead-s",
            "1",
            "--detach",
            "--json",
        )
        assert code == 0, err
        reply = json.loads(out)
        waiting = reply["status"]
        assert waiting["state"] == "waiting", waiting
        assert f"`fleet approve {waiting['provision_id']}`" in waiting["reason"]
        assert waiting["reason"].count("fleet approve") == 1  # said once, not twice
        # The answer says the run waits, not that it runs.
        assert reply["reason"].startswith(f"waiting for `fleet approve {waiting['provision_id']}`")

        code, _, err = await cli(nats_url, "reject", waiting["provision_id"])
        assert code == 0, err
        seen = await steps.until(lambda s: any(x.finished for x in s), 20)
        assert seen[-1].state == "refused" and "not approved" in seen[-1].reason
        code, out, _ = await cli(nats_url, "batch", "status", "big", "--json")
        assert code == 0 and json.loads(out)["state"] == "refused"
        assert not [e for e in units.items if e.command_id == waiting["provision_id"]]
    finally:
        for svc in reversed(services):
            await svc.stop()
        await steps.stop()
        await units.stop()


def test_the_runs_books_count_items_retries_and_billing_as_the_ledger_does_once() -> None:
    tally = Tally(sizes=[3, 3, 2])
    tally.in_flight = {"b-0": 3, "b-1": 3, "b-2": 2}
    tally.next_job = 3
    assert not tally.job_event("b-0", "retried") and tally.retries == 1
    assert not tally.job_event("b-0", "retried") and tally.retries == 1  # read again
    assert tally.job_event("b-0", "succeeded") and not tally.job_event("b-0", "succeeded")
    assert tally.job_event("b-1", "dead") and not tally.job_event("other", "succeeded")
    assert (tally.items_done, tally.items_failed, tally.done) == (3, 3, False)
    assert tally.job_event("b-2", "succeeded") and tally.done

    def ev(unit: str, state: str, ts: float) -> UnitEvent:
        return UnitEvent(pool="p", unit=unit, state=state, ts=ts, usd_per_hour=3.6)  # type: ignore[arg-type]

    seen = (
        ev("u1", "requested", 0),
        ev("u1", "booting", 10),
        ev("u1", "ready", 15),
        ev("u2", "requested", 0),
        ev("u2", "failed", 5),
        ev("u1", "terminated", 110),
    )
    for e in seen + seen:  # a gateway that takes the run over reads them all again
        tally.unit_event(e)
    assert tally.live_units() == [] and tally.usd(1000) == pytest.approx(0.1)  # 100 s at $3.6/h
    option = BatchOption(
        gpu_model="H100",
        count=1,
        wall_s=100,
        cost_usd=0.1,
        usd_per_hour=3.6,
        provider="sim",
        lead_time_s=0,
        billing_s=1,
        per_item_s=1,
    )
    text = summary(option, tally, 110, 0.1)
    assert text.startswith("5/8 items done, 3 failed on 1 x H100 in 1m50s (planned 1m40s, +10.0%)")
    assert "for $0.1000 (planned $0.1000, +0.0%); 1 retry; 2 unit(s) rented, 0 still live" in text


def test_the_replacement_of_a_failed_unit_is_the_batchs_to_pay_for_and_release() -> None:
    tally = Tally(sizes=[4])

    def ev(unit: str, state: str, ts: float, command: str) -> UnitEvent:
        return UnitEvent(
            pool="p",
            unit=unit,
            state=state,  # type: ignore[arg-type]
            ts=ts,
            usd_per_hour=3.6,
            command_id=command,
        )

    seen = [
        ev("u1", "booting", 0, "prov-b"),
        ev("u1", "failed", 5, "prov-b"),
        ev("u2", "booting", 6, "replace-u1"),  # the provisioner's replacement of u1
        ev("u2", "ready", 10, "replace-u1"),
        ev("u9", "ready", 10, "scale:p:3"),  # the pool's own unit: not the batch's
        ev("u3", "booting", 12, "replace-u9"),
    ]
    for e in seen:
        if tally.ours(e, "prov-b"):
            tally.unit_event(e)
    assert tally.live_units() == ["u2"]  # released when the batch ends
    assert tally.usd(106) == pytest.approx(0.1 + 0.005)  # u2's 100 s, u1's 5 s
