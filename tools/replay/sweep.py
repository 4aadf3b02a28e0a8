"""Running many (policy, setting) replays of one workload in worker processes.

Each worker receives the workload once, at its start, and then only small
jobs: a policy name and its settings. Results come back as they finish, so the
caller can show progress.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from services.scaler.policy import Policy
from tools.replay.frontier import Point
from tools.replay.policies import KNOBS, at_knob, default_for
from tools.replay.sim import Series, Totals
from tools.replay.workload import Workload, run_policy


@dataclass(frozen=True)
class Job:
    """One replay: a policy at one knob setting (None: not a sweep point)."""

    name: str
    knob: float | None
    policy: Policy
    record: bool = False
    default: bool = False
    """This run is the policy's default setting (also when it is a sweep point)."""
    label: str = ""
    """What results are filed under, when not `name` (a variant of a policy)."""

    @property
    def key(self) -> str:
        """The name results are gathered under."""
        return self.label or self.name


@dataclass
class Result:
    """What one job gave."""

    job: Job
    totals: Totals
    series: Series | None


@dataclass
class Outcome:
    """Every policy's default run and (if swept) its frontier points."""

    defaults: dict[str, Result]
    points: dict[str, list[Point]]


_WORK: Workload | None = None


def _init(work: Workload) -> None:
    global _WORK
    _WORK = work


def _run(job: Job, price: float) -> Result:
    assert _WORK is not None, "worker started without a workload"
    tot, ser = run_policy(_WORK, job.name, job.policy, price=price, record=job.record)
    return Result(job=job, totals=tot, series=ser)


def plan(
    names: list[str],
    policy: Policy,
    *,
    sweep: bool,
    record: bool,
    knobs: tuple[float, ...] = KNOBS,
) -> list[Job]:
    """Each policy's default run, plus one run per knob setting if sweeping; a
    sweep point whose settings equal the default's serves as the default."""
    jobs: list[Job] = []
    for n in names:
        base = default_for(n, policy)
        points = [(k, at_knob(n, policy, k)) for k in knobs] if sweep else []
        if not any(p == base for _, p in points):
            jobs.append(Job(n, None, base, record, default=True))
        jobs += [Job(n, k, p, record and p == base, default=p == base) for k, p in points]
    return jobs


def jobs_default() -> int:
    """Worker processes: the machine's cores, at most 2 (replays are CPU-bound)."""
    return max(1, min(2, os.cpu_count() or 1))


def run_jobs(
    work: Workload,
    jobs: list[Job],
    *,
    price: float,
    workers: int = 1,
    on_done: Callable[[Result], None] | None = None,
) -> Outcome:
    """Run the jobs (in `workers` processes when more than one) and gather them."""
    results: list[Result | None] = [None] * len(jobs)
    if workers <= 1:
        _init(work)
        for i, job in enumerate(jobs):
            results[i] = r = _run(job, price)
            if on_done is not None:
                on_done(r)
    else:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(work,)) as pool:
            futures: dict[Future[Result], int] = {
                pool.submit(_run, j, price): i for i, j in enumerate(jobs)
            }
            for fut in as_completed(futures):
                results[futures[fut]] = r = fut.result()
                if on_done is not None:
                    on_done(r)
    return gather([r for r in results if r is not None])


def gather(results: list[Result]) -> Outcome:
    """Sort results into defaults and frontier points, policies in job order."""
    out = Outcome(defaults={}, points={})
    for r in results:
        if r.job.default:
            out.defaults[r.job.key] = r
        if r.job.knob is not None:
            t = r.totals
            out.points.setdefault(r.job.key, []).append(
                Point(
                    knob=r.job.knob,
                    unit_hours=t.unit_hours,
                    under_unit_s=t.under_unit_s,
                    actions=t.actions,
                )
            )
    for pts in out.points.values():
        pts.sort(key=lambda p: p.knob)
    return out
