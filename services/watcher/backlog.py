"""Queued jobs folded into a pool's metrics, so the scaler sizes the pool for them.

The scaler's demand is `inflight + queue_depth` against `unit_capacity` per
unit. Units already report the jobs they run as in flight; the jobs still
waiting in the pool's work queues are added to `queue_depth` here, and also
reported on their own (`jobs_queued`, `jobs_running`, `oldest_job_age_s`), as
KEDA's NATS JetStream scaler reads a stream's backlog. The scaler's policy is
unchanged: a burst of jobs is a burst of demand, an empty queue is none.
"""

from __future__ import annotations

import msgspec

from contracts.telemetry import PoolMetrics
from services.kit.jobqueue import PoolDepth


def with_jobs(metrics: PoolMetrics, depth: PoolDepth | None) -> PoolMetrics:
    """`metrics` with the pool's job backlog; unchanged when it has no jobs."""
    if depth is None:
        return metrics
    return msgspec.structs.replace(
        metrics,
        queue_depth=metrics.queue_depth + depth.total_queued,
        jobs_queued=depth.total_queued,
        jobs_running=depth.running,
        oldest_job_age_s=round(depth.oldest_job_age_s, 3),
    )


__all__ = ["with_jobs"]
