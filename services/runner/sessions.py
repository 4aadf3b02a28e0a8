"""Sessions: a tenant's conversation with a hosted agent, shared by every runner.

A session is keyed by (tenant, context id) and lives in the JetStream KV bucket
`RUNNER_SESSIONS_<agent>` whose TTL is `session_idle_s`: each turn rewrites the
record, so a session expires once it has been idle that long, and any runner
can continue any session. A per-tenant index in the same bucket holds when
each live session was last seen; `admit_session` (admission.py) is the pure
quota decision over it, applied with compare-and-set so runners racing for a
tenant's last slot cannot both win.
"""

from __future__ import annotations

import hashlib
import time
from typing import Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.buckets import RUNNER_SESSIONS
from services.kit.buckets import ensure_bucket
from services.kit.kvview import KvView
from services.runner.admission import TenantIndex, admit_session

CAS_ATTEMPTS = 8


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a conversation."""

    role: Literal["user", "assistant"]
    text: str


class Session(msgspec.Struct, kw_only=True):
    """A conversation: its turns and what it has cost in tokens."""

    tenant: str
    context_id: str
    turns: list[Turn] = msgspec.field(default_factory=list)
    created_ts: float = 0.0
    updated_ts: float = 0.0
    indexed_ts: float = 0.0
    """When the tenant index last saw this session (refreshed every `idle_s / 2`)."""
    turn_count: int = 0
    """Turns answered in this session (older turns may have left `turns`)."""
    input_tokens: int = 0
    output_tokens: int = 0
    runner: str = ""
    """The runner that handled the latest turn."""


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


def session_key(tenant: str, context_id: str) -> str:
    """KV key of a session (ids are hashed: tenants and context ids may hold any text)."""
    return f"s.{_digest(tenant, context_id)}"


def index_key(tenant: str) -> str:
    return f"t.{_digest(tenant)}"


_SESSION = msgspec.json.Decoder(Session)
_INDEX = msgspec.json.Decoder(TenantIndex)
_ENC = msgspec.json.Encoder()


class SessionStore:
    """Sessions and tenant indexes of one agent in a KV bucket."""

    def __init__(self, kv: KeyValue, view: KvView, idle_s: float, quota: int) -> None:
        self.kv = kv
        self.view = view
        self.idle_s = idle_s
        self.quota = quota

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        agent: str,
        *,
        idle_s: float,
        quota: int,
        storage: str = "file",
        replicas: int = 1,
    ) -> SessionStore:
        """Bind to (creating) the agent's session bucket with TTL `idle_s`."""
        spec = RUNNER_SESSIONS.for_agent(agent)
        kv = await ensure_bucket(js, spec, replicas=replicas, ttl_s=idle_s, storage=storage)
        return cls(kv, await KvView.open(js, spec.name, kv), idle_s, quota)

    async def _get_session(self, key: str) -> Session | None:
        value, _ = await self.view.get(key)
        return _SESSION.decode(value) if value else None

    async def open_session(self, tenant: str, context_id: str, now: float | None = None) -> Session:
        """The live session of (tenant, context), or a new one if the quota allows (QuotaFull)."""
        now = time.time() if now is None else now
        key = session_key(tenant, context_id)
        session = await self._get_session(key)
        if session is not None and session.tenant == tenant and session.context_id == context_id:
            if now - session.indexed_ts >= self.idle_s / 2:
                await self._touch_index(tenant, key, now)
                session.indexed_ts = now
            return session
        await self._touch_index(tenant, key, now)
        return Session(
            tenant=tenant, context_id=context_id, created_ts=now, updated_ts=now, indexed_ts=now
        )

    async def save(self, session: Session) -> None:
        """Write the session back (which also restarts its idle clock)."""
        session.updated_ts = time.time()
        await self.view.put(session_key(session.tenant, session.context_id), _ENC.encode(session))

    async def get(self, tenant: str, context_id: str) -> Session | None:
        """The session as stored, or None when it does not exist or has expired."""
        session = await self._get_session(session_key(tenant, context_id))
        return session if session is not None and session.tenant == tenant else None

    async def live_count(self, tenant: str, now: float | None = None) -> int:
        """Live sessions of `tenant` per its index."""
        now = time.time() if now is None else now
        index, _ = await self._index(tenant)
        return sum(1 for ts in index.live.values() if now - ts < self.idle_s)

    async def _index(self, tenant: str) -> tuple[TenantIndex, int]:
        value, revision = await self.view.get(index_key(tenant))
        if not value:
            return TenantIndex(tenant=tenant), revision
        return _INDEX.decode(value), revision

    async def _touch_index(self, tenant: str, key: str, now: float) -> None:
        for _ in range(CAS_ATTEMPTS):
            index, revision = await self._index(tenant)
            updated = admit_session(index, key, now, self.idle_s, self.quota)
            try:
                await self.view.put(index_key(tenant), _ENC.encode(updated), last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # another runner changed it first: decide again on the new index
        raise RuntimeError(f"session index of tenant {tenant!r} is too contended; retry")
