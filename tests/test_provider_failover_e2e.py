"""The provisioner against the HTTP provider fakes over a real nats-server: failover from a
Vast.ai that fails every create to io.net (through the real cost-guard), the breaker alert,
the events in `fleet tail`, capacity errors moving on, and 429/5xx retried with backoff."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import subjects
from contracts.commands import ProvisionRequest, Verdict
from contracts.events import Alert, AuditRecord, UnitEvent
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.config import load_settings
from services.kit.service import encode
from services.provisioner.service import ProvisionerService
from tests.fakes import HypercoreFake, IoNetFake, LambdaFake, Reply, Request, RunPodFake, VastFake
from tests.market_helpers import FLEET, clean_env
from tests.provisioner_helpers import Watch, alerts, approve, settings
from tests.signing_helpers import signing

POOL = "gpu"


class BrokenVast(VastFake):
    """Vast.ai whose create endpoint answers 503 while `fail_creates` is on (searches work)."""

    def capacity_reply(self, req: Request) -> Reply:
        return Reply(503, text="<html>503 Service Temporarily Unavailable</html>")


class GoneOfferVast(VastFake):
    """Vast.ai where some offers are still listed but gone when rented (410, as the real one)."""

    gone: set[str] = {"5002"}

    def route(self, req: Request) -> Reply:
        parts = [p for p in req.path.split("/") if p]
        if req.method == "PUT" and parts[:3] == ["api", "v0", "asks"] and parts[-1] in self.gone:
            return super().capacity_reply(req)
        return super().route(req)


class FlakyDeployIoNet(IoNetFake):
    """io.net whose next deploys answer the statuses queued in `deploy_faults` (429, 503, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.deploy_faults: list[int] = []

    def route(self, req: Request) -> Reply:
        if self.is_create(req) and self.deploy_faults:
            return self.error_reply(self.deploy_faults.pop(0), req)
        return super().route(req)


@pytest.fixture
def ionet() -> Iterator[IoNetFake]:
    with IoNetFake() as f:
        yield f


def section(fake: Any, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.url, "api_key": fake.api_key, "timeout_s": 2.0, **extra}


def creates(fake: Any, method: str, prefix: str) -> list[Request]:
    return [r for r in fake.requests if r.method == method and r.path.startswith(prefix)]


async def publish_request(nc: Any, req: ProvisionRequest) -> None:
    await nc.jetstream().publish(
        subjects.PROVISION_REQUESTED, encode(req), headers={"Nats-Msg-Id": req.id}
    )


async def read_tail(proc: asyncio.subprocess.Process, done: Any, within_s: float) -> list[dict]:
    """JSON lines from `fleet tail --json` until `done(lines)` holds."""
    assert proc.stdout is not None
    lines: list[dict] = []
    deadline = time.monotonic() + within_s
    while not done(lines):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"fleet tail never showed it; saw {[d['subject'] for d in lines]}")
        raw = await asyncio.wait_for(proc.stdout.readline(), left)
        if not raw:
            raise AssertionError("fleet tail exited early")
        lines.append(json.loads(raw))
    return lines


