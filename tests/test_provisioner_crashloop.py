"""Units that keep dying right after they start are replaced with growing delays and a
critical alert, not in a tight loop that spends money."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from contracts.events import Alert
from services.provisioner.crashloop import CrashLoop
from services.provisioner.service import ProvisionerService
from tests.provisioner_helpers import Watch, approve, settings


def test_early_failures_back_off_and_a_long_lived_unit_resets_the_streak() -> None:
    loop = CrashLoop(early_s=120, base_s=5, max_s=60)
    now = 1000.0
    delays = [loop.failed("p", created_ts=now - 3, now=now) for _ in range(7)]
    assert delays == [0, 5, 10, 20, 40, 60, 60]
    assert loop.failed("other", created_ts=now - 3, now=now) == 0  # pools are separate
    assert loop.failed("p", created_ts=now - 3600, now=now) == 0  # lived an hour
    assert loop.failed("p", created_ts=now - 3, now=now) == 0


async def test_a_unit_that_cannot_start_is_not_replaced_in_a_tight_loop(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    pools = {"cpu": {"gpu_model": "CPU", "providers": ["local"]}}
    providers = {"local": {"kind": "local", "command": ["{python}", "-c", "raise SystemExit(3)"]}}
    svc = ProvisionerService(settings(tmp_path, pools, providers), nats_url=nats_url)
    await svc.start()
    asks = await Watch(ProvisionRequest).start(nc, subjects.PROVISION_REQUESTED)
    alerts = await Watch(Alert).start(nc, "fleet.alert.>")
    try:
        await approve(nc, ProvisionRequest(id="boom", requester="op", pool="cpu", count=1))
        (first,) = await asks.until(lambda a: len(a) == 1, 30)
        await approve(nc, first, msg_id=f"{first.id}:approved")  # as the cost-guard would
        seen = await alerts.until(lambda a: any(x.kind == "crash_loop" for x in a), 30)
        loop_alert = next(x for x in seen if x.kind == "crash_loop")
        assert loop_alert.severity == "critical" and "waits 5 s" in loop_alert.message
        assert len(asks.items) == 1  # the second replacement waits out the backoff
    finally:
        await asks.stop()
        await alerts.stop()
        await svc.stop()
