"""The gateway (`fleet run gateway`): the composite fleet.api operations.

Serves `fleet.api.stats`, `health`, `report`, `provision`, `release` and
`cleanup_idle` in the shared `fleet-api` micro service. Money still passes the
cost-guard: `provision` and `release` publish a command on the FLEET_CMDS
stream and answer with the Verdict that carries the same id (subscribed before
publishing, so a fast verdict is never missed), or `pending` when none came in
`wait_s`. Callers name themselves with the `Fleet-Tenant` header; each tenant
gets a rate limit on the commands that may cost money.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from contracts import subjects
from contracts.a2a import HEADER_TENANT
from contracts.admin import AgentResources, AgentResourcesReply
from contracts.api import CleanupIdleCall, HealthQuery, PoolQuery, ProvisionCall, ReleaseCall
from contracts.api.replies import AlertReply, CleanupReply, CommandAnswer, IdleUnit
from contracts.api.report import FleetReport, FleetReportQuery
from contracts.api.requests import (
    AgentCreateCall,
    AgentDeleteCall,
    AgentsQuery,
    AlertCall,
    GpuCleanupCall,
    GpuDestroyCall,
    GpuProvisionCall,
)
from contracts.base import UNDECODABLE
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict
from contracts.events import Alert
from services.a2a.tenants import Refused, TenantLimits
from services.gateway import composites, guide
from services.gateway.agentdesk import AgentDesk
from services.gateway.agents import AgentRegistry
from services.gateway.batchdesk import BatchDesk
from services.gateway.history.serve import history_report
from services.gateway.jobdesk import JobDesk, JobOptions
from services.gateway.runners import AgentRunners
from services.kit import Service
from services.kit.bus import gather_replies
from services.kit.config import KitSettings
from services.kit.pools import PoolConfig
from services.kit.service import Delivery, RequestError
from services.kit.signing import Authors, trusted_keys, unkeyed, watcher_reports
from services.kit.tracing import inject

EXPECTED = ("watcher", "scaler", "costguard", "provisioner", "brain", "gateway")

log = logging.getLogger("fleet.gateway")

ADMIN_TIMEOUT_S = 30.0
"""How long a new agent waits for the admin to make its resources (a server reload)."""
_resources_reply = msgspec.json.Decoder(AgentResourcesReply)


class GatewayOptions(msgspec.Struct, kw_only=True):
    """`[gateway]`."""

    upstream_timeout_s: float = 3.0
    """How long to wait for another service's fleet.api answer, seconds."""
    commands_per_min_per_tenant: int = 30
    """Provision/release/cleanup calls one tenant may make per minute."""
    lag_warn: int = 1000
    """Messages a durable consumer may be behind before health reports it."""
    expected_services: list[str] = msgspec.field(default_factory=lambda: list(EXPECTED))
    """Services health expects to answer `$SRV.PING`."""
    agents_per_user: int = 50
    """Hosted agents one user may have at once, across every gateway (the platform's 50)."""
    agent_runtime: str = ""
    """Where agents created at runtime run: empty, on the shared runners; a provider name,
    on a runner unit of each agent's own (pool `agents-<name>`) that provider makes:
    `hypercore`, a microVM of the agent's cores and memory; `local`, a process."""
    agent_start_timeout_s: float = 60.0
    """How long `agents.create` waits for an agent's own runner to be ready, seconds; past
    it the answer says the runner is still starting (a microVM boot takes seconds, an
    image pull longer)."""
    agent_serve_timeout_s: float = 10.0
    """How long `agents.create` waits for a shared runner to serve a new agent (its card
    answers); past it, or once the runners say they cannot (a Claude model without a key),
    the agent is undone and the answer says why. 0: do not wait (runners start later)."""


class GatewaySettings(KitSettings, kw_only=True):
    gateway: GatewayOptions = msgspec.field(default_factory=GatewayOptions)
    jobs: JobOptions = msgspec.field(default_factory=JobOptions)
    pools: dict[str, PoolConfig] = msgspec.field(default_factory=dict)
    """`[pools.*]`: the pools jobs are routed to (gpu_model, providers, max_usd_per_hour,
    and optionally vram_gb, vendor, runtime)."""


