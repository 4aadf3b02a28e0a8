"""The admin's side of hosted agents created at runtime in a secured deployment.

Under `fleet up --secure` only the admin may create a KV bucket, and the server's
permissions name each hosted agent's subjects and buckets (tools/secure/grants.py;
a grant cannot wildcard part of a bucket name). An agent made at runtime
(`fleet agents create`) has neither, so before it exists the gateway asks on
`fleet.admin.agents` (contracts.admin), and the keeper, in the `fleet up`
process and connected as the admin:

1. creates the agent's buckets (`fleet init`'s shapes, tools/secure/admin.py);
2. re-renders the authorization with the agent among the runners' and has the
   server reload it (connections stay; their permissions change);
3. answers once a connection as the `runner` identity is allowed to read the
   agent's task bucket, so the agent's runner never starts before its grants.

At start it does the same at once for every agent already in `fleet_agents`, so
the runtime agents of an earlier run are served again. A deleted agent's grants
go at the next start; its buckets stay, as `fleet init`'s do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, NotFoundError

from contracts import subjects
from contracts.admin import AgentResources, AgentResourcesReply
from contracts.base import UNDECODABLE
from contracts.buckets import A2A_TASKS, AGENTS, agent_of_key
from services.kit.buckets import bucket_keys
from tools.secure.admin import Plan, Report, agent_buckets, make_buckets
from tools.secure.grants import Deployment, grants
from tools.secure.identities import ADMIN, Identity
from tools.secure.natsconf import render_auth

log = logging.getLogger("fleet.admin")

GRANT_WAIT_S = 10.0
"""Longest wait for the server to apply a reloaded authorization."""

PROBE_PAUSE_S = 0.05
"""Pause before probing again after the server answered nothing (mid-reload)."""

_request = msgspec.json.Decoder(AgentResources)


@dataclass
class AgentKeeper:
    """See the module docstring. `apply(auth)` writes the server's new authorization and
    has it reload (tools.natsserver.reload_auth)."""

    url: str
    identities: dict[str, Identity]
    plan: Plan
    deployment: Deployment
    apply: Callable[[str], None]
    auth_file: str = ""
    """Where the rendered authorization is also kept (creds/auth.conf), if anywhere."""
    granted: set[str] = field(default_factory=set)
    """Agents the runners' permissions name: the configured ones and those added here."""
    _nc: Client | None = None
    _runner: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> list[str]:
        """Connect as the admin, serve the agents already made at runtime, then answer
        requests; the names of the agents it added."""
        self.granted |= set(self.deployment.agents)
        self._nc = await nats.connect(
            self.url,
            name="fleet-admin",
            nkeys_seed=str(self.identities[ADMIN].seed_file),
            inbox_prefix="_INBOX.admin",
            max_reconnect_attempts=-1,
        )
        added = await self.prepare(await self.runtime_agents())
        await self._nc.subscribe(subjects.ADMIN_AGENTS, cb=self._on_request)
        return added

    async def close(self) -> None:
        for nc in (self._runner, self._nc):
            if nc is not None and not nc.is_closed:
                with contextlib.suppress(Exception):
                    await nc.close()

    async def runtime_agents(self) -> list[str]:
        """Every agent in `fleet_agents` (made at runtime, by any earlier run)."""
        assert self._nc is not None
        kv = await self._nc.jetstream(timeout=10).key_value(AGENTS.name)
        names = []
        for key in await bucket_keys(kv):
            name = agent_of_key(key)
            if name is None:
                continue
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, NotFoundError):
                continue  # deleted; its marker is still listed
            if entry.value:
                names.append(name)
        return sorted(names)

    async def prepare(self, names: list[str]) -> list[str]:
        """Make `names`' buckets and grants; the names that were not granted before."""
        assert self._nc is not None
        async with self._lock:
            report = Report()
            specs = [s for name in names for s in agent_buckets(self.plan, name)]
            await make_buckets(self._nc.jetstream(timeout=10), specs, self.plan.replicas, report)
            new = sorted(set(names) - self.granted)
            if not new:
                return []
            agents = tuple(sorted(self.granted | set(new)))
            auth = render_auth(self.identities, grants(replace(self.deployment, agents=agents)))
            await self._probe()
            await asyncio.to_thread(self._write, auth)
            for name in new:
                await self._granted(name)
            self.granted |= set(new)  # only once applied: a failure is tried again
            log.info("runtime agents granted", extra={"agents": new, "buckets": report.created})
            return new

    def _write(self, auth: str) -> None:
        if self.auth_file:
            Path(self.auth_file).write_text(auth)
        self.apply(auth)

    async def _probe(self) -> Client:
        """A connection as the `runner` identity, opened before a reload: one opened while
        the server reloads its users can be refused."""
        if self._runner is None or self._runner.is_closed:

            async def quiet(_exc: Exception) -> None:  # refusals are expected until then
                return None

            runner = self.identities["runner"]
            self._runner = await nats.connect(
                self.url,
                name="fleet-admin-probe",
                nkeys_seed=str(runner.seed_file),
                inbox_prefix=runner.inbox_prefix,
                error_cb=quiet,
                allow_reconnect=False,
            )
        return self._runner

    async def _granted(self, name: str) -> None:
        """Wait until the `runner` identity may read the agent's task bucket: the server
        reloads in the background, and a runner started before that would be refused."""
        bucket = A2A_TASKS.for_agent(subjects.hosted_agent(name)).name
        probe = msgspec.json.encode({"last_by_subj": f"$KV.{bucket}.probe"})
        give_up = time.monotonic() + GRANT_WAIT_S
        while True:
            try:
                runner = await self._probe()
                await runner.request(f"$JS.API.STREAM.MSG.GET.KV_{bucket}", probe, 0.5)
                return
            except nats.errors.TimeoutError:
                pass  # refused: the old permissions still hold
            except (nats.errors.NoRespondersError, nats.errors.Error, OSError):
                await asyncio.sleep(PROBE_PAUSE_S)  # mid-reload; the connection may be gone
            if time.monotonic() > give_up:
                raise TimeoutError(
                    f"the server did not apply the runners' grants for agents.{name} "
                    f"within {GRANT_WAIT_S:.0f} s"
                )

    async def _on_request(self, msg: Msg) -> None:
        try:
            call = _request.decode(msg.data)
        except UNDECODABLE as exc:
            reply = AgentResourcesReply(name="", error=f"bad request: {exc}")
        else:
            try:
                await self.prepare([call.name])
                reply = AgentResourcesReply(name=call.name)
            except Exception as exc:
                log.warning("runtime agent not granted", exc_info=True)
                reply = AgentResourcesReply(name=call.name, error=str(exc) or type(exc).__name__)
        if msg.reply:
            await msg.respond(msgspec.json.encode(reply))
