"""`fleet bench jobs`: jobs dispatched to units per second, and the dispatch latency,
next to a raw JetStream work queue with a pull consumer in the same run.

On a nats-server of its own, in one process:

- ours: the gateway's submit path (route, publish on the pool's work queue, the
  `routed` event) from `--submitters` submitters, and one unit's JobWorker with
  `--slots` slots pulling, recording the run, and settling each job once (KV
  record, `started` and `succeeded` events, ack). A job is dispatched when the
  unit's executor starts it; its latency is from submit to that moment.
- raw: the same number of messages published with acks by as many publishers on
  a plain work-queue stream, pulled in batches and acked by one consumer; the
  latency is from publish to receipt.

Goal: ours >= 0.5 of raw jobs/s and >= 2,000 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from contracts.jobs import Job
from services.gateway.service import Gateway, GatewaySettings
from services.kit.config import load_settings
from services.kit.jobexec import Outcome, Report
from services.kit.jobworker import JobWorker
from tools.natsserver import start_nats, stop_nats

GOAL_RATIO = 0.5
GOAL_JOBS_PER_S = 2000.0
POOL = "bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `fleet bench jobs`."""
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per side (jobs)")
    p.add_argument("--submitters", type=int, default=64, help="submitters per side (jobs)")
    p.add_argument("--slots", type=int, default=256, help="jobs the unit runs at once (jobs)")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(int(q * len(xs)), len(xs) - 1)]


async def _ours(url: str, store: Path, n: int, conc: int, slots: int) -> dict[str, float]:
    settings = load_settings(
        GatewaySettings,
        env={},
        overrides={
            "store": {"dir": str(store)},
            "pools": {POOL: {"gpu_model": "H100", "vram_gb": 80, "vendor": "NVIDIA"}},
            "gateway": {"upstream_timeout_s": 0.5},
            "jobs": {"budget_cache_s": 60.0},
        },
    )
    gw = Gateway(settings, nats_url=url)
    await gw.start()
    nc = await nats.connect(url)
    latencies: list[float] = []
    warm = asyncio.Event()
    all_started = asyncio.Event()

    async def execute(job: Job, _report: Report) -> Outcome:
        if job.id == "warm":
            warm.set()
            return Outcome(True, "bench")
        latencies.append(time.time() - job.ts)
        if len(latencies) >= n:
            all_started.set()
        return Outcome(True, "bench")

    unit = JobWorker(nc, POOL, "bench-unit", execute, slots=slots)
    await unit.start()
    try:
        # Warm the route caches (offers and budget: nobody answers here, so none).
        await gw.jobs.submit(Job(id="warm", pool=POOL, est_s=0))
        await asyncio.wait_for(warm.wait(), 30)
        t0 = time.time()

        async def submitter(k: int) -> None:
            for i in range(k, n, conc):
                await gw.jobs.submit(Job(id=f"b{i}", est_s=0))

        await asyncio.gather(*(submitter(k) for k in range(conc)))
        await asyncio.wait_for(all_started.wait(), 120)
        elapsed = time.time() - t0
        await asyncio.wait_for(unit.wait_idle(), 60)
    finally:
        await unit.stop()
        await nc.close()
        await gw.stop()
    return {
        "per_s": n / elapsed,
        "p50_ms": _pct(latencies, 0.5) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
        "succeeded": float(unit.counts.get("succeeded", 0) - 1),
    }


async def _raw(url: str, n: int, conc: int, slots: int) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="RAW", subjects=["raw.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    config = ConsumerConfig(
        durable_name="raw", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000
    )
    psub = await js.pull_subscribe("raw.bench", durable="raw", config=config)
    latencies: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        while len(latencies) < n:
            try:
                msgs = await psub.fetch(slots, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            now = time.time()
            for msg in msgs:
                latencies.append(now - float(msg.data))
                await msg.ack()
        done.set()

    task = asyncio.get_running_loop().create_task(consume())
    try:
        t0 = time.time()

        async def publisher(k: int) -> None:
            for _ in range(k, n, conc):
                await js.publish("raw.bench", repr(time.time()).encode())

        await asyncio.gather(*(publisher(k) for k in range(conc)))
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.time() - t0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()
    return {
        "per_s": n / elapsed,
        "p50_ms": _pct(latencies, 0.5) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
    }


def measure(n: int, conc: int, slots: int) -> dict[str, Any]:
    """Both sides on one fresh nats-server; the result document."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-jobs-") as tmp:
        proc, url = start_nats(Path(tmp) / "nats", log_file=Path(tmp) / "nats.log")
        try:
            raw = asyncio.run(_raw(url, n, conc, slots))
            ours = asyncio.run(_ours(url, Path(tmp) / "store", n, conc, slots))
        finally:
            stop_nats(proc)
    ratio = ours["per_s"] / raw["per_s"] if raw["per_s"] else 0.0
    return {
        "benchmark": "jobs",
        "jobs": n,
        "concurrency": conc,
        "slots": slots,
        "jobs_per_s": round(ours["per_s"], 1),
        "raw_per_s": round(raw["per_s"], 1),
        "ratio": round(ratio, 3),
        "p50_ms": round(ours["p50_ms"], 2),
        "p99_ms": round(ours["p99_ms"], 2),
        "raw_p50_ms": round(raw["p50_ms"], 2),
        "raw_p99_ms": round(raw["p99_ms"], 2),
        "succeeded": int(ours["succeeded"]),
        "goals": {
            "ratio": {"goal": GOAL_RATIO, "value": round(ratio, 3), "met": ratio >= GOAL_RATIO},
            "jobs_per_s": {
                "goal": GOAL_JOBS_PER_S,
                "value": round(ours["per_s"], 1),
                "met": ours["per_s"] >= GOAL_JOBS_PER_S,
            },
        },
    }


def _human(r: dict[str, Any]) -> str:
    ok = {True: "met", False: "MISSED"}
    return "\n".join(
        [
            f"fleet bench jobs: {r['jobs']} jobs per side, {r['concurrency']} submitters, "
            f"one unit with {r['slots']} slots",
            f"  ours  {r['jobs_per_s']:>9,.0f} jobs/s   dispatch p50 {r['p50_ms']:.1f} ms  "
            f"p99 {r['p99_ms']:.1f} ms   ({r['succeeded']} succeeded once each)",
            f"  raw   {r['raw_per_s']:>9,.0f} msgs/s   p50 {r['raw_p50_ms']:.1f} ms  "
            f"p99 {r['raw_p99_ms']:.1f} ms   (JetStream work queue + pull consumer)",
            f"  ratio {r['ratio']:.2f} (goal >= {GOAL_RATIO}: {ok[r['goals']['ratio']['met']]}); "
            f"{r['jobs_per_s']:,.0f} jobs/s (goal >= {GOAL_JOBS_PER_S:,.0f}: "
            f"{ok[r['goals']['jobs_per_s']['met']]})",
        ]
    )


def run(args: argparse.Namespace) -> int:
    """`fleet bench jobs`: 0 when both goals are met, 1 when one is missed, 2 on error."""
    n = getattr(args, "jobs", 20_000)
    conc = getattr(args, "submitters", 64)
    slots = getattr(args, "slots", 256)
    if n < 1 or conc < 1 or slots < 1:
        print("fleet bench jobs: --jobs, --submitters and --slots must be >= 1", file=sys.stderr)
        return 2
    try:
        result = measure(n, conc, slots)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"fleet bench jobs: could not run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else _human(result))
    return 0 if all(g["met"] for g in result["goals"].values()) else 1
