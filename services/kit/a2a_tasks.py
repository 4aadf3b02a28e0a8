"""Where A2A tasks live between calls, and how an event changes a task.

`apply_event` is pure. The stores share one small interface (`TaskStore`):
`SqliteTaskStore` keeps tasks in the service's own database (one process
serves the agent); `KvTaskStore` keeps them in a JetStream KV bucket so any
process of a queue group can read and continue any task; `MemoryTaskStore`
is for tests. A task is stored with the tenant that created it; a read by
another tenant finds nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.a2a import (
    Artifact,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatusUpdateEvent,
)
from contracts.buckets import A2A_TASKS
from services.kit.a2a_jetstream import KvView
from services.kit.buckets import ensure_bucket
from services.kit.store import Store

log = logging.getLogger("fleet.a2a")
_IDS = random.Random()  # seeded from the OS once; ids need to be unique, not secret


class StoredTask(msgspec.Struct, kw_only=True):
    """A task with its owner and last change (unix seconds)."""

    task: Task
    tenant: str
    updated_ts: float = msgspec.field(default_factory=time.time)


_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder(StoredTask)


class TaskStore(Protocol):
    """Tasks by id, per tenant."""

    async def get(self, task_id: str, tenant: str) -> Task | None:
        """The task if it exists and belongs to `tenant`."""
        ...

    async def put(self, task: Task, tenant: str) -> None:
        """Create or replace the task."""
        ...

    async def list(self, tenant: str) -> list[StoredTask]:
        """Every task of `tenant`, most recently changed first."""
        ...


def new_id() -> str:
    """A random 32-hex-digit id for a task, context, message or artifact (no syscall)."""
    return f"{_IDS.getrandbits(128):032x}"


def apply_event(task: Task, event: TaskStatusUpdateEvent | TaskArtifactUpdateEvent) -> Task:
    """The task after `event`: a new status, or an artifact added, replaced or appended to."""
    if isinstance(event, TaskStatusUpdateEvent):
        history = list(task.history)
        msg = event.status.message
        if msg is not None and all(m.message_id != msg.message_id for m in history):
            history.append(msg)
        return msgspec.structs.replace(task, status=event.status, history=history)
    artifacts = list(task.artifacts)
    new = event.artifact
    for i, old in enumerate(artifacts):
        if old.artifact_id == new.artifact_id:
            if event.append:
                new = msgspec.structs.replace(old, parts=[*old.parts, *new.parts])
            artifacts[i] = new
            break
    else:
        artifacts.append(new)
    return msgspec.structs.replace(task, artifacts=artifacts)


def trimmed(task: Task, history_length: int | None, include_artifacts: bool = True) -> Task:
    """The task with at most `history_length` latest messages and, optionally, no artifacts."""
    history = task.history
    if history_length is not None:
        history = history[-history_length:] if history_length > 0 else []
    artifacts: list[Artifact] = task.artifacts if include_artifacts else []
    return msgspec.structs.replace(task, history=history, artifacts=artifacts)


class MemoryTaskStore:
    """Tasks in a dict; gone when the process ends."""

    def __init__(self) -> None:
        self._tasks: dict[str, StoredTask] = {}

    async def get(self, task_id: str, tenant: str) -> Task | None:
        rec = self._tasks.get(task_id)
        return rec.task if rec is not None and rec.tenant == tenant else None

    async def put(self, task: Task, tenant: str) -> None:
        self._tasks[task.id] = StoredTask(task=task, tenant=tenant)

    async def list(self, tenant: str) -> list[StoredTask]:
        recs = [r for r in self._tasks.values() if r.tenant == tenant]
        return sorted(recs, key=lambda r: r.updated_ts, reverse=True)


_TABLE = """
CREATE TABLE IF NOT EXISTS a2a_tasks (
    agent TEXT NOT NULL,
    id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_ts REAL NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (agent, id)
)
"""


class SqliteTaskStore:
    """Tasks in the service's SQLite store: they survive a restart of the process."""

    def __init__(self, store: Store, agent: str) -> None:
        self.store = store
        self.agent = agent

    @classmethod
    async def open(cls, store: Store, agent: str) -> SqliteTaskStore:
        """Create the table if needed (it is the kit's, not the service's migrations)."""
        await store.execute(_TABLE)
        return cls(store, agent)

    async def get(self, task_id: str, tenant: str) -> Task | None:
        rows = await self.store.fetchall(
            "SELECT body FROM a2a_tasks WHERE agent = ? AND id = ? AND tenant = ?",
            (self.agent, task_id, tenant),
        )
        return _DEC.decode(rows[0][0]).task if rows else None

    async def put(self, task: Task, tenant: str) -> None:
        rec = StoredTask(task=task, tenant=tenant)
        await self.store.execute(
            "INSERT INTO a2a_tasks(agent, id, tenant, state, updated_ts, body) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(agent, id) DO UPDATE SET "
            "state = excluded.state, updated_ts = excluded.updated_ts, body = excluded.body",
            (self.agent, task.id, tenant, str(task.status.state), rec.updated_ts, _ENC.encode(rec)),
        )

    async def list(self, tenant: str) -> list[StoredTask]:
        rows = await self.store.fetchall(
            "SELECT body FROM a2a_tasks WHERE agent = ? AND tenant = ? "
            "ORDER BY updated_ts DESC LIMIT 10000",
            (self.agent, tenant),
        )
        return [_DEC.decode(r[0]) for r in rows]


class KvTaskStore:
    """Tasks in a JetStream KV bucket, readable and writable by every process of the agent."""

    def __init__(self, kv: KeyValue, view: KvView) -> None:
        self.kv = kv
        self.view = view

    @classmethod
    async def open(
        cls, js: JetStreamContext, agent: str, *, ttl_s: float = A2A_TASKS.ttl_s, replicas: int = 1
    ) -> KvTaskStore:
        """Bind to (creating) the agent's task bucket; tasks expire after `ttl_s`."""
        spec = A2A_TASKS.for_agent(agent)
        kv = await ensure_bucket(js, spec, replicas=replicas, ttl_s=ttl_s)
        return cls(kv, await KvView.open(js, spec.name, kv))

    async def _rec(self, task_id: str) -> StoredTask | None:
        value, _ = await self.view.get(task_id)
        return _DEC.decode(value) if value else None

    async def get(self, task_id: str, tenant: str) -> Task | None:
        rec = await self._rec(task_id)
        return rec.task if rec is not None and rec.tenant == tenant else None

    async def put(self, task: Task, tenant: str) -> None:
        await self.view.put(task.id, _ENC.encode(StoredTask(task=task, tenant=tenant)))

    async def list(self, tenant: str) -> list[StoredTask]:
        try:
            keys = await self.kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        recs = [r for k in keys[:10000] if (r := await self._rec(k)) is not None]
        recs = [r for r in recs if r.tenant == tenant]
        return sorted(recs, key=lambda r: r.updated_ts, reverse=True)


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
