"""One hosted agent on one runner: the A2A binding with slots, a queue and session admission.

`HostedAgent` is the binding's A2AServer (services.kit.a2a) with what a data
plane needs on top:
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
from nats.aio.msg import Msg

from contracts import subjects
from contracts.a2a import QUOTA_EXCEEDED, SendMessageRequest, StreamResponse, TaskState
from services.kit.a2a import A2AServer, Run
from services.kit.a2a_tasks import new_id
from services.kit.a2a_tenants import Refused
from services.runner.executor import AgentExecutor
from services.runner.sessions import QuotaFull
from services.runner.telemetry import RunnerMetrics

log = logging.getLogger("fleet.runner")


class HostedAgent(A2AServer):
    """A2A agent `agents.<name>` served by this runner (see the module docstring)."""

    executor: AgentExecutor

    def configure(
        self, *, max_sessions: int, max_queue: int, metrics: RunnerMetrics, name: str
    ) -> None:
        """Set the limits; call before start()."""
        self.name = name
        self.max_sessions = max_sessions
        self.max_queue = max_queue
        self.rmetrics = metrics
        self.inflight = 0
        self.waiting = 0
        self.joined = False
        self.draining = False
        self._slots = asyncio.Semaphore(max_sessions)
        self._rpc_sub: Any = None
        self._membership = asyncio.Lock()
        metrics.capacity.labels(name).set(max_sessions)
        # Read when scraped, so the request path does no metrics work for them.
        metrics.sessions.labels(name).set_function(lambda: self.inflight)
        metrics.queued.labels(name).set_function(lambda: self.waiting)
        self._latency = {
            state: metrics.latency.labels(name, state.name.lower()) for state in TaskState
        }

    # -- serving and the queue group ----------------------------------------------------
    async def start(self) -> None:
        """Serve the card and forwarded cancels; join the rpc queue group."""
        nc = self.service.nc
        self._subs = [
            await nc.subscribe(
                subjects.a2a_card(self.agent), queue=self.queue_group, cb=self._on_card
            ),
            await nc.subscribe(subjects.a2a_cancel_all(self.agent), cb=self._on_cancel_forward),
        ]
        for sub in self._subs:
            self.service.subscriptions.add(sub)
        await self.join()

    async def join(self) -> None:
        """Take requests from the queue group (no-op when already in it or draining)."""
        async with self._membership:
            if self.joined or self.draining:
                return
            self._rpc_sub = await self.service.nc.subscribe(
                subjects.a2a_rpc(self.agent), queue=self.queue_group, cb=self._on_rpc
            )
            self.joined = True
        log.info("joined", extra={"agent": self.agent, "inflight": self.inflight})

    async def leave(self) -> None:
        """Stop taking requests: NATS sends them to the other runners of the group."""
        async with self._membership:
            if not self.joined:
                return
            self.joined = False
            sub, self._rpc_sub = self._rpc_sub, None
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        log.info("left the queue group", extra={"agent": self.agent, "inflight": self.inflight})

    def _regulate(self) -> None:
        taken = self.inflight + self.waiting
        if self.joined and taken >= self.max_sessions + self.max_queue:
            self.service.spawn(self.leave(), "leave")
        elif not self.joined and not self.draining and taken < self.max_sessions:
            self.service.spawn(self.join(), "join")

    async def _acquire(self) -> None:
        self.waiting += 1
        self._regulate()
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.inflight += 1

    def _release(self) -> None:
        self.inflight -= 1
        self._slots.release()
        self._regulate()

    # -- admission ------------------------------------------------------------------------
    async def _start(
        self, params: SendMessageRequest, tenant: str, msg: Msg, *, store_now: bool = True
    ) -> Run:
        message = params.message
        if message.task_id:  # the binding refuses or continues
            return await super()._start(params, tenant, msg, store_now=store_now)
        if not message.context_id:
            message = msgspec.structs.replace(message, context_id=new_id())
            params.message = message
        assert message.context_id is not None
        try:
            session = await self.executor.sessions.open_session(tenant, message.context_id)
        except QuotaFull as exc:
            self.rmetrics.errors.labels(self.name, "quota_exceeded").inc()
            raise Refused(
                QUOTA_EXCEEDED,
                str(exc),
                {"tenant": tenant, "liveSessions": exc.live, "maxSessions": exc.quota},
            ) from None
        await self._acquire()
        self.executor.opened[message.message_id] = session
        try:
            # The task store claims the task before it first stores it (taskstore), so no
            # stored task that is still running is without an owner.
            run = await super()._start(params, tenant, msg, store_now=store_now)
        except BaseException:
            self.executor.opened.pop(message.message_id, None)
            self._release()
            raise
        started = time.perf_counter()
        assert run.runner is not None
        run.runner.add_done_callback(lambda _t: self._finished(run, started))
        return run

    def _finished(self, run: Run, started: float) -> None:
        self._release()
        self.store.release(run.task.id)  # type: ignore[attr-defined]
        self.executor.opened.pop(run.task.history[0].message_id if run.task.history else "", None)
        state = run.task.status.state
        self._latency[state].observe(time.perf_counter() - started)
        if state.name != "COMPLETED":
            self.rmetrics.errors.labels(self.name, f"task_{state.name.lower()}").inc()
        self.executor.tally.completed += 1

    async def publish_event(self, task_id: str, item: StreamResponse) -> None:
        """Send a task event to `a2a.<agent>.tasks.<id>` (what reaped tasks announce)."""
        await self.service.publish(
            subjects.a2a_task(self.agent, task_id), item, msg_id=f"{task_id}-reaped"
        )

    async def drain(self, deadline_s: float) -> None:
        """Leave the group for good and let running tasks finish for up to `deadline_s`."""
        self.draining = True
        await self.leave()
        runs = [r.done.wait() for r in list(self.runs.values())]
        if runs:
            try:
                await asyncio.wait_for(asyncio.gather(*runs), deadline_s)
            except TimeoutError:
                log.warning(
                    "tasks still running at the stop deadline; they fail with a retry hint",
                    extra={"agent": self.agent, "running": len(self.runs)},
                )
