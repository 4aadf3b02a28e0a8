"""`fleet bench loop`: reaction time of the closed loop to a 2x load step.

On a nats-server of its own, the watcher, scaler, cost-guard and provisioner run
as `fleet run` child processes, as in `fleet up`. The bench plays the units of
`--steps` pools: each pool first reports steady load at its target utilization
(where a scaled pool sits) for `WARM_HEARTBEATS` seconds, longer than the
scaler's 6 s short window, so the step is judged against the load before it
(`rules.step_seen`), then its load doubles. The figure is the time from
publishing the first telemetry that shows the doubled load to receiving the
cost-guard's approval of the resulting scale-up on `fleet.budget.approved`,
for each step; p50 and p99 over all steps. Goal: p99 <= 250 ms with the default
1 s watcher tick: the watcher publishes a pool's metrics at once when its load
jumps (services/watcher/burst.py), so the tick no longer bounds the loop. Pools
step in rounds of `--parallel`, with random phase against the tick, so every
step sees a different tick alignment.

The same-run baseline is a NATS round trip through JetStream (publish with ack
and a consumer receiving it): the floor any event-driven loop pays per hop.
For reference: Knative's autoscaler ticks every 2 s, Kubernetes HPA syncs every
15 s, KEDA polls every 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
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
from contracts.telemetry import UnitTelemetry
from tools.bench.progress import phase
from tools.natsserver import start_nats, stop_nats
from tools.signingkeys import fleet_env

SERVICES = ("watcher", "scaler", "costguard", "provisioner")
UNITS = 4
CAPACITY = 8.0
TARGET = 0.7
GOAL_P99_S = 0.25
WARM_HEARTBEATS = 8
"""Seconds of steady load before the step: a pool the scaler has watched for more than
its short window (`panic_window_s`, 6 s), as a running pool is."""
ENCODER = msgspec.json.Encoder()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=50, help="load steps to time (loop)")
    p.add_argument("--parallel", type=int, default=10, help="pools stepping at once (loop)")


def config(pools: list[str]) -> str:
    lines = [
        "[budget]",
        "daily_usd = 1000000.0",
        "approval_threshold_usd_per_hour = 100000.0",
        "rate_limit_per_min = 100000",
        "[sim]",
        'units = "inline"',  # no units' process left behind: no unit boots in the bench
        "[providers.sim]",
        'kind = "sim"',
        "boot_delay_s = [600.0, 600.0]",  # units never boot during the bench
        "failure_rate = 0.0",
    ]
    for pool in pools:
        lines += [
            f"[pools.{pool}]",
            'gpu_model = "H100"',
            'providers = ["sim"]',
            "max_usd_per_hour = 4.0",
            "min = 1",
            "max = 100",
            f"unit_capacity = {CAPACITY}",
            f"target_utilization = {TARGET}",
        ]
    return "\n".join(lines) + "\n"


def telemetry(pool: str, unit: int, demand_per_unit: float) -> bytes:
    inflight = min(CAPACITY, demand_per_unit)
    return ENCODER.encode(
        UnitTelemetry(
            pool=pool,
            unit=f"u{unit}",
            provider="sim",
            inflight=inflight,
            capacity=CAPACITY,
            queue_depth=max(0.0, demand_per_unit - CAPACITY),
            utilization=inflight / CAPACITY,
        )
    )


async def _wait_services(nc: Any, procs: dict[str, subprocess.Popen[bytes]], tmp: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = (tmp / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log}")
        ready = set()
        for name in SERVICES:
            try:
                msg = await nc.request(f"fleet.svc.{name}.status", b"", timeout=0.5)
                if json.loads(msg.data).get("state") == "ready":
                    ready.add(name)
            except Exception:
                pass
        if ready == set(SERVICES):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("services did not become ready within 60 s")


async def _baseline(nc: Any, n: int = 200) -> list[float]:
    """JetStream publish-with-ack to a consumer receiving it: one hop's floor."""
    js = nc.jetstream()
    await js.add_stream(name="BENCH_BASE", subjects=["bench.base"])
    got: asyncio.Queue[float] = asyncio.Queue()

    async def on(msg: Any) -> None:
        got.put_nowait(time.perf_counter())
        await msg.ack()

    sub = await js.subscribe("bench.base", cb=on, manual_ack=True)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await js.publish("bench.base", b"{}")
        out.append(await asyncio.wait_for(got.get(), 5) - t0)
    await sub.unsubscribe()
    return out


