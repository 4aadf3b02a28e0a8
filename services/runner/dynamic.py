"""Agents created at runtime: every runner watches the `fleet_agents` bucket and serves
each agent in it (a queue group per agent across runners), with the agent's own
system prompt, model and tools, and stops serving one when it is deleted.

An agent with a `runtime` has runner units of its own (pool `agents-<name>`, sized to
it): the shared runners leave it to them, and such a runner serves only it
(`serves`).

A runner that cannot serve an agent it should (a Claude model without a key) says why
to the gateway's serve check (`HEADER_SERVE_CHECK` on the agent's card subject), so
`agents.create` answers with the reason and undoes the agent instead of leaving one that
never answers.

The gateway writes the bucket (services.gateway.agents); the runner only reads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from contracts import subjects
from contracts.a2a import HEADER_SERVE_CHECK
from contracts.api.replies import AgentSpec
from contracts.buckets import AGENTS, agent_key, agent_of_key
from services.kit.buckets import ensure_bucket
from services.runner.models import ModelBackend, build_model
from services.runner.settings import RunnerSection
from services.runner.tooluse import ApiBus, agent_tools

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext

    from services.kit.subscriptions import Subscriptions
    from services.runner.host import HostedAgent
    from services.runner.settings import RunnerSettings
    from services.runner.taskstore import LeasedTaskStore

log = logging.getLogger("fleet.runner")

_spec = msgspec.json.Decoder(AgentSpec)


def section_for(base: RunnerSection, spec: AgentSpec) -> RunnerSection:
    """The runner settings one agent runs with: its prompt, model and tools over the
    runner's."""
    own = {"system_prompt": spec.system_prompt, "tools": list(spec.tools)}
    if spec.model == "sim":
        return msgspec.structs.replace(base, model="sim", **own)
    return msgspec.structs.replace(base, model="anthropic", anthropic_model=spec.model, **own)


def serves(spec: AgentSpec, own: str | None) -> bool:
    """Whether a runner serves runtime agent `spec`: the runner of agent `own` only it, a
    shared runner (`own` None) every agent that has no runner units of its own; pure."""
    return spec.name == own if own is not None else not spec.runtime


class RunnerService(ApiBus, Protocol):
    """What the runner service offers the runtime agents (services.runner.service)."""

    settings: RunnerSettings
    agents: dict[str, HostedAgent]
    stores: dict[str, LeasedTaskStore]
    own_agent: str | None
    """The runtime agent this runner is the own runner of, or None for a shared runner."""
    runner_id: str
    subscriptions: Subscriptions

    @property
    def js(self) -> JetStreamContext: ...

    def spawn(self, coro: Any, name: str = "") -> Any: ...

    async def serve_agent(
        self, name: str, s: RunnerSection, model: ModelBackend
    ) -> HostedAgent: ...

    async def unserve_agent(self, name: str, host: HostedAgent) -> None: ...


class RuntimeAgents:
    """The runtime agents this runner serves; see the module docstring."""

    def __init__(self, runner: RunnerService) -> None:
        self.runner = runner
        self.hosts: dict[str, HostedAgent] = {}
        self.models: dict[str, ModelBackend] = {}
        self.refused: dict[str, str] = {}
        """Agents this runner cannot serve, and why (e.g. a Claude model without a key)."""
        self._refusals: dict[str, Subscription] = {}
        """Per refused agent, the subscription that tells the gateway's serve check why."""
        self._lock = asyncio.Lock()
        self._watcher: Any = None

    @classmethod
    async def start(cls, runner: RunnerService) -> RuntimeAgents:
        """Serve what the bucket holds now, then follow its changes in the background."""
        self = cls(runner)
        kv = await ensure_bucket(runner.js, AGENTS, replicas=runner.settings.nats.replicas)
        self._watcher = await kv.watch(agent_key("*"))
        ready = asyncio.Event()
        runner.spawn(self._follow(ready), "runtime-agents")
        await ready.wait()
        return self

    async def _follow(self, ready: asyncio.Event) -> None:
        try:
            async for entry in self._watcher:
                if entry is None:  # the bucket's current contents have all been seen
                    ready.set()
                    continue
                name = agent_of_key(entry.key) or ""
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    await self.remove(name)
                else:
                    await self.add(_spec.decode(entry.value))
        finally:
            ready.set()

    async def add(self, spec: AgentSpec) -> None:
        """Serve `spec` here (once; a name is never reused while it is served)."""
        async with self._lock:
            if spec.name in self.hosts or spec.name in self.runner.agents:
                return
            if not serves(spec, self.runner.own_agent):
                return
            section = section_for(self.runner.settings.runner, spec)
            try:
                model = build_model(section, agent_tools(spec.name, section, self.runner))
            except Exception as exc:  # e.g. a Claude model on a runner without a key
                log.error("cannot serve agent", extra={"agent": spec.name, "why": str(exc)})
                self.refused[spec.name] = str(exc)
                await self._say_why(spec.name)
                return
            self.refused.pop(spec.name, None)
            self.models[spec.name] = model
            self.hosts[spec.name] = await self.runner.serve_agent(spec.name, section, model)
            log.info("serving runtime agent", extra={"agent": spec.name, "user": spec.user})

    async def _say_why(self, name: str) -> None:
        """Answer the gateway's serve check for `name` with why it is not served here. Not
        in the agent's queue group, and silent to any other card request: where another
        runner serves the agent, its callers never hear of this one."""
        if name in self._refusals:
            return
        why = f"runner {self.runner.runner_id} cannot serve agent {name!r}: {self.refused[name]}"
        body = msgspec.json.encode({"error": {"code": 503, "message": why}})

        async def answer(msg: Msg) -> None:
            if msg.reply and (msg.headers or {}).get(HEADER_SERVE_CHECK):
                await msg.respond(body)

        card = subjects.a2a_card(subjects.hosted_agent(name))
        self._refusals[name] = await self.runner.subscriptions.listen(card, answer)

    async def remove(self, name: str) -> None:
        """Stop serving `name` here."""
        async with self._lock:
            self.refused.pop(name, None)
            refusal = self._refusals.pop(name, None)
            if refusal is not None:
                self.runner.subscriptions.discard(refusal)
                await refusal.unsubscribe()
            host = self.hosts.pop(name, None)
            if host is None:
                return
            await self.runner.unserve_agent(name, host)
            model = self.models.pop(name, None)
            if model is not None:
                await model.close()
            log.info("stopped runtime agent", extra={"agent": name})

    async def close(self, deadline_s: float) -> None:
        """Stop following the bucket; let running tasks finish for up to `deadline_s`."""
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        for host in list(self.hosts.values()):
            await host.drain(deadline_s)

    async def stop(self) -> None:
        for name in list(self.hosts):
            host = self.hosts.pop(name)
            await host.stop()
            store = self.runner.stores.pop(name, None)
            if store is not None:
                await store.resign()
        for model in self.models.values():
            await model.close()
        self.models.clear()
