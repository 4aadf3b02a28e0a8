"""`fleet.api.agents.*` for the gateway: hosted agents made, listed and deleted within
each user's quota (services.gateway.agents), each with a runner of its own when
`[gateway] agent_runtime` names a provider (services.gateway.runners)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client

from contracts.api.replies import AgentsReply
from contracts.api.requests import AgentCreateCall, AgentDeleteCall, AgentsQuery
from services.gateway import agentcheck
from services.gateway.agents import AgentRegistry
from services.gateway.runners import AgentRunners
from services.kit.service import Delivery


class AgentDesk:
    """The three operations; see the module docstring."""

    def __init__(
        self,
        registry: AgentRegistry,
        runners: AgentRunners,
        runtime: str,
        count: Callable[[str], None],
        prepare: Callable[[str], Awaitable[None]] | None = None,
        *,
        nc: Client | None = None,
        serve_timeout_s: float = 0.0,
    ) -> None:
        self.registry = registry
        self.nc = nc
        """Where the checks of `services.gateway.agentcheck` ask; None: no checks."""
        self.serve_timeout_s = serve_timeout_s
        """How long a new agent of the shared runners may take to be served; 0: no wait."""
        self.runners = runners
        self.runtime = runtime
        """Where new agents' runners run (`[gateway] agent_runtime`); empty: shared ones."""
        self.count = count
        self.prepare = prepare
        """What makes a new agent's resources before runners see it (a secured
        deployment's admin, services.gateway.service); None: the runners make them."""

    async def on_create(self, call: AgentCreateCall, _d: Delivery) -> AgentsReply:
        """`agents.create`: within the user's quota, then served by the runners, or by a
        runner of its own; a name already served is refused, and an agent no runner serves
        (or whose runner is refused) is undone, saying why."""
        if self.nc is not None:
            await agentcheck.name_free(self.nc, call.name)
        reply = await self.registry.create(call, time.time(), self.runtime, self.prepare)
        try:
            if self.runtime:
                runner = await self.runners.start(reply.agents[0], call.user)
                reply = msgspec.structs.replace(reply, runner=runner)
            elif self.nc is not None and self.serve_timeout_s > 0:
                await agentcheck.served(self.nc, call.name, self.serve_timeout_s)
        except BaseException:
            await self.registry.delete(AgentDeleteCall(name=call.name, user=call.user))
            raise
        self.count("agents_created")
        return reply

    async def on_list(self, q: AgentsQuery, _d: Delivery) -> AgentsReply:
        """`agents.list`."""
        return await self.registry.all(q.user)

    async def on_delete(self, call: AgentDeleteCall, _d: Delivery) -> AgentsReply:
        """`agents.delete`: the runners stop serving it; its own runner is released."""
        reply = await self.registry.delete(call)
        if reply.agents[0].runtime:
            await self.runners.release(reply.agents[0], call.user)
        self.count("agents_deleted")
        return reply
