"""A batch run's books: items done and failed, retries, and what its units cost.

Pure bookkeeping fed by events, so that a run taken over by another gateway
rebuilds the same figures by replaying its events from the streams: every
method may see an event again (a terminal job state, a unit's billing start or
end) and count it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.batch import BatchOption
from contracts.batchplan import duration
from contracts.commands import replaced_unit
from contracts.events import BILLED_STATES, TERMINAL_STATES, UnitEvent
from contracts.jobs import TERMINAL_JOB_STATES


@dataclass
class UnitBill:
    """One unit of the batch: when billing began and ended, at what price."""

    since: float | None = None
    until: float | None = None
    usd_per_hour: float = 0.0

    def usd(self, now: float) -> float:
        if self.since is None:
            return 0.0
        end = self.until if self.until is not None else now
        return max(end - self.since, 0.0) * self.usd_per_hour / 3600.0


@dataclass
class Tally:
    """What the run knows so far; pure bookkeeping, fed by events."""

    sizes: list[int]
    next_job: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    items_done: int = 0
    items_failed: int = 0
    retried: set[tuple[str, int]] = field(default_factory=set)
    """(job, attempt) of every retry seen: a replayed event is not counted twice."""
    units: dict[str, UnitBill] = field(default_factory=dict)

    @property
    def retries(self) -> int:
        return len(self.retried)

    def job_event(self, job: str, state: str, attempt: int = 0) -> bool:
        """Count one of our jobs' events; True when the job has just ended."""
        if state == "retried" and job in self.in_flight:
            self.retried.add((job, attempt))
        if state not in TERMINAL_JOB_STATES or job in self.ended or job not in self.in_flight:
            return False
        size = self.in_flight.pop(job)
        self.ended[job] = state
        if state == "succeeded":
            self.items_done += size
        else:
            self.items_failed += size
        return True

    def ours(self, ev: UnitEvent, provision_id: str) -> bool:
        """Whether `ev` is about one of the batch's units: one its provision made, or the
        replacement the provisioner asked for when one of them failed (the batch's jobs
        run on it, it bills the batch, and the batch must release it)."""
        return (
            ev.command_id == provision_id
            or ev.unit in self.units
            or replaced_unit(ev.command_id) in self.units
        )

    def unit_event(self, ev: UnitEvent) -> None:
        """Follow one of the batch's units' billing, as the cost-guard's ledger does."""
        bill = self.units.setdefault(ev.unit, UnitBill())
        if ev.state in BILLED_STATES:
            if bill.since is None:
                bill.since = ev.ts
            bill.usd_per_hour = ev.usd_per_hour or bill.usd_per_hour
        elif ev.state in TERMINAL_STATES and bill.until is None:
            bill.until = ev.ts if bill.since is not None else None
            if bill.since is None:  # failed before billing: never cost anything
                bill.since = bill.until = ev.ts

    @property
    def done(self) -> bool:
        return self.next_job >= len(self.sizes) and not self.in_flight

    def live_units(self) -> list[str]:
        return sorted(u for u, b in self.units.items() if b.until is None)

    def usd(self, now: float) -> float:
        return sum(b.usd(now) for b in self.units.values())


def summary(option: BatchOption, tally: Tally, elapsed_s: float, actual_usd: float) -> str:
    """Actual against planned time and cost, in a sentence."""
    items = sum(tally.sizes)
    d_cost = (actual_usd - option.cost_usd) / option.cost_usd if option.cost_usd else 0.0
    d_time = (elapsed_s - option.wall_s) / option.wall_s if option.wall_s else 0.0
    failed = f", {tally.items_failed} failed" if tally.items_failed else ""
    return (
        f"{tally.items_done}/{items} items done{failed} on {option.count} x {option.gpu_model} "
        f"in {duration(elapsed_s)} (planned {duration(option.wall_s)}, {d_time:+.1%}) for "
        f"${actual_usd:,.4f} (planned ${option.cost_usd:,.4f}, {d_cost:+.1%}); "
        f"{tally.retries} retr{'y' if tally.retries == 1 else 'ies'}; "
        f"{len(tally.units)} unit(s) rented, {len(tally.live_units())} still live"
    )


__all__ = ["Tally", "UnitBill", "summary"]
