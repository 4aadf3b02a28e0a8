"""Where a job goes: the cheapest pool whose GPU meets it, within budget. Pure.

`route()` sees the pools as the gateway last read them (GPU, VRAM, vendor,
runtime and price, from the pool settings and the provisioner's live offers)
and the cost-guard's budget, and answers routed, queued (waits for budget) or
refused, always with a sentence saying why. Budget rules, so that the work
that matters most still runs when money is short:

- low priority waits once the day's projected spend reaches `low_yield_at`
  of the daily budget (it yields first);
- normal priority waits once the projection reaches the daily budget;
- high priority never waits: it runs until the day's spend plus its own cost
  would pass the hard cap, and is refused after that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from contracts.jobs import Job
from contracts.subjects import is_adhoc

RUNTIMES: dict[str, str] = {"NVIDIA": "cuda", "AMD": "rocm", "Intel": "oneapi", "Apple": "metal"}
"""The runtime a vendor's GPUs run, when the pool does not say."""


@dataclass(frozen=True, slots=True)
class PoolGpu:
    """One pool as the router sees it."""

    pool: str
    gpu_model: str
    vram_gb: float
    vendor: str
    runtime: str
    usd_per_hour: float

    def describe(self) -> str:
        return (
            f"{self.pool} ({self.gpu_model}, {self.vram_gb:g} GB, {self.vendor.lower()}/"
            f"{self.runtime}, ${self.usd_per_hour:.2f}/h)"
        )


@dataclass(frozen=True, slots=True)
class BudgetView:
    """The cost-guard's figures the router needs (from `fleet.api.budget`)."""

    daily_usd: float
    hard_cap_usd: float
    spent_today_usd: float
    projected_today_usd: float


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """`[gateway]` knobs of routing."""

    low_yield_at: float = 0.8
    """Fraction of the daily budget, projected, at which low-priority jobs wait."""


@dataclass(frozen=True, slots=True)
class Route:
    """The router's answer for one job."""

    decision: Literal["routed", "queued", "refused"]
    reason: str
    pool: str | None = None
    est_usd: float | None = None


def fits(job: Job, gpu: PoolGpu) -> str | None:
    """None when `gpu` meets the job's requirements, else what it lacks."""
    req = job.requirements
    if req.min_vram_gb and gpu.vram_gb < req.min_vram_gb:
        return f"{gpu.vram_gb:g} GB < {req.min_vram_gb:g} GB VRAM"
    if req.gpu_models and gpu.gpu_model.lower() not in {m.lower() for m in req.gpu_models}:
        return f"{gpu.gpu_model} not in {', '.join(req.gpu_models)}"
    if req.vendor and gpu.vendor.lower() != req.vendor.lower():
        return f"vendor {gpu.vendor} is not {req.vendor}"
    if req.runtime and gpu.runtime.lower() != req.runtime.lower():
        return f"runtime {gpu.runtime} is not {req.runtime}"
    return None


def job_cost(job: Job, gpu: PoolGpu) -> float:
    """USD the job costs on one unit of `gpu` for its estimated time."""
    return round(gpu.usd_per_hour * job.est_s / 3600.0, 6)


def route(job: Job, pools: list[PoolGpu], budget: BudgetView | None, policy: RoutePolicy) -> Route:
    """Routed, queued or refused; see the module docstring."""
    if not pools:
        return Route("refused", "no pools are configured to run jobs")
    # An ad-hoc pool holds someone's explicit capacity (a batch's GPUs): only jobs
    # that name it go there.
    candidates = [
        p for p in pools if p.pool == job.pool or (job.pool is None and not is_adhoc(p.pool))
    ]
    if not candidates:
        known = ", ".join(sorted(p.pool for p in pools))
        return Route("refused", f"unknown pool {job.pool!r}; pools: {known}")
    misses = [(p, fits(job, p)) for p in candidates]
    fitting = [p for p, miss in misses if miss is None]
    if not fitting:
        lacks = "; ".join(f"{p.pool}: {miss}" for p, miss in misses)
        return Route("refused", f"no pool meets the job's requirements ({lacks})")
    affordable = [p for p in fitting if job.max_usd is None or job_cost(job, p) <= job.max_usd]
    if not affordable:
        cheapest = min(fitting, key=lambda p: (p.usd_per_hour, p.pool))
        return Route(
            "refused",
            f"the cheapest fitting pool, {cheapest.pool}, would cost "
            f"${job_cost(job, cheapest):.4f} > max_usd ${job.max_usd:.4f}",
        )
    best = min(affordable, key=lambda p: (p.usd_per_hour, p.pool))
    cost = job_cost(job, best)
    why = f"cheapest pool that fits: {best.describe()}"
    waits = _over_budget(job, cost, budget, policy)
    if waits is None:
        return Route("routed", why, best.pool, cost)
    if job.priority == "high":
        return Route("refused", f"{waits}; high-priority jobs do not wait", best.pool, cost)
    return Route("queued", f"waiting for budget: {waits}", best.pool, cost)


def _over_budget(
    job: Job, cost: float, budget: BudgetView | None, policy: RoutePolicy
) -> str | None:
    """Why the budget holds this job back, or None."""
    if budget is None:
        if job.priority == "low":
            return (
                "the cost-guard's budget is unknown, and low-priority work runs only "
                "within a known budget"
            )
        return None
    if budget.spent_today_usd + cost > budget.hard_cap_usd:
        return (
            f"spent ${budget.spent_today_usd:.2f} + ${cost:.2f} would pass the hard cap "
            f"${budget.hard_cap_usd:.2f}"
        )
    if job.priority == "high":
        return None
    projected = max(budget.projected_today_usd, budget.spent_today_usd)
    limit = budget.daily_usd * (policy.low_yield_at if job.priority == "low" else 1.0)
    if projected >= limit:
        share = projected / budget.daily_usd if budget.daily_usd > 0 else float("inf")
        return (
            f"today's projected spend ${projected:.2f} is {share:.0%} of the "
            f"${budget.daily_usd:.2f} budget; {job.priority}-priority work waits from {limit:.2f}"
        )
    return None


def pool_gpus(pools: dict[str, dict[str, Any]], offers: list[dict[str, Any]]) -> list[PoolGpu]:
    """Each configured pool's GPU: its model's cheapest live offer among the pool's
    providers gives VRAM, vendor and price; pool keys `vram_gb`, `vendor`, `runtime`
    and `max_usd_per_hour` fill in (or override) what offers do not say."""
    out: list[PoolGpu] = []
    for name, cfg in sorted(pools.items()):
        model = str(cfg.get("gpu_model", "any"))
        providers = set(cfg.get("providers") or [])
        mine = [
            o
            for o in offers
            if str(o.get("gpu_model", "")).lower() == model.lower()
            and (not providers or o.get("provider") in providers)
        ]
        best = min(mine, key=lambda o: float(o.get("usd_per_hour", 0.0))) if mine else {}
        vendor = str(cfg.get("vendor") or best.get("vendor") or "other")
        price = best.get("usd_per_hour")
        if price is None:
            price = cfg.get("max_usd_per_hour") or 0.0
        out.append(
            PoolGpu(
                pool=name,
                gpu_model=model,
                vram_gb=float(cfg.get("vram_gb") or best.get("vram_gb") or 0.0),
                vendor=vendor,
                runtime=str(cfg.get("runtime") or RUNTIMES.get(vendor, "cpu")),
                usd_per_hour=float(price),
            )
        )
    return out


__all__ = [
    "BudgetView",
    "PoolGpu",
    "Route",
    "RoutePolicy",
    "fits",
    "job_cost",
    "pool_gpus",
    "route",
]
