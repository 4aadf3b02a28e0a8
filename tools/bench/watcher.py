"""`fleet bench watcher`: telemetry events/s the watcher ingests, next to a raw subscriber.

One run, on a nats-server of its own:
- the watcher, as `fleet run watcher` in a child process;
- a raw nats-py subscriber process that only decodes each message with msgspec
  (the same-run baseline: what any Python consumer of this subject can do here);
- a publisher process sending `--events` pre-encoded UnitTelemetry from
  `--units` units in `--pools` pools as fast as it can.

Each consumer's rate is events received / (time of its last event - first
publish). The watcher's count is read from `fleet.svc.watcher.status`. Goals:
>= 100k events/s and >= 0.8 of the raw subscriber. Then, in this process,
the scaler's decide() cost per tick for the same pools (goal < 10 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import nats

from contracts import subjects
from contracts.telemetry import PoolMetrics, UnitTelemetry
from tools.bench.progress import phase
from tools.natsserver import start_nats, stop_nats

GOAL_EVENTS_S = 100_000
GOAL_RATIO = 0.8
GOAL_DECIDE_MS = 10.0
VARIANTS = 5
"""Pre-encoded heartbeats per unit, cycled (different loads, so windows really move)."""
IDLE_S = 3.0
"""A consumer that received nothing for this long after the publisher finished is done."""


def payloads(units: int, pools: int) -> list[tuple[str, bytes]]:
    """Pre-encoded (subject, payload) heartbeats: VARIANTS rounds over every unit."""
    enc = msgspec.json.Encoder()
    out = []
    for v in range(VARIANTS):
        for u in range(units):
            pool, unit = f"pool-{u % pools}", f"unit-{u}"
            t = UnitTelemetry(
                pool=pool,
                unit=unit,
                provider="sim",
                inflight=float((u + v) % 8),
                capacity=8.0,
                queue_depth=float(v % 2),
                utilization=((u + v) % 8) / 8,
                gpu_util=0.5,
                completed=float(v),
            )
            out.append((subjects.telemetry(pool, unit), enc.encode(t)))
    return out


# -- child processes ------------------------------------------------------------------------


def _publisher(url: str, events: int, units: int, pools: int, go: Any, out: Any) -> None:
    asyncio.run(_publish(url, events, units, pools, go, out))


async def _publish(url: str, events: int, units: int, pools: int, go: Any, out: Any) -> None:
    msgs = payloads(units, pools)
    nc = await nats.connect(url, pending_size=8 * 1024 * 1024)
    go.wait()
    t0 = time.time()
    n = len(msgs)
    for i in range(events):
        subject, data = msgs[i % n]
        await nc.publish(subject, data)
        if i % 20_000 == 19_999:
            await nc.flush(timeout=60)  # keeps the server's buffers to the consumers bounded
    await nc.flush(timeout=60)
    out.put({"t_start": t0, "t_end": time.time()})
    await nc.close()


def _raw_subscriber(url: str, events: int, ready: Any, published: Any, out: Any) -> None:
    asyncio.run(_raw(url, events, ready, published, out))


async def _raw(url: str, events: int, ready: Any, published: Any, out: Any) -> None:
    dec = msgspec.json.Decoder(UnitTelemetry)
    nc = await nats.connect(url)
    count, last = 0, 0.0

    async def cb(msg: Any) -> None:
        nonlocal count, last
        dec.decode(msg.data)
        count += 1
        last = time.time()

    await nc.subscribe(
        subjects.TELEMETRY_ALL,
        cb=cb,
        pending_msgs_limit=1_000_000,
        pending_bytes_limit=512 * 1024 * 1024,
    )
    await nc.flush()
    ready.set()
    seen, quiet_since = -1, time.time()
    while count < events:
        await asyncio.sleep(0.05)
        if count != seen:
            seen, quiet_since = count, time.time()
        elif published.is_set() and time.time() - quiet_since > IDLE_S:
            break
    out.put({"received": count, "t_last": last})
    await nc.close()


# -- the run --------------------------------------------------------------------------------


async def _status(nc: Any) -> dict[str, Any]:
    reply = await nc.request("fleet.svc.watcher.status", b"", timeout=5)
    return dict(json.loads(reply.data))


async def _wait_ready(nc: Any, proc: subprocess.Popen[bytes], log: Path) -> None:
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"the watcher exited ({proc.returncode}); see {log}")
        try:
            if (await _status(nc)).get("state") == "ready":
                return
        except Exception:
            await asyncio.sleep(0.1)
    raise TimeoutError("the watcher did not become ready within 60 s")


async def _follow_watcher(nc: Any, base: int, events: int, published: Any) -> dict[str, Any]:
    """Poll the watcher's count until it has every event or has gone quiet."""
    seen, last_t, quiet_since = -1, 0.0, time.time()
    while True:
        got = int((await _status(nc))["counts"].get("telemetry_ingested", 0)) - base
        now = time.time()
        if got != seen:
            seen, last_t, quiet_since = got, now, now
        if got >= events or (published.is_set() and now - quiet_since > IDLE_S):
            return {"received": got, "t_last": last_t}
        await asyncio.sleep(0.01)


