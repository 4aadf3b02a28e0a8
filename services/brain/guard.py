"""Guardrails no prompt can lift: per-task limits on units and USD/hour asked for.

Pure: `check_provision(state, args, price, limits)` says whether a provision
call may go to the cost-guard, with the price ceiling it must carry, and the
state after it. The cost-guard's budget gate still judges everything that passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    max_units: int
    """Units one task may ask for in total."""
    max_usd_per_hour: float
    """Added burn one task may ask for in total, USD/hour."""


@dataclass(frozen=True)
class TaskSpend:
    """What a task has asked for so far."""

    units: int = 0
    usd_per_hour: float = 0.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    max_usd_per_hour: float | None = None
    """Price ceiling per unit the request must carry so the task's limit holds."""
    usd_per_hour: float = 0.0
    """Burn this call adds at most, USD/hour."""


def check_provision(
    spent: TaskSpend,
    count: int,
    unit_price: float | None,
    asked_ceiling: float | None,
    limits: Limits,
) -> tuple[TaskSpend, Decision]:
    """May this task provision `count` units priced `unit_price` (cheapest known offer)?"""
    if spent.units + count > limits.max_units:
        left = max(0, limits.max_units - spent.units)
        return spent, Decision(
            False,
            f"refused: {count} units would exceed this task's limit of {limits.max_units} "
            f"units ({left} left); ask an operator to raise brain.max_provision_units_per_task",
        )
    left_usd = limits.max_usd_per_hour - spent.usd_per_hour
    ceiling = left_usd / count
    if asked_ceiling is not None:
        ceiling = min(ceiling, asked_ceiling)
    if unit_price is None:
        return spent, Decision(
            False,
            "refused: no offer price is known for this GPU, so the cost cannot be bounded; "
            "call get_available_gpus first or name max_usd_per_hour",
        )
    if unit_price > ceiling + 1e-9:
        return spent, Decision(
            False,
            f"refused: {count} x ${unit_price:.2f}/h = ${count * unit_price:.2f}/h exceeds this "
            f"task's remaining ${left_usd:.2f}/h (limit ${limits.max_usd_per_hour:.2f}/h)",
        )
    cost = count * ceiling
    after = replace(spent, units=spent.units + count, usd_per_hour=spent.usd_per_hour + cost)
    return after, Decision(
        True,
        f"within this task's limits: {count} units at most ${ceiling:.2f}/h each",
        max_usd_per_hour=round(ceiling, 6),
        usd_per_hour=round(cost, 6),
    )