class Hops:
    """When each pool's doubled load first shows on each hop of the loop."""

    def __init__(self) -> None:
        self.t0: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.proposal: dict[str, float] = {}

    async def on_metrics(self, msg: Any) -> None:
        doc = json.loads(msg.data)
        pool = doc.get("pool", "")
        demand = doc.get("inflight", 0) + doc.get("queue_depth", 0)
        if (
            pool in self.t0
            and pool not in self.metrics
            and doc.get("ts", 0) >= self.t0[pool]
            and demand > 1.2 * UNITS * CAPACITY * TARGET  # the step, not the steady load
        ):
            self.metrics[pool] = time.time()

    async def on_proposal(self, msg: Any) -> None:
        doc = json.loads(msg.data)
        pool = doc.get("pool", "")
        if (
            pool in self.t0
            and pool not in self.proposal
            and doc.get("ts", 0) >= self.t0[pool]
            and doc.get("desired", 0) > doc.get("current", 0)
        ):
            self.proposal[pool] = time.time()


async def _step(
    nc: Any, pool: str, approved: dict[str, asyncio.Future[float]], hops: Hops
) -> float:
    """Warm the pool at its target, double its load; seconds until the approval."""
    rng = random.Random(pool)
    steady = CAPACITY * TARGET
    for _ in range(WARM_HEARTBEATS):  # heartbeats at the target utilization
        for u in range(UNITS):
            await nc.publish(subjects.telemetry(pool, f"u{u}"), telemetry(pool, u, steady))
        await asyncio.sleep(1.0)
    await asyncio.sleep(rng.random())  # random phase against the watcher's tick
    fut = approved[pool]
    t0 = hops.t0[pool] = time.time()
    while not fut.done():
        for u in range(UNITS):
            await nc.publish(subjects.telemetry(pool, f"u{u}"), telemetry(pool, u, 2 * steady))
        try:
            await asyncio.wait_for(asyncio.shield(fut), 1.0)
        except TimeoutError:
            if time.time() - t0 > 60:
                raise TimeoutError(f"no approval for {pool} within 60 s") from None
    return fut.result() - t0