def _watcher_process(url: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLEET_NATS_URL": url,
        "FLEET_STORE__DIR": str(tmp / "store"),
        "FLEET_LOG__LEVEL": "warning",
        # Units stop heartbeating when the run ends; do not fail 10k of them meanwhile.
        "FLEET_WATCHER__HEARTBEAT_TIMEOUT_S": "3600",
    }
    log = open(tmp / "watcher.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "tools", "run", "watcher"],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


async def _ingest(url: str, tmp: Path, events: int, units: int, pools: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    go, ready, published = ctx.Event(), ctx.Event(), ctx.Event()
    pub_out, raw_out = ctx.Queue(), ctx.Queue()
    watcher = _watcher_process(url, tmp)
    publisher = ctx.Process(target=_publisher, args=(url, events, units, pools, go, pub_out))
    raw = ctx.Process(target=_raw_subscriber, args=(url, events, ready, published, raw_out))
    nc = await nats.connect(url)
    try:
        phase("starting the watcher")
        await _wait_ready(nc, watcher, tmp / "watcher.log")
        base = int((await _status(nc))["counts"].get("telemetry_ingested", 0))
        raw.start()
        publisher.start()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, ready.wait, 60):
            raise TimeoutError("the raw subscriber did not start within 60 s")
        go.set()
        phase(f"publishing {events:,} telemetry events to the watcher and a raw subscriber")
        follow = asyncio.ensure_future(_follow_watcher(nc, base, events, published))
        pub = await loop.run_in_executor(None, pub_out.get, True, 600)
        published.set()
        w = await follow
        r = await loop.run_in_executor(None, raw_out.get, True, 600)
        status = await _status(nc)
    finally:
        go.set()
        published.set()
        await nc.close()
        for proc in (publisher, raw):
            if proc.is_alive():
                proc.join(10)
            if proc.is_alive():
                proc.terminate()
        watcher.terminate()
        try:
            watcher.wait(15)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()
    t0 = pub["t_start"]

    def rate(x: dict[str, Any]) -> float:
        span = x["t_last"] - t0
        return x["received"] / span if span > 0 else 0.0

    w_rate, r_rate = rate(w), rate(r)
    return {
        "events": events,
        "units": units,
        "pools": pools,
        "publish_events_s": round(events / max(pub["t_end"] - t0, 1e-9)),
        "watcher": {"received": w["received"], "events_s": round(w_rate)},
        "raw": {"received": r["received"], "events_s": round(r_rate)},
        "ratio": round(w_rate / r_rate, 3) if r_rate else None,
        "watcher_dead_letters": int(status["counts"].get("dead", 0)),
        "watcher_metrics_published": int(status["counts"].get("metrics_published", 0)),
    }


def decide_cost(units: int, pools: int, ticks: int = 300) -> dict[str, Any] | None:
    """Milliseconds the scaler's decide() takes per tick for every pool; None without it."""
    try:
        from services.scaler.policy import Policy, PoolState, decide
    except ImportError:
        return None
    policy = Policy(min=1, max=1000, unit_capacity=8, lead_time_s=120, tick_s=1.0)
    states = {f"pool-{p}": PoolState(pool=f"pool-{p}") for p in range(pools)}
    per_pool = max(1, units // pools)
    t0 = 1_700_000_000.0
    costs = []
    for k in range(ticks):
        now = t0 + k
        started = time.perf_counter()
        for i, (pool, state) in enumerate(states.items()):
            demand = per_pool * 8 * 0.6 * (1 + 0.3 * ((k + i) % 60) / 60)
            m = PoolMetrics(
                ts=now,
                pool=pool,
                units_ready=per_pool,
                inflight=demand,
                capacity=per_pool * 8.0,
                utilization=min(1.0, demand / (per_pool * 8)),
            )
            states[pool], _ = decide(state, m, policy, now)
        costs.append((time.perf_counter() - started) * 1000)
    costs.sort()
    return {
        "pools": pools,
        "ticks": ticks,
        "median_ms": round(statistics.median(costs), 3),
        "p99_ms": round(costs[int(0.99 * (len(costs) - 1))], 3),
        "max_ms": round(costs[-1], 3),
    }


def measure(events: int, units: int, pools: int) -> dict[str, Any]:
    """Run the whole benchmark; the result dict that `--json` prints."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as d:
        tmp = Path(d)
        proc, url = start_nats(tmp / "nats", log_file=tmp / "nats.log")
        try:
            result = asyncio.run(_ingest(url, tmp, events, units, pools))
        finally:
            stop_nats(proc)
    phase(f"timing the scaler's decide() over {pools} pools")
    result["decide"] = decide_cost(units, pools)
    w, ratio = result["watcher"]["events_s"], result["ratio"] or 0.0
    dec = result["decide"]
    result["goals"] = {
        "watcher_events_s": {"goal": GOAL_EVENTS_S, "met": w >= GOAL_EVENTS_S},
        "ratio_to_raw": {"goal": GOAL_RATIO, "met": ratio >= GOAL_RATIO},
        "decide_ms_per_tick": {
            "goal": GOAL_DECIDE_MS,
            "met": None if dec is None else dec["p99_ms"] < GOAL_DECIDE_MS,
        },
    }
    return result


def _human(r: dict[str, Any]) -> str:
    def ok(goal: dict[str, Any]) -> str:
        return {True: "met", False: "MISSED", None: "n/a"}[goal["met"]]

    g = r["goals"]
    lines = [
        f"watcher ingest: {r['events']:,} telemetry events from {r['units']:,} units "
        f"in {r['pools']} pools (published at {r['publish_events_s']:,}/s)",
        f"  watcher        {r['watcher']['events_s']:>10,} events/s  "
        f"({r['watcher']['received']:,} ingested)  goal >= {GOAL_EVENTS_S:,}: "
        f"{ok(g['watcher_events_s'])}",
        f"  raw nats-py    {r['raw']['events_s']:>10,} events/s  "
        f"({r['raw']['received']:,} decoded)  same-run baseline",
        f"  ratio          {r['ratio']:>10}            goal >= {GOAL_RATIO}: "
        f"{ok(g['ratio_to_raw'])}",
    ]
    dec = r["decide"]
    if dec is None:
        lines.append("scaler decide(): services.scaler.policy not importable; skipped")
    else:
        lines.append(
            f"scaler decide() per tick, {dec['pools']} pools: median {dec['median_ms']} ms, "
            f"p99 {dec['p99_ms']} ms, max {dec['max_ms']} ms  goal < {GOAL_DECIDE_MS:g} ms: "
            f"{ok(g['decide_ms_per_tick'])}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """`fleet bench watcher`: 0 when every goal is met, 1 when one is missed, 2 on error."""
    events = getattr(args, "events", 500_000)
    units = getattr(args, "units", 10_000)
    pools = getattr(args, "pools", 100)
    if events < 1 or units < 1 or not 1 <= pools <= units:
        print("fleet bench watcher: need events >= 1 and 1 <= pools <= units", file=sys.stderr)
        return 2
    try:
        result = measure(events, units, pools)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"fleet bench watcher: could not run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else _human(result))
    met = [g["met"] for g in result["goals"].values() if g["met"] is not None]
    return 0 if all(met) else 1
