"""The load generator, as a user runs it against hosted agents: answers are counted, and
a moment with no runner listening is ridden out instead of reported as failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client

from tests.test_runner_sessions import runner
from tools.loadgen.engine import LoadRun, Plan


async def test_requests_sent_before_a_runner_listens_are_retried_not_lost(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    for stream in (False, True):
        svc = runner(nats_url, tmp_path / str(stream), f"late-{int(stream)}")
        load = LoadRun(
            nc, Plan(agent="assistant", users=5, rate=20, duration_s=1.0, stream=stream, seed=7)
        )
        sending = asyncio.ensure_future(load.run())
        await asyncio.sleep(0.3)  # the first requests find nobody listening: no runner yet
        await svc.start()
        try:
            await sending
        finally:
            await svc.stop()
        tally = load.tally
        assert tally.sent > 0
        assert tally.ok == tally.sent, (stream, dict(tally.errors))
