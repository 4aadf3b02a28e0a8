"""Tasks that outlive the runner running them.

`LeasedTaskStore` is the binding's TaskStore (services.a2a.tasks) over the
agent's shared KV bucket, plus a record of which tasks each runner owns:
`RUNNER_CLAIMS_<agent>` holds, per runner, the ids (and tenants) of the tasks
it runs, and each runner's lease (renewed every `lease_s / 3`). A task is
claimed before it is first stored (a blocking call's task that ends before its
first progress write is never claimed: nobody knows its id until it is done).
Claims are group-committed: `claim()` returns once a claims write that
includes the task has been acknowledged, and many tasks share one write.
Finished tasks leave the record lazily, with the next write.

When a runner dies (even by SIGKILL) its lease lapses; `reap` (run by every
runner on a timer) reads that runner's claims and fails every task in them that
is not terminal, with a status event on the task's subject, so every accepted
task ends in a state the client can see. `lapsed` is the pure decision.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from contracts.a2a import (
    TERMINAL_STATES,
    Message,
    Part,
    Role,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    iso_now,
)
from contracts.buckets import RUNNER_CLAIMS
from services.a2a.stores import KvTaskStore
from services.a2a.tasks import StoredTask
from services.kit.buckets import ensure_bucket

log = logging.getLogger("fleet.runner")
_ENC = msgspec.json.Encoder()


class Claims(msgspec.Struct, kw_only=True):
    """A runner's lease and the tasks it runs (task id -> tenant)."""

    runner: str
    expires_ts: float
    tasks: dict[str, str] = msgspec.field(default_factory=dict)


_CLAIMS = msgspec.json.Decoder(Claims)


def lapsed(records: dict[str, Claims], me: str, now: float) -> list[Claims]:
    """The claims of every other runner whose lease has expired."""
    return [c for key, c in records.items() if key != me and c.expires_ts <= now]


class LeasedTaskStore:
    """The agent's tasks (shared KV) with this runner's claims on the ones it runs."""

    def __init__(
        self, tasks: KvTaskStore, claims: KeyValue, bucket: str, me: str, lease_s: float
    ) -> None:
        self.tasks = tasks
        self.claims = claims
        self.link = tasks.view.link
        self.prefix = f"$KV.{bucket}."
        self.me = me
        self.lease_s = lease_s
        self._mine: dict[str, str] = {}
        self._requested = 0
        self._written = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        agent: str,
        me: str,
        *,
        lease_s: float,
        storage: str = "file",
        replicas: int = 1,
    ) -> LeasedTaskStore:
        """Bind to (creating) the agent's task and claims buckets."""
        tasks = await KvTaskStore.open(js, agent, replicas=replicas)
        spec = RUNNER_CLAIMS.for_agent(agent)
        kv = await ensure_bucket(js, spec, replicas=replicas, storage=storage)
        return cls(tasks, kv, spec.name, me, lease_s)

    # -- the TaskStore interface ---------------------------------------------------------
    async def get(self, task_id: str, tenant: str) -> Task | None:
        return await self.tasks.get(task_id, tenant)

    async def list(self, tenant: str) -> list[StoredTask]:
        return await self.tasks.list(tenant)

    async def put(self, task: Task, tenant: str) -> None:
        """Store the task; one not yet terminal is claimed first (durably), so a stored
        task that is still running always has an owner whose lease says it is alive."""
        if task.status.state in TERMINAL_STATES:
            await self.tasks.put(task, tenant)
            self._mine.pop(task.id, None)  # leaves the record with the next write
            return
        if task.id not in self._mine:
            await self.claim(task.id, tenant)
        await self.tasks.put(task, tenant)

    # -- claims -----------------------------------------------------------------------------
    async def claim(self, task_id: str, tenant: str) -> None:
        """Record that this runner runs `task_id`; returns once the record is durable."""
        self._mine[task_id] = tenant
        await self.flush()

    def release(self, task_id: str) -> None:
        """Forget a task that ended without a terminal put (written with the next flush)."""
        self._mine.pop(task_id, None)

    async def flush(self) -> None:
        """Write the lease and claims; callers waiting together share one write."""
        self._requested += 1
        mine = self._requested
        async with self._lock:
            if self._written >= mine:
                return  # a write that started after our change covered it
            covers = self._requested
            record = Claims(
                runner=self.me, expires_ts=time.time() + self.lease_s, tasks=dict(self._mine)
            )
            await self.link.put(self.prefix + self.me, _ENC.encode(record))
            self._written = max(self._written, covers)

    async def renew(self) -> None:
        """Extend this runner's lease (and write any lazily released claims)."""
        await self.flush()

    async def resign(self) -> None:
        """End the lease now (a clean stop): what is still claimed is reaped at once."""
        try:
            record = Claims(runner=self.me, expires_ts=0.0, tasks=dict(self._mine))
            await self.claims.put(self.me, _ENC.encode(record))
        except Exception:
            log.debug("could not end the lease", exc_info=True)

    async def records(self) -> dict[str, Claims]:
        """Every runner's claims record."""
        out: dict[str, Claims] = {}
        try:
            keys = list(await self.claims.keys())
        except Exception as exc:  # NoKeysError on an empty bucket
            if type(exc).__name__ == "NoKeysError" or isinstance(exc, NotFoundError):
                return out
            raise
        for key in keys:
            try:
                entry = await self.claims.get(key)
            except NotFoundError:
                continue
            if entry.value:
                out[key] = _CLAIMS.decode(entry.value)
        return out

    async def reap(
        self,
        publish_event: Callable[[str, StreamResponse], Awaitable[None]],
        now: float | None = None,
    ) -> builtins.list[str]:
        """Fail the running tasks of runners whose lease lapsed; the ids of those failed.

        `publish_event(task_id, item)` sends the terminal event to the task's subject,
        for streaming and subscribed clients.
        """
        now = time.time() if now is None else now
        failed: builtins.list[str] = []
        for dead in lapsed(await self.records(), self.me, now):
            for task_id, tenant in dead.tasks.items():
                if await self._fail(dead.runner, task_id, tenant, publish_event):
                    failed.append(task_id)
            try:
                await self.claims.purge(dead.runner)
            except Exception:
                log.debug("could not purge reaped claims", exc_info=True)
        return failed

    async def _fail(
        self,
        owner: str,
        task_id: str,
        tenant: str,
        publish_event: Callable[[str, StreamResponse], Awaitable[None]],
    ) -> bool:
        task = await self.tasks.get(task_id, tenant)
        if task is None or task.status.state in TERMINAL_STATES:
            return False
        text = (
            f"the runner {owner} running this task stopped before it finished; "
            "send the message again"
        )
        message = Message(
            message_id=f"reaped-{task_id}",
            role=Role.AGENT,
            parts=[Part(text=text)],
            context_id=task.context_id,
            task_id=task_id,
        )
        status = TaskStatus(state=TaskState.FAILED, message=message, timestamp=iso_now())
        await self.tasks.put(
            msgspec.structs.replace(task, status=status, history=[*task.history, message]), tenant
        )
        event = TaskStatusUpdateEvent(
            task_id=task_id, context_id=task.context_id or task_id, status=status
        )
        await publish_event(task_id, StreamResponse(status_update=event))
        return True
