"""A2A 1.0 over NATS: mount an agent on a service.

    class Echo:
        async def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]:
            yield ctx.status(TaskState.WORKING, "thinking")
            yield ctx.artifact(text=ctx.text.upper(), name="answer")
            yield ctx.status(TaskState.COMPLETED, "done")

    # in Service.setup():
    self.a2a = await A2AServer.mount(self, "fleet", Echo(), card, settings.a2a,
                                     queue_group="fleet-a2a")

`mount` serves `a2a.<agent>.rpc` (in a queue group when `queue_group` is set,
so several processes share the agent), `a2a.<agent>.card`, and
`a2a.<agent>.cancel.<task>` (a CancelTask that lands on another process of the
group is forwarded to the one running the task).

Methods: SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask,
SubscribeToTask, and the v0.3 names message/send, message/stream, tasks/get,
tasks/list, tasks/cancel, tasks/resubscribe. Errors are the spec's JSON-RPC
codes (contracts.a2a); tenants over their limits get RATE_LIMITED or
QUOTA_EXCEEDED with the limit in `error.data`.

The executor is any object with `execute(ctx) -> AsyncIterator[event]`, where
an event is a TaskStatusUpdateEvent or TaskArtifactUpdateEvent (build them
with `ctx.status(...)` / `ctx.artifact(...)`). Each event is applied to the
task, stored, published to `a2a.<agent>.tasks.<id>` (stream A2A_TASKS) and sent
in order to every streaming caller. A state in TERMINAL_STATES or
INTERRUPTED_STATES ends the run; an executor that returns without one
completes the task; one that raises fails it with the error's text. CancelTask
cancels the executor (it sees CancelledError) and the task becomes CANCELED.

A blocking SendMessage answers `{"task": ...}` once the task is terminal or
interrupted (or `blocking_timeout_s` passed). A stream answers
StreamResponse envelopes on the reply inbox: the task first, then each event,
then an empty message with header `A2A-Stream-End: true`. Sending a message
with `taskId` of an INPUT_REQUIRED task continues that task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec
from nats.aio.msg import Msg

from contracts import subjects
from contracts.a2a import (
    INTERRUPTED_STATES,
    NATS_BINDING,
    TERMINAL_STATES,
    AgentCard,
    AgentInterface,
    Artifact,
    Message,
    Part,
    Role,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    data_part,
    iso_now,
    message_text,
)
from services.kit.a2a_rpc import RpcDispatch, RpcFailure
from services.kit.a2a_tasks import (
    KvTaskStore,
    ProgressWrites,
    SqliteTaskStore,
    TaskStore,
    apply_event,
    new_id,
)
from services.kit.a2a_tenants import A2ASettings, TenantLimits

log = logging.getLogger("fleet.a2a")
_ENC = msgspec.json.Encoder()

A2AEvent = TaskStatusUpdateEvent | TaskArtifactUpdateEvent


@dataclass
class TaskContext:
    """What an executor gets: the task, the message that started this run, who sent it."""

    task: Task
    message: Message
    tenant: str
    headers: dict[str, str] = field(default_factory=dict)
    with_result: list[Coroutine[Any, Any, Any]] = field(default_factory=list)
    """Writes that must be durable before anyone hears how this run ended; see
    `store_with_result`."""

    def store_with_result(self, write: Coroutine[Any, Any, Any]) -> None:
        """Run `write` (e.g. saving the session this turn changed) alongside the store's
        write of the run's final or interrupted state; callers hear of that state only
        once both are done, and if `write` fails the task fails."""
        self.with_result.append(write)

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def context_id(self) -> str:
        return self.task.context_id or self.task.id

    @property
    def text(self) -> str:
        """The text of the incoming message."""
        return message_text(self.message)

    def agent_message(self, text: str | None = None, data: Any = None) -> Message:
        """A message from the agent in this task's context."""
        parts: list[Part] = []
        if text is not None:
            parts.append(Part(text=text))
        if data is not None:
            parts.append(data_part(data))
        return Message(
            message_id=new_id(),
            role=Role.AGENT,
            parts=parts or [Part(text="")],
            context_id=self.context_id,
            task_id=self.task_id,
        )

    def status(
        self, state: TaskState, text: str | None = None, data: Any = None
    ) -> TaskStatusUpdateEvent:
        """A status update, with an agent message when `text` or `data` is given."""
        msg = self.agent_message(text, data) if text is not None or data is not None else None
        return TaskStatusUpdateEvent(
            task_id=self.task_id,
            context_id=self.context_id,
            status=TaskStatus(state=state, message=msg, timestamp=iso_now()),
        )

    def artifact(
        self,
        *,
        text: str | None = None,
        data: Any = None,
        name: str | None = None,
        artifact_id: str | None = None,
        append: bool = False,
        last_chunk: bool = True,
    ) -> TaskArtifactUpdateEvent:
        """An artifact (or, with `append`, a further chunk of one with the same id)."""
        parts: list[Part] = []
        if text is not None:
            parts.append(Part(text=text))
        if data is not None:
            parts.append(data_part(data))
        return TaskArtifactUpdateEvent(
            task_id=self.task_id,
            context_id=self.context_id,
            artifact=Artifact(artifact_id=artifact_id or new_id(), parts=parts, name=name),
            append=append,
            last_chunk=last_chunk,
        )


