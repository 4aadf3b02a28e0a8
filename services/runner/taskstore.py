"""Tasks that outlive the runner running them.

`LeasedTaskStore` is the binding's TaskStore (services.kit.a2a_tasks) over the
agent's shared KV bucket, plus a record of which runner owns each running task:
`RUNNER_INFLIGHT_<agent>` holds `<owner>.<task id>` while the task runs, and
`RUNNER_LEASES_<agent>` holds each runner's lease, renewed every second. When a
runner dies (even by SIGKILL) its lease lapses; `reap` (run by every runner on
a timer) finds the tasks that lapsed owner left running and fails them
explicitly, with a status event on the task's subject, so every accepted task
ends in a terminal state the client can see. `orphans` is the pure decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import msgspec
from nats.js import JetStreamContext
from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from contracts.a2a import (
    INTERRUPTED_STATES,
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
from services.kit.a2a_tasks import KvTaskStore, StoredTask

log = logging.getLogger("fleet.runner")
_ENC = msgspec.json.Encoder()


class Lease(msgspec.Struct, kw_only=True):
    """A runner's claim to be alive until `expires_ts` (unix seconds)."""

    runner: str
    expires_ts: float


class Owned(msgspec.Struct, kw_only=True):
    """A running task's owner record."""

    tenant: str
    since_ts: float


_LEASE = msgspec.json.Decoder(Lease)
_OWNED = msgspec.json.Decoder(Owned)


def orphans(
    inflight: Iterable[str], leases: dict[str, float], me: str, now: float
) -> list[tuple[str, str]]:
    """(owner, task id) of each in-flight key whose owner is not `me` and holds no live lease."""
    out = []
    for key in inflight:
        owner, _, task_id = key.partition(".")
        if not task_id or owner == me:
            continue
        if leases.get(owner, 0.0) <= now:
            out.append((owner, task_id))
    return out


def _bucket(prefix: str, agent: str) -> str:
    return prefix + agent.replace(".", "_").replace("-", "_")


async def _kv(
    js: JetStreamContext, name: str, *, ttl_s: float, storage: str, replicas: int
) -> KeyValue:
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(
            bucket=name,
            ttl=ttl_s,
            history=1,
            replicas=replicas,
            storage=StorageType.MEMORY if storage == "memory" else StorageType.FILE,
        )


class LeasedTaskStore:
    """The agent's tasks (shared KV) with owner records for the ones running here."""

    def __init__(self, tasks: KvTaskStore, inflight: KeyValue, leases: KeyValue, me: str) -> None:
        self.tasks = tasks
        self.inflight = inflight
        self.leases = leases
        self.me = me
        self._owned: set[str] = set()

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        agent: str,
        me: str,
        *,
        storage: str = "file",
        replicas: int = 1,
    ) -> LeasedTaskStore:
        """Bind to (creating) the agent's task, in-flight and lease buckets."""
        tasks = await KvTaskStore.open(js, agent, replicas=replicas)
        inflight = await _kv(
            js,
            _bucket("RUNNER_INFLIGHT_", agent),
            ttl_s=7 * 86400,
            storage=storage,
            replicas=replicas,
        )
        leases = await _kv(
            js, _bucket("RUNNER_LEASES_", agent), ttl_s=3600, storage=storage, replicas=replicas
        )
        return cls(tasks, inflight, leases, me)

    # -- the TaskStore interface ---------------------------------------------------------
    async def get(self, task_id: str, tenant: str) -> Task | None:
        return await self.tasks.get(task_id, tenant)

    async def list(self, tenant: str) -> list[StoredTask]:
        return await self.tasks.list(tenant)

    async def put(self, task: Task, tenant: str) -> None:
        """Store the task; claim it while it runs, release the claim once it stops."""
        state = task.status.state
        running = state not in TERMINAL_STATES and state not in INTERRUPTED_STATES
        key = f"{self.me}.{task.id}"
        if running and task.id not in self._owned:
            # The claim goes first: a task stored as running always has an owner record.
            await self.inflight.put(key, _ENC.encode(Owned(tenant=tenant, since_ts=time.time())))
            self._owned.add(task.id)
        await self.tasks.put(task, tenant)
        if not running and task.id in self._owned:
            self._owned.discard(task.id)
            try:
                await self.inflight.delete(key)
            except Exception:
                log.warning("could not release task claim", exc_info=True, extra={"task": task.id})

    # -- leases and reaping ------------------------------------------------------------
    async def renew(self, lease_s: float) -> None:
        """Say this runner is alive for another `lease_s` seconds."""
        lease = Lease(runner=self.me, expires_ts=time.time() + lease_s)
        await self.leases.put(self.me, _ENC.encode(lease))

    async def resign(self) -> None:
        """End the lease now (a clean stop): tasks still claimed are reaped at once."""
        try:
            await self.leases.delete(self.me)
        except Exception:
            log.debug("could not delete lease", exc_info=True)

    async def live_leases(self) -> dict[str, float]:
        """runner -> lease expiry of every runner that has one."""
        out: dict[str, float] = {}
        for key in await _keys(self.leases):
            try:
                entry = await self.leases.get(key)
            except NotFoundError:
                continue
            if entry.value:
                out[key] = _LEASE.decode(entry.value).expires_ts
        return out

    async def reap(
        self,
        publish_event: Callable[[str, StreamResponse], Awaitable[None]],
        now: float | None = None,
    ) -> list[str]:
        """Fail the running tasks of runners whose lease lapsed; their task ids.

        `publish_event(task_id, StreamResponse)` sends the terminal event to the
        task's subject for streaming and subscribed clients.
        """
        now = time.time() if now is None else now
        found = orphans(await _keys(self.inflight), await self.live_leases(), self.me, now)
        failed = []
        for owner, task_id in found:
            key = f"{owner}.{task_id}"
            try:
                entry = await self.inflight.get(key)
            except NotFoundError:
                continue  # another runner reaped it, or the owner finished it
            owned = _OWNED.decode(entry.value) if entry.value else None
            if owned is None:
                continue
            task = await self.tasks.get(task_id, owned.tenant)
            if task is not None and task.status.state not in TERMINAL_STATES:
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
                history = [*task.history, message]
                await self.tasks.put(
                    msgspec.structs.replace(task, status=status, history=history), owned.tenant
                )
                event = TaskStatusUpdateEvent(
                    task_id=task_id, context_id=task.context_id or task_id, status=status
                )
                await publish_event(task_id, StreamResponse(status_update=event))
                failed.append(task_id)
            try:
                await self.inflight.delete(key)
            except Exception:
                log.debug("could not delete reaped claim", exc_info=True)
        return failed


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return list(await kv.keys())
    except NotFoundError:
        return []
    except Exception as exc:  # nats-py raises NoKeysError on an empty bucket
        if type(exc).__name__ == "NoKeysError":
            return []
        raise
