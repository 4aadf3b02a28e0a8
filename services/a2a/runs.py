"""Tasks executing in this process: run the executor, apply and store its events,
send them to the task's listeners and subject, and cancel on request.

Each event is applied to the task, stored, published to `a2a.<agent>.tasks.<id>`
(stream A2A_TASKS) and sent in order to every streaming caller. Interrupted and
final states are stored before anyone hears of them; progress is stored in the
background (services.a2a.progress).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts import subjects
from contracts.a2a import (
    TERMINAL_STATES,
    Message,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    iso_now,
)
from services.a2a.context import A2AEvent, Executor, TaskContext, ends_stream
from services.a2a.errors import RpcFailure
from services.a2a.progress import ProgressWrites
from services.a2a.tasks import TaskStore, apply_event
from services.a2a.tenants import TenantLimits
from services.kit import Service

log = logging.getLogger("fleet.a2a")
_ENC = msgspec.json.Encoder()


@dataclass
class Run:
    """A task being executed in this process."""

    task: Task
    tenant: str
    listeners: list[asyncio.Queue[StreamResponse | None]] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    seq: int = 0
    headers: dict[str, str] | None = None
    """Trace context of the request, carried by the task's events."""


class TaskRunner:
    """The runs of one agent in this process, by task id."""

    def __init__(
        self,
        service: Service[Any],
        agent: str,
        executor: Executor,
        store: TaskStore,
        progress: ProgressWrites,
        limits: TenantLimits,
    ) -> None:
        self.service = service
        self.agent = agent
        self.executor = executor
        self.store = store
        self.progress = progress
        self.limits = limits
        self.runs: dict[str, Run] = {}

    def begin(self, task: Task, message: Message, tenant: str, headers: dict[str, str]) -> Run:
        """Start executing `task` for `message`; the caller has taken the tenant's slot."""
        trace = headers.get("traceparent")
        run = Run(task=task, tenant=tenant, headers={"traceparent": trace} if trace else None)
        self.runs[task.id] = run
        ctx = TaskContext(task=task, message=message, tenant=tenant, headers=headers)
        run.runner = self.service.spawn(self._execute(run, ctx), f"a2a-task:{task.id}")
        return run

    async def _execute(self, run: Run, ctx: TaskContext) -> None:
        events = self.executor.execute(ctx)
        try:
            await self._emit(run, ctx, ctx.status(TaskState.WORKING))
            async for event in events:
                if event.task_id != run.task.id:
                    raise ValueError(f"executor yielded an event of task {event.task_id}")
                await self._emit(run, ctx, event)
                if isinstance(event, TaskStatusUpdateEvent) and ends_stream(event.status.state):
                    return
            await self._emit(run, ctx, ctx.status(TaskState.COMPLETED))
        except asyncio.CancelledError:
            if run.cancel_requested:
                await self._emit(run, ctx, ctx.status(TaskState.CANCELED, "canceled by the client"))
                return
            text = "the agent stopped before the task finished; send the message again"
            await self._emit(run, ctx, ctx.status(TaskState.FAILED, text))
            raise
        except Exception as exc:
            log.exception("a2a executor failed", extra={"agent": self.agent, "task": run.task.id})
            self.service.metrics.count("a2a.tasks_failed")
            await self._emit(run, ctx, ctx.status(TaskState.FAILED, f"the agent failed: {exc}"))
        finally:
            await _close(events)
            for write in ctx.with_result:
                write.close()  # registered, but the run ended before a final state
            self.runs.pop(run.task.id, None)
            self.limits.finish(run.tenant)
            for q in run.listeners:
                q.put_nowait(None)
            run.done.set()

    async def _emit(self, run: Run, ctx: TaskContext, event: A2AEvent) -> None:
        run.task = apply_event(run.task, event)
        run.seq += 1
        if isinstance(event, TaskStatusUpdateEvent):
            item = StreamResponse(status_update=event)
            state = event.status.state
            if state in TERMINAL_STATES:
                self.service.metrics.count(f"a2a.tasks_{state.name.lower()}")
        else:
            item = StreamResponse(artifact_update=event)
            state = None
        if state is not None and ends_stream(state):
            # Stored before any caller or subscriber hears of it.
            await self.progress.settle(run.task.id)
            writes, ctx.with_result[:] = list(ctx.with_result), []
            if writes:
                await asyncio.gather(self.store.put(run.task, run.tenant), *writes)
            else:
                await self.store.put(run.task, run.tenant)
        else:
            self.progress.mark(run.task, run.tenant)
        for q in run.listeners:
            q.put_nowait(item)
        try:
            # The stream's copy is for late subscribers (the store holds the task); core
            # NATS keeps the order of this connection's publishes, with no ack to wait for.
            await self.service.nc.publish(
                subjects.a2a_task(self.agent, run.task.id), _ENC.encode(item), headers=run.headers
            )
        except Exception:
            log.warning("could not publish task event", exc_info=True)

    async def cancel_local(self, run: Run) -> None:
        """Cancel a run of this process and wait until it has ended (CANCELED)."""
        run.cancel_requested = True
        if run.runner is not None:
            run.runner.cancel()
        await run.done.wait()

    async def cancel(self, task: Task, tenant: str) -> Task:
        """Cancel a non-terminal task wherever it runs; an orphan is marked CANCELED."""
        run = self.runs.get(task.id)
        if run is not None:
            await self.cancel_local(run)
        else:
            try:
                await self.service.nc.request(
                    subjects.a2a_cancel(self.agent, task.id), b"", timeout=2.0
                )
            except Exception:
                # Nobody runs it (the process that did is gone): close it here.
                status = TaskStatus(state=TaskState.CANCELED, timestamp=iso_now())
                await self.store.put(msgspec.structs.replace(task, status=status), tenant)
        latest = await self.store.get(task.id, tenant)
        if latest is None:
            raise RpcFailure.not_found(task.id)
        return latest

    async def stop(self) -> None:
        """Stop executing: running tasks fail with a message saying to send them again."""
        for run in list(self.runs.values()):
            if run.runner is not None:
                run.runner.cancel()
        await asyncio.gather(
            *(r.runner for r in list(self.runs.values()) if r.runner), return_exceptions=True
        )


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("executor did not close cleanly", exc_info=True)