class Executor(Protocol):
    """The agent: turns a task context into events."""

    def execute(self, ctx: TaskContext) -> AsyncIterator[A2AEvent]: ...


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


def ends_stream(state: TaskState) -> bool:
    """True when a stream closes and a blocking call answers at this state."""
    return state in TERMINAL_STATES or state in INTERRUPTED_STATES


def nats_interface(agent: str, nats_url: str) -> AgentInterface:
    """The AgentCard entry for this binding: `nats://host:port/a2a.<agent>.rpc`, no credentials."""
    first = nats_url.split(",")[0].strip() or "nats://127.0.0.1:4222"
    parts = urlsplit(first if "://" in first else f"nats://{first}")
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return AgentInterface(
        url=f"{parts.scheme or 'nats'}://{host}{port}/{subjects.a2a_rpc(agent)}",
        protocol_binding=NATS_BINDING,
    )


class A2AServer(RpcDispatch):
    """An agent served over NATS by one service; see the module docstring."""

    def __init__(
        self,
        service: Any,
        agent: str,
        executor: Executor,
        card: AgentCard,
        store: TaskStore,
        settings: A2ASettings | None = None,
        *,
        queue_group: str = "",
    ) -> None:
        self.service = service
        self.agent = agent
        self.executor = executor
        self.card = card
        self.store = store
        self.settings = settings or A2ASettings()
        self.queue_group = queue_group
        self.limits = TenantLimits(
            self.settings.rate_limit_per_min, self.settings.max_concurrent_tasks
        )
        self.runs: dict[str, Run] = {}
        self._subs: list[Any] = []
        self._card_bytes = msgspec.json.encode(card)
        self.progress = ProgressWrites(store, self.settings.progress_write_s, service.spawn)

    @classmethod
    async def mount(
        cls,
        service: Any,
        agent: str,
        executor: Executor,
        card: AgentCard,
        settings: A2ASettings | None = None,
        *,
        queue_group: str = "",
        store: TaskStore | None = None,
    ) -> A2AServer:
        """Create the task store (per `settings.store`) and start serving; call from setup()."""
        settings = settings or A2ASettings()
        if store is None:
            if settings.store == "kv" or service.store is None:
                store = await KvTaskStore.open(
                    service.js, agent, replicas=service.settings.nats.replicas
                )
            else:
                store = await SqliteTaskStore.open(service.store, agent)
        server = cls(service, agent, executor, card, store, settings, queue_group=queue_group)
        await server.start()
        return server

    async def start(self) -> None:
        """Subscribe to the rpc, card and cancel subjects."""
        nc = self.service.nc
        self._subs = [
            await nc.subscribe(
                subjects.a2a_rpc(self.agent), queue=self.queue_group, cb=self._on_rpc
            ),
            await nc.subscribe(
                subjects.a2a_card(self.agent), queue=self.queue_group, cb=self._on_card
            ),
            await nc.subscribe(
                subjects.a2a_cancel_all(self.agent),
                cb=self._on_cancel_forward,
            ),
        ]
        # The service unsubscribes these first when it stops, like its own subscriptions.
        for sub in self._subs:
            self.service.subscriptions.add(sub)
        await nc.flush()  # started means reachable: the server has the subscriptions

    async def stop(self) -> None:
        """Stop executing: running tasks fail with a message saying to send them again."""
        for run in list(self.runs.values()):
            if run.runner is not None:
                run.runner.cancel()
        await asyncio.gather(
            *(r.runner for r in list(self.runs.values()) if r.runner), return_exceptions=True
        )

    # -- NATS callbacks (each request is handled in its own task) ----------------------
    async def _on_rpc(self, msg: Msg) -> None:
        self.service.spawn(self.handle(msg), "a2a-rpc")

    async def _on_card(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(self._card_bytes)

    async def _on_cancel_forward(self, msg: Msg) -> None:
        task_id = msg.subject.rsplit(".", 1)[-1]
        run = self.runs.get(task_id)
        if run is None or not msg.reply:
            return  # another process runs it, or nobody: the caller handles silence
        await self._cancel_local(run)
        await msg.respond(b"ok")

    # -- running tasks --------------------------------------------------------------------
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

    async def _cancel_local(self, run: Run) -> None:
        run.cancel_requested = True
        if run.runner is not None:
            run.runner.cancel()
        await run.done.wait()

    async def cancel(self, task: Task, tenant: str) -> Task:
        """Cancel a non-terminal task wherever it runs; an orphan is marked CANCELED."""
        run = self.runs.get(task.id)
        if run is not None:
            await self._cancel_local(run)
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

    def new_task(self, message: Message) -> tuple[Task, Message]:
        """A SUBMITTED task for a first message (ids filled in where the client left them)."""
        task_id = new_id()
        context_id = message.context_id or new_id()
        message = msgspec.structs.replace(message, task_id=task_id, context_id=context_id)
        task = Task(
            id=task_id,
            context_id=context_id,
            status=TaskStatus(state=TaskState.SUBMITTED, timestamp=iso_now()),
            history=[message],
        )
        return task, message


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("executor did not close cleanly", exc_info=True)
