"""`fleet bench runner`: the hosted-agent data plane, measured against a same-run baseline.

On a nats-server of its own, with runners as `fleet run runner` child processes
and every load generator in a process of its own:

(a) overhead: closed-loop A2A SendMessage to agents.assistant with the sim model
    at 0 s latency, next to raw nats-py request/reply to an echo responder, same
    concurrency, same run. Goal: A2A >= 0.5 of raw requests/s.
(ladder) the runner's per-request steps added one at a time to a minimal A2A
    responder (parse; + task events; + session read; + task and session writes),
    each next to raw request/reply: where part (a)'s ratio goes (docs/adr/0006).
(b) scale: `fleet loadgen --users 10000 --rate 1000` against runners with the sim
    model at 1 s latency. Goals: >= 1,000 requests/s, p99 <= 1.1 s, >= 99.9 % success.

Benchmark settings (printed with the result): each runner's `max_sessions` is
raised so the runners, not the default per-unit capacity, are what is measured;
every simulated user is its own tenant so the default tenant rate limit holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.bench.progress import phase
from tools.natsserver import start_nats, stop_nats

GOAL_RATIO = 0.5
GOAL_RPS = 1000.0
GOAL_P99_S = 1.1
GOAL_SUCCESS = 0.999


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `fleet bench runner`."""
    p.add_argument("--runners", type=int, default=2, help="runner processes (runner)")
    p.add_argument("--sessions", type=int, default=10_000, help="simulated users (runner)")
    p.add_argument("--rate", type=float, default=1000.0, help="requests/s offered (runner)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (runner)")
    p.add_argument("--concurrency", type=int, default=64, help="closed-loop clients (runner)")
    p.add_argument("--overhead-s", type=float, default=8.0, help="seconds per side of (a)")
    p.add_argument(
        "--part",
        choices=["a", "b", "ladder", "both", "all"],
        default="all",
        help="which part (runner): a, b, the cost ladder, a+b, or all three",
    )


