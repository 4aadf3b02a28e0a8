"""Moving units through their lifecycle, publishing each step, destroying and replacing them.

Every state change goes through `Lifecycle.move()`: the store first, then a
UnitEvent on `fleet.unit.<pool>.<unit>` with msg_id `<unit>:<state>` (so a step
republished after a crash lands once). Replacing a failed unit is asked of the
cost-guard like any other spend, never done directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from contracts import subjects
from contracts.commands import ProvisionRequest, replacement_id
from contracts.events import Alert, AuditRecord, Severity, UnitEvent, UnitState
from services.provisioner.config import ProvisionerSettings
from services.provisioner.crashloop import CrashLoop
from services.provisioner.inventory import Unit, pinned_now, transition
from services.provisioner.providers.base import NotFound, ProviderError
from services.provisioner.providerset import ProviderSet
from services.provisioner.unitstore import Inventory

log = logging.getLogger("fleet.provisioner")
ACTOR = "provisioner"


class Publisher(Protocol):
    async def __call__(self, subject: str, msg: Any, *, msg_id: str | None = None) -> None: ...


class Lifecycle:
    """The inventory, the providers and the bus, with the steps that tie them together."""

    def __init__(
        self,
        settings: ProvisionerSettings,
        inventory: Inventory,
        providers: ProviderSet,
        publish: Publisher,
        count: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.inventory = inventory
        self.providers = providers
        self.publish = publish
        self.count = count
        self.crashloop = CrashLoop(early_s=settings.provisioner.crash_loop_early_s)
        self._delayed: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Cancel replacements still waiting out a crash-loop backoff (the scaler asks
        again for capacity the pool still lacks)."""
        for task in list(self._delayed):
            task.cancel()
        await asyncio.gather(*self._delayed, return_exceptions=True)

    # -- events --------------------------------------------------------------
    async def event(self, unit: Unit, reason: str = "") -> None:
        """Publish the unit's current state as a UnitEvent."""
        await self.publish(
            subjects.unit(unit.pool, unit.unit),
            UnitEvent(
                pool=unit.pool,
                unit=unit.unit,
                state=unit.state,
                provider=unit.provider,
                gpu_model=unit.gpu_model,
                usd_per_hour=unit.usd_per_hour,
                reason=(reason or unit.reason)[:4000],
                command_id=unit.command_id,
                address=unit.address,
            ),
            msg_id=f"{unit.unit}:{unit.state}",
        )

    async def alert(
        self,
        kind: str,
        message: str,
        severity: Severity = "warning",
        pool: str | None = None,
        unit: str | None = None,
    ) -> None:
        """Publish an Alert on `fleet.alert.<severity>`."""
        await self.publish(
            subjects.alert(severity),
            Alert(kind=kind, message=message[:4000], severity=severity, pool=pool, unit=unit),
        )

    async def audit(
        self, action: str, reasoning: str, result: str = "", cost: float = 0.0, **refs: str
    ) -> None:
        """Publish an AuditRecord on `fleet.audit.provisioner`."""
        await self.publish(
            subjects.audit(ACTOR),
            AuditRecord(
                actor=ACTOR,
                action=action,
                reasoning=reasoning[:4000],
                result=result[:4000],
                cost_impact_usd_per_hour=cost,
                refs={k: v for k, v in refs.items() if v},
            ),
        )

    # -- state ---------------------------------------------------------------
    async def update(self, name: str, **fields: Any) -> Unit | None:
        """Change fields of a unit (not its state) and store it."""
        unit = self.inventory.get(name)
        if unit is None:
            return None
        changed = msgspec.structs.replace(unit, updated_ts=time.time(), **fields)
        await self.inventory.put(changed)
        return changed

    async def move(
        self, name: str, state: UnitState, reason: str = "", publish: bool = True, **fields: Any
    ) -> Unit | None:
        """Move a unit to `state` (store, then event); None when that step is not allowed."""
        unit = self.inventory.get(name)
        if unit is None:
            return None
        if fields:
            unit = msgspec.structs.replace(unit, **fields)
        moved = transition(unit, state, time.time(), reason)
        if moved is None:
            if fields:
                await self.inventory.put(unit)
            return None
        await self.inventory.put(moved)
        if publish:
            await self.event(moved, reason)
        return moved

    # -- destroying ------------------------------------------------------------
    async def destroy(self, name: str, reason: str) -> bool:
        """Destroy the unit at its provider and mark it terminated (a failed unit stays
        failed). False when the provider could not be reached; the caller tries later."""
        unit = self.inventory.get(name)
        if unit is None or unit.destroyed:
            return True
        if unit.provider_unit_id:
            try:
                await self.providers.call(unit.provider, lambda p: p.destroy(unit.provider_unit_id))
            except NotFound:
                pass
            except ProviderError as exc:
                log.warning("destroy failed", extra={"unit": name, "error": str(exc)[:300]})
                return False
        self.count("units_destroyed")
        if unit.state != "failed":
            await self.move(name, "terminated", reason, destroyed=True)
        else:
            await self.update(name, destroyed=True)
        return True

    async def retire_provider(self, provider: str, reason: str) -> None:
        """Destroy every live unit of `provider` (its processes end with us); a pinned one
        not being released is marked to be asked for again (`restore_retired`)."""
        now = time.time()
        for unit in self.inventory.live():
            if unit.provider != provider:
                continue
            if pinned_now(unit, now) and unit.released_by is None:
                await self.update(unit.unit, restore=True)
            await self.destroy(unit.unit, reason)

    async def restore_retired(self) -> None:
        """Ask again, through the cost-guard, for each pinned unit the last provisioner's
        stop ended, on the same provider; its replacement keeps the pin. Idempotent: the
        request's id is the replacement id of the ended unit."""
        now = time.time()
        for unit in [u for u in self.inventory.all() if u.restore]:
            if pinned_now(unit, now) and unit.released_by is None:
                await self._ask_replacement(
                    unit, "the provisioner stopped while it was pinned", provider=unit.provider
                )
            await self.update(unit.unit, restore=False)

    # -- failure ---------------------------------------------------------------
    async def failed(self, name: str, reason: str, *, publish: bool = True) -> None:
        """A unit failed: record it, ask the cost-guard for a replacement on the pool's
        next provider, destroy the broken one and alert. Idempotent per unit."""
        unit = self.inventory.get(name)
        if unit is None or unit.failover_done:
            return
        was = unit.state
        if was != "failed":
            await self.move(name, "failed", reason, publish=publish)
        unit = await self.update(name, failover_done=True)
        assert unit is not None
        replacement = ""
        if was in ("requested", "booting", "ready", "failed") and unit.released_by is None:
            delay = self.crashloop.failed(unit.pool, unit.created_ts, time.time())
            if delay > 0:
                replacement = await self._replace_later(unit, reason, delay)
            else:
                replacement = await self._ask_replacement(unit, reason)
        await self.destroy(name, f"failed: {reason}")
        await self.alert(
            "unit_failed",
            f"{name} on {unit.provider} failed ({reason})"
            + (f"; asked for a replacement on {replacement}" if replacement else ""),
            pool=unit.pool,
            unit=name,
        )

    def next_provider(self, pool: str, after: str) -> str:
        """The provider after `after` in the pool's list (wrapping); usable ones first."""
        order = self.settings.pool(pool).providers or [after]
        start = order.index(after) + 1 if after in order else 0
        ring = order[start:] + order[:start]
        usable = [p for p in ring if self.providers.usable(p)]
        return (usable or ring)[0]

    async def _replace_later(self, unit: Unit, reason: str, delay_s: float) -> str:
        streak = self.crashloop.streak.get(unit.pool, 0)
        await self.alert(
            "crash_loop",
            f"{streak} units of pool {unit.pool} in a row failed within "
            f"{self.crashloop.early_s:.0f} s of creation (last: {unit.unit}, {reason}); "
            f"the next replacement waits {delay_s:.0f} s. Check the pool's image, command "
            "and provider.",
            severity="critical",
            pool=unit.pool,
            unit=unit.unit,
        )

        async def later() -> None:
            await asyncio.sleep(delay_s)
            await self._ask_replacement(unit, reason)

        task = asyncio.ensure_future(later())
        self._delayed.add(task)
        task.add_done_callback(self._delayed.discard)
        return f"{self.next_provider(unit.pool, unit.provider)} in {delay_s:.0f} s"

    async def _ask_replacement(self, unit: Unit, reason: str, provider: str = "") -> str:
        """Ask the cost-guard for one unit in place of `unit`, on `provider` (default: the
        pool's next provider after the unit's, as for a failure)."""
        provider = provider or self.next_provider(unit.pool, unit.provider)
        pool = self.settings.pool(unit.pool)
        request = ProvisionRequest(
            id=replacement_id(unit.unit),
            requester=ACTOR,
            pool=unit.pool,
            gpu_model=unit.gpu_model or pool.gpu_model,
            count=1,
            provider=provider,
            max_usd_per_hour=pool.max_usd_per_hour,
            reason=f"replace {unit.unit} ({unit.provider}): {reason}"[:4000],
            cores=unit.cores,
            memory_mb=unit.memory_mb,
            replaces=unit.unit,
        )
        await self.publish(subjects.PROVISION_REQUESTED, request, msg_id=request.id)
        await self.audit(
            "request_replacement",
            f"{unit.unit} ended on {unit.provider} ({reason}); asking the cost-guard for one "
            f"unit of pool {unit.pool} on {provider}",
            result=f"published {request.id}",
            request=request.id,
            unit=unit.unit,
        )
        return provider
