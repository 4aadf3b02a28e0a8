"""What the provisioner does on timers: reconcile with providers, finish drains,
offer idle units for release."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from contracts import subjects
from contracts.commands import ReleaseRequest
from services.provisioner import reconcile
from services.provisioner.drain import drain_verdict, idle_to_release
from services.provisioner.executor import Executor
from services.provisioner.inventory import Load, Unit
from services.provisioner.lifecycle import ACTOR, Lifecycle
from services.provisioner.providers.base import ProviderError, ProviderUnit

log = logging.getLogger("fleet.provisioner")


class Upkeep:
    """Reconciliation, drains and idle cleanup over a Lifecycle."""

    def __init__(self, life: Lifecycle, executor: Executor, loads: Mapping[str, Load]) -> None:
        self.life = life
        self.executor = executor
        self.loads = loads
        self._locks: dict[str, asyncio.Lock] = {}

    def booting_providers(self) -> list[str]:
        """Providers with units still requested or booting (polled until ready)."""
        return sorted(
            {u.provider for u in self.life.inventory.live() if u.state in ("requested", "booting")}
        )

    async def sync_all(self) -> None:
        """Reconcile with every configured provider."""
        for name in list(self.life.providers.providers):
            await self.sync(name)

    async def sync_booting(self) -> None:
        """Reconcile only the providers that have booting units."""
        for name in self.booting_providers():
            await self.sync(name)

    async def sync(self, provider: str) -> list[reconcile.Step]:
        """Compare the inventory with `provider`'s list and act on the differences."""
        life = self.life
        if provider not in life.providers.providers or not life.providers.usable(provider):
            return []
        lock = self._locks.setdefault(provider, asyncio.Lock())
        async with lock:
            try:
                listed = await life.providers.call(provider, lambda p: p.list(), read_only=True)
            except ProviderError as exc:
                log.info("reconcile skipped", extra={"provider": provider, "error": str(exc)})
                return []
            steps = reconcile.plan(
                provider,
                life.inventory.all(),
                listed,
                set(life.settings.pools),
                life.settings.provisioner.adopt_orphans,
            )
            for step in steps:
                try:
                    await self._apply(provider, step)
                except Exception:
                    log.exception("reconcile step failed", extra={"step": repr(step)})
            return steps

    async def _apply(self, provider: str, step: reconcile.Step) -> None:
        life = self.life
        match step:
            case reconcile.Attach(unit=name, found=found):
                await life.update(
                    name,
                    provider_unit_id=found.unit_id,
                    address=found.address,
                    usd_per_hour=found.usd_per_hour or 0.0,
                )
                await self.executor.apply_status(name, found, "found at provider")
            case reconcile.Ready(unit=name, address=address):
                unit = life.inventory.get(name)
                if unit is not None and unit.state == "requested":
                    await life.move(name, "booting", "found booting")
                await life.move(name, "ready", "booted", address=address)
            case reconcile.Lost(unit=name, state="terminated", reason=why):
                await life.move(name, "terminated", why, destroyed=True)
            case reconcile.Lost(unit=name, reason=why):
                await life.failed(name, why)
            case reconcile.Destroyed(unit=name):
                await life.update(name, destroyed=True)
            case reconcile.Adopt(pool=pool, unit=name, found=found):
                await self._adopt(provider, pool, name, found)
            case reconcile.Cleanup(found=found, reason=why):
                try:
                    await life.providers.call(provider, lambda p: p.destroy(found.unit_id))
                except ProviderError as exc:
                    log.warning("cleanup failed", extra={"unit": found.unit_id, "error": str(exc)})
                    return
                life.count("units_destroyed")
                await life.audit(
                    "cleanup_duplicate",
                    f"{provider} unit {found.unit_id}: {why}",
                    result="destroyed",
                    cost=-found.usd_per_hour,
                    provider_unit=found.unit_id,
                )

    async def _adopt(self, provider: str, pool: str, name: str, found: ProviderUnit) -> None:
        life = self.life
        now = time.time()
        await life.inventory.put(
            Unit(
                unit=name,
                pool=pool,
                provider=provider,
                provider_unit_id=found.unit_id,
                key=found.label,
                gpu_model=found.gpu_model,
                usd_per_hour=found.usd_per_hour,
                address=found.address,
                created_ts=found.created_ts or now,
                updated_ts=now,
                reason="adopted: labelled as ours, unknown to the store",
            )
        )
        await self.executor.apply_status(name, found, "adopted")
        await life.audit(
            "adopt_unit",
            f"{provider} unit {found.unit_id} carries our label {found.label} but the store "
            "did not know it (a write lost in a crash); adopted it into the inventory",
            result=f"tracking as {name}",
            cost=found.usd_per_hour,
            unit=name,
        )

    # -- drains ----------------------------------------------------------------------
    async def finish_drains(self, now: float | None = None) -> None:
        """Destroy draining units that have nothing in flight or ran out of time."""
        now = time.time() if now is None else now
        life = self.life
        for unit in life.inventory.live():
            deadline = life.settings.pool(unit.pool).drain_deadline_s
            why = drain_verdict(unit, self.loads.get(unit.unit), now, deadline)
            if why is not None:
                await life.destroy(unit.unit, why)
        for unit in life.inventory.all():  # failed units whose destroy did not go through
            if unit.state == "failed" and unit.failover_done and not unit.destroyed:
                if now - unit.updated_ts > 5.0:
                    await life.destroy(unit.unit, "failed earlier")

    # -- idle cleanup ------------------------------------------------------------------
    async def cleanup_idle(self, now: float | None = None) -> list[str]:
        """Ask the cost-guard to release units idle longer than their pool allows."""
        now = time.time() if now is None else now
        life = self.life
        pools = {p: v.idle_cleanup_s for p, v in life.settings.pools.items()}
        mins = {p: v.min for p, v in life.settings.pools.items()}
        asked = []
        for unit in idle_to_release(life.inventory.live(), self.loads, pools, mins, now):
            idle = self.loads[unit.unit].idle_s
            request = ReleaseRequest(
                id=f"idle-{unit.unit}-{int(now)}",
                requester=ACTOR,
                pool=unit.pool,
                unit=unit.unit,
                reason=f"idle {idle:.0f}s, over the pool's idle_cleanup_s of {pools[unit.pool]:g}s",
            )
            await life.publish(subjects.RELEASE_REQUESTED, request, msg_id=request.id)
            await life.update(unit.unit, release_requested_ts=now)
            asked.append(unit.unit)
        return asked
