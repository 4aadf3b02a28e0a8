"""A hosted agent's own runner (`[gateway] agent_runtime`): asked for when the agent is
made, released when it is deleted.

The runner is a pinned provision of one unit in the agent's pool `agents-<name>`,
of the agent's cores and memory, from the runtime's provider (`hypercore`: a microVM
of that size; `local`: a process). It goes through the cost-guard like any other
unit. `agents.create` answers once the unit is ready, or with the reason it is not:
a denial or a unit that failed (a size no node can take) undoes the agent, so a
refused create changes nothing; a verdict held for a person, or a unit still
booting when `agent_start_timeout_s` ends, leaves the agent to start later.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts import subjects
from contracts.api.replies import AgentRunner, AgentSpec, CommandAnswer
from contracts.base import UNDECODABLE
from contracts.commands import ProvisionRequest, ReleaseRequest
from contracts.events import UnitEvent
from services.kit.service import Delivery, RequestError
from services.kit.signing import Authors

log = logging.getLogger("fleet.gateway.agents")

Command = Callable[[ProvisionRequest | ReleaseRequest, float], Awaitable[CommandAnswer]]
Ask = Callable[[str, Any], Awaitable[dict[str, Any]]]

LIVE = ("requested", "booting", "ready", "draining")

_event = msgspec.json.Decoder(UnitEvent)


def runner_request(spec: AgentSpec, runtime: str, requester: str) -> ProvisionRequest:
    """The provision of the agent's own runner; pure."""
    return ProvisionRequest(
        id=f"agent-{spec.name}-{uuid.uuid4().hex[:12]}",
        requester=requester,
        pool=subjects.agent_pool(spec.name),
        gpu_model="CPU",
        count=1,
        provider=runtime,
        pin=True,
        cores=spec.cores,
        memory_mb=spec.memory_mb,
        reason=f"runner of hosted agent {spec.name} ({spec.cores} vCPUs, "
        f"{spec.memory_mb} MiB) for {spec.user}",
    )


def refusal(spec: AgentSpec, answer: CommandAnswer, event: UnitEvent | None) -> RequestError | None:
    """Why the agent cannot stay (its runner was denied or failed), or None; pure."""
    why = f"agent {spec.name!r} was not created: its runner"
    if answer.decision == "denied":
        return RequestError(f"{why} was denied by the cost-guard: {answer.reason}", 402)
    if event is not None and event.state in ("failed", "terminated"):
        return RequestError(f"{why} could not start: {event.reason}", 503)
    return None


def runner_view(
    spec: AgentSpec, runtime: str, answer: CommandAnswer, event: UnitEvent | None
) -> AgentRunner:
    """What the create answer says of the runner; pure."""
    if answer.decision == "pending" or answer.decision == "held":
        state, reason = "pending", answer.reason
    elif event is None:
        state, reason = "requested", "approved; no unit event yet"
    else:
        state, reason = event.state, event.reason
    return AgentRunner(
        pool=subjects.agent_pool(spec.name),
        unit=event.unit if event else "",
        provider=runtime,
        state=state,
        cores=spec.cores,
        memory_mb=spec.memory_mb,
        usd_per_hour=answer.usd_per_hour,
        reason=reason,
    )


class AgentRunners:
    """Starts and releases agents' own runners for the gateway; see the module docstring."""

    def __init__(
        self,
        nc: Client,
        command: Command,
        ask: Ask,
        runtime: str,
        start_timeout_s: float,
        authors: Authors | None = None,
        reports: Authors | None = None,
    ) -> None:
        self.nc = nc
        self.authors = authors or Authors({})
        """Whose unit events are believed: the provisioner's (`[signing] provisioner_key`);
        a forged `ready` or `failed` would otherwise answer agents.create for it."""
        self.reports = reports or Authors({})
        """The watcher's failure reports: passed over quietly, the provisioner's word follows."""
        self.command = command
        self.ask = ask
        self.runtime = runtime
        self.start_timeout_s = start_timeout_s

    async def start(self, spec: AgentSpec, requester: str) -> AgentRunner:
        """Ask for the runner and wait for it to be ready (or fail, or the timeout)."""
        cmd = runner_request(spec, self.runtime, requester)
        events: asyncio.Queue[UnitEvent] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            d = Delivery(msg.subject, msg.headers or {}, data=msg.data)
            if self.reports.signed(d):
                return
            forged = self.authors.problem(d)
            if forged is not None:
                log.warning("unit event refused", extra={"subject": msg.subject, "why": forged})
                return
            try:
                events.put_nowait(_event.decode(msg.data))
            except UNDECODABLE:
                return

        # Subscribed before the command goes out, so a fast unit's events are all seen.
        sub = await self.nc.subscribe(subjects.units_of(cmd.pool), cb=on_event)
        try:
            answer = await self.command(cmd, min(10.0, self.start_timeout_s))
            event = None
            if answer.decision == "approved":
                event = await self._settled(events)
        finally:
            await sub.unsubscribe()
        problem = refusal(spec, answer, event)
        if problem is not None:
            raise problem
        return runner_view(spec, self.runtime, answer, event)

    async def _settled(self, events: asyncio.Queue[UnitEvent]) -> UnitEvent | None:
        """The unit's first ready or ending event, else its last one at the timeout."""
        last = None
        try:
            async with asyncio.timeout(self.start_timeout_s):
                while True:
                    last = await events.get()
                    if last.state in ("ready", "failed", "terminated"):
                        return last
        except TimeoutError:
            return last

    async def release(self, spec: AgentSpec, requester: str) -> list[CommandAnswer]:
        """Release every live unit of the agent's pool (through the cost-guard)."""
        pool = subjects.agent_pool(spec.name)
        units = await self.ask("units.list", {"pool": pool})
        live = [u for u in units.get("units", []) if u.get("state") in LIVE]
        return list(
            await asyncio.gather(
                *(
                    self.command(
                        ReleaseRequest(
                            id=f"agent-{spec.name}-{uuid.uuid4().hex[:12]}",
                            requester=requester,
                            pool=pool,
                            unit=u["unit"],
                            reason=f"hosted agent {spec.name} was deleted",
                        ),
                        5.0,
                    )
                    for u in live
                )
            )
        )
