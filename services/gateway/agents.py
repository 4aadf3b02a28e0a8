"""Hosted agents as a runtime resource: the `fleet_agents` bucket, written with
compare-and-set so a user's agent quota holds across every gateway replica.

Keys: `agent.<name>` holds the AgentSpec (created only if absent, so a name is
taken once), `user.<user>` the names of the user's agents (updated at the
revision it was read at; a concurrent writer makes the update fail and it is
read again). The quota is reserved in the user's list before the agent key is
written, and handed back if the name turns out to be taken. Runners watch the
bucket and serve what it holds (services.runner.dynamic).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from contracts.api.replies import AgentSpec, AgentsReply
from contracts.api.requests import AgentCreateCall, AgentDeleteCall
from contracts.api.tools import tools_problem
from contracts.buckets import AGENTS, agent_key, agent_of_key
from services.kit.buckets import bucket_keys, ensure_bucket
from services.kit.service import RequestError

CAS_TRIES = 50
"""Compare-and-set attempts before giving up under contention (each one re-reads)."""

_names = msgspec.json.Decoder(list[str])
_spec = msgspec.json.Decoder(AgentSpec)


def user_key(user: str) -> str:
    return f"user.{user}"


def _conflict(exc: Exception) -> bool:
    """A compare-and-set that lost: the key changed (or appeared) since it was read."""
    return isinstance(exc, KeyWrongLastSequenceError) or "wrong last sequence" in str(exc)


class AgentRegistry:
    """The bucket, with the quota; see the module docstring."""

    def __init__(self, kv: KeyValue, quota: int) -> None:
        self.kv = kv
        self.quota = quota

    @classmethod
    async def open(cls, js: JetStreamContext, quota: int, replicas: int = 1) -> AgentRegistry:
        return cls(await ensure_bucket(js, AGENTS, replicas=replicas), quota)

    async def _read_names(self, user: str) -> tuple[list[str], int | None]:
        try:
            entry = await self.kv.get(user_key(user))
        except (KeyNotFoundError, NotFoundError):
            return [], None
        if not entry.value:
            return [], entry.revision
        return _names.decode(entry.value), entry.revision

    async def _write_names(self, user: str, names: list[str], revision: int | None) -> bool:
        """False when another writer got there first."""
        data = msgspec.json.encode(names)
        try:
            if revision is None:
                await self.kv.create(user_key(user), data)
            else:
                await self.kv.update(user_key(user), data, last=revision)
        except Exception as exc:
            if _conflict(exc):
                return False
            raise
        return True

    async def _change_names(self, user: str, name: str, *, add: bool) -> int:
        """Add (within the quota) or remove `name` in the user's list; the count after."""
        for _ in range(CAS_TRIES):
            names, revision = await self._read_names(user)
            if add:
                if name in names:
                    raise RequestError(f"agent {name!r} already exists", 409)
                if len(names) >= self.quota:
                    raise RequestError(
                        f"user {user!r} has {len(names)} agents, the quota is {self.quota}; "
                        "delete one first (fleet agents delete NAME --user USER)",
                        429,
                    )
                new = [*names, name]
            else:
                new = [n for n in names if n != name]
            if await self._write_names(user, new, revision):
                return len(new)
        raise RequestError(f"agents of {user!r} are being changed too often; try again", 503)

    async def get(self, name: str) -> AgentSpec | None:
        try:
            entry = await self.kv.get(agent_key(name))
        except (KeyNotFoundError, NotFoundError):
            return None
        return _spec.decode(entry.value) if entry.value else None

    async def create(
        self,
        call: AgentCreateCall,
        now: float,
        runtime: str = "",
        prepare: Callable[[str], Awaitable[None]] | None = None,
    ) -> AgentsReply:
        """Reserve the quota, then take the name; hand the quota back if it is taken.
        `runtime`: where its runners run (AgentSpec.runtime). `prepare(name)`: what must
        exist before runners see the agent (its resources, in a secured deployment)."""
        problem = tools_problem(call.tools)
        if problem is not None:
            raise RequestError(problem, 400)
        used = await self._change_names(call.user, call.name, add=True)
        if prepare is not None:
            try:
                await prepare(call.name)
            except BaseException:
                await self._change_names(call.user, call.name, add=False)
                raise
        spec = AgentSpec(
            name=call.name,
            user=call.user,
            system_prompt=call.system_prompt,
            model=call.model,
            tools=sorted(set(call.tools)),
            cores=call.cores,
            memory_mb=call.memory_mb,
            created_ts=now,
            runtime=runtime,
        )
        try:
            await self.kv.create(agent_key(call.name), msgspec.json.encode(spec))
        except Exception as exc:
            await self._change_names(call.user, call.name, add=False)
            if _conflict(exc):
                raise RequestError(f"agent {call.name!r} already exists", 409) from None
            raise
        return AgentsReply(agents=[spec], quota=self.quota, used=used)

    async def delete(self, call: AgentDeleteCall) -> AgentsReply:
        """Only the agent's user may delete it; its quota is handed back."""
        spec = await self.get(call.name)
        if spec is None:
            raise RequestError(f"no agent {call.name!r}", 404)
        if spec.user != call.user:
            raise RequestError(f"agent {call.name!r} belongs to another user", 403)
        await self.kv.delete(agent_key(call.name))
        used = await self._change_names(call.user, call.name, add=False)
        return AgentsReply(agents=[spec], quota=self.quota, used=used)

    async def all(self, user: str | None = None) -> AgentsReply:
        """Every agent, or one user's."""
        names = [n for k in await bucket_keys(self.kv) if (n := agent_of_key(k)) is not None]
        specs = [s for s in [await self.get(n) for n in names] if s is not None]
        if user is not None:
            specs = [s for s in specs if s.user == user]
            return AgentsReply(
                agents=sorted(specs, key=lambda s: s.name), quota=self.quota, used=len(specs)
            )
        return AgentsReply(agents=sorted(specs, key=lambda s: s.name), quota=self.quota, used=None)
