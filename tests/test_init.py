"""`fleet init`, the admin step: it creates the very streams, durables and buckets the
services would create themselves, and a service that may only bind says what is missing."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext

from contracts.durables import DURABLES, pool_durables
from services.kit.binding import creates
from services.kit.config import load_settings
from services.kit.errors import NotInitialized
from services.watcher.service import Watcher
from services.watcher.settings import WatcherSettings
from tests.conftest import _wipe_jetstream
from tests.fleet_helpers import fleet, kit
from tests.signing_helpers import signing
from tools.secure.admin import Plan, initialize

REPO = Path(__file__).resolve().parents[1]
POOLS = {"gpu": {"gpu_model": "H100", "providers": ["sim"], "min": 1, "max": 4}}
FIELDS = ("filter_subject", "ack_policy", "ack_wait", "max_deliver", "deliver_policy")


async def consumers(js: JetStreamContext) -> dict[str, dict[str, Any]]:
    """Every durable of the contract that exists, with the config fields that matter."""
    out = {}
    for d in (*DURABLES, *pool_durables("gpu")):
        try:
            info = await js.consumer_info(d.stream, d.name)
        except nats.js.errors.NotFoundError:
            continue
        out[d.name + "@" + d.stream] = {f: getattr(info.config, f) for f in FIELDS}
    return out


async def test_init_creates_the_durables_the_services_create_themselves(
    nats_url: str, tmp_path: Path
) -> None:
    services = fleet(nats_url, tmp_path, POOLS)
    for svc in services:
        await svc.start()
    prov = services[0].settings.provisioner  # type: ignore[attr-defined]
    try:
        nc = await nats.connect(nats_url)
        made_by_services = await consumers(nc.jetstream())
    finally:
        for svc in reversed(services):
            await svc.stop()
    assert {d.name + "@" + d.stream for d in DURABLES} <= set(made_by_services)

    await _wipe_jetstream(nats_url)
    plan = Plan(
        pools=("gpu",),
        overrides={
            "provisioner-approved": {
                "ack_wait_s": prov.ack_wait_s,
                "max_deliver": prov.command_attempts + 2,
            }
        },
    )
    try:
        report = await initialize(nc.jetstream(), plan)
        made_by_init = await consumers(nc.jetstream())
        again = await initialize(nc.jetstream(), plan)
    finally:
        await nc.close()
    for name, config in made_by_services.items():
        assert made_by_init[name] == config, name
    assert again.created == [] and len(again.existing) == len(report.created)


async def test_a_service_that_may_only_bind_names_what_fleet_init_must_create(
    nats_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        WatcherSettings,
        env={},
        overrides=kit(
            tmp_path, "watcher", nats={"create_resources": False}, signing=signing("watcher")
        ),
    )
    watcher = Watcher(settings, nats_url=nats_url)
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(NotInitialized, match=r"watcher-units.*fleet init"):
            await watcher.start()
        await watcher.stop()
        assert await nc.jetstream().streams_info() == []  # it created nothing while failing
        await initialize(nc.jetstream(), Plan())
        watcher = Watcher(settings, nats_url=nats_url)
        await watcher.start()
        assert watcher.state == "ready"
        await watcher.stop()
    finally:
        creates(True)
        await nc.close()


def fleet_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "tools", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_fleet_init_cli_creates_once_and_writes_identities(
    nats_url: str, tmp_path: Path
) -> None:
    first = fleet_cli(tmp_path, "init", "--nats", nats_url)
    assert first.returncode == 0, first.stdout + first.stderr
    made = re.search(r"(\d+) created, 0 existed", first.stdout)
    assert made is not None, first.stdout
    second = fleet_cli(tmp_path, "init", "--nats", nats_url)
    assert second.returncode == 0
    assert f"none created, {made[1]} existed" in second.stdout

    keys = fleet_cli(tmp_path, "init", "--identities-only", "--creds", "keys")
    assert keys.returncode == 0, keys.stdout + keys.stderr
    seeds = sorted(p.name for p in (tmp_path / "keys").glob("*.nk"))
    assert "costguard.nk" in seeds and "admin.nk" in seeds and "operator.nk" in seeds
    assert all(stat.S_IMODE((tmp_path / "keys" / s).stat().st_mode) == 0o600 for s in seeds)
    assert "nkey: U" in (tmp_path / "keys" / "auth.conf").read_text()