async def test_pool_fails_over_from_a_broken_vast_to_ionet_through_the_costguard(
    nats_url, nc, ionet, tmp_path: Path
) -> None:
    # Same H100 price on both: the cost-guard quotes the pool's first provider (Vast.ai) and
    # approves at that price, so failing over to io.net stays within what it approved.
    next(h for h in ionet.hardware if h["id"] == "101__1")["price"] = 2.40
    with BrokenVast() as vast:
        for offer in vast.offers:
            offer["storage_cost"] = 0.0  # no disk surcharge: the H100 stays at 2.40 exactly
        vast.fail_creates(True)
        pools = {
            POOL: {"gpu_model": "H100", "providers": ["vastai", "ionet"], "max_usd_per_hour": 5}
        }
        prov = ProvisionerService(
            settings(
                tmp_path / "prov",
                pools,
                {"vastai": section(vast), "ionet": section(ionet)},
                breaker_failures=3,
                breaker_cooldown_s=300.0,
            ),
            nats_url=nats_url,
        )
        guard = CostGuard(
            load_settings(
                CostguardSettings,
                env={},
                overrides={
                    "store": {"dir": str(tmp_path / "guard")},
                    "signing": signing("costguard"),
                    "stop_deadline_s": 2.0,
                    "budget": {"daily_usd": 10000, "approval_threshold_usd_per_hour": 100},
                    "pools": pools,
                },
            ),
            nats_url=nats_url,
        )
        units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
        alert_watch = await Watch(Alert).start(nc, "fleet.alert.>")
        audits = await Watch(AuditRecord).start(nc, "fleet.audit.>")
        approved = await Watch(Verdict).start(nc, subjects.BUDGET_APPROVED)
        tail = None
        await prov.start()
        await guard.start()
        try:
            await publish_request(
                nc,
                ProvisionRequest(
                    id="e2e-failover-1",
                    requester="operator",
                    pool=POOL,
                    gpu_model="H100",
                    count=2,
                    reason="e2e: two H100s",
                ),
            )
            verdicts = await approved.until(lambda v: len(v) >= 1, 20)
            assert verdicts[0].command is not None
            assert verdicts[0].command.provider == "vastai"  # quoted on the first provider

            booting = await units.until(
                lambda ev: len({e.unit for e in ev if e.state == "booting"}) == 2, 30
            )
            assert {e.provider for e in booting if e.state == "booting"} == {"ionet"}
            # The failover is visible: requested on Vast.ai, booting on io.net.
            assert {e.provider for e in booting if e.state == "requested"} == {"vastai"}

            ionet.run_all()
            ready = await units.until(
                lambda ev: len({e.unit for e in ev if e.state == "ready"}) == 2, 30
            )
            assert {e.provider for e in ready if e.state == "ready"} == {"ionet"}
            names = {e.unit for e in ready if e.state == "ready"}
            assert {d["name"] for d in ionet.deployments.values()} == {
                f"fleet.{POOL}.{n}" for n in names
            }

            opened = alerts(
                await alert_watch.until(lambda a: bool(alerts(a, "breaker_opened"))),
                "breaker_opened",
            )
            assert "vastai" in opened[0].message and opened[0].severity == "critical"
            # Vast.ai was really asked, with retries, and rented nothing. Each of the two
            # slots retries at most 3 times; both may run before the breaker opens.
            assert 3 <= len(creates(vast, "PUT", "/api/v0/asks/5003")) <= 2 * 3
            assert vast.instances == {}
            provision = await audits.until(lambda a: any(r.action == "provision" for r in a), 10)
            note = next(r for r in provision if r.action == "provision")
            assert "vastai" in note.reasoning and note.result.startswith("done")

            # `fleet tail --since 5m --json` replays the same story from the streams.
            tail = await asyncio.create_subprocess_exec(
                FLEET, "tail", "--since", "5m", "--json", "--nats", nats_url,
                env=clean_env(), cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip

            def told(lines: list[dict]) -> bool:
                kinds = {
                    d["data"].get("kind") for d in lines if d["subject"].startswith("fleet.alert.")
                }
                ready_units = {
                    d["data"]["unit"]
                    for d in lines
                    if d["subject"].startswith("fleet.unit.") and d["data"].get("state") == "ready"
                }
                return "breaker_opened" in kinds and ready_units == names

            lines = await read_tail(tail, told, 30)
            subjects_seen = {d["subject"] for d in lines}
            assert "fleet.alert.critical" in subjects_seen
            assert {f"fleet.unit.{POOL}.{n}" for n in names} <= subjects_seen
        finally:
            if tail is not None and tail.returncode is None:
                tail.terminate()
                await tail.wait()
            for w in (units, alert_watch, audits, approved):
                await w.stop()
            await guard.stop()
            await prov.stop()


async def test_a_gone_offer_moves_to_the_next_offer_at_the_same_provider(
    nats_url, nc, tmp_path: Path
) -> None:
    with GoneOfferVast() as vast:
        pools = {POOL: {"gpu_model": "RTX4090", "providers": ["vastai"]}}
        svc = ProvisionerService(
            settings(tmp_path, pools, {"vastai": section(vast)}), nats_url=nats_url
        )
        units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
        await svc.start()
        try:
            await approve(
                nc, ProvisionRequest(id="gone-1", requester="t", pool=POOL, gpu_model="RTX4090")
            )
            await units.until(lambda ev: any(e.state == "booting" for e in ev), 20)
        finally:
            await units.stop()
            await svc.stop()
    rented = [r.path for r in creates(vast, "PUT", "/api/v0/asks/")]
    # The cheapest (5002, $0.31) was gone (410, asked once: not retried); the next one rented.
    assert rented == ["/api/v0/asks/5002/", "/api/v0/asks/5001/"]
    assert [i["dph_total"] for i in vast.instances.values()] == [0.35]


async def test_insufficient_capacity_moves_to_the_next_provider(
    nats_url, nc, tmp_path: Path
) -> None:
    with LambdaFake() as lam, RunPodFake() as runpod:
        lam.fail_creates(True)
        pools = {POOL: {"gpu_model": "H100", "providers": ["lambda", "runpod"]}}
        providers = {"lambda": section(lam, ssh_key_name="fleet-key"), "runpod": section(runpod)}
        svc = ProvisionerService(settings(tmp_path, pools, providers), nats_url=nats_url)
        units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
        alert_watch = await Watch(Alert).start(nc, "fleet.alert.>")
        await svc.start()
        try:
            await approve(
                nc, ProvisionRequest(id="cap-1", requester="t", pool=POOL, gpu_model="H100")
            )
            # A new pod is PROVISIONING (booting), not ready, until its container runs.
            ev = await units.until(lambda ev: any(e.state == "booting" for e in ev), 20)
            assert {e.provider for e in ev if e.state == "booting"} == {"runpod"}
            # "No capacity" is an answer, not an outage: one launch per offer, breaker shut.
            assert len(creates(lam, "POST", "/instance-operations/launch")) == 2  # two regions
            assert not alerts(alert_watch.items, "breaker_opened")
            assert svc.providers.breakers["lambda"].state == "closed"
        finally:
            await units.stop()
            await alert_watch.stop()
            await svc.stop()
    assert len(runpod.pods) == 1 and next(iter(runpod.pods.values()))["name"].startswith(
        f"fleet.{POOL}."
    )


@pytest.mark.parametrize("status", [429, 503])
async def test_rate_limits_and_server_errors_are_retried_with_backoff(
    nats_url, nc, tmp_path: Path, status: int
) -> None:
    with FlakyDeployIoNet() as ionet:
        pools = {POOL: {"gpu_model": "H100", "providers": ["ionet"]}}
        svc = ProvisionerService(
            settings(tmp_path, pools, {"ionet": section(ionet)}), nats_url=nats_url
        )
        units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
        await svc.start()
        try:
            ionet.deploy_faults = [status, status]
            cmd = ProvisionRequest(id=f"retry-{status}", requester="t", pool=POOL, gpu_model="H100")
            await approve(nc, cmd)
            ev = await units.until(lambda ev: any(e.state == "booting" for e in ev), 20)
            assert {e.provider for e in ev if e.state == "booting"} == {"ionet"}
        finally:
            await units.stop()
            await svc.stop()
    # Two deploys answered `status`, the third went through: one deployment, not three.
    assert len(creates(ionet, "POST", "/enterprise/v1/io-cloud/vmaas/deploy")) == 3
    assert len(ionet.deployments) == 1
    assert svc.metrics.counts["provider_errors"] == 2
    assert svc.providers.breakers["ionet"].state == "closed"


FAKES: dict[str, Any] = {
    "vastai": VastFake,
    "ionet": IoNetFake,
    "runpod": RunPodFake,
    "lambda": LambdaFake,
    "hypercore": HypercoreFake,
}


@pytest.mark.parametrize("first", list(FAKES))
async def test_a_capacity_error_from_every_adapter_fails_over(
    nats_url, nc, tmp_path: Path, first: str
) -> None:
    second = "runpod" if first == "hypercore" else "hypercore"
    with FAKES[first]() as full, FAKES[second]() as spare:
        full.fail_creates(True)  # each provider's own way of saying "no room"
        pools = {POOL: {"gpu_model": "any", "providers": [first, second]}}
        extra = {"lambda": {"ssh_key_name": "fleet-key"}}
        providers = {
            first: section(full, **extra.get(first, {})),
            second: section(spare, **extra.get(second, {})),
        }
        svc = ProvisionerService(settings(tmp_path, pools, providers), nats_url=nats_url)
        units = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
        await svc.start()
        try:
            await approve(nc, ProvisionRequest(id=f"cap-{first}", requester="t", pool=POOL))
            ev = await units.until(lambda ev: any(e.state == "booting" for e in ev), 20)
            assert {e.provider for e in ev if e.state == "booting"} == {second}
            assert svc.providers.breakers[first].state == "closed"
        finally:
            await units.stop()
            await svc.stop()