class Gateway(Service[GatewaySettings]):
    """The composite fleet.api operations; see the module docstring."""

    name = "gateway"
    description = (
        "fleet.api composites: stats, health, report, provision, release, cleanup_idle, jobs"
    )

    async def setup(self) -> None:
        opts = self.settings.gateway
        self.limits = TenantLimits(opts.commands_per_min_per_tenant, 1_000_000)
        self.waiting: dict[str, asyncio.Future[Verdict]] = {}
        self.verdicts = msgspec.json.Decoder(Verdict)
        # Whose word the gateway passes on: verdicts the cost-guard signed, unit
        # events the provisioner signed; a forged one answers no caller.
        signing = self.settings.signing
        self.verdict_authors = Authors(trusted_keys(signing, "costguard"))
        unit_authors = Authors(trusted_keys(signing, "provisioner"))
        for authors, what, setting in (
            (self.verdict_authors, "verdicts", "costguard_key"),
            (unit_authors, "unit events", "provisioner_key"),
        ):
            unkeyed(
                authors.unkeyed_warning(what, setting),
                binding=not self.settings.nats.create_resources,
                log=log,
            )
        # Core subscription: JetStream publishes reach it too, and it exists before any publish.
        await self.listen("fleet.budget.*", self._on_verdict)
        await self.api_endpoint("stats", PoolQuery, self.on_stats)
        await self.api_endpoint("health", HealthQuery, self.on_health)
        await self.api_endpoint("report", PoolQuery, self.on_report)
        await self.api_endpoint("provision", ProvisionCall, self.on_provision)
        await self.api_endpoint("release", ReleaseCall, self.on_release)
        await self.api_endpoint("cleanup_idle", CleanupIdleCall, self.on_cleanup_idle)
        self.jobs = JobDesk(
            self,
            {name: msgspec.structs.asdict(cfg) for name, cfg in self.settings.pools.items()},
            self.settings.jobs,
        )
        await self.jobs.setup()
        self.batches = BatchDesk(self, self.settings.pools, self.jobs.add_pool)
        await self.batches.setup(self.settings.nats.replicas)
        await self.api_endpoint("gpu.provision", GpuProvisionCall, self.on_gpu_provision)
        await self.api_endpoint("gpu.destroy", GpuDestroyCall, self.on_gpu_destroy)
        await self.api_endpoint("gpu.cleanup_idle", GpuCleanupCall, self.on_gpu_cleanup)
        await self.api_endpoint("alert", AlertCall, self.on_alert)
        self.agents = AgentDesk(
            await AgentRegistry.open(self.js, opts.agents_per_user, self.settings.nats.replicas),
            AgentRunners(
                self.nc,
                self._command,
                self.ask,
                opts.agent_runtime,
                opts.agent_start_timeout_s,
                unit_authors,
                watcher_reports(signing),
            ),
            opts.agent_runtime,
            self.metrics.count,
            None if self.settings.nats.create_resources else self._agent_resources,
            nc=self.nc,
            serve_timeout_s=opts.agent_serve_timeout_s,
        )
        await self.api_endpoint("agents.create", AgentCreateCall, self.agents.on_create)
        await self.api_endpoint("agents.list", AgentsQuery, self.agents.on_list)
        await self.api_endpoint("agents.delete", AgentDeleteCall, self.agents.on_delete)
        await self.api_endpoint("fleet_report", FleetReportQuery, self.on_fleet_report)

    async def _agent_resources(self, name: str) -> None:
        """A secured deployment's services create no bucket and its grants name each
        agent: the admin makes a new agent's (tools/secure/keeper.py), or it cannot run."""
        try:
            msg = await self.nc.request(
                subjects.ADMIN_AGENTS,
                msgspec.json.encode(AgentResources(name=name)),
                timeout=ADMIN_TIMEOUT_S,
            )
        except NoRespondersError:
            raise RequestError(
                "this deployment's services create no resources ([nats] create_resources = "
                f"false) and nothing answers on {subjects.ADMIN_AGENTS} to make a new agent's "
                "(`fleet up --secure` does): add it to [runner] agents and run `fleet init`",
                503,
            ) from None
        except TimeoutError:
            raise RequestError(
                f"the admin did not make agent {name!r}'s resources within "
                f"{ADMIN_TIMEOUT_S:.0f} s; try again",
                503,
            ) from None
        reply = _resources_reply.decode(msg.data)
        if reply.error:
            raise RequestError(f"agent {name!r} cannot be served: {reply.error}", 503)

    # -- upstream calls --------------------------------------------------------------
    async def ask(self, op: str, body: Any = None, *, required: bool = True) -> dict[str, Any]:
        """Another service's fleet.api answer; {"error": ...} (or RequestError) when absent."""
        data = b"{}" if body is None else msgspec.json.encode(body)
        try:
            reply = await self.nc.request(
                subjects.api(op),
                data,
                timeout=self.settings.gateway.upstream_timeout_s,
                headers=inject(),
            )
            answer: dict[str, Any] = msgspec.json.decode(reply.data)
        except Exception as exc:
            text = f"fleet.api.{op} did not answer ({type(exc).__name__}); is its service running?"
            if required:
                raise RequestError(text, 503) from None
            return {"error": {"code": 503, "message": text}}
        return answer

    def _admit(self, d: Delivery) -> str:
        tenant = d.headers.get(HEADER_TENANT, "public")
        try:
            self.limits.admit(tenant, time.monotonic())
        except Refused as exc:
            raise RequestError(str(exc), 429) from None
        return tenant

    # -- verdicts ------------------------------------------------------------------------
    async def _on_verdict(self, msg: Msg) -> None:
        raw = Delivery(msg.subject, msg.headers or {}, data=msg.data)
        forged = self.verdict_authors.problem(raw)
        if forged is not None:
            self.metrics.count("verdicts_refused")
            log.warning("verdict refused", extra={"subject": msg.subject, "why": forged})
            return
        try:
            verdict = self.verdicts.decode(msg.data)
        except UNDECODABLE:
            return
        fut = self.waiting.get(verdict.id)
        if fut is not None and not fut.done():
            fut.set_result(verdict)

    async def command(self, cmd: ProvisionRequest, wait_s: float) -> CommandAnswer:
        """Publish a provision request built by a desk (a batch's, with its own id)."""
        return await self._command(cmd, wait_s)

    async def _command(
        self, cmd: ProvisionRequest | ReleaseRequest, wait_s: float
    ) -> CommandAnswer:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Verdict] = loop.create_future()
        self.waiting[cmd.id] = fut
        try:
            subject = (
                subjects.PROVISION_REQUESTED
                if isinstance(cmd, ProvisionRequest)
                else subjects.RELEASE_REQUESTED
            )
            await self.publish(subject, cmd, msg_id=cmd.id)
            self.metrics.count("commands_sent")
            try:
                verdict = await asyncio.wait_for(fut, wait_s)
            except TimeoutError:
                return CommandAnswer(
                    id=cmd.id,
                    decision="pending",
                    reason=f"no verdict from the cost-guard within {wait_s:g} s; "
                    f"follow it with `fleet tail fleet.budget.>` (id {cmd.id})",
                    request=msgspec.to_builtins(cmd),
                )
        finally:
            self.waiting.pop(cmd.id, None)
        return CommandAnswer(
            id=verdict.id,
            decision=verdict.decision,
            reason=verdict.reason,
            usd_per_hour=verdict.usd_per_hour,
            spent_today_usd=verdict.spent_today_usd,
            budget_usd=verdict.budget_usd,
            projected_today_usd=verdict.projected_today_usd,
            request=msgspec.to_builtins(cmd),
        )

    # -- the operations --------------------------------------------------------------------
    async def on_provision(self, call: ProvisionCall, d: Delivery) -> CommandAnswer:
        """Publish a ProvisionRequest; the cost-guard's verdict on it."""
        self._admit(d)
        req = ProvisionRequest(
            id=f"prov-{uuid.uuid4().hex[:16]}",
            requester=call.requester,
            pool=call.pool,
            gpu_model=call.gpu_model,
            count=call.count,
            provider=call.provider,
            max_usd_per_hour=call.max_usd_per_hour,
            reason=call.reason,
            pin=True,
            duration_s=call.duration,
        )
        return await self._command(req, call.wait_s)

    # -- the GPU-agent guide's operations -------------------------------------------------
    async def on_gpu_provision(self, call: GpuProvisionCall, d: Delivery) -> CommandAnswer:
        """provision_gpu: the model's pool (or its ad-hoc pool), pinned for `duration`."""
        self._admit(d)
        pool = guide.pool_for(call.gpu_model, call.provider, self.settings.pools)
        kept = f"for {call.duration:g} s" if call.duration else "until released"
        req = ProvisionRequest(
            id=f"prov-{uuid.uuid4().hex[:16]}",
            requester=call.requester,
            pool=pool,
            gpu_model=call.gpu_model,
            count=call.count,
            provider=call.provider,
            max_usd_per_hour=call.max_usd_per_hour,
            reason=(call.reason or f"provision_gpu {call.count} x {call.gpu_model}")
            + f" (kept {kept})",
            pin=True,
            duration_s=call.duration,
        )
        return await self._command(req, call.wait_s)

    async def on_gpu_destroy(self, call: GpuDestroyCall, d: Delivery) -> CommandAnswer:
        """destroy_gpu_instance: the provider's instance id mapped to our unit, released."""
        self._admit(d)
        units = await self.ask("units.list", {"provider": call.provider})
        unit = guide.find_instance(units, call.provider, call.instance_id)
        if unit is None:
            known = ", ".join(guide.instance_ids(units, call.provider)[:20]) or "none"
            raise RequestError(
                f"no live {call.provider} instance {call.instance_id!r}; "
                f"its live instances: {known} (list_gpu_instances shows them)",
                404,
            )
        req = ReleaseRequest(
            id=f"rel-{uuid.uuid4().hex[:16]}",
            requester=call.requester,
            pool=unit["pool"],
            unit=unit["unit"],
            reason=call.reason or f"destroy_gpu_instance {call.provider}/{call.instance_id}",
        )
        return await self._command(req, call.wait_s)

    async def on_gpu_cleanup(self, call: GpuCleanupCall, d: Delivery) -> CleanupReply:
        """cleanup_idle_gpus: cleanup_idle with the guide's threshold in minutes."""
        idle_s = call.idle_threshold_minutes * 60.0
        return await self.on_cleanup_idle(
            CleanupIdleCall(idle_s=idle_s, dry_run=call.dry_run, requester=call.requester), d
        )

    async def on_alert(self, call: AlertCall, _d: Delivery) -> AlertReply:
        """send_alert: an Alert on `fleet.alert.<severity>` (stream FLEET_EVENTS)."""
        alert = Alert(
            kind=call.kind,
            message=f"{call.message} (from {call.requester})",
            severity=call.severity,
            pool=call.pool,
            unit=call.unit,
        )
        alert_id = f"alert-{uuid.uuid4().hex[:16]}"
        subject = subjects.alert(call.severity)
        await self.publish(subject, alert, msg_id=alert_id)
        self.metrics.count("alerts")
        return AlertReply(subject=subject, id=alert_id)

    async def on_release(self, call: ReleaseCall, d: Delivery) -> CommandAnswer:
        """Publish a ReleaseRequest; the cost-guard's verdict on it."""
        self._admit(d)
        if call.unit is None and call.count is None:
            raise RequestError("name a unit or a count of units to release", 400)
        req = ReleaseRequest(
            id=f"rel-{uuid.uuid4().hex[:16]}",
            requester=call.requester,
            pool=call.pool,
            unit=call.unit,
            count=call.count if call.unit is None else None,
            reason=call.reason,
        )
        return await self._command(req, call.wait_s)

    async def on_cleanup_idle(self, call: CleanupIdleCall, d: Delivery) -> CleanupReply:
        """Release every ready unit idle for `idle_s` or more (through the cost-guard)."""
        self._admit(d)
        units = await self.ask("units.list", {"pool": call.pool} if call.pool else {})
        idle = composites.idle_units(units, call.idle_s, call.pool, time.time())
        found = [
            IdleUnit(
                unit=u["unit"],
                pool=u["pool"],
                idle_s=float(u.get("idle_s") or 0.0),
                usd_per_hour=float(u.get("usd_per_hour") or 0.0),
            )
            for u in idle
        ]
        if call.dry_run or not idle:
            return CleanupReply(idle=found, released=[], dry_run=call.dry_run)
        verdicts = await asyncio.gather(
            *(
                self._command(
                    ReleaseRequest(
                        id=f"idle-{uuid.uuid4().hex[:16]}",
                        requester=call.requester,
                        pool=u["pool"],
                        unit=u["unit"],
                        reason=f"idle for {float(u.get('idle_s', 0)):.0f} s "
                        f"(threshold {call.idle_s:.0f} s)",
                    ),
                    5.0,
                )
                for u in idle
            )
        )
        saved = sum(
            f.usd_per_hour for f, v in zip(found, verdicts, strict=True) if v.decision == "approved"
        )
        return CleanupReply(
            idle=found, released=list(verdicts), saved_usd_per_hour=round(saved, 4), dry_run=False
        )

    async def stats(self, pool: str | None) -> dict[str, Any]:
        """Per-pool figures with today's spend and budget."""
        body = {"pool": pool} if pool else {}
        pools, units, budget = await asyncio.gather(
            self.ask("pools", body, required=False),
            self.ask("units.list", body, required=False),
            self.ask("budget", required=False),
        )
        table = composites.pool_stats(
            pools if "error" not in pools else {}, units if "error" not in units else {}
        )
        if pool is not None:
            table = {k: v for k, v in table.items() if k == pool}
        missing = [
            f"fleet.api.{op}: {ans['error']['message']}"
            for op, ans in (("pools", pools), ("units.list", units), ("budget", budget))
            if "error" in ans
        ]
        return {
            "pools": table,
            "budget": composites.budget_brief(budget) if "error" not in budget else {},
            "incomplete": missing,
            "ts": time.time(),
        }

    async def on_stats(self, q: PoolQuery, _d: Delivery) -> dict[str, Any]:
        """`fleet.api.stats`."""
        return await self.stats(q.pool)

    async def health(self, wait_s: float) -> dict[str, Any]:
        """Which services answer, their breakers, and how far behind the durable consumers are."""
        pings = await gather_replies(self.nc, "$SRV.PING", wait_s=wait_s)
        names = sorted({p.get("name", "") for p in pings} - {"", "fleet-api"})
        status_replies = await asyncio.gather(
            *(self.ask_subject(f"fleet.svc.{n}.status") for n in names)
        )
        statuses = {n: s for n, s in zip(names, status_replies, strict=True) if s}
        consumers: list[dict[str, Any]] = []
        try:
            for info in await self.js.streams_info():
                for c in await self.js.consumers_info(info.config.name or ""):
                    consumers.append(
                        {
                            "stream": info.config.name,
                            "consumer": c.name,
                            "pending": c.num_pending or 0,
                            "unacked": c.num_ack_pending or 0,
                        }
                    )
        except Exception:
            consumers = []
        opts = self.settings.gateway
        return composites.health_summary(
            pings, opts.expected_services, statuses, consumers, opts.lag_warn
        )

    async def on_health(self, q: HealthQuery, _d: Delivery) -> dict[str, Any]:
        """`fleet.api.health`."""
        return await self.health(q.wait_s)

    async def on_report(self, q: PoolQuery, _d: Delivery) -> dict[str, Any]:
        """`fleet.api.report`: stats and health, with a few readable lines."""
        stats, health = await asyncio.gather(self.stats(q.pool), self.health(0.5))
        return {"text": composites.report_text(stats, health), "stats": stats, "health": health}

    async def on_fleet_report(self, q: FleetReportQuery, _d: Delivery) -> FleetReport:
        """`fleet.api.fleet_report`: the last `days` days from the streams (issue 17)."""

        async def ask(op: str) -> dict[str, Any]:
            return await self.ask(op, required=False)

        return await history_report(self.js, ask, self.settings.pools, q)

    async def ask_subject(self, subject: str) -> dict[str, Any]:
        try:
            reply = await self.nc.request(subject, b"", timeout=1.0)
            answer: dict[str, Any] = msgspec.json.decode(reply.data)
            return answer
        except Exception:
            return {}


SERVICE = Gateway
