"""Job run time and cost by GPU type and model, from the job events.

A job's run is its last `started` to its `succeeded`; its cost is that time at
the price of the unit that ran it (the unit's billing interval then), which is
the whole unit's price: an upper bound when a unit runs several jobs at once.
A job's requirements and model come from the spec its `routed` (or `queued`)
event carries, so jobs that asked for the same thing can be compared across the
GPU types that ran them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.jobs import JobEvent
from services.gateway.history.spend import Interval


@dataclass
class JobRun:
    """What the events say about one job."""

    job: str
    pool: str = ""
    unit: str = ""
    model: str = "-"
    needs: str = "any GPU"
    """The job's requirements in words: what any GPU that runs it must have."""
    started: float | None = None
    ended: float | None = None
    state: str = ""
    gpu_model: str = "unknown"
    usd_per_hour: float = 0.0

    @property
    def seconds(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)

    @property
    def cost_usd(self) -> float:
        return self.seconds * self.usd_per_hour / 3600.0


def needs_of(spec: object) -> str:
    """A job's requirements as a short key (`>=40 GB, cuda`)."""
    req = getattr(spec, "requirements", None)
    if req is None:
        return "any GPU"
    parts = []
    if req.min_vram_gb:
        parts.append(f">={req.min_vram_gb:g} GB")
    if req.gpu_models:
        parts.append("/".join(sorted(req.gpu_models)))
    if req.vendor:
        parts.append(req.vendor.lower())
    if req.runtime:
        parts.append(req.runtime.lower())
    return ", ".join(parts) or "any GPU"


def _price_at(
    spans: dict[tuple[str, str], list[Interval]], pool: str, unit: str, ts: float
) -> Interval | None:
    best = None
    for s in spans.get((pool, unit), []):
        if s.start - 1.0 <= ts <= s.end + 1.0:
            return s
        best = s
    return best


def runs(events: Iterable[JobEvent], spans: list[Interval], lo: float, hi: float) -> list[JobRun]:
    """Jobs whose outcome (succeeded or dead) falls in [lo, hi), with GPU and price."""
    by_unit: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for s in spans:
        by_unit[(s.pool, s.unit)].append(s)
    jobs: dict[str, JobRun] = {}
    for e in sorted(events, key=lambda e: e.ts):
        r = jobs.setdefault(e.job, JobRun(job=e.job))
        if e.spec is not None:
            r.needs = needs_of(e.spec)
            model = e.spec.data.get("model") if isinstance(e.spec.data, dict) else None
            r.model = str(model)[:64] if model else r.model
        if e.pool:
            r.pool = e.pool
        if e.state == "started":
            r.started, r.unit = e.ts, e.unit or r.unit
        elif e.state in ("succeeded", "dead") and r.state not in ("succeeded", "dead"):
            r.state, r.ended, r.unit = e.state, e.ts, e.unit or r.unit
    out = []
    for r in jobs.values():
        if r.state not in ("succeeded", "dead") or r.ended is None or not lo <= r.ended < hi:
            continue
        span = _price_at(by_unit, r.pool, r.unit, r.ended)
        if span is not None:
            r.gpu_model, r.usd_per_hour = span.gpu_model, span.usd_per_hour
        out.append(r)
    return out


def _p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def groups(job_runs: list[JobRun]) -> list[dict[str, object]]:
    """Per (GPU type, model): jobs, outcomes, run time and cost, the most jobs first."""
    acc: dict[tuple[str, str], list[JobRun]] = defaultdict(list)
    for r in job_runs:
        acc[(r.gpu_model, r.model)].append(r)
    out = []
    for (gpu, model), rs in acc.items():
        ok = [r for r in rs if r.state == "succeeded"]
        secs = [r.seconds for r in ok]
        costs = [r.cost_usd for r in ok]
        out.append(
            {
                "gpu_model": gpu,
                "model": model,
                "jobs": len(rs),
                "succeeded": len(ok),
                "dead": len(rs) - len(ok),
                "mean_s": round(sum(secs) / len(secs), 3) if secs else 0.0,
                "p95_s": round(_p95(secs), 3),
                "mean_cost_usd": round(sum(costs) / len(costs), 6) if costs else 0.0,
                "total_cost_usd": round(sum(r.cost_usd for r in rs), 6),
            }
        )
    out.sort(key=lambda g: (-int(str(g["jobs"])), str(g["gpu_model"])))
    return out
