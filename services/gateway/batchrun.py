"""One batch run: GPUs provisioned, items split into jobs, progress, release, summary.

The run speaks only the public `fleet.api` operations, as any client would:
the units come from `gpu.provision` (so the cost-guard judges them, and they
are pinned for twice the planned time, so the scaler keeps them and, should
this gateway die, ends them by itself), the items go out as `jobs.submit`
jobs with the jobs plane's attempts as retries, and every unit is released
with `release` when the last job has ended.

At most one job per planned GPU is queued or running at any time. A unit
pulls as many jobs as its pool's `unit_capacity`, so a full queue would let
one early unit take several items' worth of a single GPU while the others
boot, and the backlog would make the scaler rent more than the plan; one job
per GPU keeps the run on the plan.

What the run costs is measured from the unit events of its own provision
(billed from the first booting/ready event to termination, as the ledger
bills), and compared with the plan in the final `BatchStatus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from contracts.batch import BatchOption, BatchStatus, RunBatchCall
from contracts.batchplan import duration, split
from contracts.events import BILLED_STATES, TERMINAL_STATES, UnitEvent
from contracts.gpuspeed import speed_of
from contracts.jobs import TERMINAL_JOB_STATES, JobEvent

log = logging.getLogger("fleet.gateway.batch")

Call = Callable[[str, dict[str, Any], float], Awaitable[dict[str, Any]]]
"""`fleet.api.<op>` with a body and a timeout; the answer (an error answer raises)."""
Publish = Callable[[BatchStatus], Awaitable[None]]

RELEASE_WAIT_S = 180.0
"""How long the run waits for its released units to terminate before summing up anyway."""

_UNIT = msgspec.json.Decoder(UnitEvent)
_JOB = msgspec.json.Decoder(JobEvent)


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
    retries: int = 0
    units: dict[str, UnitBill] = field(default_factory=dict)

    def job_event(self, job: str, state: str) -> bool:
        """Count one of our jobs' events; True when the job has just ended."""
        if state == "retried":
            self.retries += 1
        if state not in TERMINAL_JOB_STATES or job in self.ended or job not in self.in_flight:
            return False
        size = self.in_flight.pop(job)
        self.ended[job] = state
        if state == "succeeded":
            self.items_done += size
        else:
            self.items_failed += size
        return True

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


