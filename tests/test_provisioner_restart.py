"""A provisioner killed with SIGKILL in the middle of a command resumes it on restart
and creates no duplicate unit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nats.aio.client import Client

from contracts import subjects
from contracts.commands import ProvisionRequest
from contracts.events import UnitEvent
from services.provisioner.providers.simhost import stop_host
from tests.provisioner_helpers import Watch, approve, states
from tests.signing_helpers import signing_env

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[pools.gpu]
gpu_model = "H100"
providers = ["sim"]

[sim]
seed = 3
boot_delay_s = [0.5, 0.5]
api_latency_s = 0.3
telemetry_interval_s = 0

[provisioner]
boot_poll_s = 0.2
reconcile_interval_s = 2
retry_base_s = 0.01
"""


def start(tmp_path: Path, nats_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLEET_NATS_URL": nats_url,
        "FLEET_STORE__DIR": str(tmp_path / "store"),
        "FLEET_CONFIG": str(tmp_path / "fleet.toml"),
        "FLEET_LOG__LEVEL": "warning",
        # A killed holder's lease lapses in 2 s, so the restart does not stand by for long.
        "FLEET_LEASE__LEASE_S": "2",
        **signing_env("provisioner"),
    }
    log = open(tmp_path / "provisioner.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tools", "run", "provisioner"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


async def wait_ready(nc: Client, proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """Until the provisioner says `ready` (a restart first stands by for the lease)."""
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "provisioner.log").read_text()[-3000:])
        try:
            reply = await nc.request("fleet.svc.provisioner.status", b"", timeout=0.5)
            if json.loads(reply.data).get("state") == "ready":
                return
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("provisioner did not become ready within 30 s")


async def test_sigkill_mid_command_then_restart_creates_no_duplicate(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    (tmp_path / "fleet.toml").write_text(CONFIG)
    events = await Watch(UnitEvent).start(nc, subjects.UNIT_ALL)
    proc = start(tmp_path, nats_url)
    try:
        await wait_ready(nc, proc, tmp_path)
        await approve(nc, ProvisionRequest(id="prov-kill", requester="scaler", pool="gpu", count=5))
        await events.until(lambda ev: len(states(ev, "booting")) >= 2, 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = len(json.loads((tmp_path / "store" / "sim-sim.json").read_text()))
        assert before < 5, "the command finished before the kill; nothing was tested"

        proc = start(tmp_path, nats_url)
        await wait_ready(nc, proc, tmp_path)
        seen = await events.until(lambda ev: len(states(ev, "ready")) >= 5, 30)
        sim_units = json.loads((tmp_path / "store" / "sim-sim.json").read_text())
        assert len(sim_units) == 5
        assert len({u["label"] for u in sim_units}) == 5
        assert len(states(seen, "booting")) == len(states(seen, "ready")) == 5
        reply = await nc.request(subjects.api("units.list"), b'{"pool": "gpu"}', timeout=5)
        listed = json.loads(reply.data)
        assert listed["count"] == 5 and {u["state"] for u in listed["units"]} == {"ready"}
    finally:
        await events.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        await asyncio.to_thread(stop_host, tmp_path / "store")  # the units' own process
