"""A2A 1.0 over NATS: mount an agent on a service.

    # in Service.setup():
    self.a2a = await A2AServer.mount(self, "fleet", Echo(), card, settings.a2a,
                                     queue_group="fleet-a2a")

`mount` serves `a2a.<agent>.rpc` (in a queue group when `queue_group` is set,
so several processes share the agent), `a2a.<agent>.card`, and
`a2a.<agent>.cancel.<task>` (a CancelTask that lands on another process of the
group is forwarded to the one running the task).

The server is built from parts, each in its module: the Dispatcher
(JSON-RPC, the method table, tenant rate limits), the A2A methods
(services.a2a.methods), the TaskRunner (executing tasks and sending their
events), the task store and its background progress writes. A host that needs
more before a task starts (the runner's sessions and slots) passes an
Admission; one that must stop taking requests for a while calls `leave()` and
later `join()` (NATS then sends the group's requests to the others).

Methods: SendMessage, SendStreamingMessage, GetTask, ListTasks, CancelTask,
SubscribeToTask, and the v0.3 names message/send, message/stream, tasks/get,
tasks/list, tasks/cancel, tasks/resubscribe. Errors are the spec's JSON-RPC
codes (contracts.a2a); tenants over their limits get RATE_LIMITED or
QUOTA_EXCEEDED with the limit in `error.data`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import subjects
from contracts.a2a import A2A_VERSION, NATS_BINDING, AgentCard, AgentInterface
from services.a2a.context import Executor
from services.a2a.dispatch import Dispatcher
from services.a2a.methods import A2AMethods, Admission, OpenAdmission
from services.a2a.progress import ProgressWrites
from services.a2a.runs import Run, TaskRunner
from services.a2a.stores import KvTaskStore, SqliteTaskStore
from services.a2a.tasks import TaskStore
from services.a2a.tenants import A2ASettings, TenantLimits
from services.kit import Service
from services.kit.bus import settled
from services.kit.tracing import extract

log = logging.getLogger("fleet.a2a")


def nats_interface(agent: str, nats_url: str) -> AgentInterface:
    """The AgentCard entry for this binding: `nats://host:port/a2a.<agent>.rpc`, no credentials."""
    first = nats_url.split(",")[0].strip() or "nats://127.0.0.1:4222"
    parts = urlsplit(first if "://" in first else f"nats://{first}")
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return AgentInterface(
        url=f"{parts.scheme or 'nats'}://{host}{port}/{subjects.a2a_rpc(agent)}",
        protocol_binding=NATS_BINDING,
        protocol_version=A2A_VERSION,
    )


class A2AServer:
    """An agent served over NATS by one service; see the module docstring."""

    def __init__(
        self,
        service: Service[Any],
        agent: str,
        executor: Executor,
        card: AgentCard,
        store: TaskStore,
        settings: A2ASettings | None = None,
        *,
        queue_group: str = "",
        admission: Admission | None = None,
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
        self.progress = ProgressWrites(store, self.settings.progress_write_s, service.spawn)
        self.tasks = TaskRunner(service, agent, executor, store, self.progress, self.limits)
        self.dispatcher = Dispatcher(service, agent, self.settings, self.limits)
        self.methods = A2AMethods(
            self.tasks,
            admission or OpenAdmission(),
            self.settings.blocking_timeout_s,
            self.settings.max_page_size,
            card.default_output_modes,
        )
        self.methods.register(self.dispatcher)
        self._card_bytes = msgspec.json.encode(card)
        self._rpc: list[Subscription] = []
        """The rpc subscriptions: the bare subject and the per-tenant one."""
        self._membership = asyncio.Lock()
        self.closed = False
        """True once the server left the rpc group for good (`leave(for_good=True)`)."""

    @classmethod
    async def mount(
        cls,
        service: Service[Any],
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

    @property
    def runs(self) -> dict[str, Run]:
        """Tasks executing in this process, by id."""
        return self.tasks.runs

    @property
    def joined(self) -> bool:
        """True while this process takes requests from the rpc queue group."""
        return bool(self._rpc)

    async def start(self) -> None:
        """Serve the card and forwarded cancels, join the rpc queue group; reachable on return."""
        await self.service.listen(
            subjects.a2a_card(self.agent), self._on_card, queue=self.queue_group
        )
        await self.service.listen(subjects.a2a_cancel_all(self.agent), self._on_cancel_forward)
        await self.join()
        await settled(self.service.nc)  # the server has the subscriptions

    async def join(self) -> None:
        """Take requests from the queue group (no-op when already in it or closed)."""
        async with self._membership:
            if self._rpc or self.closed:
                return
            # `a2a.<agent>.rpc.<tenant>`: where a secured deployment's tenants call
            # (dispatch takes the tenant from the subject the server let them publish on).
            for subject in (subjects.a2a_rpc(self.agent), subjects.a2a_rpc_tenants(self.agent)):
                self._rpc.append(
                    await self.service.listen(subject, self._on_rpc, queue=self.queue_group)
                )

    async def leave(self, *, for_good: bool = False) -> None:
        """Stop taking requests: NATS sends them to the other processes of the group.
        With `for_good`, later `join()` calls do nothing (draining)."""
        async with self._membership:
            if for_good:
                self.closed = True
            subs, self._rpc = self._rpc, []
            for sub in subs:
                self.service.subscriptions.discard(sub)
                try:
                    await sub.unsubscribe()
                except Exception:
                    log.debug("unsubscribe failed", exc_info=True)

    async def stop(self) -> None:
        """Stop executing: running tasks fail with a message saying to send them again."""
        await self.tasks.stop()

    # -- NATS callbacks (each request is handled in its own task) ----------------------
    async def _on_rpc(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and "traceparent" in headers:
            # A traced call: the task (and the tools it calls) run inside the request's
            # span, as the spawned task copies the current context. An untraced call keeps
            # the hot path free of span work.
            with self.service.tracer.start_as_current_span(
                f"a2a {self.agent}", context=extract(headers)
            ):
                self.service.spawn(self.dispatcher.handle(msg), "a2a-rpc")
            return
        self.service.spawn(self.dispatcher.handle(msg), "a2a-rpc")

    async def _on_card(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(self._card_bytes)

    async def _on_cancel_forward(self, msg: Msg) -> None:
        task_id = msg.subject.rsplit(".", 1)[-1]
        run = self.tasks.runs.get(task_id)
        if run is None or not msg.reply:
            return  # another process runs it, or nobody: the caller handles silence
        await self.tasks.cancel_local(run)
        await msg.respond(b"ok")