class BatchRun:
    """Carries out one planned batch; `run()` is the whole of it (see the module)."""

    def __init__(
        self,
        nc: Client,
        call: Call,
        publish: Publish,
        *,
        batch_id: str,
        req: RunBatchCall,
        option: BatchOption,
        pool: str,
        provision_id: str,
        started_ts: float,
    ) -> None:
        self.nc = nc
        self.call = call
        self.publish_status = publish
        self.id = batch_id
        self.req = req
        self.option = option
        self.pool = pool
        self.provision_id = provision_id
        self.started_ts = started_ts
        jobs = min(req.items, option.count * req.jobs_per_gpu)
        self.tally = Tally(sizes=split(req.items, jobs))
        self.changed = asyncio.Event()
        self.last: BatchStatus | None = None
        self._subs: list[Any] = []
        self._early: list[UnitEvent] = []

    # -- events --------------------------------------------------------------------------
    async def listen(self) -> None:
        """Subscribe to the pool's unit events and the jobs' events (before any is sent)."""
        self._subs.append(await self.nc.subscribe(f"fleet.unit.{self.pool}.*", cb=self._on_unit))
        self._subs.append(await self.nc.subscribe(subjects.JOB_EVENTS_ALL, cb=self._on_job))

    async def _on_unit(self, msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            ev = _UNIT.decode(msg.data)
            if not self.provision_id:  # the verdict's answer is still on its way
                self._early.append(ev)
            elif ev.command_id == self.provision_id or ev.unit in self.tally.units:
                self.tally.unit_event(ev)
                self.changed.set()

    def provisioned(self, provision_id: str) -> None:
        """The provision's id, once the cost-guard has answered: the unit events that came
        before the answer (the provisioner may act first) are counted now."""
        self.provision_id = provision_id
        early, self._early = self._early, []
        for ev in early:
            if ev.command_id == provision_id:
                self.tally.unit_event(ev)

    async def _on_job(self, msg: Msg) -> None:
        if not msg.subject.startswith(f"fleet.job.{self.id}-"):
            return
        with contextlib.suppress(msgspec.DecodeError):
            ev = _JOB.decode(msg.data)
            if self.tally.job_event(ev.job, ev.state):
                self.changed.set()

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    # -- status --------------------------------------------------------------------------
    def status(self, state: str, reason: str = "", *, finished: bool = False) -> BatchStatus:
        now = time.time()
        t = self.tally
        return BatchStatus(
            id=self.id,
            state=state,  # type: ignore[arg-type]
            reason=reason,
            pool=self.pool,
            option=self.option,
            items=self.req.items,
            items_done=t.items_done,
            items_failed=t.items_failed,
            jobs=len(t.sizes),
            jobs_done=sum(1 for s in t.ended.values() if s == "succeeded"),
            jobs_failed=sum(1 for s in t.ended.values() if s != "succeeded"),
            retries=t.retries,
            provision_id=self.provision_id,
            units=sorted(t.units),
            units_live=len(t.live_units()),
            started_ts=self.started_ts,
            elapsed_s=round(now - self.started_ts, 3),
            actual_usd=round(t.usd(now), 6),
            finished=finished,
        )

    async def emit(self, state: str, reason: str = "", *, finished: bool = False) -> None:
        self.last = self.status(state, reason, finished=finished)
        try:
            await self.publish_status(self.last)
        except Exception:
            log.warning("batch %s: could not publish its status", self.id, exc_info=True)

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> BatchStatus:
        """Jobs until every item is done or failed, then release and sum up."""
        try:
            await self.emit(
                "running",
                f"{len(self.tally.sizes)} jobs for {self.req.items} items "
                f"on {self.option.count} x {self.option.gpu_model} in pool {self.pool}",
            )
            await self._work()
            return await self._finish()
        finally:
            await self.close()

    async def _work(self) -> None:
        every = self.req.progress_every_s
        next_progress = time.monotonic() + every
        give_up = time.monotonic() + self.pin_s()
        while not self.tally.done:
            await self._top_up()
            if self.tally.done:
                break
            now = time.monotonic()
            if now >= give_up:
                await self._abandon(f"not done after {duration(self.pin_s())}, twice the plan")
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(next_progress, give_up) - now)
            if time.monotonic() >= next_progress:
                next_progress += every
                t = self.tally
                await self.emit(
                    "running",
                    f"{t.items_done}/{self.req.items} items done, "
                    f"{len(t.live_units())} unit(s) live, "
                    f"${t.usd(time.time()):,.4f} spent",
                )

    def pin_s(self) -> float:
        """How long the units are kept: twice the plan, and at least ten minutes more."""
        return max(2.0 * self.option.wall_s, self.option.wall_s + 600.0)

    async def _top_up(self) -> None:
        """Submit jobs until one per planned GPU is queued or running."""
        t = self.tally
        speed = speed_of(self.option.gpu_model)
        while t.next_job < len(t.sizes) and len(t.in_flight) < self.option.count:
            k = t.next_job
            first = sum(t.sizes[:k])
            size = t.sizes[k]
            job_id = f"{self.id}-{k}"
            body = {
                "id": job_id,
                "pool": self.pool,
                "requirements": {"gpu_models": [self.option.gpu_model]},
                "est_s": round(size * self.option.per_item_s * speed, 6),
                "attempts": self.req.attempts,
                "data": {"batch": self.id, "first_item": first, "items": size},
                "requester": self.req.requester,
            }
            t.next_job += 1
            t.in_flight[job_id] = size
            try:
                answer = await self.call("jobs.submit", body, 10.0)
            except Exception as exc:
                answer = {"decision": "refused", "reason": str(exc)}
            if answer.get("decision") == "refused":
                log.warning("batch %s: job %s refused: %s", self.id, job_id, answer.get("reason"))
                t.job_event(job_id, "refused")

    async def _abandon(self, why: str) -> None:
        """Cancel what is left: the run ends with the items it finished."""
        t = self.tally
        for job_id in list(t.in_flight):
            with contextlib.suppress(Exception):
                await self.call("jobs.cancel", {"id": job_id, "reason": why}, 10.0)
            t.job_event(job_id, "cancelled")
        while t.next_job < len(t.sizes):
            t.items_failed += t.sizes[t.next_job]
            t.next_job += 1
        await self.emit("running", why)

    async def _finish(self) -> BatchStatus:
        """Release every unit of the batch, wait for them to end, and sum up."""
        units = self.tally.live_units()
        await self.emit("releasing", f"releasing {len(units)} unit(s)")
        for unit in units:
            body = {
                "pool": self.pool,
                "unit": unit,
                "requester": self.req.requester,
                "reason": f"batch {self.id} finished",
            }
            try:
                answer = await self.call("release", body, 15.0)
                if answer.get("decision") not in ("approved", "pending"):
                    log.warning("batch %s: release of %s: %s", self.id, unit, answer)
            except Exception:
                log.warning("batch %s: could not release %s", self.id, unit, exc_info=True)

        async def gone() -> None:
            while self.tally.live_units():
                self.changed.clear()
                await self.changed.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone(), RELEASE_WAIT_S)
        elapsed = time.time() - self.started_ts
        actual = self.tally.usd(time.time())
        text = summary(self.option, self.tally, elapsed, actual)
        ok = self.tally.items_failed == 0 and not self.tally.live_units()
        await self.emit("succeeded" if ok else "failed", text, finished=True)
        assert self.last is not None
        return self.last
