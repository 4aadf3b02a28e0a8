"""A unit's side of the job queues: pull, run, report, and settle each job once.

One `JobWorker` per unit. It pulls from its pool's three priority queues, high
before normal before low, up to `slots` jobs at a time, and for each job:

- extends the ack deadline while working (JetStream in-progress acks), so a
  long job is not redelivered, and a unit that dies stops extending it, so its
  job is redelivered to another unit after `ack_wait_s`;
- on a redelivery, first looks up the job's outcome (KV `fleet_jobs`): a job
  that already has one is not run again, its outcome event is re-published
  under the same de-duplication id and the delivery acked: completion is
  idempotent by job id;
- records every failed attempt's reason, and after `job.attempts` deliveries
  dead-letters the job with all of them;
- stops a job when it is cancelled (`fleet.jobctl.cancel`);
- when the unit drains, hands its running jobs back (nak) instead of finishing
  or killing them, so another unit starts them at once.

The decision of what a delivery means is `plan_delivery`, a pure function.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import subjects
from contracts.jobs import PRIORITIES, Job, JobAttempts, JobCancel, JobEvent, JobRecord
from contracts.streams import JOBS_STREAMS
from services.kit.jobexec import Executor, Outcome
from services.kit.jobqueue import consumer_name, jobs_bucket

log = logging.getLogger("fleet.jobs")
_ENC = msgspec.json.Encoder()
_JOB = msgspec.json.Decoder(Job)
_RECORD = msgspec.json.Decoder(JobRecord)
_ATTEMPTS = msgspec.json.Decoder(JobAttempts)
_CANCEL = msgspec.json.Decoder(JobCancel)

Action = Literal["run", "dead", "expired"]


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What to do with one delivery, and the reasons the job's events carry."""

    action: Action
    reasons: tuple[str, ...]
    """Every earlier attempt's reason, including a lost unit the record does not know."""


def plan_delivery(job: Job, delivery: int, seen: JobAttempts, now: float) -> DeliveryPlan:
    """Run, dead-letter or expire delivery number `delivery` of `job`.

    A delivery whose predecessor left no reason was lost with its unit (killed,
    or cut off): it is named, so the dead letter lists every attempt.
    """
    reasons = list(seen.reasons)
    if delivery > 1 and len(reasons) < delivery - 1:
        who = seen.running_on or "a unit"
        reasons.append(
            f"attempt {delivery - 1}: {who} stopped answering; redelivered after the ack wait"
        )
    if job.deadline_ts is not None and now > job.deadline_ts:
        return DeliveryPlan("expired", tuple(reasons))
    if delivery > job.attempts:
        return DeliveryPlan("dead", tuple(reasons))
    return DeliveryPlan("run", tuple(reasons))


