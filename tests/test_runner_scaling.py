"""A load ramp makes the control plane add runner processes (scaler -> cost-guard ->
provisioner -> local provider) and remove them when the load stops: `fleet up --demo
agents` end to end, driven by the load generator."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import nats

from contracts.events import UnitEvent
from tools.loadgen.engine import LoadRun, Plan
from tools.natsserver import free_port


async def test_a_load_ramp_adds_runners_and_they_go_when_it_stops(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    up = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "tools",
            "up",
            "--demo",
            "agents",
            "--port",
            str(port),
            "--data",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "up.log", "wb"),  # noqa: ASYNC230
        stderr=subprocess.STDOUT,
    )
    url = f"nats://127.0.0.1:{port}"
    ready: set[str] = set()
    gone: set[str] = set()
    changed = asyncio.Event()

    async def until(cond: object, within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not cond():  # type: ignore[operator]
                changed.clear()
                await changed.wait()

    try:
        nc = None
        async with asyncio.timeout(60):
            while nc is None:
                try:
                    nc = await nats.connect(url, max_reconnect_attempts=1, connect_timeout=1)
                except Exception:
                    await asyncio.sleep(0.5)

        async def on_unit(msg: nats.aio.msg.Msg) -> None:
            event = msgspec.json.decode(msg.data, type=UnitEvent)
            if event.pool != "agents-assistant":
                return
            if event.state == "ready":
                ready.add(event.unit)
            elif event.state in ("terminated", "failed"):
                gone.add(event.unit)
            changed.set()

        await nc.subscribe("fleet.unit.>", cb=on_unit)
        await until(lambda: ready, 90)  # the pool's min: one runner
        load = LoadRun(nc, Plan(agent="assistant", users=2000, rate=60, duration_s=90))
        loading = asyncio.ensure_future(load.run())
        try:
            await until(lambda: len(ready - gone) >= 2, 90)
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
        assert len(ready - gone) >= 2, "the ramp added runner processes"
        assert load.tally.ok > 0
        peak = len(ready - gone)
        await until(lambda: len(ready - gone) < peak, 180)  # cool-down, then scale in
        assert gone, "runners were released once the load stopped"
        await nc.close()
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(10)
