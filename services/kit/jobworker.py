"""A unit's side of the job queues: pull, run, report, and settle each job once.

One `JobWorker` per unit. It pulls from its pool's three priority queues, high
before normal before low, up to `slots` jobs at a time, and for each job:

- extends the ack deadline while working (JetStream in-progress acks), so a
  long job is not redelivered, and a unit that dies stops extending it, so its
  job is redelivered to another unit after `ack_wait_s`;
- announces the outcome as an event with the de-duplication id
  `<job>:<state>` and acks the job once the stream has stored it (an outcome
  the stream refused hands the job back instead): two completions of one job
  store one event, and no job is acked without its outcome;
- on a redelivery, first reads the job's events (FLEET_JOBEVENTS): a job that
  already ended is not run again, only acked, so completion is idempotent by
  job id; the events also give every earlier attempt's reason and the unit
  that was running it if that unit was lost;
- after `job.attempts` deliveries dead-letters the job with every reason;
- stops a job when it is cancelled (`fleet.jobctl.cancel`);
- when the unit drains, hands its running jobs back (nak) instead of finishing
  or killing them, so another unit starts them at once.

What a delivery means is decided by `jobplan.plan_delivery`, a pure function.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts import subjects
from contracts.base import UNDECODABLE
from contracts.jobs import Job, JobCancel, JobEvent
from services.kit.jobexec import Executor, Outcome
from services.kit.jobplan import HANDED_BACK, History, history, plan_delivery
from services.kit.jobpull import PriorityPull, delivery
from services.kit.jobqueue import emit, read_events
from services.kit.puback import PubAcks, PublishRefused

log = logging.getLogger("fleet.jobs")
_ENC = msgspec.json.Encoder()
_JOB = msgspec.json.Decoder(Job)
_CANCEL = msgspec.json.Decoder(JobCancel)


@dataclass(slots=True)
class _Running:
    job: Job
    msg: Msg
    task: asyncio.Task[None]
    attempt: int
    handed_back: bool = False
    settling: bool = False
    """The outcome is being stored: a drain or a cancel leaves the job to end."""
    cancelled: str | None = None
    fraction: float | None = None
    """Set by the executor's reports once the job runs."""
    last_progress: float = field(default_factory=time.monotonic)


