"""Where A2A tasks live between calls (the TaskStore interface of services.a2a.tasks).

`SqliteTaskStore` keeps tasks in the service's own database (one process
serves the agent); `KvTaskStore` keeps them in a JetStream KV bucket so any
process of a queue group can read and continue any task; `MemoryTaskStore`
is for tests.
"""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from contracts.a2a import Task
from contracts.buckets import A2A_TASKS
from services.a2a.tasks import StoredTask
from services.kit.buckets import ensure_bucket
from services.kit.kvview import KvView
from services.kit.store import Store

_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder(StoredTask)


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