def _env(tmp: Path, latency_s: float, sessions: int, unit: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(
        FLEET_RUNNER__MODEL="sim",
        FLEET_RUNNER__SIM_LATENCY_S=str(latency_s),
        FLEET_RUNNER__MAX_SESSIONS=str(sessions),
        FLEET_RUNNER__MAX_QUEUE=str(sessions),
        FLEET_RUNNER__TENANT_RATE_LIMIT_PER_MIN="100000",
        FLEET_RUNNER__UNIT=unit,
        FLEET_RUNNER__READY_FILE=str(tmp / f"{unit}.ready"),
        FLEET_STORE__DIR=str(tmp),
        FLEET_LOG__LEVEL="warning",
    )
    return env


def _start_runners(url: str, tmp: Path, n: int, latency_s: float, sessions: int) -> list[Any]:
    procs = []
    for i in range(n):
        unit = f"bench{i}-{int(time.time()) % 100000}"
        log = open(tmp / f"{unit}.log", "wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tools", "run", "runner", "--nats", url],
                env=_env(tmp, latency_s, sessions, unit),
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        procs[-1].ready = tmp / f"{unit}.ready"  # type: ignore[attr-defined]
    give_up = time.monotonic() + 60
    while not all(p.ready.exists() for p in procs):  # type: ignore[attr-defined]
        if time.monotonic() > give_up or any(p.poll() is not None for p in procs):
            _stop(procs)
            raise RuntimeError(f"runners did not start; see {tmp}/*.log")
        time.sleep(0.1)
    return procs


def _stop(procs: list[Any]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _json_out(argv: list[str], timeout_s: float) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{argv[2]} printed no result: {out.stderr[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def part_a(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A2A SendMessage vs raw request/reply, closed loop, same concurrency."""
    ready = tmp / "echo.ready"
    echo = subprocess.Popen([sys.executable, "-m", "tools.bench.echo", url, str(ready)])
    runners = _start_runners(url, tmp, 1, 0.0, 100_000)
    try:
        _wait_file(ready, echo)
        client = [sys.executable, "-m", "tools.bench.rrclient", url]
        conc, secs = str(args.concurrency), str(args.overhead_s)
        raw = _json_out([*client, "raw", conc, secs], args.overhead_s + 60)
        a2a = _json_out([*client, "a2a", conc, secs], args.overhead_s + 60)
    finally:
        _stop([echo, *runners])
    ratio = a2a["rps"] / raw["rps"] if raw["rps"] else 0.0
    return {
        "raw": raw,
        "a2a": a2a,
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "met": ratio >= GOAL_RATIO,
    }


def part_ladder(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The runner's per-request steps added one at a time, each next to raw request/reply."""
    from tools.bench.ladder import STEPS

    client = [sys.executable, "-m", "tools.bench.rrclient", url]
    conc, secs = str(args.concurrency), str(args.overhead_s)
    ready = tmp / "echo-ladder.ready"
    echo = subprocess.Popen([sys.executable, "-m", "tools.bench.echo", url, str(ready)])
    try:
        _wait_file(ready, echo)
        raw = _json_out([*client, "raw", conc, secs], args.overhead_s + 60)
    finally:
        _stop([echo])
    rungs = []
    for step in STEPS:
        ready = tmp / f"ladder-{step}.ready"
        responder = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.ladder", url, str(ready), step]
        )
        try:
            _wait_file(ready, responder)
            got = _json_out([*client, "a2a", conc, secs], args.overhead_s + 60)
        finally:
            _stop([responder])
        rungs.append({"step": step, **got, "ratio": round(got["rps"] / raw["rps"], 3)})
    return {"raw": raw, "rungs": rungs}


def _wait_file(path: Path, proc: Any) -> None:
    give_up = time.monotonic() + 30
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > give_up:
            raise RuntimeError(f"{path.name}: the process did not start")
        time.sleep(0.05)


def part_b(url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """10,000 sessions at 1,000 requests/s with the sim model at 1 s."""
    per_runner = max(100, int(args.rate * 2.5 / max(1, args.runners)) + 100)
    runners = _start_runners(url, tmp, args.runners, 1.0, per_runner)
    try:
        load = _json_out(
            [
                sys.executable,
                "-m",
                "tools",
                "loadgen",
                "--agent",
                "assistant",
                "--users",
                str(args.sessions),
                "--tenants",
                str(args.sessions),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--timeout",
                "30",
                "--json",
                "--nats",
                url,
            ],
            args.duration + 120,
        )
    finally:
        _stop(runners)
    met = (
        load["requests_per_s"] >= GOAL_RPS * 0.98  # Poisson arrivals: the offered rate varies
        and (load["p99_s"] or 1e9) <= GOAL_P99_S
        and load["success_rate"] >= GOAL_SUCCESS
    )
    return {
        "runners": args.runners,
        "max_sessions_per_runner": per_runner,
        "load": load,
        "goals": {"rps": GOAL_RPS, "p99_s": GOAL_P99_S, "success": GOAL_SUCCESS},
        "met": met,
    }


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 when every goal was met, 1 when one was missed, 2 on failure."""
    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-runner-"))
    proc, url = start_nats(tmp / "nats", log_file=tmp / "nats.log")
    result: dict[str, Any] = {"bench": "runner", "cpus": os.cpu_count()}
    try:
        if args.part in ("a", "both", "all"):
            phase("(a) A2A overhead next to raw request/reply")
            result["overhead"] = part_a(url, tmp, args)
        if args.part in ("ladder", "all"):
            phase("the cost ladder, one step at a time")
            result["ladder"] = part_ladder(url, tmp, args)
        if args.part in ("b", "both", "all"):
            phase("(b) scaling runners under load")
            result["scale"] = part_b(url, tmp, args)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"fleet bench runner: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_nats(proc)
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    parts = [result[k]["met"] for k in ("overhead", "scale") if k in result]  # ladder: no goal
    return 0 if all(parts) else 1


def _print(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if "overhead" in r:
        o = r["overhead"]
        t = Table(title="(a) A2A overhead, sim model at 0 s (closed loop)")
        for col in ("", "requests/s", "p50", "p99", "errors"):
            t.add_column(col, justify="right")
        for name in ("raw", "a2a"):
            x = o[name]
            label = "raw nats-py request/reply" if name == "raw" else "A2A SendMessage (runner)"
            t.add_row(
                label,
                f"{x['rps']:,.0f}",
                f"{x['p50_ms']} ms",
                f"{x['p99_ms']} ms",
                str(x["errors"]),
            )
        console.print(t)
        mark = "[green]met[/]" if o["met"] else "[red]missed[/]"
        console.print(f"A2A / raw = {o['ratio']:.2f} (goal >= {GOAL_RATIO}) {mark}")
    if "ladder" in r:
        lad = r["ladder"]
        t = Table(title="cost ladder: the runner's per-request steps, one at a time")
        for col in ("responder", "requests/s", "p50", "p99", "of raw"):
            t.add_column(col, justify="right")
        raw = lad["raw"]
        t.add_row(
            "raw nats-py request/reply",
            f"{raw['rps']:,.0f}",
            f"{raw['p50_ms']} ms",
            f"{raw['p99_ms']} ms",
            "1.00",
        )
        labels = {
            "parse": "A2A: parse, answer",
            "events": "+ 3 task events (stream)",
            "session": "+ session read (KV)",
            "writes": "+ task and session writes (acked)",
        }
        for rung in lad["rungs"]:
            t.add_row(
                labels.get(rung["step"], rung["step"]),
                f"{rung['rps']:,.0f}",
                f"{rung['p50_ms']} ms",
                f"{rung['p99_ms']} ms",
                f"{rung['ratio']:.2f}",
            )
        if "overhead" in r:
            t.add_row(
                "the runner (part a)",
                f"{r['overhead']['a2a']['rps']:,.0f}",
                "",
                "",
                f"{r['overhead']['ratio']:.2f}",
            )
        console.print(t)
    if "scale" in r:
        s = r["scale"]
        ld = s["load"]
        t = Table(title=f"(b) {ld['users']:,} sessions, sim model at 1 s, {s['runners']} runners")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("goal", justify="right")
        t.add_row("requests/s", f"{ld['requests_per_s']:,.1f}", f">= {GOAL_RPS:,.0f}")
        t.add_row("p50", f"{(ld['p50_s'] or 0) * 1000:,.0f} ms", "")
        t.add_row("p99", f"{(ld['p99_s'] or 0) * 1000:,.0f} ms", f"<= {GOAL_P99_S * 1000:,.0f} ms")
        t.add_row("success", f"{100 * ld['success_rate']:.2f} %", f">= {100 * GOAL_SUCCESS} %")
        t.add_row("errors", json.dumps(ld["errors"]) if ld["errors"] else "none", "")
        console.print(t)
        console.print("[green]goals met[/]" if s["met"] else "[red]goals missed[/]")