class JobWorker:
    """Pull and run a pool's jobs as unit `unit`; see the module docstring."""

    def __init__(
        self,
        nc: Client,
        pool: str,
        unit: str,
        execute: Executor,
        *,
        slots: int = 1,
        ack_wait_s: float = 30.0,
        progress_s: float = 5.0,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.pool = subjects.token(pool, "pool")
        self.unit = subjects.token(unit, "unit")
        self.execute = execute
        self.slots = max(int(slots), 1)
        self.ack_wait_s = ack_wait_s
        self.progress_s = progress_s
        self.retry_delay_s = retry_delay_s
        self.running: dict[str, _Running] = {}
        self.counts: dict[str, int] = {}
        """Outcomes this worker produced: started, succeeded, failed, dead, handed_back, ..."""
        self.puller = PriorityPull(nc, self.pool, ack_wait_s=ack_wait_s)
        self.acks = PubAcks(nc)
        self._cancel_sub: object | None = None
        self._loop: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._held = 0
        """Slots taken: jobs started and not yet finished (a counter, not a semaphore:
        it is checked once per job, the semaphore cost a wait per job)."""
        self._slot_freed = asyncio.Event()
        self._cancelled: OrderedDict[str, str] = OrderedDict()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> int:
        """Jobs being run right now (the unit's in-flight)."""
        return len(self.running)

    async def start(self) -> None:
        """Bind to the pool's consumers (creating them) and start pulling."""
        await self.puller.bind()
        await self.acks.start()
        self._cancel_sub = await self.nc.subscribe(subjects.JOB_CANCEL, cb=self._on_cancel)
        loop = asyncio.get_running_loop()
        self._loop = loop.create_task(self._pull(), name=f"jobs:{self.unit}")
        self._beats = loop.create_task(self._beat(), name=f"jobs-beat:{self.unit}")

    async def drain(self, reason: str = "unit draining") -> None:
        """Stop pulling and hand every running job back (nak) for another unit."""
        await self._halt()
        for run in list(self.running.values()):
            if run.settling:  # ends by itself once its outcome is stored
                continue
            run.handed_back = True
            run.task.cancel()
            text = f"{HANDED_BACK}: {self.unit} {reason}"
            await self._event(run.job, "retried", text, run.attempt)
            with contextlib.suppress(Exception):
                await run.msg.nak()
            self._count("handed_back")
        await asyncio.gather(*(r.task for r in list(self.running.values())), return_exceptions=True)

    async def stop(self) -> None:
        """Stop pulling and hand back what runs (as `drain`), then unsubscribe."""
        await self.drain("stopping")
        if self._beats is not None:
            self._beats.cancel()
            await asyncio.gather(self._beats, return_exceptions=True)
            self._beats = None
        await self.puller.unsubscribe()
        await self.acks.close()
        if self._cancel_sub is not None:
            with contextlib.suppress(Exception):
                await self._cancel_sub.unsubscribe()  # type: ignore[attr-defined]

    async def _halt(self) -> None:
        """Stop pulling. The loop is let finish its fetch rather than cancelled: a
        cancelled fetch leaves its pull request open at the server, which would then
        deliver a job (even one we nak next) to nobody until the ack wait ran out."""
        self._stopping.set()
        if self._loop is not None:
            if self.puller.fetching:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._loop), 2.0)
            self._loop.cancel()  # waiting for a free slot, or done
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    # -- pulling ---------------------------------------------------------------------
    async def _pull(self) -> None:
        """Take jobs (see `jobpull`) as slots free up, and start each."""
        while not self._stopping.is_set():
            await self._wait_for_slot()
            msgs = await self.puller.take(self.slots - self._held, self._stopping)
            if self._stopping.is_set():  # fetched while stopping: hand straight back
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak()
                return
            for msg in msgs:
                await self._wait_for_slot()
                self._spawn(msg)

    async def _wait_for_slot(self) -> None:
        """Until a slot is free."""
        while self._held >= self.slots:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def _spawn(self, msg: Msg) -> None:
        try:
            job = _JOB.decode(msg.data)
        except UNDECODABLE as exc:
            asyncio.get_running_loop().create_task(self._poison(msg, str(exc)))
            return
        attempt = delivery(msg) or 1
        task = asyncio.get_running_loop().create_task(self._handle(job, msg, attempt))
        self._held += 1
        self.running[job.id] = _Running(job, msg, task, attempt)
        self._idle.clear()
        task.add_done_callback(functools.partial(self._finished, job.id))

    def _finished(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self.running.pop(job_id, None)
        self._held -= 1
        self._slot_freed.set()
        if not self.running:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no job is running (more may be pulled at any time after)."""
        await self._idle.wait()

    async def _poison(self, msg: Msg, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.js.publish(subjects.dead(msg.subject), msg.data[:1024])
            await msg.term()
        log.warning("undecodable job", extra={"subject": msg.subject, "reason": reason[:200]})

    # -- one job ---------------------------------------------------------------------
    async def _handle(self, job: Job, msg: Msg, attempt: int) -> None:
        try:
            if job.id in self._cancelled:
                await msg.term()
                return
            seen = History()
            if attempt > 1:  # a first delivery has no history: skip the read
                seen = history(await read_events(self.js, subjects.job(job.id)))
            plan = plan_delivery(job, attempt, seen, time.time())
            if plan.action == "settled":  # ended elsewhere: do not run it again
                await msg.ack()
                self._count("already_settled")
                return
            if plan.action != "run":
                why = (
                    "deadline passed before it could start"
                    if plan.action == "expired"
                    else f"failed {job.attempts} attempt(s)"
                )
                await self._settle(job, msg, attempt, "dead", why, reasons=list(plan.reasons))
                return
            if attempt > 1:
                after = plan.reasons[-1] if plan.reasons else "redelivery"
                text = f"attempt {attempt} of {job.attempts} after: {after}"
                await self._event(job, "retried", text, attempt)
            await self._event(job, "started", f"on {self.unit}", attempt)
            self._count("started")
            outcome = await self._run(job)
        except asyncio.CancelledError:
            run = self.running.get(job.id)
            if run is not None and run.cancelled is not None:
                with contextlib.suppress(Exception):  # the gateway announced the cancel;
                    text = f"stopped on {self.unit}: {run.cancelled}"  # say it stopped
                    await self._event(job, "cancelled", text, attempt)
                    await msg.term()
                self._count("cancelled")
            return
        except Exception:  # the bus failed under us: let JetStream redeliver
            log.warning("job handling failed", exc_info=True, extra={"job": job.id})
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.retry_delay_s)
            self._count("errors")
            return
        if outcome.ok:
            await self._settle(job, msg, attempt, "succeeded", outcome.reason, outcome=outcome)
            return
        reason = outcome.reason
        await self._event(
            job, "failed", reason, attempt, exit_code=outcome.exit_code, output=outcome.output
        )
        self._count("failed")
        if attempt >= job.attempts:
            reasons = [*plan.reasons, f"attempt {attempt}: {reason}"]
            why = f"failed {attempt} attempt(s)"
            await self._settle(job, msg, attempt, "dead", why, reasons=reasons)
        else:
            await msg.nak(delay=self.retry_delay_s * attempt)

    async def _run(self, job: Job) -> Outcome:
        """The executor; `_beat` extends the ack deadline and reports progress meanwhile."""
        run = self.running.get(job.id)

        def report(value: float) -> None:
            if run is not None:
                run.fraction = value

        if run is not None:
            run.fraction = 0.0
        return await self.execute(job, report)

    async def _beat(self) -> None:
        """Every third of the ack wait: an in-progress ack for each job held, and a
        progress event for each job running longer than `progress_s` since the last.
        One loop for all jobs, so a job costs no timer of its own."""
        every = max(self.ack_wait_s / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for run in list(self.running.values()):
                with contextlib.suppress(Exception):
                    await run.msg.in_progress()
                if run.fraction is not None and now - run.last_progress >= self.progress_s:
                    run.last_progress = now
                    text = f"{run.fraction:.0%} on {self.unit}"
                    progress = round(run.fraction, 3)
                    with contextlib.suppress(Exception):
                        await self._event(run.job, "progress", text, run.attempt, progress=progress)

    async def _settle(
        self,
        job: Job,
        msg: Msg,
        attempt: int,
        state: Literal["succeeded", "dead"],
        reason: str,
        *,
        outcome: Outcome | None = None,
        reasons: list[str] | None = None,
    ) -> None:
        """Announce the outcome (de-duplicated by `<job>:<state>`); once the stream has
        stored it, ack the job. The job's slot is held until then, so a job counts as
        done only with its outcome recorded; the outcomes of many jobs are in flight
        at once. An outcome the stream refuses hands the job back (nak): its next
        delivery reads the events again.

        A redelivered job looks again just before: another unit may have finished it
        since this delivery started (its ack deadline lapsed while it still ran)."""
        if attempt > 1 and history(await read_events(self.js, subjects.job(job.id))).settled:
            await msg.ack()
            self._count("already_settled")
            return
        event = self._make(
            job,
            state,
            reason,
            attempt,
            exit_code=outcome.exit_code if outcome else None,
            output=outcome.output if outcome else "",
            reasons=reasons or [],
        )
        run = self.running.get(job.id)
        if run is not None:
            run.settling = True
        try:  # the same id from another unit is stored once (a duplicate)
            stored = await self.acks.publish(
                subjects.job(job.id), _ENC.encode(event), f"{job.id}:{state}"
            )
        except (PublishRefused, TimeoutError, OSError, nats.errors.Error) as exc:
            self._count("outcomes_unstored")
            log.warning(
                "a job outcome was not stored; handing the job back",
                extra={"unit": self.unit, "job": job.id, "error": str(exc)[:200]},
            )
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.retry_delay_s)
            return
        if stored.duplicate:
            self._count("outcomes_duplicate")
        self._count(state)
        await (msg.term() if state == "dead" else msg.ack())

    # -- events ----------------------------------------------------------------------
    def _make(self, job: Job, state: str, reason: str, attempt: int, **fields: Any) -> JobEvent:
        return JobEvent(
            job=job.id,
            state=state,  # type: ignore[arg-type]
            reason=reason[:4000],
            pool=self.pool,
            unit=self.unit,
            priority=job.priority,
            attempt=attempt,
            **fields,
        )

    async def _event(self, job: Job, state: str, reason: str, attempt: int, **fields: Any) -> None:
        """A step of the job (not its outcome), published without waiting (`emit`)."""
        event = self._make(job, state, reason, attempt, **fields)
        await emit(self.nc, subjects.job(job.id), _ENC.encode(event))

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            cancel = _CANCEL.decode(msg.data)
        except UNDECODABLE:
            return
        self._cancelled[cancel.job] = cancel.reason
        while len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)
        run = self.running.get(cancel.job)
        if run is not None and not run.settling:
            run.cancelled = cancel.reason or "cancelled"
            run.task.cancel()

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


__all__ = ["JobWorker"]
