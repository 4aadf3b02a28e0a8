"""The job queues as JetStream keeps them: names, publishing, event reads, queue depths.

Shared by whoever submits jobs (the gateway), whoever runs them (units, through
`services.kit.jobworker`) and whoever sizes pools for them (the watcher). Queue
depth is read from the streams' own state, like KEDA's NATS JetStream scaler:
a work-queue stream's per-subject count is every job of the pool not yet
acked, and the pool consumer's `num_ack_pending` is the part being run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.durables import units_durable
from contracts.jobs import PRIORITIES, Job, JobEvent
from contracts.streams import FLEET_JOBEVENTS, JOBS_HELD, JOBS_STREAMS

log = logging.getLogger("fleet.jobs")
_JOB = msgspec.json.Decoder(Job)
_EVENT = msgspec.json.Decoder(JobEvent)
MAX_READ = 50_000
"""Most job events one read returns: a bound on what a query may cost."""


def consumer_name(pool: str) -> str:
    """The durable pull consumer a pool's units share on each priority stream."""
    return units_durable(pool)


async def emit(nc: Client, subject: str, data: bytes) -> None:
    """Publish a job's step (routed, started, progress, retried, failed) to its stream
    without asking for an ack: the stream stores it all the same, and it goes out
    before anything later on this connection (the outcome, the ack). Each step is
    published once, so it needs no de-duplication id either. Outcomes are acked
    (`services.kit.puback`). Skipping the ack round trip and the header halves what a job
    costs the unit and the gateway (see docs/adr/0011-jobs.md)."""
    await nc.publish(subject, data)


@dataclass(slots=True)
class PoolDepth:
    """One pool's jobs: waiting per priority, being run, and the oldest one's age."""

    queued: dict[str, int] = field(default_factory=dict)
    running: int = 0
    oldest_job_age_s: float = 0.0

    @property
    def total_queued(self) -> int:
        return sum(self.queued.values())


async def queue_depths(js: JetStreamContext, now: float | None = None) -> dict[str, PoolDepth]:
    """Every pool with jobs in its queues: queued per priority, running, oldest age."""
    now = time.time() if now is None else now
    out: dict[str, PoolDepth] = {}
    for prio in PRIORITIES:
        spec = JOBS_STREAMS[prio]
        try:
            info = await js.stream_info(spec.name, subjects_filter=f"fleet.jobs.{prio}.*")
        except NotFoundError:
            continue
        for subject, count in (info.state.subjects or {}).items():
            pool = subject.rsplit(".", 1)[-1]
            depth = out.setdefault(pool, PoolDepth())
            running = 0
            with contextlib.suppress(Exception):
                cinfo = await js.consumer_info(spec.name, consumer_name(pool))
                running = int(cinfo.num_ack_pending or 0)
            depth.running += running
            depth.queued[prio] = max(int(count) - running, 0)
            age = await _oldest_age(js, spec.name, subject, now)
            depth.oldest_job_age_s = max(depth.oldest_job_age_s, age)
    return out


async def held_counts(js: JetStreamContext) -> dict[str, int]:
    """Jobs waiting for budget, per priority."""
    try:
        info = await js.stream_info(JOBS_HELD.name, subjects_filter="fleet.jobheld.*")
    except NotFoundError:
        return {}
    return {s.rsplit(".", 1)[-1]: int(n) for s, n in (info.state.subjects or {}).items()}


async def _oldest_age(js: JetStreamContext, stream: str, subject: str, now: float) -> float:
    """Age of the first job left on `subject` (acked ones are gone from a work queue)."""
    try:
        raw = await js.get_msg(stream, seq=1, subject=subject, next=True)
        job = _JOB.decode(raw.data or b"")
    except Exception:
        return 0.0
    return max(now - job.ts, 0.0)


async def read_events(
    js: JetStreamContext, subject: str, *, last_per_subject: bool = False
) -> list[JobEvent]:
    """The job events stored on `subject` (a pattern), in stream order; with
    `last_per_subject`, only each job's latest. Undecodable ones are skipped. A job's
    steps come from several publishers: order them by `ts` to show them."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else DeliverPolicy.ALL,
        filter_subject=subject,
        inactive_threshold=10.0,
        mem_storage=True,
    )
    # Created unnamed, then bound: nats-py's pull_subscribe names the consumer it makes,
    # and a secured deployment grants only the unnamed form (tools/secure/grants.py).
    info = await js.add_consumer(FLEET_JOBEVENTS.name, config)
    psub = await js.pull_subscribe_bind(info.name, stream=FLEET_JOBEVENTS.name)
    out: list[JobEvent] = []
    try:
        while len(out) < MAX_READ:
            try:
                msgs = await psub.fetch(500, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                break
            for msg in msgs:
                with contextlib.suppress(msgspec.DecodeError):
                    out.append(_EVENT.decode(msg.data))
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()
    return out


__all__ = [
    "PoolDepth",
    "consumer_name",
    "emit",
    "held_counts",
    "queue_depths",
    "read_events",
]
