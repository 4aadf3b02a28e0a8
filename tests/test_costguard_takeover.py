"""A cost-guard killed while it holds the lease, with a request held for a person and a
reservation outstanding: the standby that takes over from the same store (compose's
shared named volume) still has both, as a Kubernetes pod restarted on its volume claim
does."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from services.costguard.service import CostGuard
from services.costguard.settings import CostguardSettings
from services.kit.config import load_settings
from services.kit.service import encode
from tests.signing_helpers import signing, signing_env
from tests.test_lease import BUCKET, until

REPO = Path(__file__).resolve().parents[1]
LEASE_S = 2.0
CONFIG = """
[budget]
daily_usd = 500.0
approval_threshold_usd_per_hour = 3.0

[pools.h100]
gpu_model = "H100"
max_usd_per_hour = 2.0
"""


def spawn_costguard(nats_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`fleet run costguard` in its own process, its store in tmp_path/state."""
    env = {
        **os.environ,
        "FLEET_NATS_URL": nats_url,
        "FLEET_CONFIG": str(tmp_path / "fleet.toml"),
        "FLEET_STORE__DIR": str(tmp_path / "state"),  # the one volume both instances mount
        "FLEET_LEASE__LEASE_S": str(LEASE_S),
        **signing_env("costguard"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tools", "run", "costguard"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def verdicts(sub: Any, want: int) -> dict[str, str]:
    """Request id -> decision, for the first `want` verdicts `sub` receives."""
    got: dict[str, str] = {}
    while len(got) < want:
        msg = await sub.next_msg(timeout=20)
        doc = json.loads(msg.data)
        got[doc["request"]["id"]] = msg.subject.rsplit(".", 1)[1]
    return got


async def budget(nc: Client) -> dict[str, Any]:
    reply = await nc.request(subjects.api("budget"), b"{}", timeout=5)
    doc: dict[str, Any] = json.loads(reply.data)
    return doc


async def test_the_standby_keeps_held_requests_and_reservations(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    (tmp_path / "fleet.toml").write_text(CONFIG)
    holder = spawn_costguard(nats_url, tmp_path)
    settings = load_settings(
        CostguardSettings,
        str(tmp_path / "fleet.toml"),
        env={},
        overrides={
            "store": {"dir": str(tmp_path / "state")},
            "lease": {"lease_s": LEASE_S},
            "signing": signing("costguard"),
        },
    )
    standby = CostGuard(settings, nats_url=nats_url)
    starting: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):  # the child holds the lease and answers
            while True:
                assert holder.poll() is None, f"costguard exited with {holder.returncode}"
                try:
                    await budget(nc)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
        starting = asyncio.create_task(standby.start())
        await until(lambda: standby.state == "standby", 10)

        sub = await nc.subscribe("fleet.budget.*")
        js = nc.jetstream()
        small = ProvisionRequest(id="tk-small", requester="op", pool="h100", count=1)
        large = ProvisionRequest(id="tk-large", requester="op", pool="h100", count=4)
        for request in (small, large):
            await js.publish(subjects.PROVISION_REQUESTED, encode(request))
        assert await verdicts(sub, 2) == {"tk-small": "approved", "tk-large": "held"}
        await sub.unsubscribe()
        before = await budget(nc)
        assert before["reserved_usd_per_hour"] == 2.0
        assert [h["id"] for h in before["held"]] == ["tk-large"]

        holder.send_signal(signal.SIGKILL)  # no release, no teardown: the lease must expire
        assert starting is not None
        await asyncio.wait_for(starting, LEASE_S * 5)
        assert standby.state == "ready"
        lease = await (await js.key_value(BUCKET)).get("costguard")
        assert lease.value == standby.instance.encode()
        after = await budget(nc)
        assert after["reserved_usd_per_hour"] == 2.0, "the reservation survived the takeover"
        assert [h["id"] for h in after["held"]] == ["tk-large"], "the held request too"
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)
        await standby.stop()
        if starting is not None and not starting.done():
            starting.cancel()
