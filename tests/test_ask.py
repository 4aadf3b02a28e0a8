"""`fleet ask` as an operator runs it, with no API key: the brain's rule policy
answers a placement question with the offer and its reasoning."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from nats.aio.client import Client

from services.brain.service import Brain
from services.brain.settings import BrainSettings
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from tests.fakes.fleet_api import FakeFleetOwners

QUESTION = "where should a 70B model with 40 GB VRAM run?"


async def fleet_ask(nats_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools",
        "ask",
        "--nats",
        nats_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_fleet_ask_answers_a_placement_from_the_rule_policy(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    os.environ.pop("ANTHROPIC_API_KEY", None)
    owners = await FakeFleetOwners(nc).start()
    store = {"store": {"dir": str(tmp_path)}}
    gw = Gateway(load_settings(GatewaySettings, env={}, overrides=store), nats_url=nats_url)
    brain = Brain(
        load_settings(
            BrainSettings, env={}, overrides={**store, "brain": {"routine_interval_s": 0}}
        ),
        nats_url=nats_url,
    )
    await gw.start()
    await brain.start()
    try:
        code, out, err = await fleet_ask(nats_url, QUESTION)
        assert code == 0, err
        assert "L40S" in out and "sim-l40s" in out and "$0.90/h" in out
        assert "40 GB of VRAM" in out and "no model was used" in out
        assert "rule policy" in err

        code, out, _ = await fleet_ask(nats_url, "--json", QUESTION)
        lines = [json.loads(line) for line in out.splitlines()]
        assert "task" in lines[0]
        assert lines[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"

        code, _, err = await fleet_ask(nats_url, "--agent", "nobody", "--timeout", "2", "hi")
        assert code == 1 and "nobody" in err
    finally:
        await brain.stop()
        await gw.stop()
        await owners.stop()
