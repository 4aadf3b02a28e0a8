"""The batch planner: which GPUs, how many, how long and at what cost. Pure.

For each allowed model with a live price and a known speed, and each count
from 1 to `max_gpus` (and what the provider has), the batch takes

    wall = lead time + ceil(items / count) x seconds per item on that model

and costs `count x price x wall` with each unit's time rounded up to the
provider's billing period (a unit is paid from the request to its release,
lead time included: the conservative reading). The chosen option is the
cheapest that meets the deadline and the cap; with billing periods cost is not
monotonic in the count (6 units for 1 h beat 5 for 1 h 02 billed hourly), so
every count is tried. When none fits, the answer says so and what would: the
cheapest option meeting the deadline (a larger cap) and the fastest within the
cap (a later deadline).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from contracts.batch import BatchOption, BatchPlan, PlanBatchCall
from contracts.gpuspeed import REFERENCE_GPU, SPEED, known_speed

SHOWN_COUNTS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1000)
"""Counts listed per model in the options table (the chosen and nearest are added)."""


class ModelTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What renting one model costs and takes: its cheapest offer and its pool's timings."""

    gpu_model: str
    provider: str
    usd_per_hour: float
    available: int | None = None
    """Units the provider has now, when it says."""
    lead_time_s: float = 120.0
    billing_s: float = 1.0


