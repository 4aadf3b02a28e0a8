"""Background work of a service: tasks it spawns and periodic calls, stopped with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("fleet.service")


async def unless_stopped(aw: Awaitable[Any], stopping: asyncio.Event) -> bool:
    """Await `aw` unless `stopping` is set first, which cancels it; True when it
    finished (its exception, if any, is raised). A stop must not wait on work
    that the stop itself makes hang: a flush whose connection it closes never
    hears its PONG and waits out its whole timeout."""
    work = asyncio.ensure_future(aw)
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            work.result()
            return True
        return False
    finally:
        for task in (work, stopped):
            task.cancel()
        await asyncio.gather(work, stopped, return_exceptions=True)


class Background:
    """The service's own tasks: every one is cancelled and awaited when it stops, and a
    task that fails is logged rather than lost."""

    def __init__(self, owner: str, stopping: asyncio.Event) -> None:
        self.owner = owner
        self.stopping = stopping
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any], name: str = "") -> asyncio.Task[Any]:
        """Run `coro` in the background; cancelled when the service stops."""
        task = asyncio.ensure_future(coro)
        if name:
            task.set_name(f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task failed",
                exc_info=task.exception(),
                extra={"task": task.get_name()},
            )

    def every(self, interval_s: float, fn: Callable[[], Awaitable[None]], name: str = "") -> None:
        """Call `fn` every `interval_s` seconds until the service stops; errors are logged."""

        async def loop() -> None:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("periodic task failed", extra={"task": name})
                next_at += interval_s
                delay = next_at - time.monotonic()
                if delay < 0:
                    next_at, delay = time.monotonic(), 0.0
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                except TimeoutError:
                    pass

        self.spawn(loop(), name or "every")

    def halt(self) -> None:
        """Cancel every task now, except the caller's own, without waiting for them: each
        stops at its next await, before it takes another step (a singleton that lost its
        lease must not act again). `cancel_all` then waits for them to end."""
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until they have all ended."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
