"""`fleet bench jobs`: jobs dispatched to units per second, and the dispatch latency,
next to a raw JetStream work queue with a pull consumer in the same run.

On a nats-server of its own, each side with its sender in this process and its
receiver in a process of its own (as deployed: the gateway and a unit are
separate processes; the raw side gets the same split):

- ours: the gateway's submit path (route, publish on the pool's work queue, the
  `routed` event) from `--submitters` submitters, and one unit's JobWorker with
  `--slots` slots pulling high before normal before low, running each job and
  settling it once (`started` event, acked `succeeded` event, ack). A job is
  dispatched when the unit's executor starts it; its latency is from submit to
  that moment.
- raw: the same number of messages published with acks by as many publishers on
  a plain work-queue stream, pulled in batches and acked by one pull consumer;
  the latency is from publish to receipt.

Rate: messages received over the time from the first send to the last receipt.

Goal: ours >= 0.5 of raw jobs/s and >= 2,000 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from contracts.jobs import Job
from services.gateway.service import Gateway, GatewaySettings
from services.kit.bus import ensure_streams
from services.kit.config import load_settings
from services.kit.jobexec import Outcome, Report
from services.kit.jobworker import JobWorker
from tools.natsserver import start_nats, stop_nats

GOAL_RATIO = 0.5
GOAL_JOBS_PER_S = 2000.0
POOL = "bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `fleet bench jobs`."""
    p.add_argument("--jobs", type=int, default=10_000, help="jobs per side and round (jobs)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (jobs)")
    p.add_argument("--submitters", type=int, default=64, help="submitters per side (jobs)")
    p.add_argument("--slots", type=int, default=1000, help="jobs the unit runs at once (jobs)")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(int(q * len(xs)), len(xs) - 1)]


class _Receiver:
    """The receiving side's process: a unit (ours) or a pull consumer (raw). It says
    `ready`, then sends back each message's latency and when the last one came."""

    def __init__(self, kind: str, url: str, n: int, slots: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_receive, args=(kind, url, n, slots, child), daemon=True)

    def start(self) -> None:
        self.proc.start()
        if not self.parent.poll(60) or self.parent.recv() != "ready":
            raise RuntimeError("the receiving process did not start")

    def result(self, timeout_s: float) -> tuple[list[float], float, dict[str, int]]:
        if not self.parent.poll(timeout_s):
            raise TimeoutError(f"the receiving process did not finish in {timeout_s:g} s")
        latencies, last, counts = self.parent.recv()
        self.proc.join(10)
        return latencies, last, counts

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


def _receive(kind: str, url: str, n: int, slots: int, conn: Any) -> None:
    asyncio.run(_unit(url, n, slots, conn) if kind == "ours" else _consumer(url, n, slots, conn))


async def _unit(url: str, n: int, slots: int, conn: Any) -> None:
    """One unit's JobWorker; a job is dispatched when its executor starts it."""
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())  # the gateway is not up yet
    latencies: list[float] = []
    last = [0.0]
    all_started = asyncio.Event()

    async def execute(job: Job, _report: Report) -> Outcome:
        if not job.id.startswith("warm"):
            last[0] = time.time()
            latencies.append(last[0] - job.ts)
            if len(latencies) >= n:
                all_started.set()
        return Outcome(True, "bench")

    unit = JobWorker(nc, POOL, "bench-unit", execute, slots=slots)
    await unit.start()
    conn.send("ready")
    cpu0 = time.process_time()
    try:
        await asyncio.wait_for(all_started.wait(), 300)
        await asyncio.wait_for(unit.wait_idle(), 60)
        cpu = time.process_time() - cpu0
    finally:
        await unit.stop()
        await nc.close()
    conn.send((latencies, last[0], {**unit.counts, "cpu_us": int(cpu * 1e6)}))


