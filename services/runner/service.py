"""The runner: the hosted-agent data plane (`fleet run runner`).

Serves each agent of `[runner] agents` as A2A agent `agents.<name>` in the
queue group `runner-<name>` on `a2a.agents.<name>.rpc` (and the agents created at
runtime, services.runner.dynamic), with tasks, sessions
and task ownership in JetStream KV so any runner can answer for any task or
session (services.runner.taskstore, services.runner.sessions). Reports a
UnitTelemetry heartbeat per agent pool every second on
`fleet.telemetry.agents-<name>.<unit>`, stops taking work when its unit is
published `draining`, and exits when it is published `terminated`.

A runner whose pool is `agents-<name>` for an agent not among `[runner] agents` is
that runtime agent's own runner (the unit the gateway asked for with the agent's
cores and memory, `[gateway] agent_runtime`): it serves only that agent and reports
in that pool.

The `local` provider starts the units of a pool `agents-<name>` as runners with its
`agent_command`, by default (see tools/demo/agents.toml):

    [providers.local]
    agent_command = ["env", "FLEET_RUNNER__UNIT={unit}", "FLEET_RUNNER__POOL={pool}",
               "FLEET_RUNNER__PROVIDER={provider}", "FLEET_RUNNER__READY_FILE={ready_file}",
               "{python}", "-m", "tools", "run", "runner", "--nats", "{nats}"]
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

from contracts import subjects
from contracts.a2a import AgentCapabilities, AgentCard, AgentProvider, AgentSkill
from contracts.api.tools import tools_problem
from contracts.events import UnitEvent
from services.a2a import nats_interface
from services.kit import ConfigError, Permanent, Service
from services.kit.service import Delivery
from services.kit.signing import Authors, trusted_keys, unkeyed, watcher_reports
from services.runner.admission import Capacity
from services.runner.dynamic import RuntimeAgents
from services.runner.executor import AgentExecutor
from services.runner.host import HostedAgent
from services.runner.models import ModelBackend, build_model
from services.runner.ratelimit import ClusterRate
from services.runner.sessions import SessionStore
from services.runner.settings import RunnerSection, RunnerSettings, a2a_settings
from services.runner.taskstore import LeasedTaskStore
from services.runner.telemetry import RunnerMetrics, Tally, heartbeat
from services.runner.tooluse import agent_tools

log = logging.getLogger("fleet.runner")

GC_THRESHOLDS = (20_000, 50, 100)
"""Collector thresholds: a request allocates many short-lived objects, and with the
default (700, 10, 10) many are still alive at a collection and get promoted, so full
passes grow; fewer, larger young passes let them die young."""


def default_unit() -> str:
    """`<host>-<pid>` as a subject token."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{socket.gethostname()}-{os.getpid()}")[:100]


def own_agent(section: RunnerSection) -> str | None:
    """The runtime agent whose own runner this is (pool `agents-<name>`, the agent not
    configured here), or None for a shared runner; pure."""
    name = subjects.agent_of_pool(section.pool) if section.pool else None
    return name if name is not None and name not in section.agents else None


def agent_card(name: str, nats_url: str, model: str) -> AgentCard:
    """The AgentCard of hosted agent `name`."""
    agent = subjects.hosted_agent(name)
    return AgentCard(
        name=agent,
        description=f"Hosted agent {name!r} served by fleetplane runners (model: {model}"
        + (", simulated" if model == "sim" else "")
        + ").",
        supported_interfaces=[nats_interface(agent, nats_url)],
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="chat",
                name="Conversation",
                description="Multi-turn conversation; send follow-ups with the same contextId.",
                tags=["chat", model],
            )
        ],
        provider=AgentProvider(organization="fleetplane", url="https://github.com/fleetplane"),
    )


