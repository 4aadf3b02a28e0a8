"""What a job's delivery means, from the job and its recorded events. Pure.

A unit reads a redelivered job's events before running it again: they say
whether the job already ended (then it is only acked), which attempts failed or
were handed back and why, and which unit was running it when it was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contracts.jobs import TERMINAL_JOB_STATES, Job, JobEvent

Action = Literal["run", "dead", "expired", "settled"]
HANDED_BACK = "handed back"


@dataclass(frozen=True, slots=True)
class History:
    """What a job's events say about its earlier deliveries."""

    reasons: tuple[str, ...] = ()
    """Each ended attempt's reason, in order (failures and hand-backs)."""
    last_unit: str | None = None
    """The unit of the latest event: the one running the job if it was lost."""
    settled: JobEvent | None = None
    """The outcome, if the job already has one."""


def history(events: list[JobEvent]) -> History:
    """The attempts and outcome recorded in a job's events, oldest first."""
    reasons: list[str] = []
    for e in events:
        if e.state == "failed" or (e.state == "retried" and e.reason.startswith(HANDED_BACK)):
            reasons.append(f"attempt {e.attempt}: {e.reason}")
    settled = next((e for e in events if e.state in TERMINAL_JOB_STATES), None)
    last_unit = next((e.unit for e in reversed(events) if e.unit), None)
    return History(tuple(reasons), last_unit, settled)


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What to do with one delivery, and the reasons the job's events carry."""

    action: Action
    reasons: tuple[str, ...]
    """Every earlier attempt's reason, including a lost unit the events do not explain."""


def plan_delivery(job: Job, delivery: int, seen: History, now: float) -> DeliveryPlan:
    """Run, dead-letter, expire, or (already settled) only ack delivery `delivery` of `job`.

    A delivery whose predecessor left no reason was lost with its unit (killed,
    or cut off): it is named, so the dead letter lists every attempt.
    """
    if seen.settled is not None:
        return DeliveryPlan("settled", seen.reasons)
    reasons = list(seen.reasons)
    if delivery > 1 and len(reasons) < delivery - 1:
        who = seen.last_unit or "a unit"
        reasons.append(
            f"attempt {delivery - 1}: {who} stopped answering; redelivered after the ack wait"
        )
    if job.deadline_ts is not None and now > job.deadline_ts:
        return DeliveryPlan("expired", tuple(reasons))
    if delivery > job.attempts:
        return DeliveryPlan("dead", tuple(reasons))
    return DeliveryPlan("run", tuple(reasons))


__all__ = ["HANDED_BACK", "DeliveryPlan", "History", "history", "plan_delivery"]
