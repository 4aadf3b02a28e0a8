"""What-if over a running fleet: its recorded pool metrics as a replayable trace.

`fleet replay --from-stream POOL --days 7` reads `fleet.metrics.<pool>` from
the FLEET_METRICS stream (as far back as the stream keeps: its max age), and
turns the messages into a per-second trace: demand = inflight + queue_depth,
arrivals = arrival_rate, each second taking the latest message at or before
it. A second more than `HOLD_S` after the last message is missing telemetry
(zero), so a long outage becomes a zero run the replay skips.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable

from contracts import subjects
from contracts.streams import FLEET_METRICS
from contracts.telemetry import PoolMetrics
from services.kit.history import HistoryError, read_since
from tools.replay.traces import Trace, TraceError

HOLD_S = 60.0
"""Seconds a pool's last metrics stand for it before the gap counts as missing."""


def to_trace(metrics: Iterable[PoolMetrics], pool: str) -> Trace:
    """Per-second demand and arrivals from a pool's metrics, sample-and-hold."""
    msgs = sorted(metrics, key=lambda m: m.ts)
    if not msgs:
        raise TraceError(f"stream: no recorded metrics for pool {pool!r}")
    t0 = math.floor(msgs[0].ts)
    n = math.floor(msgs[-1].ts) - t0 + 1
    busy: array[float] = array("f", bytes(4 * n))
    arrivals: array[float] = array("f", bytes(4 * n))
    for i, m in enumerate(msgs):
        start = math.floor(m.ts) - t0
        end = math.floor(msgs[i + 1].ts) - t0 if i + 1 < len(msgs) else start + 1
        end = max(start + 1, min(end, start + int(HOLD_S)))
        demand = max(0.0, m.inflight + m.queue_depth)
        for s in range(start, end):
            busy[s] = demand
            arrivals[s] = m.arrival_rate
    return Trace(name=f"fleet.metrics.{pool}", arrivals=arrivals, busy=busy, shape="stream")


async def fetch(nc_url: str | None, pool: str, days: float) -> tuple[list[PoolMetrics], int]:
    """The pool's metrics of the last `days` from FLEET_METRICS; (metrics, undecodable)."""
    from tools.natsops import cli_connect

    nc = await cli_connect(nc_url, "fleet-replay")
    try:
        since = time.time() - days * 86_400
        return await read_since(
            nc.jetstream(), FLEET_METRICS.name, subjects.metrics(pool), since, PoolMetrics
        )
    except HistoryError as exc:  # no stream, no permission: say so
        raise TraceError(str(exc)) from None
    finally:
        await nc.close()