def _fast_loop() -> None:
    """uvloop where installed: nats-py's per-message work dominates a runner's CPU."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class RunnerService(Service[RunnerSettings]):
    """Hosted agents on this process; see the module docstring."""

    name = "runner"
    description = "hosted-agent runner (A2A agents.<name>)"
    migrations = None

    owns_process = False
    """True under `fleet run runner` (main()): the process-wide tuning is the runner's."""

    def __init__(self, settings: RunnerSettings | None = None, *, nats_url: str | None = None):
        super().__init__(settings, nats_url=nats_url)
        section = self.settings.runner
        self.unit = section.unit or default_unit()
        subjects.token(self.unit, "unit")
        self.runner_id = f"{self.unit}-{os.getpid()}-{id(self) % 10000}"
        self.agents: dict[str, HostedAgent] = {}
        self.stores: dict[str, LeasedTaskStore] = {}
        self.tallies: dict[str, Tally] = {}
        problem = tools_problem(section.tools)
        if problem is not None:
            raise ConfigError(f"runner.tools: {problem}")
        self.model: ModelBackend = build_model(section)
        self.own_models: list[ModelBackend] = []
        self._drained = False
        self.dynamic: RuntimeAgents | None = None
        """Agents created at runtime (`fleet agents create`), when `runtime_agents` is on."""
        self.own_agent = own_agent(section)
        self.rmetrics = RunnerMetrics(self.metrics.registry)
        self._since = time.time()

    def _own_model(self, model: ModelBackend) -> ModelBackend:
        """`model`, closed with the runner (a static agent with tools has its own)."""
        self.own_models.append(model)
        return model

    def served(self) -> list[str]:
        """The agents this runner reports on: the configured ones, or its own agent."""
        return [self.own_agent] if self.own_agent else list(self.settings.runner.agents)

    def host_of(self, name: str) -> HostedAgent | None:
        """Where agent `name` is served here, configured or created at runtime."""
        return self.agents.get(name) or (self.dynamic.hosts.get(name) if self.dynamic else None)

    def pool_of(self, name: str) -> str:
        return self.settings.runner.pool or subjects.agent_pool(name)

    async def setup(self) -> None:
        s = self.settings.runner
        for name in [] if self.own_agent else s.agents:
            tools = agent_tools(name, s, self)
            model = self.model if tools is None else self._own_model(build_model(s, tools))
            self.agents[name] = await self.serve_agent(name, s, model)
        self.authors = Authors(trusted_keys(self.settings.signing, "provisioner"))
        self.reports = watcher_reports(self.settings.signing)
        unkeyed(
            self.authors.unkeyed_warning("unit events", "provisioner_key"),
            binding=not self.settings.nats.create_resources,
            log=log,
        )
        for pool in dict.fromkeys(self.pool_of(name) for name in self.served()):
            await self.subscribe(subjects.unit(pool, self.unit), UnitEvent, self._on_unit_event)
        if s.runtime_agents or self.own_agent:
            self.dynamic = await RuntimeAgents.start(self)
            why = self.dynamic.refused.get(self.own_agent or "")
            if why is not None:
                # This runner exists for that one agent: never ready, so its unit fails
                # and the agent's create answers with the reason instead of "ready".
                raise ConfigError(f"cannot serve agent {self.own_agent}: {why}")
        self.every(s.telemetry_interval_s, self._beat, "telemetry")
        self.every(max(0.2, s.lease_s / 3), self._renew, "lease")
        self.every(s.reap_interval_s, self._reap, "reap")
        if self.owns_process:
            # What exists now (modules, settings, clients) lives as long as the process:
            # keep it out of the collector's full passes, which otherwise pause requests.
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
        if s.ready_file:
            await asyncio.to_thread(Path(s.ready_file).touch)
        log.info(
            "serving",
            extra={
                "agents": self.served(),
                "runtime_agents": bool(s.runtime_agents and not self.own_agent),
                "unit": self.unit,
                "model": s.model,
                "max_sessions": s.max_sessions,
            },
        )

    async def serve_agent(self, name: str, s: RunnerSection, model: ModelBackend) -> HostedAgent:
        """Serve agent `agents.<name>` here: its task store, sessions, executor and server."""
        replicas = self.settings.nats.replicas
        agent = subjects.hosted_agent(name)
        store = await LeasedTaskStore.open(
            self.js,
            agent,
            self.runner_id,
            lease_s=s.lease_s,
            storage=s.kv_storage,
            replicas=replicas,
        )
        await store.renew()
        sessions = await SessionStore.open(
            self.js,
            agent,
            idle_s=s.session_idle_s,
            quota=s.tenant_max_sessions,
            storage=s.kv_storage,
            replicas=replicas,
        )
        tally = Tally(last_active=time.time())
        limit = s.tenant_rate_limit_per_min
        rate = await ClusterRate.open(
            self.js, agent, limit, max(s.tenant_rate_chunk, limit // 20), replicas
        )
        executor = AgentExecutor(
            agent=name,
            model=model,
            sessions=sessions,
            section=s,
            runner_id=self.runner_id,
            metrics=self.rmetrics,
            tally=tally,
        )
        host = HostedAgent(
            self,
            name,
            executor,
            agent_card(name, self.nats_url, s.model),
            store,
            a2a_settings(s),
            capacity=Capacity(max_sessions=s.max_sessions, max_queue=s.max_queue),
            metrics=self.rmetrics,
            rate=rate,
        )
        await host.start()
        self.stores[name], self.tallies[name] = store, tally
        return host

    async def unserve_agent(self, name: str, host: HostedAgent) -> None:
        """Stop serving `agents.<name>` here: running tasks finish (up to the stop deadline)."""
        await host.drain(self.settings.stop_deadline_s)
        await host.stop()
        store = self.stores.pop(name, None)
        self.tallies.pop(name, None)
        if store is not None:
            await store.resign()

    @classmethod
    def main(cls, config: str | None = None, nats_url: str | None = None) -> int:
        """`fleet run runner`; a configuration the runner cannot serve with exits 2."""
        _fast_loop()
        cls.owns_process = True
        try:
            return super().main(config, nats_url)
        except ConfigError as exc:
            print(f"fleet run runner: {exc}", file=sys.stderr)
            return 2

    async def stop(self) -> None:
        """Leave every queue group, let running tasks finish (up to stop_deadline_s), stop."""
        if self.state == "ready" and not self._drained:
            self._drained = True
            self.metrics.up.labels(self.name).set(0)
            for host in self.agents.values():
                await host.drain(self.settings.stop_deadline_s)
            if self.dynamic is not None:
                await self.dynamic.close(self.settings.stop_deadline_s)
        await super().stop()

    async def teardown(self) -> None:
        for host in self.agents.values():
            await host.stop()
        if self.dynamic is not None:
            await self.dynamic.stop()
        for store in self.stores.values():
            await store.resign()
        for model in [self.model, *self.own_models]:
            await model.close()

    def status(self) -> dict[str, object]:
        out = super().status()
        out["unit"] = self.unit
        out["agents"] = {
            name: {
                "inflight": h.inflight,
                "queued": h.waiting,
                "capacity": h.capacity.max_sessions,
                "joined": h.joined,
            }
            for name, h in self.agents.items()
        }
        return out

    # -- periodic work ---------------------------------------------------------------------
    async def _beat(self) -> None:
        now = time.time()
        for name in self.served():
            host = self.host_of(name)
            tally = self.tallies.get(name)
            if host is None or tally is None:  # its agent was deleted: its unit goes next
                continue
            tokens, completed = tally.take()
            idle = 0.0 if host.inflight else now - tally.last_active
            beat = heartbeat(
                pool=self.pool_of(name),
                unit=self.unit,
                provider=self.settings.runner.provider,
                inflight=host.inflight,
                capacity=host.capacity.max_sessions,
                queued=host.waiting,
                tokens=tokens,
                completed=completed,
                idle_s=idle,
                healthy=self.state == "ready",
            )
            await self.publish(subjects.telemetry(beat.pool, beat.unit), beat)

    async def _renew(self) -> None:
        for store in list(self.stores.values()):
            await store.renew()

    async def _reap(self) -> None:
        for name, store in list(self.stores.items()):
            host = self.host_of(name)
            if host is None:
                continue
            failed = await store.reap(host.publish_event)
            if failed:
                self.metrics.count("tasks_reaped", len(failed))
                log.warning(
                    "failed the tasks of a runner that stopped",
                    extra={"agent": name, "tasks": len(failed)},
                )

    async def _on_unit_event(self, event: UnitEvent, d: Delivery) -> None:
        """Leave on `draining`, stop on an end: only on the provisioner's word, or anyone
        could stop every runner with a forged `terminated`. The watcher's failure report
        is the provisioner's to act on; the provisioner's own event follows it."""
        if self.reports.signed(d):
            return
        forged = self.authors.problem(d)
        if forged is not None:
            self.metrics.count("unit_events_refused")
            raise Permanent(f"unit event not signed by the provisioner: {forged}")
        if event.state == "draining":
            for name in self.served():
                host = self.host_of(name)
                if host is not None:
                    await host.leave(for_good=True)
        elif event.state in ("terminated", "failed"):
            log.info("unit ended; stopping", extra={"unit": self.unit, "state": event.state})
            self.request_stop()


SERVICE = RunnerService