@dataclass(slots=True)
class _Running:
    job: Job
    msg: Msg
    task: asyncio.Task[None]
    attempt: int
    handed_back: bool = False
    cancelled: str | None = None


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
        self._kv: KeyValue | None = None
        self._subs: list[object] = []
        self._cancel_sub: object | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._free = asyncio.Semaphore(self.slots)
        self._cancelled: OrderedDict[str, str] = OrderedDict()

    @property
    def busy(self) -> int:
        """Jobs being run right now (the unit's in-flight)."""
        return len(self.running)

    async def start(self) -> None:
        """Bind to the pool's consumers (creating them) and start pulling."""
        self._kv = await jobs_bucket(self.js)
        for prio in PRIORITIES:
            subject = subjects.jobs(prio, self.pool)
            config = ConsumerConfig(
                durable_name=consumer_name(self.pool),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_deliver=-1,  # the job's own `attempts` decides, with the reasons
                filter_subject=subject,
                max_ack_pending=10_000,
            )
            self._subs.append(
                await self.js.pull_subscribe(
                    subject,
                    durable=consumer_name(self.pool),
                    stream=JOBS_STREAMS[prio].name,
                    config=config,
                )
            )
        self._cancel_sub = await self.nc.subscribe(subjects.JOB_CANCEL, cb=self._on_cancel)
        self._loop = asyncio.get_running_loop().create_task(self._pull(), name=f"jobs:{self.unit}")

    async def drain(self, reason: str = "unit draining") -> None:
        """Stop pulling and hand every running job back (nak) for another unit."""
        await self._halt()
        for run in list(self.running.values()):
            run.handed_back = True
            run.task.cancel()
            await self._event(run.job, "retried", f"handed back: {self.unit} {reason}", run.attempt)
            await self._note_attempt(run.job.id, f"attempt {run.attempt}: handed back ({reason})")
            with contextlib.suppress(Exception):
                await run.msg.nak()
            self._count("handed_back")
        await asyncio.gather(*(r.task for r in list(self.running.values())), return_exceptions=True)

    async def stop(self) -> None:
        """Stop pulling and hand back what runs (as `drain`), then unsubscribe."""
        await self.drain("stopping")
        for sub in [*self._subs, self._cancel_sub]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]

    async def _halt(self) -> None:
        self._stopping.set()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    # -- pulling ---------------------------------------------------------------------
    async def _pull(self) -> None:
        while not self._stopping.is_set():
            await self._free.acquire()
            free = self.slots - len(self.running)
            self._free.release()
            msgs: list[Msg] = []
            for i, sub in enumerate(self._subs):
                last = i == len(self._subs) - 1
                try:
                    msgs = await sub.fetch(max(free, 1), timeout=0.5 if last else 0.02)  # type: ignore[attr-defined]
                except (NatsTimeout, TimeoutError):
                    continue
                except Exception:
                    if self.nc.is_closed:
                        return
                    log.warning("job fetch failed", exc_info=True, extra={"unit": self.unit})
                    await asyncio.sleep(0.5)
                    break
                if msgs:
                    break
            for msg in msgs:
                await self._free.acquire()
                self._spawn(msg)

    def _spawn(self, msg: Msg) -> None:
        try:
            job = _JOB.decode(msg.data)
        except msgspec.DecodeError as exc:
            self._free.release()
            asyncio.get_running_loop().create_task(self._poison(msg, str(exc)))
            return
        attempt = msg.metadata.num_delivered or 1
        task = asyncio.get_running_loop().create_task(self._handle(job, msg, attempt))
        self.running[job.id] = _Running(job, msg, task, attempt)
        task.add_done_callback(functools.partial(self._finished, job.id))

    def _finished(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self.running.pop(job_id, None)
        self._free.release()

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
            seen = JobAttempts()
            if attempt > 1:
                record = await self._record(job.id)
                if record is not None:  # settled elsewhere: say it again, do not run again
                    await self._settled_event(job, record, attempt)
                    await msg.ack()
                    return
                seen = await self._attempts(job.id)
            plan = plan_delivery(job, attempt, seen, time.time())
            if plan.action != "run":
                why = (
                    "deadline passed before it could start"
                    if plan.action == "expired"
                    else f"failed {job.attempts} attempt(s)"
                )
                await self._settle(job, msg, attempt, "dead", why, reasons=list(plan.reasons))
                return
            if attempt > 1:
                await self._event(
                    job,
                    "retried",
                    f"attempt {attempt} of {job.attempts} after: "
                    f"{plan.reasons[-1] if plan.reasons else 'redelivery'}",
                    attempt,
                )
            await asyncio.gather(
                self._mark_running(job.id, plan.reasons),
                self._event(job, "started", f"on {self.unit}", attempt),
            )
            self._count("started")
            outcome = await self._run(job, msg, attempt)
        except asyncio.CancelledError:
            run = self.running.get(job.id)
            if run is not None and run.cancelled is not None:
                with contextlib.suppress(Exception):
                    await msg.term()  # the gateway recorded and announced the cancel
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
        reason = f"attempt {attempt}: {outcome.reason}"
        await self._note_attempt(job.id, reason)
        await self._event(
            job, "failed", reason, attempt, exit_code=outcome.exit_code, output=outcome.output
        )
        self._count("failed")
        if attempt >= job.attempts:
            reasons = (await self._attempts(job.id)).reasons
            await self._settle(
                job, msg, attempt, "dead", f"failed {attempt} attempt(s)", reasons=reasons
            )
        else:
            await msg.nak(delay=self.retry_delay_s * attempt)

    async def _run(self, job: Job, msg: Msg, attempt: int) -> Outcome:
        """The executor, with in-progress acks and progress events while it works."""
        last_progress = time.monotonic()
        fraction = 0.0

        def report(value: float) -> None:
            nonlocal fraction
            fraction = value

        work: asyncio.Task[Outcome] = asyncio.get_running_loop().create_task(
            self.execute(job, report)
        )
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=max(self.ack_wait_s / 3, 0.05))
                if done:
                    return work.result()
                await msg.in_progress()
                if time.monotonic() - last_progress >= self.progress_s:
                    last_progress = time.monotonic()
                    await self._event(
                        job,
                        "progress",
                        f"{fraction:.0%} on {self.unit}",
                        attempt,
                        progress=round(fraction, 3),
                    )
        finally:
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

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
        """Write the outcome once (first writer wins), announce it, then ack."""
        record = JobRecord(job=job.id, state=state, reason=reason, unit=self.unit, ts=time.time())
        kv = self._kv
        assert kv is not None
        try:
            await kv.create(job.id, _ENC.encode(record))
        except KeyWrongLastSequenceError:
            existing = await self._record(job.id)
            record = existing or record  # settled by another unit: announce theirs
        if record.unit == self.unit and record.state == state:
            await self._event(
                job,
                state,
                reason,
                attempt,
                exit_code=outcome.exit_code if outcome else None,
                output=outcome.output if outcome else "",
                reasons=reasons or [],
            )
            self._count(state)
        else:
            await self._settled_event(job, record, attempt)
        if state == "dead":
            await msg.term()
        else:
            await msg.ack()

    async def _settled_event(self, job: Job, record: JobRecord, attempt: int) -> None:
        # The same de-duplication id as the first announcement: it lands once.
        await self._event(job, record.state, record.reason, attempt, unit=record.unit, dedup=True)

    # -- records -----------------------------------------------------------------------
    async def _record(self, job_id: str) -> JobRecord | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(job_id)
        except KeyNotFoundError:
            return None
        return _RECORD.decode(entry.value or b"{}") if entry.value else None

    async def _attempts(self, job_id: str) -> JobAttempts:
        assert self._kv is not None
        try:
            entry = await self._kv.get(f"{job_id}.attempts")
        except KeyNotFoundError:
            return JobAttempts()
        return _ATTEMPTS.decode(entry.value) if entry.value else JobAttempts()

    async def _mark_running(self, job_id: str, reasons: tuple[str, ...]) -> None:
        """Say who runs this delivery, so if it is lost the next unit can name it."""
        assert self._kv is not None
        body = JobAttempts(reasons=list(reasons), running_on=self.unit)
        await self._kv.put(f"{job_id}.attempts", _ENC.encode(body))

    async def _note_attempt(self, job_id: str, reason: str) -> None:
        assert self._kv is not None
        seen = await self._attempts(job_id)
        body = JobAttempts(reasons=[*seen.reasons, reason], running_on=self.unit)
        await self._kv.put(f"{job_id}.attempts", _ENC.encode(body))

    # -- events ----------------------------------------------------------------------
    async def _event(
        self,
        job: Job,
        state: str,
        reason: str,
        attempt: int,
        *,
        unit: str | None = None,
        dedup: bool = False,
        **fields: object,
    ) -> None:
        event = JobEvent(
            job=job.id,
            state=state,  # type: ignore[arg-type]
            reason=reason[:4000],
            pool=self.pool,
            unit=unit or self.unit,
            priority=job.priority,
            attempt=attempt,
            **fields,  # type: ignore[arg-type]
        )
        terminal = state in ("succeeded", "dead")
        msg_id = f"{job.id}:{state}" if terminal or dedup else f"{job.id}:{state}:{attempt}"
        if state == "progress":
            msg_id = f"{msg_id}:{time.monotonic():.1f}"
        await self.js.publish(
            subjects.job(job.id), _ENC.encode(event), headers={"Nats-Msg-Id": msg_id}
        )

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            cancel = _CANCEL.decode(msg.data)
        except msgspec.DecodeError:
            return
        self._cancelled[cancel.job] = cancel.reason
        while len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)
        run = self.running.get(cancel.job)
        if run is not None:
            run.cancelled = cancel.reason or "cancelled"
            run.task.cancel()

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


__all__ = ["DeliveryPlan", "JobWorker", "plan_delivery"]
