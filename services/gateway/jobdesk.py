"""The gateway's job desk: `fleet.api.jobs.*`, and the jobs that wait for budget.

Routing happens here rather than in a service of its own: a submitted job is
routed by `routing.route()` and published on its pool's work queue
(`fleet.jobs.<priority>.<pool>`), where that pool's units pull it. A job the
budget holds back goes to `fleet.jobheld.<priority>` and is routed again every
`held_recheck_s` until the budget allows it, its deadline passes, or it is
cancelled. See docs/adr/0011-jobs.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts import subjects
from contracts.api.replies import (
    CancelReply,
    JobsReply,
    JobView,
    PoolQueue,
    QueueReply,
    SubmitReply,
)
from contracts.api.requests import CancelJobCall, JobQuery, JobsQuery, PoolQuery, SubmitJobCall
from contracts.base import Fraction, NonNegative, Positive, Tries
from contracts.jobs import MAX_JOB_BYTES, Job, JobCancel, JobEvent, JobRequirements, Priority
from contracts.streams import JOBS_HELD, JOBS_STREAMS
from services.gateway.routing import BudgetView, PoolGpu, Route, RoutePolicy, pool_gpus, route
from services.kit.errors import Retryable
from services.kit.jobplan import history
from services.kit.jobqueue import emit, held_counts, queue_depths, read_events
from services.kit.metrics import ServiceMetrics
from services.kit.puback import PubAcks
from services.kit.service import Delivery, RequestError, Responder


class Host(Protocol):
    """What the desk uses of the gateway service (a protocol, so the two modules do not
    import each other)."""

    metrics: ServiceMetrics

    @property
    def nc(self) -> Client: ...

    @property
    def js(self) -> JetStreamContext: ...

    @property
    def api_endpoint(self) -> Callable[[str, Any, Responder[Any]], Awaitable[None]]: ...

    @property
    def every(self) -> Callable[[float, Callable[[], Awaitable[None]], str], None]: ...

    @property
    def consume(self) -> Callable[..., Awaitable[None]]: ...

    async def ask(self, op: str, body: Any = None, *, required: bool = True) -> dict[str, Any]:
        """Another service's fleet.api answer."""
        ...


_ENC = msgspec.json.Encoder()
DEMO_PRIORITIES: tuple[Priority, ...] = ("high", "normal", "normal", "low")


class JobOptions(msgspec.Struct, kw_only=True):
    """`[jobs]`: routing and waiting."""

    low_yield_at: Fraction = 0.8
    """Fraction of the daily budget, projected, at which low-priority jobs wait; below 1
    so that low-priority work gives way before normal work has to."""
    held_recheck_s: Positive = 5.0
    """Seconds between re-routing a job that waits for budget."""
    budget_cache_s: NonNegative = 2.0
    """How long a read of the cost-guard's budget is reused, seconds; jobs arrive in
    bursts of thousands, the budget moves by the second."""
    offers_cache_s: NonNegative = 30.0
    """How long the provisioner's offers (GPU, VRAM, price per pool) are reused, seconds."""
    demo_every_s: NonNegative = 0.0
    """The demo: submit a batch of jobs every this many seconds (0: never)."""
    demo_batch: Tries = 12
    """Jobs per demo batch: a mix of priorities and run times, and now and then a job
    that always fails, so the demo shows routing, waiting, retries and a dead letter."""