def _spawn_services(url: str, tmp: Path) -> dict[str, subprocess.Popen[bytes]]:
    """The services under test, as `fleet up` runs them: one `fleet run` process each."""
    env = dict(
        os.environ,
        FLEET_NATS_URL=url,
        FLEET_CONFIG=str(tmp / "fleet.toml"),
        FLEET_STORE__DIR=str(tmp / "store"),
        FLEET_LOG__LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    common, own = fleet_env(tmp / "keys")  # signed verdicts and unit events, as in `fleet up`
    env.update(common)
    procs = {}
    for name in SERVICES:
        with open(tmp / f"{name}.log", "wb") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "tools", "run", name],
                env={**env, **own.get(name, {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    return procs


async def _measure(
    url: str, tmp: Path, pools: list[str], parallel: int, procs: dict[str, subprocess.Popen[bytes]]
) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        phase("waiting for the services")
        await _wait_services(nc, procs, tmp)
        phase("baseline: JetStream publish-to-consume hops")
        base = await _baseline(nc)
        loop = asyncio.get_running_loop()
        approved: dict[str, asyncio.Future[float]] = {p: loop.create_future() for p in pools}

        async def on_verdict(msg: Any) -> None:
            now = time.time()
            try:
                request = json.loads(msg.data)["request"]
                pool, ts = request["pool"], float(request["ts"])
            except (ValueError, KeyError, TypeError):
                return
            fut = approved.get(pool)
            # Only a scale-up decided on the step's metrics: the warm-up's own metrics
            # (published at once as the units appear) may get approvals of their own.
            if fut is not None and not fut.done() and ts >= hops.t0.get(pool, math.inf):
                if request.get("desired", 0) > request.get("current", 0):
                    fut.set_result(now)

        hops = Hops()
        await nc.subscribe(subjects.BUDGET_APPROVED, cb=on_verdict)
        await nc.subscribe(subjects.METRICS_ALL, cb=hops.on_metrics)
        await nc.subscribe(subjects.SCALE_PROPOSED_ALL, cb=hops.on_proposal)
        latencies: list[float] = []
        for i in range(0, len(pools), parallel):
            batch = pools[i : i + parallel]
            phase(f"load steps {i + 1}-{i + len(batch)} of {len(pools)}")
            latencies += await asyncio.gather(*(_step(nc, p, approved, hops) for p in batch))
    finally:
        await nc.close()
    split: dict[str, list[float]] = {
        "telemetry_to_metrics_s": [],
        "metrics_to_proposal_s": [],
        "proposal_to_approval_s": [],
    }
    for pool in pools:
        t0, tm, tp = hops.t0.get(pool), hops.metrics.get(pool), hops.proposal.get(pool)
        if t0 is None or tm is None or tp is None or not approved[pool].done():
            continue
        split["telemetry_to_metrics_s"].append(tm - t0)
        split["metrics_to_proposal_s"].append(tp - tm)
        split["proposal_to_approval_s"].append(approved[pool].result() - tp)
    return {"latencies_s": latencies, "baseline_s": base, "hops": split}


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def measure(steps: int, parallel: int) -> dict[str, Any]:
    pools = [f"step{i:03d}" for i in range(steps)]
    with tempfile.TemporaryDirectory(prefix="fleet-bench-loop-") as d:
        tmp = Path(d)
        (tmp / "fleet.toml").write_text(config(pools))
        proc, url = start_nats(tmp / "nats")
        services = _spawn_services(url, tmp)
        try:
            raw = asyncio.run(_measure(url, tmp, pools, parallel, services))
        finally:
            for service in services.values():
                service.terminate()
            for service in services.values():
                try:
                    service.wait(15)
                except subprocess.TimeoutExpired:
                    service.kill()
            stop_nats(proc)
    lat, base = raw["latencies_s"], raw["baseline_s"]
    p99 = _pct(lat, 0.99)
    return {
        "bench": "loop",
        "steps": len(lat),
        "step": f"{TARGET:.0%} -> {2 * TARGET:.0%} of capacity, {UNITS} units per pool",
        "p50_s": round(_pct(lat, 0.5), 3),
        "p99_s": round(p99, 3),
        "max_s": round(max(lat), 3),
        "mean_s": round(statistics.fmean(lat), 3),
        "baseline_jetstream_hop_p50_ms": round(_pct(base, 0.5) * 1000, 3),
        "baseline_jetstream_hop_p99_ms": round(_pct(base, 0.99) * 1000, 3),
        "hops_p50_s": {k: round(_pct(v, 0.5), 3) for k, v in raw["hops"].items() if v},
        "hops_p99_s": {k: round(_pct(v, 0.99), 3) for k, v in raw["hops"].items() if v},
        "goal_p99_s": GOAL_P99_S,
        "goal_met": p99 <= GOAL_P99_S,
    }


def run(args: argparse.Namespace) -> int:
    steps = getattr(args, "steps", 50)
    parallel = getattr(args, "parallel", 10)
    try:
        r = measure(steps, parallel)
    except (RuntimeError, TimeoutError) as exc:
        print(f"fleet bench loop: could not run: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(r))
    else:
        print(
            f"loop: 2x load step ({r['step']}) -> approved scale-up, {r['steps']} steps\n"
            f"  p50 {r['p50_s']:.3f} s   p99 {r['p99_s']:.3f} s   max {r['max_s']:.3f} s"
            f"   (goal p99 <= {GOAL_P99_S * 1000:.0f} ms: {'met' if r['goal_met'] else 'MISSED'})\n"
            f"  baseline, one JetStream hop (publish+ack -> consumer): "
            f"p50 {r['baseline_jetstream_hop_p50_ms']:.2f} ms, "
            f"p99 {r['baseline_jetstream_hop_p99_ms']:.2f} ms\n"
            "  per hop p50/p99: "
            + ", ".join(
                f"{k.removesuffix('_s').replace('_', ' ')} "
                f"{r['hops_p50_s'][k]:.3f}/{r['hops_p99_s'][k]:.3f} s"
                for k in r["hops_p50_s"]
            )
            + "\n"
            "  reference: Knative ticks every 2 s, HPA syncs every 15 s, KEDA polls every 30 s"
        )
    return 0 if r["goal_met"] else 1
