"""Simulated units doing GPU work: one JobWorker per ready sim unit, in this process.

Every tick the ready sim units are compared with the workers: a new ready
unit starts pulling its pool's jobs (as many at once as the pool's
`unit_capacity`), running each for its estimated seconds divided by its GPU's
speed (contracts/gpuspeed.py, which the batch planner uses too); a unit that
starts draining hands its jobs back; a unit that is gone stops. The world's
telemetry counts each unit's running jobs as in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nats.aio.client import Client

from contracts.gpuspeed import SPEED, speed_of
from services.kit.jobexec import simulated
from services.kit.jobworker import JobWorker

log = logging.getLogger("fleet.sim.jobs")


class SimJobs:
    """The job workers of the sim units; see the module docstring."""

    def __init__(
        self,
        nc: Client,
        units: Callable[[], Iterable[Any]],
        capacities: Mapping[str, float],
        *,
        default_capacity: float = 4.0,
        tick_s: float = 0.5,
        ack_wait_s: float = 30.0,
    ) -> None:
        self.nc = nc
        self.units = units
        """The ready sim units now (objects with pool, unit, gpu_model, draining)."""
        self.capacities = dict(capacities)
        self.default_capacity = default_capacity
        self.tick_s = tick_s
        self.ack_wait_s = ack_wait_s
        self.workers: dict[str, JobWorker] = {}
        self._draining: set[str] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def busy(self, unit: str) -> int:
        """Jobs unit `unit` is running."""
        worker = self.workers.get(unit)
        return worker.busy if worker is not None else 0

    def start(self) -> None:
        """Start following the units."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-jobs")

    async def stop(self) -> None:
        """Hand every running job back and stop the workers."""
        if self._task is not None:
            # Let a sync in progress finish (a worker it is starting must be in
            # `workers` to be stopped below), then stop following.
            self._stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)
        self.workers.clear()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sync()
            except Exception:
                log.warning("sim job workers could not follow the units", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.tick_s)

    async def sync(self) -> None:
        """Start workers for new ready units, drain draining ones, stop the gone."""
        seen: set[str] = set()
        for u in list(self.units()):
            seen.add(u.unit)
            worker = self.workers.get(u.unit)
            if u.draining:
                if worker is not None and u.unit not in self._draining:
                    self._draining.add(u.unit)
                    await worker.drain("is draining for scale-down")
                continue
            if worker is None:
                cap = self.capacities.get(u.pool, self.default_capacity)
                worker = JobWorker(
                    self.nc,
                    u.pool,
                    u.unit,
                    simulated(speed_of(u.gpu_model)),
                    slots=max(int(cap), 1),
                    ack_wait_s=self.ack_wait_s,
                )
                self.workers[u.unit] = worker  # before start: stop() must see it
                await worker.start()
        for unit in [u for u in self.workers if u not in seen]:
            worker = self.workers.pop(unit)
            self._draining.discard(unit)
            with contextlib.suppress(Exception):
                await worker.stop()


__all__ = ["SPEED", "SimJobs", "speed_of"]
