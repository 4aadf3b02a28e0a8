"""One batch run: GPUs provisioned, items split into jobs, progress, release, summary.

The run speaks only the public `fleet.api` operations, as any client would:
the units come from a pinned provision judged by the cost-guard (pinned for
twice the planned time, so the scaler keeps them, and ends them by itself
should every gateway die), the items go out as `jobs.submit` jobs with the
jobs plane's attempts as retries, and every unit is released with `release`
when the last job has ended.

At most one job per planned GPU is queued or running at any time. A unit
pulls as many jobs as its pool's `unit_capacity`, so a full queue would let
one early unit take several items' worth of a single GPU while the others
boot, and the backlog would make the scaler rent more than the plan; one job
per GPU keeps the run on the plan.

Nothing of a run lives only here. Its record (`BatchRecord`: the plan, the
provision's id, how many jobs were handed out, the latest step) is written to
`fleet_batches` before each step is taken, and what it knows besides (items
done, retries, what its units cost) comes from the job and unit events in
JetStream, read from the run's start (services.gateway.batchfeed). A gateway
that takes a dead one's run over builds the same `BatchRun` from the record,
reads the events it missed, and carries on: the jobs keep running on the units
meanwhile, and the summary is published once (its message id is fixed, and a
run whose summary is already on the stream only records it).

What the run costs is measured from the unit events of its own provision
(billed from the first booting/ready event to termination, as the ledger
bills), and compared with the plan in the final `BatchStatus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts import subjects
from contracts.batch import BatchRecord, BatchStatus
from contracts.batchplan import describe, duration, split
from contracts.commands import ProvisionRequest
from contracts.events import UnitEvent
from contracts.gpuspeed import speed_of
from contracts.jobs import JobEvent
from contracts.streams import FLEET_BATCHES, FLEET_CMDS, FLEET_EVENTS, FLEET_JOBEVENTS
from services.gateway.batchbook import BatchBook
from services.gateway.batchfeed import follow
from services.gateway.batchtally import Tally, summary

log = logging.getLogger("fleet.gateway.batch")

Call = Callable[[str, dict[str, Any], float], Awaitable[dict[str, Any]]]
"""`fleet.api.<op>` with a body and a timeout; the answer (an error answer raises)."""
Publish = Callable[[BatchStatus, str], Awaitable[None]]
"""Publish a step on `fleet.batch.<id>` with a message id."""

RELEASE_WAIT_S = 180.0
"""How long the run waits for its released units to terminate before summing up anyway."""
SKEW_S = 2.0
"""Events are read from this long before the run began: another publisher's clock may lag."""


class _Verdict(msgspec.Struct):
    id: str = ""
    decision: str = ""
    ts: float = 0.0


_UNIT = msgspec.json.Decoder(UnitEvent)
_JOB = msgspec.json.Decoder(JobEvent)
_VERDICT = msgspec.json.Decoder(_Verdict)
_STATUS = msgspec.json.Decoder(BatchStatus)