async def _consumer(url: str, n: int, slots: int, conn: Any) -> None:
    """A pull consumer on a plain work-queue stream: fetch in batches, ack each."""
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
    last = 0.0
    conn.send("ready")
    cpu0 = time.process_time()
    try:
        while len(latencies) < n:
            try:
                msgs = await psub.fetch(slots, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            last = time.time()
            for msg in msgs:
                latencies.append(last - float(msg.data))
                await msg.ack()
        cpu = time.process_time() - cpu0
    finally:
        await nc.close()
    conn.send((latencies, last, {"received": len(latencies), "cpu_us": int(cpu * 1e6)}))


async def _submit_ours(url: str, store: Path, n: int, conc: int, tag: str) -> tuple[float, float]:
    """The gateway's submit path from `conc` submitters; when the first was sent, and
    the CPU seconds the sending took."""
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
    try:
        # Warm the route caches (offers and budget: nobody answers here, so none).
        await gw.jobs.submit(Job(id=f"warm-{tag}", pool=POOL, est_s=0))
        t0, cpu0 = time.time(), time.process_time()

        async def submitter(k: int) -> None:
            for i in range(k, n, conc):
                await gw.jobs.submit(Job(id=f"{tag}-{i}", est_s=0))

        await asyncio.gather(*(submitter(k) for k in range(conc)))
        cpu = time.process_time() - cpu0
    finally:
        await gw.stop()
    return t0, cpu


async def _publish_raw(url: str, n: int, conc: int) -> tuple[float, float]:
    """`n` acked publishes from `conc` publishers; when the first was sent, and the CPU
    seconds the sending took."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        t0, cpu0 = time.time(), time.process_time()

        async def publisher(k: int) -> None:
            for _ in range(k, n, conc):
                await js.publish("raw.bench", repr(time.time()).encode())

        await asyncio.gather(*(publisher(k) for k in range(conc)))
        cpu = time.process_time() - cpu0
    finally:
        await nc.close()
    return t0, cpu


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds process `pid` has used (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _side(
    kind: str, url: str, store: Path, n: int, conc: int, slots: int, rnd: int, server: int
) -> dict[str, Any]:
    receiver = _Receiver(kind, url, n, slots)
    try:
        receiver.start()
        server_cpu0 = _proc_cpu_s(server)
        if kind == "ours":
            t0, sent_cpu = asyncio.run(_submit_ours(url, store, n, conc, f"r{rnd}"))
        else:
            t0, sent_cpu = asyncio.run(_publish_raw(url, n, conc))
        latencies, last, counts = receiver.result(300)
        counts["sender_cpu_us"] = int(sent_cpu * 1e6)
        counts["server_cpu_us"] = int((_proc_cpu_s(server) - server_cpu0) * 1e6)
    finally:
        receiver.stop()
    return {
        "per_s": n / max(last - t0, 1e-9),
        "p50_ms": _pct(latencies, 0.5) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
        "counts": counts,
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: statistics.median(r[k] for r in rounds) for k in ("per_s", "p50_ms", "p99_ms")}
    out["counts"] = {k: sum(r["counts"].get(k, 0) for r in rounds) for k in rounds[0]["counts"]}
    return out


def measure(n: int, conc: int, slots: int, rounds: int = 3) -> dict[str, Any]:
    """Both sides on one fresh nats-server, alternating for `rounds` rounds so that a
    change in the machine's load hits both; the medians, as the result document."""
    raws: list[dict[str, Any]] = []
    ourss: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-jobs-") as tmp:
        proc, url = start_nats(Path(tmp) / "nats", log_file=Path(tmp) / "nats.log")
        try:
            for r in range(rounds):
                raws.append(_side("raw", url, Path(tmp), n, conc, slots, r, proc.pid))
                ours_store = Path(tmp) / "store"
                ourss.append(_side("ours", url, ours_store, n, conc, slots, r, proc.pid))
        finally:
            stop_nats(proc)
    raw, ours = _median(raws), _median(ourss)
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
        "rounds": rounds,
        "succeeded": int(ours["counts"].get("succeeded", 0)) - rounds,
        "cpu_us_per_job": {
            side: {
                part: round(counts.get(f"{key}cpu_us", 0) / (n * rounds), 1)
                for part, key in (("sender", "sender_"), ("receiver", ""), ("server", "server_"))
            }
            for side, counts in (("ours", ours["counts"]), ("raw", raw["counts"]))
        },
        "per_round": {
            "jobs_per_s": [round(o["per_s"], 1) for o in ourss],
            "raw_per_s": [round(r["per_s"], 1) for r in raws],
        },
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
            f"one unit with {r['slots']} slots (receivers in their own processes); "
            f"medians of {r['rounds']} alternating rounds",
            f"  ours  {r['jobs_per_s']:>9,.0f} jobs/s   dispatch p50 {r['p50_ms']:.1f} ms  "
            f"p99 {r['p99_ms']:.1f} ms   ({r['succeeded']} succeeded once each)",
            f"  raw   {r['raw_per_s']:>9,.0f} msgs/s   p50 {r['raw_p50_ms']:.1f} ms  "
            f"p99 {r['raw_p99_ms']:.1f} ms   (JetStream work queue + pull consumer)",
            f"  ratio {r['ratio']:.2f} (goal >= {GOAL_RATIO}: {ok[r['goals']['ratio']['met']]}); "
            f"{r['jobs_per_s']:,.0f} jobs/s (goal >= {GOAL_JOBS_PER_S:,.0f}: "
            f"{ok[r['goals']['jobs_per_s']['met']]})",
            "  cpu us per job (sender / receiver / nats-server): "
            + "   ".join(
                f"{side} {c['sender']:.0f} / {c['receiver']:.0f} / {c['server']:.0f}"
                for side, c in r["cpu_us_per_job"].items()
            ),
        ]
    )


def run(args: argparse.Namespace) -> int:
    """`fleet bench jobs`: 0 when both goals are met, 1 when one is missed, 2 on error."""
    n = getattr(args, "jobs", 10_000)
    rounds = getattr(args, "rounds", 3)
    conc = getattr(args, "submitters", 64)
    slots = getattr(args, "slots", 1000)
    if n < 1 or conc < 1 or slots < 1 or rounds < 1:
        print("fleet bench jobs: --jobs, --submitters and --slots must be >= 1", file=sys.stderr)
        return 2
    try:
        result = measure(n, conc, slots, rounds)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"fleet bench jobs: could not run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else _human(result))
    return 0 if all(g["met"] for g in result["goals"].values()) else 1
