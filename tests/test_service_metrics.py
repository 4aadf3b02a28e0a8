"""What Prometheus scrapes from the watcher and the cost-guard: the pool and budget
metrics the Grafana dashboard and the alert rules in deploy/ are built on."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from nats.aio.client import Client

from contracts import subjects
from contracts.commands import DecideRequest, ProvisionRequest
from contracts.telemetry import UnitTelemetry
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.config import load_settings
from services.kit.service import encode
from services.watcher.service import SERVICE as Watcher
from services.watcher.settings import WatcherSettings
from tests.signing_helpers import signed_decision, signing


async def scrape_until(port: int, needle: str, within_s: float = 10.0) -> str:
    """/metrics once it contains `needle` (the service fills it in on its next tick)."""
    async with httpx.AsyncClient() as http, asyncio.timeout(within_s):
        while True:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            if needle in text:
                return text
            await asyncio.sleep(0.05)


def held_age(text: str) -> float:
    [value] = re.findall(r"^fleet_held_oldest_age_seconds (\S+)$", text, re.M)
    return float(value)


async def started_guard(nats_url: str, tmp_path: Path, approval_threshold: float) -> CostGuard:
    """A cost-guard with a 250 USD day and one 2 USD/hour pool, started."""
    settings = load_settings(
        CostguardSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "signing": signing("costguard"),
            "budget": {"daily_usd": 250.0, "approval_threshold_usd_per_hour": approval_threshold},
            "pools": {"h100": {"gpu_model": "H100", "max_usd_per_hour": 2.0}},
        },
    )
    guard = CostGuard(settings, nats_url=nats_url)
    await guard.start()
    return guard


async def test_the_watcher_exports_units_and_utilization_per_pool(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    settings = load_settings(
        WatcherSettings,
        env={},
        overrides={
            "store": {"dir": str(tmp_path)},
            "watcher": {"tick_s": 0.1, "window_s": 0.1},
            "pools": {"quiet": {}},
        },
    )
    watcher = Watcher(settings, nats_url=nats_url)
    await watcher.start()
    try:
        beat = UnitTelemetry(pool="gpu", unit="u1", inflight=3, capacity=4, utilization=0.75)
        await nc.publish(subjects.telemetry("gpu", "u1"), encode(beat))
        text = await scrape_until(
            watcher.http_port, 'fleet_pool_units{pool="gpu",state="ready"} 1.0'
        )
        assert 'fleet_pool_utilization{pool="gpu"} 0.75' in text
        # A configured pool with no unit yet is exported too, at zero.
        assert 'fleet_pool_units{pool="quiet",state="ready"} 0.0' in text
    finally:
        await watcher.stop()


async def test_the_costguard_exports_the_budget_and_counts_verdicts(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    guard = await started_guard(nats_url, tmp_path, approval_threshold=100.0)
    try:
        text = await scrape_until(guard.http_port, "fleet_budget_daily_usd 250.0")
        assert "fleet_budget_spent_today_usd 0.0" in text
        request = ProvisionRequest(id="m-1", requester="op", pool="h100", count=1)
        await nc.jetstream().publish(subjects.PROVISION_REQUESTED, encode(request))
        await scrape_until(guard.http_port, 'fleet_verdicts_total{decision="approved"} 1.0')
    finally:
        await guard.stop()


async def test_a_held_request_shows_with_its_age_until_someone_decides(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    guard = await started_guard(nats_url, tmp_path, approval_threshold=1.0)
    try:
        text = await scrape_until(guard.http_port, "fleet_held_requests 0.0")
        assert "fleet_held_oldest_age_seconds 0.0" in text
        assert "fleet_held_timeout_seconds 900.0" in text
        request = ProvisionRequest(id="h-1", requester="op", pool="h100", count=2)
        await nc.jetstream().publish(subjects.PROVISION_REQUESTED, encode(request))
        first = await scrape_until(guard.http_port, "fleet_held_requests 1.0")
        # The age is read at scrape: it grows while nobody decides, with no ledger change.
        then = await scrape_until(guard.http_port, "fleet_held_requests 1.0")
        assert 0 < held_age(first) < held_age(then) < 900
        body, headers = signed_decision("h-1", DecideRequest(approve=False))
        reply = await nc.request(subjects.budget_decide("h-1"), body, headers=headers, timeout=5)
        assert b"denied" in reply.data
        await scrape_until(guard.http_port, "fleet_held_requests 0.0")
    finally:
        await guard.stop()


async def test_requests_are_counted_per_endpoint_and_outcome(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    guard = await started_guard(nats_url, tmp_path, approval_threshold=100.0)
    try:
        await nc.request(subjects.api("budget"), b"{}", timeout=5)
        await nc.request(subjects.api("budget"), b"not json", timeout=5)
        body, headers = signed_decision("nope", DecideRequest(approve=True))
        missing = await nc.request(subjects.budget_decide("nope"), body, headers=headers, timeout=5)
        assert b"404" in missing.data
        text = await scrape_until(
            guard.http_port,
            'fleet_requests_total{endpoint="decide",outcome="refused",service="costguard"} 1.0',
        )
        assert (
            'fleet_requests_total{endpoint="budget",outcome="ok",service="costguard"} 1.0' in text
        )
        assert (
            'fleet_requests_total{endpoint="budget",outcome="rejected",service="costguard"} 1.0'
            in text
        )
        assert "process_resident_memory_bytes" in text
    finally:
        await guard.stop()
