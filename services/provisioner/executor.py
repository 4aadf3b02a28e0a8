"""Carrying out approved commands: provisioning with failover, and releasing by draining.

Idempotent by command id. Before any provider is called, the unit of each slot
is stored as `requested` under a name derived from the command id and the
slot's index; the provider gets the idempotency key `fleet.<pool>.<unit>`
and returns the unit it already has for that key rather than a second one. A
redelivered or resumed command therefore skips the slots that have units and
retries only those that have none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from contracts.commands import ProvisionRequest, ReleaseRequest
from contracts.offers import Offer, OfferFilter
from services.provisioner.inventory import (
    Load,
    Unit,
    idempotency_key,
    pick_idlest,
    pinned_now,
    unit_name,
)
from services.provisioner.lifecycle import Lifecycle
from services.provisioner.placement import merge_offers
from services.provisioner.providers.base import (
    CapacityError,
    Permanent,
    Provider,
    ProviderError,
    ProviderUnit,
    Retryable,
    reported,
)
from services.provisioner.unitstore import AnyApproved

log = logging.getLogger("fleet.provisioner")


Ours = Callable[[], Awaitable[bool]]
"""Asked before every provider write of a run: False once this instance may no longer
carry the command out (it lost its lease, or a later holder took the command over)."""


class TakenOver(Exception):
    """The run stopped before a provider write: the command is no longer ours."""


async def _always_ours() -> bool:
    return True


@dataclass
class Outcome:
    """How a command went: `done`, `failed`, or `retry` (try again later)."""

    status: str
    detail: str
    notes: list[str] = field(default_factory=list)


class Executor:
    """Provision and release, on top of a Lifecycle."""

    def __init__(self, life: Lifecycle, loads: Mapping[str, Load]) -> None:
        self.life = life
        self.loads = loads
        """Live telemetry view (unit -> Load), kept by the service."""

    async def run(self, cmd: AnyApproved, ours: Ours = _always_ours) -> Outcome:
        """Carry out `cmd` (already recorded as running); TakenOver when `ours()` says
        before a provider write that the command is no longer ours."""
        if isinstance(cmd, ProvisionRequest):
            return await self.provision(cmd, ours)
        return await self.release(cmd, ours)

    # -- provisioning ------------------------------------------------------------
    def order(self, cmd: ProvisionRequest, first: str | None = None) -> list[str]:
        """Providers to try: the slot's last provider, the command's, then the pool's list."""
        pool = self.life.settings.pool(cmd.pool)
        names = [first, cmd.provider, *pool.providers]
        return list(dict.fromkeys(n for n in names if n))

    async def provision(self, cmd: ProvisionRequest, ours: Ours = _always_ours) -> Outcome:
        """Create the command's units, one slot at a time."""
        life = self.life
        created, notes, transient = 0, [], False
        for index in range(cmd.count):
            name = unit_name(cmd.id, index)
            unit = life.inventory.get(name)
            if unit is not None and (unit.provider_unit_id or unit.state != "requested"):
                created += unit.state != "failed"
                continue
            if unit is None:
                unit = await self._slot(cmd, name)
            await _check(ours, cmd)
            await life.event(unit, cmd.reason or "approved")
            result, why = await self._create(unit, cmd, ours)
            notes.extend(why)
            if result == "created":
                created += 1
            elif result == "retry":
                transient = True
            else:
                reason = "; ".join(why[-4:]) or "no provider could create it"
                await self.give_up(cmd, reason)
                detail = f"created {created} of {cmd.count}; {reason}"
                return Outcome("failed", detail, notes)
        if transient:
            return Outcome("retry", f"created {created} of {cmd.count} so far", notes)
        life.count("commands_applied")
        return Outcome("done", f"created {created} of {cmd.count}", notes)

    async def _slot(self, cmd: ProvisionRequest, name: str) -> Unit:
        """Store slot `name` of `cmd` as `requested`, before any provider is called."""
        order = self.order(cmd)
        now = time.time()
        # A replacement keeps the pin of the unit it replaces (the pin's floor is the
        # scaler's, set once by the pinned provision; the request itself is not pinned).
        replaced = self.life.inventory.get(cmd.replaces) if cmd.replaces else None
        pinned = cmd.pin or (replaced is not None and replaced.pinned)
        until = None if cmd.duration_s is None else cmd.ts + cmd.duration_s
        if not cmd.pin and replaced is not None and replaced.pinned:
            until = replaced.pinned_until
        unit = Unit(
            unit=name,
            pool=cmd.pool,
            provider=order[0] if order else "none",
            key=idempotency_key(cmd.pool, name),
            gpu_model=self._model(cmd),
            command_id=cmd.id,
            created_ts=now,
            updated_ts=now,
            pinned=pinned,
            pinned_until=until,
            cores=cmd.cores,
            memory_mb=cmd.memory_mb,
        )
        await self.life.inventory.put(unit)
        return unit

    def _model(self, cmd: ProvisionRequest) -> str:
        if cmd.gpu_model and cmd.gpu_model != "any":
            return cmd.gpu_model
        return self.life.settings.pool(cmd.pool).gpu_model

    async def _create(
        self, unit: Unit, cmd: ProvisionRequest, ours: Ours = _always_ours
    ) -> tuple[str, list[str]]:
        """Try each provider in turn: `created`, `retry` (only transient failures) or `failed`."""
        life, why, transient = self.life, [], False
        model = self._model(cmd)
        ceiling = cmd.max_usd_per_hour or life.settings.pool(cmd.pool).max_usd_per_hour
        flt = OfferFilter(
            gpu_model=None if model in ("", "any") else model,
            max_usd_per_hour=ceiling,
            cores=cmd.cores,
            memory_mb=cmd.memory_mb,
        )
        for provider in self.order(cmd, unit.provider):
            if not life.providers.usable(provider):
                why.append(f"{provider}: unavailable or breaker open")
                transient = transient or provider in life.providers.providers
                continue
            try:
                offers = await life.providers.call(
                    provider, lambda p: p.offers(flt), read_only=True
                )
            except Retryable as exc:
                why.append(str(exc))
                transient = True
                continue
            except ProviderError as exc:
                why.append(str(exc))
                continue
            ranked = _rank(offers, cmd.offer_id)
            if not ranked:
                cap = f" within ${ceiling:g}/h" if ceiling else ""
                why.append(f"{provider}: no {model} offer{cap} with capacity")
                continue
            if unit.provider != provider:
                await life.update(unit.unit, provider=provider)
            for offer in ranked:
                await _check(ours, cmd)
                try:
                    made = await life.providers.call(provider, _creator(offer, unit.key))
                except CapacityError as exc:
                    why.append(str(exc))
                    continue
                except Permanent as exc:
                    why.append(str(exc))
                    return "failed", why
                except Retryable as exc:
                    why.append(str(exc))
                    transient = True
                    break
                except ProviderError as exc:
                    why.append(str(exc))
                    break
                if made:
                    await self._record(unit.unit, made[0], offer)
                    return "created", why
                why.append(f"{provider}: created nothing from {offer.offer_id}")
        return ("retry" if transient else "failed"), why

    async def _record(self, name: str, found: ProviderUnit, offer: Offer) -> None:
        life = self.life
        life.count("units_created")
        unit = life.inventory.get(name)
        if unit is not None and unit.provider_unit_id and unit.state != "requested":
            return  # reconciliation got there first
        fields = {
            "provider": found.provider or offer.provider,
            "provider_unit_id": found.unit_id,
            "gpu_model": found.gpu_model or offer.gpu_model,
            "usd_per_hour": found.usd_per_hour or offer.usd_per_hour,
            "address": found.address,
        }
        await life.update(name, **fields)
        await self.apply_status(name, found, "created")

    async def apply_status(self, name: str, found: ProviderUnit, reason: str) -> None:
        """Follow what the provider says about a unit we just learned the id of."""
        life, status = self.life, found.status
        if status in ("booting", "ready"):
            await life.move(name, "booting", reason)
        if status == "ready":
            await life.move(name, "ready", "booted")
        elif status in ("failed", "stopped", "terminated"):
            await life.failed(name, reported(found))

    async def give_up(self, cmd: ProvisionRequest, reason: str) -> list[str]:
        """End every slot of `cmd` that no provider holds a unit for, tried or not, with
        a `failed` event carrying the command id, and alert once. The cost-guard settles
        a slot of the reservation on its terminal event, so the burn `cmd` reserved is
        released now, not when the reservation times out. No replacement is asked: the
        command itself failed. A create that happened after all is found by
        reconciliation under the slot's label and destroyed. Returns the ended slots."""
        life, ended = self.life, []
        for index in range(cmd.count):
            name = unit_name(cmd.id, index)
            unit = life.inventory.get(name)
            if unit is None:
                unit = await self._slot(cmd, name)
            if unit.state != "requested" or unit.provider_unit_id:
                continue
            why = f"command {cmd.id} gave up: {reason}"
            if await life.move(name, "failed", why, failover_done=True, destroyed=True):
                ended.append(name)
        await life.alert(
            "provision_failed",
            f"command {cmd.id} for pool {cmd.pool}: {reason}; ended {len(ended)} slot(s) "
            "that had no unit, releasing their reserved budget",
            severity="critical",
            pool=cmd.pool,
            unit=ended[0] if len(ended) == 1 else None,
        )
        return ended

    # -- releasing -----------------------------------------------------------------
    async def release(self, cmd: ReleaseRequest, ours: Ours = _always_ours) -> Outcome:
        """Destroy the named unit, or drain the `count` idlest units of the pool."""
        life = self.life
        if cmd.unit:
            unit = life.inventory.get(cmd.unit)
            if unit is None or unit.pool != cmd.pool:
                return Outcome("failed", f"no unit {cmd.unit} in pool {cmd.pool}")
            if unit.state in ("terminated", "failed"):
                life.count("commands_applied")
                return Outcome("done", f"{cmd.unit} is already {unit.state}")
            await _check(ours, cmd)
            await life.update(cmd.unit, released_by=cmd.id)
            if not await life.destroy(cmd.unit, cmd.reason or f"released by {cmd.requester}"):
                return Outcome("retry", f"could not reach {unit.provider} to destroy {cmd.unit}")
            life.count("commands_applied")
            return Outcome("done", f"destroyed {cmd.unit}")
        want = cmd.count or 0
        mine = [u for u in life.inventory.live(cmd.pool) if u.released_by == cmd.id]
        others = [u for u in life.inventory.live(cmd.pool) if u.released_by is None]
        # Explicit capacity goes last: a scale-in takes unpinned units first.
        now = time.time()
        free = [u for u in others if not pinned_now(u, now)]
        picked = pick_idlest(free, self.loads, want - len(mine))
        kept = [u for u in others if pinned_now(u, now)]
        picked += pick_idlest(kept, self.loads, want - len(mine) - len(picked))
        for unit in picked:
            await _check(ours, cmd)
            await life.update(unit.unit, released_by=cmd.id)
            await life.move(unit.unit, "draining", cmd.reason or "scale down: idlest unit")
            hook = getattr(life.providers.get(unit.provider), "drain", None)
            if callable(hook) and unit.provider_unit_id:
                hook(unit.provider_unit_id)
        life.count("commands_applied")
        names = ", ".join(u.unit for u in [*mine, *picked]) or "none"
        return Outcome("done", f"draining {len(mine) + len(picked)} of {want}: {names}")


async def _check(ours: Ours, cmd: AnyApproved) -> None:
    if not await ours():
        raise TakenOver(f"command {cmd.id} is no longer ours: stopped before a provider call")


def _creator(offer: Offer, key: str) -> Callable[[Provider], Awaitable[list[ProviderUnit]]]:
    async def create(p: Provider) -> list[ProviderUnit]:
        return await p.create(offer, 1, key)

    return create


def _rank(offers: list[Offer], preferred: str | None) -> list[Offer]:
    usable = [o for o in merge_offers([offers]) if o.available is None or o.available > 0]
    if preferred:
        usable.sort(key=lambda o: o.offer_id != preferred)
    return usable
