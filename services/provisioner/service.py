"""The provisioner: carries out approved commands against providers.

Consumes `fleet.budget.approved` (durable, idempotent by command id), keeps the
unit inventory in its store, publishes each unit's lifecycle on
`fleet.unit.<pool>.<unit>`, reconciles with every provider on a timer, drains
the idlest units on scale-down, offers idle units for release and asks for a
replacement when a unit fails (both through the cost-guard). Serves
`fleet.api.units.list`, `fleet.api.gpus.available` and `fleet.api.place`.

The `sim` provider's units report (telemetry, jobs) from a process of their own
that outlives this one (providers/simhost.py; `[sim] units = "inline"` keeps them
in this process); `local` units are child processes of it and stop with it.

Trust (docs/adr/0012-signed-messages.md): a verdict is carried out only when the
cost-guard's key signed it under a current fencing token (services/kit/fencing.py),
and a unit is replaced only on a `failed` report the watcher (or the provisioner
itself) signed; anything else is dead-lettered with a critical alert. The unit
events published here are signed with the provisioner's own key, since the
cost-guard's ledger bills from nothing else.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from nats.js.api import DeliverPolicy

from contracts import subjects
from contracts.api import UnitsQuery
from contracts.commands import ProvisionRequest, ReleaseRequest, Verdict
from contracts.events import UnitEvent
from contracts.offers import Offer, OfferFilter, Placement
from contracts.telemetry import UnitTelemetry
from services.kit import ConfigError, Delivery, Permanent, Retryable, Service
from services.kit.fencing import VerdictGate
from services.kit.lag import track_lag
from services.kit.service import RequestError, encode
from services.kit.signing import Authors, own_signer, public_key_setting
from services.provisioner.breaker import Breaker, BreakerPolicy, Transition
from services.provisioner.catalog import lookup
from services.provisioner.config import ProvisionerSettings
from services.provisioner.executor import Executor, Outcome, TakenOver
from services.provisioner.gauges import ProvisionerGauges
from services.provisioner.inventory import Load
from services.provisioner.lifecycle import Lifecycle
from services.provisioner.placement import filter_offers, merge_offers, place
from services.provisioner.providers.base import AuthError, ProviderError
from services.provisioner.providers.simhost import stop_host
from services.provisioner.providerset import ProviderSet, build_providers
from services.provisioner.unitstore import MIGRATIONS, AnyApproved, Inventory
from services.provisioner.upkeep import Upkeep

OFFERS_TIMEOUT_S = 20.0
"""Longest an offers query waits for one provider before leaving it out."""
LOAD_TTL_S = 600.0
"""Telemetry of units not heard from for this long is forgotten."""


class ProvisionerService(Service[ProvisionerSettings]):
    """See the module docstring."""

    name = "provisioner"
    singleton = True  # one provisioner reconciles the inventory; two would adopt each other's units
    description = "Carries out approved commands against GPU providers"
    migrations = MIGRATIONS
    clock: Callable[[], float] = staticmethod(time.time)
    """Unix seconds that the verdicts' clock-skew check reads (a test whose cost-guard
    runs on a chosen day gives the provisioner the same clock)."""

    async def setup(self) -> None:
        """Build providers, load the inventory, subscribe, serve, start the timers."""
        s, opts = self.settings, self.settings.provisioner
        assert self.store is not None
        self.signer = own_signer(s.signing, "provisioner")
        self.verdicts = VerdictGate(
            s.signing, self.store, "the provisioner carries out only verdicts it signed"
        )
        await self.verdicts.load()
        watcher = public_key_setting(
            s.signing, "watcher_key", "the provisioner replaces only units the watcher reports"
        )
        self.reporters = Authors({watcher: "watcher", self.signer.public_key: "provisioner"})
        try:
            built = build_providers(s, Path(s.store.dir), self.nats_url, os.environ)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.loads: dict[str, Load] = {}
        self.providers = ProviderSet(
            built,
            BreakerPolicy(
                failure_threshold=opts.breaker_failures, cooldown_s=opts.breaker_cooldown_s
            ),
            attempts=opts.retry_attempts,
            base_s=opts.retry_base_s,
            max_s=opts.retry_max_s,
            on_transition=self._breaker_moved,
            on_error=lambda _name, _exc: self.metrics.count("provider_errors"),
        )
        self.inventory = Inventory(self.store)
        await self.inventory.load()
        self.life = Lifecycle(s, self.inventory, self.providers, self._publish, self.metrics.count)
        self.metrics.registry.register(
            ProvisionerGauges(self.providers.breakers, self.life.crashloop)
        )
        self.executor = Executor(self.life, self.loads)
        self.upkeep = Upkeep(self.life, self.executor, self.loads)
        self._running: dict[str, asyncio.Task[Outcome]] = {}
        for provider in built.values():
            hook = getattr(provider, "start_telemetry", None)
            if callable(hook):
                hook(self._publish_core)
            jobs_hook = getattr(provider, "start_jobs", None)
            if callable(jobs_hook):
                jobs_hook(self.nc)

        await self.subscribe(
            subjects.TELEMETRY_ALL, UnitTelemetry, self._on_telemetry, traced=False
        )
        await self.consume(
            subjects.BUDGET_APPROVED,
            Verdict,
            self._on_verdict,
            durable="provisioner-approved",
            max_deliver=opts.command_attempts + 2,
            ack_wait_s=opts.ack_wait_s,
            batch=1,
        )
        await self.consume(
            subjects.UNIT_ALL,
            UnitEvent,
            self._on_unit_event,
            durable="provisioner-unit-events",
            deliver_policy=DeliverPolicy.NEW,
        )
        track_lag(self)
        await self.api_endpoint("units.list", UnitsQuery, self._units_list)
        await self.api_endpoint("gpus.available", OfferFilter, self._gpus_available)
        await self.api_endpoint("place", OfferFilter, self._place)
        self.every(opts.reconcile_interval_s, self.upkeep.sync_all, "reconcile")
        self.every(opts.boot_poll_s, self.upkeep.sync_booting, "boot-poll")
        self.every(opts.drain_check_s, self._drain_tick, "drain")
        self.every(opts.cleanup_check_s, self._cleanup_tick, "cleanup-idle")
        self.spawn(self._resume(), "resume")

    async def teardown(self) -> None:
        """Stop units that live in this process (local workers), then close providers."""
        for name, provider in self.providers.providers.items():
            if getattr(provider, "owns_processes", False):
                await self.life.retire_provider(name, "the provisioner stopped")
        await self.life.close()
        await self.providers.close()

    # -- bus ---------------------------------------------------------------------
    async def _publish(self, subject: str, msg: Any, *, msg_id: str | None = None) -> None:
        """Publish; a unit event is signed, so the cost-guard's ledger believes it."""
        if not subjects.covers(subjects.UNIT_ALL, subject):
            await self.publish(subject, msg, msg_id=msg_id)
            return
        data = msg if isinstance(msg, bytes) else encode(msg)
        await self.publish(subject, data, msg_id=msg_id, headers=self.signer.sign(subject, data))

    async def _publish_core(self, subject: str, msg: Any) -> None:
        await self.nc.publish(subject, encode(msg))

    async def _breaker_moved(self, provider: str, moved: Transition, state: Breaker) -> None:
        if moved == "half_opened":
            return
        opened = moved == "opened"
        text = (
            f"circuit breaker for {provider} opened after {state.failures} consecutive "
            f"failures; calls paused for {self.providers.policy.cooldown_s:g}s, failing over "
            "to the next provider"
            if opened
            else f"circuit breaker for {provider} closed: a probe call succeeded"
        )
        self.metrics.count(f"breaker_{moved}")
        await self.life.alert(f"breaker_{moved}", text, "critical" if opened else "info")
        await self.life.audit(f"breaker_{moved}", text, result=moved, provider=provider)

    # -- handlers ----------------------------------------------------------------
    async def _on_telemetry(self, beat: UnitTelemetry, _d: Delivery) -> None:
        self.loads[beat.unit] = Load(
            inflight=beat.inflight, idle_s=beat.idle_s, seen_ts=time.time()
        )

    async def _on_unit_event(self, event: UnitEvent, d: Delivery) -> None:
        if event.state != "failed":
            return
        forged = self.reporters.problem(d)
        if forged is not None:  # replacing a healthy unit would be a denial of service
            self.metrics.count("failure_reports_refused")
            await self.life.alert(
                "unit_event_refused",
                f"refused a `failed` report for {event.pool}/{event.unit}: {forged}. Nothing "
                f"was replaced (see fleet.dead.{d.subject})",
                "critical",
                pool=event.pool,
                unit=event.unit,
            )
            raise Permanent(f"failure report not signed by the watcher: {forged}")
        unit = self.inventory.get(event.unit)
        if unit is None or unit.failover_done:
            return
        # Published again, signed by the provisioner: the cost-guard's ledger stops billing
        # the unit only on the provisioner's word, not the watcher's.
        await self.life.failed(event.unit, event.reason or "reported failed")

    async def _on_verdict(self, verdict: Verdict, d: Delivery) -> None:
        refused = await self.verdicts.refusal(verdict.ts, d, self.clock())
        if refused is not None:
            self.metrics.count("verdicts_refused")
            await self.life.alert(
                "verdict_refused",
                f"refused verdict {verdict.id} on {d.subject}: {refused}. Nothing was carried "
                "out (see fleet.dead.fleet.budget.approved)",
                "critical",
                pool=verdict.request.pool,
            )
            raise Permanent(f"verdict {verdict.id}: {refused}")
        cmd = verdict.command
        if cmd is None and isinstance(verdict.request, ProvisionRequest | ReleaseRequest):
            cmd = verdict.request
        if verdict.decision != "approved" or cmd is None:
            self.metrics.count("verdicts_ignored")
            return
        if await self.inventory.command_status(cmd.id) in ("done", "failed"):
            self.metrics.count("commands_duplicate")
            return
        outcome = await self._run(cmd)
        if outcome.status == "taken":
            self.metrics.count("commands_taken_over")
            return  # the holder that took it over carries it out from the shared store
        if outcome.status != "retry":
            return
        if d.attempt >= self.settings.provisioner.command_attempts:
            await self._fail(cmd, f"gave up after {d.attempt} attempts: {outcome.detail}")
            return
        raise Retryable(outcome.detail, self.settings.provisioner.command_retry_s)

    async def _run(self, cmd: AnyApproved) -> Outcome:
        """Carry out `cmd` once at a time: a redelivery waits for the run in progress.
        The run is a background task of its own, so that losing the lease cancels it
        (Service.halt) even while the handler that started it is being handed back."""
        running = self._running.get(cmd.id)
        if running is not None:
            return await asyncio.shield(running)
        task = self.spawn(self._execute(cmd), f"command:{cmd.id}")
        self._running[cmd.id] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._running.pop(cmd.id, None)

    async def _execute(self, cmd: AnyApproved) -> Outcome:
        fence = self.lease_token
        if not await self.inventory.begin(cmd, fence):
            return Outcome("taken", f"command {cmd.id} was taken over by a later provisioner")
        try:
            outcome = await self.executor.run(cmd, lambda: self._ours(cmd.id, fence))
        except ProviderError as exc:
            outcome = Outcome("retry", str(exc))
        except TakenOver as exc:
            return Outcome("taken", str(exc))
        if outcome.status in ("done", "failed"):
            await self.inventory.finish(cmd.id, outcome.status, outcome.detail, fence)
            action = "provision" if isinstance(cmd, ProvisionRequest) else "release"
            await self.life.audit(
                action,
                f"{cmd.reason or 'approved command'}; " + "; ".join(outcome.notes[-6:]),
                result=f"{outcome.status}: {outcome.detail}",
                command=cmd.id,
                pool=cmd.pool,
            )
        return outcome

    async def _ours(self, command_id: str, fence: int) -> bool:
        """May this instance still act on the command? Not once it lost its lease, nor
        once a later holder (a higher fence, on a shared store) has taken it over."""
        lease = self.lease
        if self.lease_lost or (lease is not None and not lease.held):
            return False
        return await self.inventory.owns(command_id, fence)

    async def _fail(self, cmd: AnyApproved, detail: str) -> None:
        """Give `cmd` up: its slots without units end, so their reservation is released."""
        if not await self._ours(cmd.id, self.lease_token):
            return
        if isinstance(cmd, ProvisionRequest):
            await self.executor.give_up(cmd, detail)
        await self.inventory.finish(cmd.id, "failed", detail, self.lease_token)
        await self.life.alert("command_failed", f"command {cmd.id}: {detail}", pool=cmd.pool)

    async def _resume(self) -> None:
        """Finish what a previous run started (it may have been killed mid-command), and
        ask again for the pinned units its stop ended."""
        opts = self.settings.provisioner
        await self.life.restore_retired()
        for cmd in await self.inventory.unfinished():
            for attempt in range(1, opts.command_attempts + 1):
                outcome = await self._run(cmd)
                if outcome.status in ("done", "failed", "taken"):
                    break
                if attempt == opts.command_attempts:
                    await self._fail(cmd, f"gave up after resuming: {outcome.detail}")
                    break
                await asyncio.sleep(opts.command_retry_s)
            self.metrics.count("commands_resumed")

    async def _cleanup_tick(self) -> None:
        await self.upkeep.cleanup_idle()

    async def _drain_tick(self) -> None:
        await self.upkeep.finish_drains()
        cutoff = time.time() - LOAD_TTL_S
        for unit in [u for u, load in self.loads.items() if load.seen_ts < cutoff]:
            self.loads.pop(unit, None)

    # -- API -----------------------------------------------------------------------
    async def _units_list(self, q: UnitsQuery, _d: Delivery) -> dict[str, Any]:
        units = [
            u
            for u in self.inventory.all()
            if (q.pool is None or u.pool == q.pool)
            and (q.provider is None or u.provider == q.provider)
            and (q.state is None or u.state == q.state)
        ]
        units.sort(key=lambda u: (u.pool, u.created_ts, u.unit))
        rows = []
        for u in units:
            row = msgspec.to_builtins(u)
            load = self.loads.get(u.unit)
            if load is not None:
                row["inflight"], row["idle_s"] = load.inflight, load.idle_s
            rows.append(row)
        return {"units": rows, "count": len(rows)}

    async def _offers(self, flt: OfferFilter) -> tuple[list[Offer], dict[str, str], set[str]]:
        status: dict[str, str] = {}
        skipped: set[str] = set()

        async def one(name: str) -> list[Offer]:
            if not self.providers.usable(name):
                status[name] = self.providers.status().get(name, "unavailable")
                skipped.add(name)
                return []
            try:
                got = await asyncio.wait_for(
                    self.providers.call(name, lambda p: p.offers(flt), read_only=True),
                    OFFERS_TIMEOUT_S,
                )
            except AuthError as exc:
                status[name] = f"auth error: {exc}"[:300]
                skipped.add(name)
                return []
            except (ProviderError, TimeoutError) as exc:
                status[name] = f"error: {exc}"[:300]
                skipped.add(name)
                return []
            status[name] = "ok"
            return [_with_catalog(o) for o in got]

        if flt.provider is not None and flt.provider not in self.providers.providers:
            known = ", ".join(sorted(self.providers.providers))
            raise RequestError(f"unknown provider {flt.provider!r}; providers: {known}", 404)
        names = [n for n in self.providers.providers if flt.provider in (None, n)]
        lists = await asyncio.gather(*(one(n) for n in names))
        return merge_offers(lists), status, skipped

    async def _gpus_available(self, flt: OfferFilter, _d: Delivery) -> dict[str, Any]:
        offers, status, _ = await self._offers(flt)
        matched = filter_offers(offers, flt)
        return {"offers": msgspec.to_builtins(matched), "providers": status}

    async def _place(self, need: OfferFilter, _d: Delivery) -> Placement:
        offers, _, skipped = await self._offers(OfferFilter(provider=need.provider))
        return place(offers, need, unavailable_providers=skipped)


def _with_catalog(offer: Offer) -> Offer:
    """The offer with vendor, tier and VRAM from the catalog when the provider left them out."""
    if offer.vram_gb > 0:
        return offer
    info = lookup(offer.gpu_model)
    if info is None:
        return offer
    return msgspec.structs.replace(offer, vendor=info.vendor, tier=info.tier, vram_gb=info.vram_gb)


SERVICE = ProvisionerService
stop_sim_units = stop_host
"""`fleet up` on its way out: stop the sim units' host of its state directory (the units
report from a process of their own, which outlives provisioner restarts)."""