def cheapest_offers(offers: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Each GPU model's cheapest live single-GPU-priced offer (price per GPU of the offer)."""
    best: dict[str, Mapping[str, Any]] = {}
    for o in offers:
        model = str(o.get("gpu_model") or "")
        if not model:
            continue
        price = price_per_gpu(o)
        if model not in best or price < price_per_gpu(best[model]):
            best[model] = o
    return best


def price_per_gpu(offer: Mapping[str, Any]) -> float:
    """An offer's price per GPU per hour (an 8-GPU offer's price is for all 8)."""
    return float(offer.get("usd_per_hour") or 0.0) / max(int(offer.get("num_gpus") or 1), 1)


def reference_of(call: PlanBatchCall) -> str:
    """The GPU `per_item_s` was measured on: named, else the first allowed model, else H100."""
    return call.ref_gpu or (call.gpu_models[0] if call.gpu_models else REFERENCE_GPU)


def item_seconds(per_item_s: float, ref_gpu: str, gpu_model: str) -> float | None:
    """Seconds one item takes on `gpu_model`, or None when a speed figure is missing."""
    if gpu_model.lower() == ref_gpu.lower():
        return per_item_s
    ref, speed = known_speed(ref_gpu), known_speed(gpu_model)
    if ref is None or speed is None:
        return None
    return per_item_s * ref / speed


def option(items: int, t_item_s: float, count: int, terms: ModelTerms) -> BatchOption:
    """The batch on `count` units of `terms.gpu_model` (deadline and cap not yet judged)."""
    wall = terms.lead_time_s + math.ceil(items / count) * t_item_s
    period = max(terms.billing_s, 1e-9)
    billed_s = math.ceil(round(wall / period, 9)) * period
    return BatchOption(
        gpu_model=terms.gpu_model,
        count=count,
        wall_s=round(wall, 3),
        cost_usd=round(count * terms.usd_per_hour * billed_s / 3600.0, 6),
        usd_per_hour=terms.usd_per_hour,
        provider=terms.provider,
        lead_time_s=terms.lead_time_s,
        billing_s=terms.billing_s,
        per_item_s=round(t_item_s, 6),
    )


def _judged(o: BatchOption, call: PlanBatchCall) -> BatchOption:
    return msgspec.structs.replace(
        o,
        meets_deadline=call.deadline_s is None or o.wall_s <= call.deadline_s,
        within_cap=call.max_usd is None or o.cost_usd <= call.max_usd,
    )


def _cheapest(options: Iterable[BatchOption]) -> BatchOption | None:
    return min(options, key=lambda o: (o.cost_usd, o.wall_s, o.count, o.gpu_model), default=None)


def _fastest(options: Iterable[BatchOption]) -> BatchOption | None:
    return min(options, key=lambda o: (o.wall_s, o.cost_usd, o.count, o.gpu_model), default=None)


def plan_batch(call: PlanBatchCall, terms: Iterable[ModelTerms]) -> BatchPlan:
    """The options for `call` on the models of `terms`, and the cheapest that fits."""
    ref = reference_of(call)
    allowed = {m.lower() for m in call.gpu_models}
    by_model = {t.gpu_model.lower(): t for t in terms}
    notes: list[str] = []
    for name in call.gpu_models:
        if name.lower() not in by_model:
            notes.append(f"{name}: no live offer")
    if ref.lower() not in {m.lower() for m in SPEED} and not (
        len(allowed) == 1 and ref.lower() in allowed
    ):
        notes.append(
            f"reference {ref}: no speed figure, so only {ref} itself can be planned "
            f"(known: {', '.join(SPEED)})"
        )
    every: list[BatchOption] = []
    for key, t in sorted(by_model.items()):
        if allowed and key not in allowed:
            continue
        t_item = item_seconds(call.per_item_s, ref, t.gpu_model)
        if t_item is None:
            notes.append(f"{t.gpu_model}: no speed figure relative to {ref}")
            continue
        top = min(call.max_gpus, call.items, t.available if t.available is not None else 10**9)
        every += [_judged(option(call.items, t_item, n, t), call) for n in range(1, top + 1)]
    base = BatchPlan(
        ok=False,
        reason="",
        items=call.items,
        per_item_s=call.per_item_s,
        ref_gpu=ref,
        options=[],
        max_usd=call.max_usd,
        deadline_s=call.deadline_s,
        notes=notes,
    )
    if not every:
        why = "no GPU model can be planned: " + ("; ".join(notes) or "no live offers")
        return msgspec.structs.replace(base, reason=why)
    chosen = _cheapest(o for o in every if o.meets_deadline and o.within_cap)
    instead: list[BatchOption] = []
    if chosen is not None:
        reason = f"cheapest option that {_fits_text(call)}: {describe(chosen)}"
    else:
        reason, instead = _nearest(call, every)
    shown = _shown(every, [o for o in (chosen, *instead) if o is not None])
    return msgspec.structs.replace(
        base, ok=chosen is not None, reason=reason, options=shown, chosen=chosen, instead=instead
    )


def _fits_text(call: PlanBatchCall) -> str:
    parts = []
    if call.deadline_s is not None:
        parts.append(f"finishes within {duration(call.deadline_s)}")
    if call.max_usd is not None:
        parts.append(f"costs at most ${call.max_usd:,.2f}")
    return " and ".join(parts) or "finishes the batch"


def _nearest(call: PlanBatchCall, every: list[BatchOption]) -> tuple[str, list[BatchOption]]:
    """Why nothing fits, and the options that would with a larger cap or a later deadline."""
    instead: list[BatchOption] = []
    parts = [f"no option {_fits_text(call)}"]
    in_time = _cheapest(o for o in every if o.meets_deadline)
    if call.max_usd is not None and in_time is not None:
        instead.append(in_time)
        parts.append(f"with a cap of ${in_time.cost_usd:,.2f}: {describe(in_time)}")
    affordable = _fastest(o for o in every if o.within_cap)
    if call.deadline_s is not None and affordable is not None:
        instead.append(affordable)
        parts.append(f"with a deadline of {duration(affordable.wall_s)}: {describe(affordable)}")
    if not instead:
        fastest = _fastest(every)
        assert fastest is not None
        instead.append(fastest)
        parts.append(f"the fastest possible is {describe(fastest)}")
    return "; ".join(parts), instead


def _shown(every: list[BatchOption], keep: list[BatchOption]) -> list[BatchOption]:
    """A readable subset: a few counts per model, plus `keep` and each model's cheapest
    option meeting the deadline."""
    marks = {(o.gpu_model, o.count) for o in keep}
    models = sorted({o.gpu_model for o in every})
    for m in models:
        best = _cheapest(o for o in every if o.gpu_model == m and o.meets_deadline)
        if best is not None:
            marks.add((m, best.count))
    rows = [o for o in every if o.count in SHOWN_COUNTS or (o.gpu_model, o.count) in marks]
    return sorted(rows, key=lambda o: (o.gpu_model, o.count))


def describe(o: BatchOption) -> str:
    """One option in a phrase: `2 x RTX4090 on sim, 2h31m, $2.23`."""
    return (
        f"{o.count} x {o.gpu_model} on {o.provider} at ${o.usd_per_hour:.2f}/h, "
        f"{duration(o.wall_s)}, ${o.cost_usd:,.2f}"
    )


def duration(seconds: float) -> str:
    """`45s`, `12m30s`, `5h02m`, `2d03h`: short enough for a table cell."""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def split(items: int, jobs: int) -> list[int]:
    """`items` cut into `jobs` parts (no more parts than items) that differ by at most one."""
    jobs = max(1, min(jobs, items))
    size, extra = divmod(items, jobs)
    return [size + 1 if i < extra else size for i in range(jobs)]


__all__ = [
    "ModelTerms",
    "cheapest_offers",
    "describe",
    "duration",
    "item_seconds",
    "option",
    "plan_batch",
    "price_per_gpu",
    "reference_of",
    "split",
]
