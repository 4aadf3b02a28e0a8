"""`fleet replay --from-stream`: a running fleet's recorded metrics, replayed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import msgspec
from nats.aio.client import Client

from contracts import subjects
from contracts.streams import FLEET_METRICS
from contracts.telemetry import PoolMetrics
from services.kit.bus import ensure_streams
from tools.replay.stream import HOLD_S, to_trace

FLEET = Path(sys.executable).with_name("fleet")


def test_metrics_become_a_per_second_trace_held_until_the_next() -> None:
    msgs = [
        PoolMetrics(pool="p", ts=100.2, inflight=3, queue_depth=1, arrival_rate=2),
        PoolMetrics(pool="p", ts=103.5, inflight=5),
        PoolMetrics(pool="p", ts=300.0, inflight=1),  # after a gap longer than HOLD_S
    ]
    tr = to_trace(reversed(msgs), "p")
    assert tr.busy is not None and len(tr.busy) == 201
    assert list(tr.busy[:4]) == [4.0, 4.0, 4.0, 5.0] and tr.arrivals[0] == 2.0
    hold = int(HOLD_S)
    assert tr.busy[3 + hold - 1] == 5.0 and tr.busy[3 + hold] == 0.0  # missing telemetry
    assert tr.busy[200] == 1.0


async def record(nc: Client, pool: str, demand: list[float]) -> None:
    js = nc.jetstream()
    await ensure_streams(js, [FLEET_METRICS])
    t0 = time.time() - len(demand)
    for i, d in enumerate(demand):
        m = PoolMetrics(
            pool=pool,
            ts=t0 + i,
            inflight=min(d, 16.0),
            queue_depth=max(0.0, d - 16.0),
            arrival_rate=d,
            units_ready=2,
            capacity=16.0,
        )
        await js.publish(subjects.metrics(pool), msgspec.json.encode(m))
    # Another pool's metrics and a message that does not decode stay out of it.
    await js.publish(subjects.metrics("other"), msgspec.json.encode(PoolMetrics(pool="other")))
    await js.publish(subjects.metrics(pool), b"{not json")


async def fleet(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(FLEET),
        "replay",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_replays_recorded_metrics_under_every_policy(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    demand = [8.0] * 300 + [48.0] * 300 + [12.0] * 300
    await record(nc, "gpu", demand)
    out = tmp_path / "whatif.json"
    code, stdout, stderr = await fleet(
        "--from-stream",
        "gpu",
        "--days",
        "1",
        "--nats",
        nats_url,
        "--unit-capacity",
        "4",
        "--lead-time",
        "30",
        "--json",
        str(out),
    )
    assert code == 0, stderr
    assert "skipped 1 undecodable" in stderr
    assert "fleet.metrics.gpu" in stdout
    doc = json.loads(out.read_text())
    assert doc["trace"] == "stream FLEET_METRICS fleet.metrics.gpu"
    assert set(doc["policies"]) == {"ours", "hpa", "kpa"}
    for entry in doc["policies"].values():
        s = entry["series"]
        assert s["demand"] == demand[: len(s["demand"])] and len(s["demand"]) >= 899
        # The step to 12 units' worth of demand leaves everyone short while units boot.
        assert entry["totals"]["under_unit_s"] > 0


async def test_no_history_is_a_clear_error(nc: Client, nats_url: str) -> None:
    await ensure_streams(nc.jetstream(), [FLEET_METRICS])
    code, _, stderr = await fleet("--from-stream", "idle", "--nats", nats_url)
    assert code == 2 and "no recorded metrics for pool 'idle'" in stderr