class JobDesk:
    """The `fleet.api.jobs.*` operations of the gateway `svc`."""

    def __init__(self, svc: Host, pools: dict[str, dict[str, Any]], opts: JobOptions) -> None:
        self.svc = svc
        self.pools = pools
        self.opts = opts
        self.policy = RoutePolicy(low_yield_at=opts.low_yield_at)
        self._gpus: tuple[float, list[PoolGpu], float] = (-1e9, [], 0.0)
        self._budget: tuple[float, BudgetView | None] = (-1e9, None)
        self._demo_round = 0
        self.offers_known = False
        """Whether the last read of the provisioner's offers got any."""
        self.acks = PubAcks(svc.nc)
        """Acked publishes: jobs onto their queues, terminal events."""

    async def setup(self) -> None:
        """Register the operations and the consumer of jobs waiting for budget."""
        svc = self.svc
        await self.acks.start()
        await svc.api_endpoint("jobs.submit", SubmitJobCall, self.on_submit)
        await svc.api_endpoint("jobs.queue", PoolQuery, self.on_queue)
        await svc.api_endpoint("jobs.list", JobsQuery, self.on_list)
        await svc.api_endpoint("jobs.get", JobQuery, self.on_get)
        await svc.api_endpoint("jobs.cancel", CancelJobCall, self.on_cancel)
        if self.opts.demo_every_s > 0:
            svc.every(self.opts.demo_every_s, self.demo_batch, "jobs-demo")
        await svc.consume(
            "fleet.jobheld.*",
            Job,
            self.on_held,
            durable="gateway-held",
            max_deliver=1_000_000,
            ack_wait_s=30.0,
        )

    def add_pool(self, name: str, cfg: dict[str, Any]) -> None:
        """Route jobs that name pool `name` to it from now on: a batch's ad-hoc pool
        (jobs that name no pool never go to an ad-hoc pool, see `routing.route`)."""
        if name not in self.pools:
            self.pools[name] = cfg
            self._gpus = (-1e9, [], 0.0)

    # -- what the router sees ------------------------------------------------------------
    async def gpus(self) -> list[PoolGpu]:
        """The pools' GPUs, with the provisioner's offers at most `offers_cache_s` old
        (`budget_cache_s` when the provisioner did not answer: ask again soon)."""
        at, cached, ttl = self._gpus
        if time.monotonic() - at < ttl:
            return cached
        answer = await self.svc.ask("gpus.available", {}, required=False)
        offers = answer.get("offers", []) if "error" not in answer else []
        gpus = pool_gpus(self.pools, offers)
        ttl = self.opts.offers_cache_s if offers else self.opts.budget_cache_s
        self._gpus = (time.monotonic(), gpus, ttl)
        self.offers_known = bool(offers)
        return gpus

    async def budget(self) -> BudgetView | None:
        """The cost-guard's budget, at most `budget_cache_s` old; None when it is silent."""
        at, cached = self._budget
        if time.monotonic() - at < self.opts.budget_cache_s:
            return cached
        answer = await self.svc.ask("budget", {}, required=False)
        view = None
        if "error" not in answer:
            view = BudgetView(
                daily_usd=float(answer.get("daily_usd", 0.0)),
                hard_cap_usd=float(answer.get("hard_cap_usd", 0.0)),
                spent_today_usd=float(answer.get("spent_today_usd", 0.0)),
                projected_today_usd=float(answer.get("projected_today_usd", 0.0)),
            )
        self._budget = (time.monotonic(), view)
        return view

    # -- submit ------------------------------------------------------------------------
    async def on_submit(self, call: SubmitJobCall, _d: Delivery) -> SubmitReply:
        """Route one job: publish it on its pool's queue, hold it for budget, or refuse it."""
        now = time.time()
        job = Job(
            id=call.id or f"job-{uuid.uuid4().hex[:16]}",
            requirements=call.requirements,
            pool=call.pool,
            priority=call.priority,
            deadline_ts=now + call.deadline_s if call.deadline_s else None,
            max_usd=call.max_usd,
            est_s=call.est_s,
            command=call.command,
            data=call.data,
            attempts=call.attempts,
            submitter=call.requester,
        )
        size = len(_ENC.encode(job))
        if size > MAX_JOB_BYTES:
            raise RequestError(
                f"job {job.id} is {size:,} bytes as JSON; the most is {MAX_JOB_BYTES:,}: "
                "put large inputs in object storage and pass a reference in data",
                413,
            )
        return await self.submit(job)

    async def submit(self, job: Job) -> SubmitReply:
        """Route `job` and act on the answer (also what `fleet bench jobs` measures)."""
        decision = route(job, await self.gpus(), await self.budget(), self.policy)
        await self._apply(job, decision, held=False)
        return SubmitReply(
            id=job.id,
            decision=decision.decision,
            reason=decision.reason,
            pool=decision.pool,
            est_usd=decision.est_usd,
        )

    async def _apply(self, job: Job, decision: Route, *, held: bool) -> None:
        if decision.decision == "routed" and decision.pool is not None:
            placed = msgspec.structs.replace(job, pool=decision.pool)
            subject = subjects.jobs(job.priority, decision.pool)
            await self._enqueue(placed, subject, job.id, "routed", decision)
        elif decision.decision == "queued" and not held:
            subject = subjects.job_held(job.priority)
            await self._enqueue(job, subject, f"held-{job.id}", "queued", decision)
        elif decision.decision == "refused":
            await self.event(job, "refused", decision.reason, pool=decision.pool, spec=job)
            self.svc.metrics.count("jobs.refused")

    async def _enqueue(
        self, job: Job, subject: str, msg_id: str, state: str, decision: Route
    ) -> None:
        """Publish `job` on a queue (acked), then its event with where it landed.

        The event is stamped before the job is published: a unit may pull the job and
        announce `started` before this event reaches the stream, and readers order a
        job's events by their `ts`."""
        stamp = time.time()
        ack = await self.acks.publish(subject, _ENC.encode(job), msg_id)
        if ack.duplicate:  # submitted twice with one id: queued (and announced) once
            return
        await self.event(
            job,
            state,
            decision.reason,
            pool=decision.pool,
            est_usd=decision.est_usd,
            spec=job,
            queue_seq=ack.seq,
            ts=stamp,
        )
        self.svc.metrics.count(f"jobs.{state}")

    async def on_held(self, job: Job, d: Delivery) -> None:
        """Route a job that waits for budget again; keep it waiting while the budget binds."""
        if history(await read_events(self.svc.js, subjects.job(job.id))).settled:
            return  # cancelled while it waited
        if job.deadline_ts is not None and time.time() > job.deadline_ts:
            decision = Route("refused", "its deadline passed while it waited for budget")
        else:
            decision = route(job, await self.gpus(), await self.budget(), self.policy)
        if decision.decision == "queued":
            raise Retryable(decision.reason, after_s=self.opts.held_recheck_s)
        await self._apply(job, decision, held=True)

    async def demo_batch(self) -> None:
        """One batch of demo jobs through the normal submit path; none until the
        provisioner has said what GPUs the pools have (right after `fleet up`)."""
        await self.gpus()
        if not self.offers_known:
            return
        self._demo_round += 1
        for i in range(self.opts.demo_batch):
            job = Job(
                id=f"demo-{uuid.uuid4().hex[:12]}",
                priority=DEMO_PRIORITIES[i % len(DEMO_PRIORITIES)],
                est_s=2.0 + (i * 7) % 9,
                requirements=JobRequirements(min_vram_gb=24),
                data={"fail": True, "error": "demo: CUDA out of memory"}
                if i == 0 and self._demo_round % 4 == 0
                else {},
                attempts=2,
                submitter="demo",
            )
            await self.submit(job)

    # -- queries -----------------------------------------------------------------------
    async def on_queue(self, q: PoolQuery, _d: Delivery) -> QueueReply:
        """`jobs.queue`: per pool, queued per priority, running, the oldest job's age."""
        depths = await queue_depths(self.svc.js)
        pools = {
            pool: PoolQueue(
                queued=dict(d.queued),
                running=d.running,
                oldest_job_age_s=round(d.oldest_job_age_s, 3),
            )
            for pool, d in sorted(depths.items())
            if q.pool is None or pool == q.pool
        }
        return QueueReply(pools=pools, held=await held_counts(self.svc.js))

    async def on_get(self, q: JobQuery, _d: Delivery) -> JobView:
        """`jobs.get`: the job and every event, oldest first."""
        events = await read_events(self.svc.js, subjects.job(q.id))
        if not events:
            raise RequestError(f"no job {q.id!r}; `fleet jobs list` shows the latest", 404)
        events.sort(key=lambda e: e.ts)  # units and the gateway publish independently
        job = next((e.spec for e in reversed(events) if e.spec is not None), None)
        last = events[-1]
        return JobView(id=q.id, state=last.state, pool=last.pool, job=job, events=events)

    async def on_list(self, q: JobsQuery, _d: Delivery) -> JobsReply:
        """`jobs.list`: each job's latest event, newest first."""
        events = await read_events(self.svc.js, subjects.JOB_EVENTS_ALL, last_per_subject=True)
        rows = [
            e
            for e in events
            if (q.pool is None or e.pool == q.pool) and (q.state is None or e.state == q.state)
        ]
        rows.sort(key=lambda e: e.ts, reverse=True)
        return JobsReply(jobs=[_slim(e) for e in rows[: q.limit]], count=len(rows))

    # -- cancel ------------------------------------------------------------------------
    async def on_cancel(self, call: CancelJobCall, _d: Delivery) -> CancelReply:
        """Record the cancel (unless the job already ended), take the job off its queue,
        and tell the unit running it to stop."""
        events = await read_events(self.svc.js, subjects.job(call.id))
        if not events:
            raise RequestError(f"no job {call.id!r}", 404)
        reason = call.reason or f"cancelled by {call.requester}"
        settled = history(events).settled
        if settled is not None:
            return CancelReply(
                id=call.id, cancelled=False, reason=f"the job already {settled.state}"
            )
        job = next((e.spec for e in events if e.spec is not None), None)
        if job is not None:  # the outcome first: a unit that takes the job now skips it
            await self.event(job, "cancelled", reason, pool=events[-1].pool)
        for e in events:
            if e.queue_seq is None or e.state not in ("routed", "queued"):
                continue
            stream = JOBS_STREAMS[e.priority].name if e.state == "routed" else JOBS_HELD.name
            try:
                await self.svc.js.delete_msg(stream, e.queue_seq)
            except Exception:  # already taken by a unit (or acked): the broadcast stops it
                pass
        await self.svc.nc.publish(
            subjects.JOB_CANCEL, _ENC.encode(JobCancel(job=call.id, reason=reason))
        )
        return CancelReply(id=call.id, cancelled=True, reason=reason)

    # -- records and events ------------------------------------------------------------
    async def event(self, job: Job, state: str, reason: str, **fields: Any) -> None:
        """Publish a JobEvent; terminal ones once per job (the units use the same ids)
        and acked, the others without waiting (see `emit`)."""
        event = JobEvent(job=job.id, state=state, reason=reason, priority=job.priority, **fields)  # type: ignore[arg-type]
        data = _ENC.encode(event)
        if state in ("refused", "cancelled"):
            await self.acks.publish(subjects.job(job.id), data, f"{job.id}:{state}")
        else:
            await emit(self.svc.nc, subjects.job(job.id), data)


def _slim(e: JobEvent) -> JobEvent:
    """A list row without the job body and output, which `jobs get` shows."""
    return msgspec.structs.replace(e, spec=None, output="")


__all__ = ["JobDesk", "JobOptions"]
