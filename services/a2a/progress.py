"""Intermediate states of running tasks, stored in the background (see ProgressWrites)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from contracts.a2a import Task
from services.a2a.tasks import TaskStore

log = logging.getLogger("fleet.a2a")


class ProgressWrites:
    """Intermediate states of running tasks, stored in the background.

    A task's latest state is written `delay_s` after it first changed since its
    last write, so a task that ends sooner costs no write for its progress;
    `settle()` (before a synchronous write of the same task) drops what is
    pending and waits for a write in flight, so a late progress write can never
    overwrite a final state.
    """

    def __init__(
        self,
        store: TaskStore,
        delay_s: float,
        spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
    ) -> None:
        self.store = store
        self.delay_s = delay_s
        self._spawn = spawn
        self._dirty: dict[str, tuple[Task, str, float]] = {}
        self._writing: dict[str, asyncio.Future[None]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def mark(self, task: Task, tenant: str) -> None:
        """Remember `task` as changed; it is written within `delay_s`."""
        prev = self._dirty.get(task.id)
        self._dirty[task.id] = (task, tenant, prev[2] if prev else time.monotonic())
        if self._flusher is None or self._flusher.done():
            self._flusher = self._spawn(self._flush(), "a2a-progress")

    async def settle(self, task_id: str) -> None:
        """Forget the pending write of `task_id` and wait for one in flight."""
        self._dirty.pop(task_id, None)
        writing = self._writing.get(task_id)
        if writing is not None:
            await asyncio.wait([writing])

    async def write_now(self, task: Task, tenant: str) -> None:
        """Store `task` now, in order with its other progress writes; raises if it fails."""
        await self.settle(task.id)
        await self._start_write(task, tenant, quiet=False)

    def _start_write(self, task: Task, tenant: str, *, quiet: bool) -> asyncio.Task[None]:
        """Write in the background; settle() waits for it until it is done."""
        write = self._spawn(self._write(task, tenant, quiet=quiet), "a2a-progress-write")
        self._writing[task.id] = write
        write.add_done_callback(functools.partial(self._written, task.id))
        return write

    async def _flush(self) -> None:
        while self._dirty:
            task_id, (task, tenant, since) = next(iter(self._dirty.items()))
            wait = since + self.delay_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            del self._dirty[task_id]
            self._start_write(task, tenant, quiet=True)

    def _written(self, task_id: str, done: asyncio.Future[None]) -> None:
        if self._writing.get(task_id) is done:
            del self._writing[task_id]

    async def _write(self, task: Task, tenant: str, *, quiet: bool = True) -> None:
        try:
            await self.store.put(task, tenant)
        except Exception:
            if not quiet:
                raise
            log.warning("could not store the progress of a task", exc_info=True)