class BatchRun:
    """Carries out one planned batch: `verdict()` for a provision not yet approved, then
    `run()`; built from its record, fresh or taken over (see the module)."""

    def __init__(
        self,
        js: JetStreamContext,
        call: Call,
        publish: Publish,
        book: BatchBook,
        record: BatchRecord,
        revision: int,
    ) -> None:
        self.js = js
        self.call = call
        self.publish_status = publish
        self.book = book
        self.revision = revision
        """Of the record as we last wrote (or read) it: the compare-and-set's reference."""
        self.id = record.id
        self.req = record.call
        self.option = record.option
        self.pool = record.pool
        self.provision_id = record.provision_id
        self.opened_ts = record.opened_ts
        self.started_ts = record.started_ts
        self.approved = record.approved
        jobs = min(self.req.items, self.option.count * self.req.jobs_per_gpu)
        self.tally = Tally(sizes=split(self.req.items, jobs))
        for k in range(record.submitted):  # handed out: in flight until their events say
            self.tally.in_flight[self.job_id(k)] = self.tally.sizes[k]
        self.tally.next_job = record.submitted
        self.changed = asyncio.Event()
        self.last: BatchStatus | None = record.status
        self._subs: list[Any] = []

    def provision_request(self) -> ProvisionRequest:
        """The pinned provision of the run's GPUs, the same each time it is built: its id
        is fixed in the record, so sending it again asks for nothing more."""
        return ProvisionRequest(
            id=self.provision_id,
            requester=self.req.requester,
            pool=self.pool,
            gpu_model=self.option.gpu_model,
            count=self.option.count,
            provider=self.option.provider,
            max_usd_per_hour=round(self.option.usd_per_hour * 1.1 + 1e-4, 4),
            reason=f"batch {self.id}: {self.req.items} items, {describe(self.option)} "
            f"(kept for {math.ceil(self.pin_s())} s)",
            pin=True,
            duration_s=math.ceil(self.pin_s()),
        )

    def job_id(self, k: int) -> str:
        return f"{self.id}-{k}"

    def record(self) -> BatchRecord:
        """What the run is now, as it is kept in `fleet_batches`."""
        return BatchRecord(
            id=self.id,
            call=self.req,
            option=self.option,
            pool=self.pool,
            provision_id=self.provision_id,
            opened_ts=self.opened_ts,
            started_ts=self.started_ts,
            approved=self.approved,
            submitted=self.tally.next_job,
            status=self.last,
        )

    async def save(self) -> None:
        """Write the record (RunLost when another gateway drives the run now)."""
        self.revision = await self.book.update(self.record(), self.revision)

    # -- events --------------------------------------------------------------------------
    async def listen(self, *, catch_up: bool) -> None:
        """Follow the pool's unit events and the jobs' events from the run's start; with
        `catch_up` (a run taken over), those stored so far are counted before this returns."""
        since = self.opened_ts - SKEW_S
        for stream, subject, handle in (
            (FLEET_EVENTS.name, f"fleet.unit.{self.pool}.*", self._on_unit),
            (FLEET_JOBEVENTS.name, subjects.JOB_EVENTS_ALL, self._on_job),
        ):
            self._subs.append(
                await follow(self.js, stream, subject, since, handle, catch_up=catch_up)
            )

    async def _on_unit(self, msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            ev = _UNIT.decode(msg.data)
            if self.tally.ours(ev, self.provision_id):
                self.tally.unit_event(ev)
                self.changed.set()

    async def _on_job(self, msg: Msg) -> None:
        if not msg.subject.startswith(f"fleet.job.{self.id}-"):
            return
        with contextlib.suppress(msgspec.DecodeError):
            ev = _JOB.decode(msg.data)
            if self.tally.job_event(ev.job, ev.state, ev.attempt):
                self.changed.set()

    async def verdict(self) -> bool:
        """Whether the provision was approved, from the cost-guard's verdicts since the run
        began (so one given while no gateway drove the run counts); False when none came
        within the time the units would have been kept. An approval starts the plan's clock."""
        fut: asyncio.Future[_Verdict] = asyncio.get_running_loop().create_future()

        async def on_verdict(msg: Msg) -> None:
            with contextlib.suppress(msgspec.DecodeError):
                v = _VERDICT.decode(msg.data)
                if v.id == self.provision_id and v.decision != "held" and not fut.done():
                    fut.set_result(v)

        sub = await follow(
            self.js,
            FLEET_CMDS.name,
            "fleet.budget.*",
            self.opened_ts - SKEW_S,
            on_verdict,
            catch_up=False,
        )
        try:
            wait_s = max(self.opened_ts + self.pin_s() - time.time(), 0.0)
            got = await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if got.decision != "approved":
            return False
        self.approved = True
        self.started_ts = got.ts or time.time()
        await self.save()
        return True

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

    async def emit(self, state: str, reason: str = "") -> None:
        """Record a step, then publish it (a step that cannot be recorded is not taken)."""
        self.last = self.status(state, reason)
        await self.save()
        try:
            msg_id = f"{self.id}:{state}:{self.last.ts:.6f}"
            await self.publish_status(self.last, msg_id)
        except Exception:
            log.warning("batch %s: could not publish its status", self.id, exc_info=True)

    async def end(self, state: str, reason: str) -> BatchStatus:
        """Publish the run's last step once, then record it: a summary already on the
        stream (published by a driver that died before recording it) is kept as it is."""
        published = await self.published()
        if published is not None and published.finished:
            self.last = published
        else:
            self.last = self.status(state, reason, finished=True)
            await self.publish_status(self.last, f"{self.id}:end")
        await self.save()
        return self.last

    async def published(self) -> BatchStatus | None:
        """The latest step on `fleet.batch.<id>`, as readers of the stream see it."""
        try:
            msg = await self.js.get_last_msg(FLEET_BATCHES.name, subjects.batch(self.id))
            return _STATUS.decode(msg.data or b"")
        except Exception:
            return None

    # -- the run -------------------------------------------------------------------------
    async def run(self, *, resumed_by: str = "") -> BatchStatus:
        """Jobs until every item is done or failed, then release and sum up."""
        t = self.tally
        if resumed_by:
            await self._reattach()
            await self.emit(
                "running",
                f"taken over by {resumed_by}: {t.items_done}/{self.req.items} items done, "
                f"{t.next_job}/{len(t.sizes)} jobs handed out, {len(t.live_units())} unit(s) live",
            )
        else:
            await self.emit(
                "running",
                f"{len(t.sizes)} jobs for {self.req.items} items "
                f"on {self.option.count} x {self.option.gpu_model} in pool {self.pool}",
            )
        await self._work()
        return await self._finish()

    async def _reattach(self) -> None:
        """The job handed out last may never have reached the jobs plane (its driver died
        in between): submitted again, under the same id, if no event of it is stored."""
        t = self.tally
        if t.next_job == 0 or self.job_id(t.next_job - 1) not in t.in_flight:
            return
        k = t.next_job - 1
        try:
            await self.js.get_last_msg(FLEET_JOBEVENTS.name, subjects.job(self.job_id(k)))
        except Exception:
            await self._submit(k)

    async def _work(self) -> None:
        every = self.req.progress_every_s
        next_progress = time.monotonic() + every
        give_up = self.started_ts + self.pin_s()
        while not self.tally.done:
            await self._top_up()
            if self.tally.done:
                break
            left = give_up - time.time()
            if left <= 0:
                await self._abandon(f"not done after {duration(self.pin_s())}, twice the plan")
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                wait = min(next_progress - time.monotonic(), left)
                await asyncio.wait_for(self.changed.wait(), max(wait, 0.0))
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
        """Submit jobs until one per planned GPU is queued or running; each is in the
        record before it is submitted, so a driver taking over knows it exists."""
        t = self.tally
        while t.next_job < len(t.sizes) and len(t.in_flight) < self.option.count:
            k = t.next_job
            t.next_job += 1
            t.in_flight[self.job_id(k)] = t.sizes[k]
            await self.save()
            await self._submit(k)

    async def _submit(self, k: int) -> None:
        """Hand job `k` to the jobs plane (the same id twice queues it once)."""
        t = self.tally
        job_id = self.job_id(k)
        speed = speed_of(self.option.gpu_model)
        body = {
            "id": job_id,
            "pool": self.pool,
            "requirements": {"gpu_models": [self.option.gpu_model]},
            "est_s": round(t.sizes[k] * self.option.per_item_s * speed, 6),
            "attempts": self.req.attempts,
            "data": {"batch": self.id, "first_item": sum(t.sizes[:k]), "items": t.sizes[k]},
            "requester": self.req.requester,
        }
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
        return await self.end("succeeded" if ok else "failed", text)


__all__ = ["BatchRun", "Call", "Publish"]
