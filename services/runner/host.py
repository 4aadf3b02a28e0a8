"""One hosted agent on one runner: the A2A server it composes, with slots, a queue and
session admission (the decisions are services.runner.admission's).

- at most `max_sessions` tasks execute at once; further requests wait here
  (the queue depth in telemetry), and once `max_sessions + max_queue` are taken
  the runner leaves the rpc queue group so NATS sends new requests to other
  runners; it rejoins when it has room again;
- before a task is created its session is opened: a tenant over its live
  session quota gets QUOTA_EXCEEDED, a JSON-RPC error, and no task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from contracts import subjects
from contracts.a2a import AgentCard, Message, StreamResponse, TaskState
from services.a2a import A2AServer, A2ASettings, Refused
from services.a2a.runs import Run
from services.a2a.tasks import new_id
from services.kit import Service
from services.runner.admission import (
    Capacity,
    Load,
    QuotaFull,
    admitted,
    arrived,
    gave_up,
    membership,
    refusal,
    released,
)
from services.runner.executor import AgentExecutor
from services.runner.ratelimit import ClusterRate
from services.runner.taskstore import LeasedTaskStore
from services.runner.telemetry import RunnerMetrics

log = logging.getLogger("fleet.runner")


class HostedAgent:
    """A2A agent `agents.<name>` served by this runner (see the module docstring); it is
    the server's Admission."""

    def __init__(
        self,
        service: Service[Any],
        name: str,
        executor: AgentExecutor,
        card: AgentCard,
        store: LeasedTaskStore,
        settings: A2ASettings,
        *,
        capacity: Capacity,
        metrics: RunnerMetrics,
        rate: ClusterRate | None = None,
    ) -> None:
        self.service = service
        self.rate = rate
        """The tenant rate limit across runners; None leaves only the per-process one."""
        self.name = name
        self.agent = subjects.hosted_agent(name)
        self.executor = executor
        self.store = store
        self.capacity = capacity
        self.rmetrics = metrics
        self.load = Load()
        self.draining = False
        self._slots = asyncio.Semaphore(capacity.max_sessions)
        self.server = A2AServer(
            service,
            self.agent,
            executor,
            card,
            store,
            settings,
            queue_group=f"runner-{name}",
            admission=self,
        )
        metrics.capacity.labels(name).set(capacity.max_sessions)
        # Read when scraped, so the request path does no metrics work for them.
        metrics.sessions.labels(name).set_function(lambda: self.load.inflight)
        metrics.queued.labels(name).set_function(lambda: self.load.waiting)
        self._latency = {
            state: metrics.latency.labels(name, state.name.lower()) for state in TaskState
        }

    @property
    def inflight(self) -> int:
        return self.load.inflight

    @property
    def waiting(self) -> int:
        return self.load.waiting

    @property
    def joined(self) -> bool:
        return self.server.joined

    async def start(self) -> None:
        """Serve the card and forwarded cancels; join the rpc queue group."""
        await self.server.start()
        log.info("joined", extra={"agent": self.agent, "inflight": self.inflight})

    async def leave(self, *, for_good: bool = False) -> None:
        """Stop taking requests (for good when the unit drains)."""
        if for_good:
            self.draining = True
        was_joined = self.server.joined
        await self.server.leave(for_good=for_good)
        if was_joined:
            log.info("left the queue group", extra={"agent": self.agent, "inflight": self.inflight})

    def _regulate(self) -> None:
        decision = membership(
            self.load, self.capacity, joined=self.server.joined, draining=self.draining
        )
        if decision == "leave":
            self.service.spawn(self.leave(), "leave")
        elif decision == "join":
            self.service.spawn(self._join(), "join")

    async def _join(self) -> None:
        await self.server.join()
        if self.server.joined:
            log.info("joined", extra={"agent": self.agent, "inflight": self.inflight})

    # -- the server's Admission --------------------------------------------------------------
    async def admit(self, message: Message, tenant: str) -> Message:
        """Open the message's session (QUOTA_EXCEEDED past the tenant's quota), then wait
        for a slot."""
        if self.rate is not None:
            try:
                await self.rate.take(tenant, time.time())
            except Refused:
                self.rmetrics.errors.labels(self.name, "rate_limited").inc()
                raise
        if not message.context_id:
            message = msgspec.structs.replace(message, context_id=new_id())
        assert message.context_id is not None
        try:
            session = await self.executor.sessions.open_session(tenant, message.context_id)
        except QuotaFull as exc:
            self.rmetrics.errors.labels(self.name, "quota_exceeded").inc()
            raise refusal(exc) from None
        self.load = arrived(self.load)
        self._regulate()
        try:
            await self._slots.acquire()
        except BaseException:
            self.load = gave_up(self.load)
            raise
        self.load = admitted(self.load)
        self.executor.opened[message.message_id] = session
        return message

    def started(self, run: Run) -> None:
        # The task store claims the task before it first stores it (taskstore), so no
        # stored task that is still running is without an owner.
        began = time.perf_counter()
        assert run.runner is not None
        run.runner.add_done_callback(lambda _t: self._finished(run, began))

    def abandoned(self, message: Message) -> None:
        self.executor.opened.pop(message.message_id, None)
        self._release()

    def _release(self) -> None:
        self.load = released(self.load)
        self._slots.release()
        self._regulate()

    def _finished(self, run: Run, began: float) -> None:
        self._release()
        self.store.release(run.task.id)
        self.executor.opened.pop(run.task.history[0].message_id if run.task.history else "", None)
        state = run.task.status.state
        self._latency[state].observe(time.perf_counter() - began)
        if state.name != "COMPLETED":
            self.rmetrics.errors.labels(self.name, f"task_{state.name.lower()}").inc()
        self.executor.tally.completed += 1

    # -- stopping ----------------------------------------------------------------------------
    async def publish_event(self, task_id: str, item: StreamResponse) -> None:
        """Send a task event to `a2a.<agent>.tasks.<id>` (what reaped tasks announce)."""
        await self.service.publish(
            subjects.a2a_task(self.agent, task_id), item, msg_id=f"{task_id}-reaped"
        )

    async def drain(self, deadline_s: float) -> None:
        """Leave the group for good and let running tasks finish for up to `deadline_s`."""
        await self.leave(for_good=True)
        runs = [r.done.wait() for r in list(self.server.runs.values())]
        if runs:
            try:
                await asyncio.wait_for(asyncio.gather(*runs), deadline_s)
            except TimeoutError:
                log.warning(
                    "tasks still running at the stop deadline; they fail with a retry hint",
                    extra={"agent": self.agent, "running": len(self.server.runs)},
                )

    async def stop(self) -> None:
        """Stop executing: running tasks fail with a message saying to send them again."""
        await self.server.stop()
