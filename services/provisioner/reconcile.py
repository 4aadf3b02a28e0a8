"""Reconciliation: what the store says versus what a provider lists. Pure.

`plan()` compares the units we track on one provider with that provider's
list() and returns the steps that bring them back in line; the service carries
them out (publishing events, destroying duplicates). Units without our label
belong to someone else and are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.provisioner.inventory import Unit, parse_key
from services.provisioner.providers.base import ProviderUnit, reported

GONE = frozenset({"failed", "terminated", "stopped"})


@dataclass(frozen=True, slots=True)
class Attach:
    """A unit we recorded as requested exists at the provider: record its id and status."""

    unit: str
    found: ProviderUnit


@dataclass(frozen=True, slots=True)
class Ready:
    """A booting unit has finished booting."""

    unit: str
    address: str | None


@dataclass(frozen=True, slots=True)
class Lost:
    """A unit we track is gone or broken at the provider."""

    unit: str
    state: str
    """`failed`, or `terminated` for a unit we were draining anyway."""
    reason: str


@dataclass(frozen=True, slots=True)
class Destroyed:
    """A failed unit we still owed a destroy is no longer listed: nothing left to do."""

    unit: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """A unit labelled as ours that the store does not know: take it into the inventory."""

    pool: str
    unit: str
    found: ProviderUnit


@dataclass(frozen=True, slots=True)
class Cleanup:
    """A unit labelled as ours that should not exist: destroy it."""

    found: ProviderUnit
    reason: str


Step = Attach | Ready | Lost | Destroyed | Adopt | Cleanup


def plan(
    provider: str,
    tracked: Iterable[Unit],
    listed: Iterable[ProviderUnit],
    pools: set[str] | frozenset[str],
    adopt: bool = True,
) -> list[Step]:
    """The steps that reconcile `tracked` (every unit we know, any provider) with what
    `provider` lists. A labelled unit whose name we track on another provider is a
    duplicate left by a failover (a create that timed out but happened) and is cleaned up."""
    everyone = list(tracked)
    mine = [u for u in everyone if u.provider == provider]
    by_pid = {u.provider_unit_id: u for u in mine if u.provider_unit_id}
    by_name = {u.unit: u for u in everyone}
    steps: list[Step] = []
    seen: set[str] = set()
    for found in listed:
        seen.add(found.unit_id)
        unit = by_pid.get(found.unit_id)
        if unit is None:
            steps.extend(_unknown(provider, found, by_name, pools, adopt))
            continue
        if unit.state in ("terminated", "failed"):
            if found.status not in GONE:
                steps.append(Cleanup(found, f"{unit.unit} is {unit.state} but still running"))
            continue
        if found.status in ("failed", "terminated", "stopped"):
            state = "terminated" if _leaving(unit) else "failed"
            steps.append(Lost(unit.unit, state, reported(found)))
        elif found.status == "ready" and unit.state in ("requested", "booting"):
            steps.append(Ready(unit.unit, found.address))
    for unit in mine:
        if not unit.provider_unit_id or unit.provider_unit_id in seen:
            continue
        if _leaving(unit):
            how = "draining" if unit.state == "draining" else "being released"
            steps.append(Lost(unit.unit, "terminated", f"gone from {provider} while {how}"))
        elif unit.state in ("booting", "ready"):
            steps.append(Lost(unit.unit, "failed", f"vanished from {provider}'s list"))
        elif unit.state == "failed" and not unit.destroyed:
            steps.append(Destroyed(unit.unit))
    return steps


def _leaving(unit: Unit) -> bool:
    """Draining, or released and being destroyed: its end is the one we asked for, not
    a failure (a destroy that kills a process races the next listing that sees it dead)."""
    return unit.state == "draining" or (
        unit.released_by is not None and unit.state in ("requested", "booting", "ready")
    )


def _unknown(
    provider: str,
    found: ProviderUnit,
    by_name: dict[str, Unit],
    pools: set[str] | frozenset[str],
    adopt: bool,
) -> list[Step]:
    parsed = parse_key(found.label)
    if parsed is None or found.status in GONE:
        return []
    pool, name = parsed
    unit = by_name.get(name)
    if unit is not None:
        if unit.provider == provider and unit.state == "requested" and not unit.provider_unit_id:
            return [Attach(unit.unit, found)]
        return [Cleanup(found, f"duplicate of {name} (kept {unit.provider_unit_id or 'none'})")]
    if adopt and pool in pools:
        return [Adopt(pool, name, found)]
    why = "adoption is off" if adopt is False else f"pool {pool!r} is not configured"
    return [Cleanup(found, f"orphan labelled {found.label}; {why}")]
