"""Units as the provisioner keeps them, their lifecycle, naming and the idlest-first order.

Pure: no I/O. The service keeps a `Unit` per unit in its store and moves it
along requested -> booting -> ready -> draining -> terminated (or failed),
publishing a UnitEvent at each step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import msgspec

from contracts.events import TERMINAL_STATES, UnitState

KEY_PREFIX = "fleet"
"""First part of the label we put on every unit we start, so we can tell ours apart."""

ALLOWED: dict[str, frozenset[str]] = {
    "requested": frozenset({"booting", "ready", "failed", "terminated"}),
    "booting": frozenset({"ready", "draining", "failed", "terminated"}),
    "ready": frozenset({"draining", "failed", "terminated"}),
    "draining": frozenset({"terminated", "failed"}),
    "terminated": frozenset(),
    "failed": frozenset(),
}
"""Which state may follow which."""

LIVE_STATES: frozenset[str] = frozenset({"requested", "booting", "ready", "draining"})


class Unit(msgspec.Struct, kw_only=True):
    """One unit as the provisioner tracks it."""

    unit: str
    """Our name for it, also its subject token."""
    pool: str
    provider: str
    state: UnitState = "requested"
    provider_unit_id: str = ""
    """The provider's id; empty until create() returned."""
    key: str = ""
    """Idempotency key and label at the provider."""
    gpu_model: str = ""
    usd_per_hour: float = 0.0
    command_id: str | None = None
    address: str | None = None
    created_ts: float = 0.0
    updated_ts: float = 0.0
    drain_started_ts: float | None = None
    reason: str = ""
    failover_done: bool = False
    """A replacement was asked for (or not needed) after this unit failed."""
    destroyed: bool = False
    """The provider confirmed it is gone (or never had it)."""
    release_requested_ts: float | None = None
    """When idle cleanup last asked the cost-guard to release it."""
    pinned: bool = False
    """Explicit capacity (a pinned provision): idle cleanup leaves it alone and a
    scale-in takes it last, until `pinned_until`."""
    pinned_until: float | None = None
    """When the pin ends (unix seconds); None with `pinned`: until released."""
    released_by: str | None = None
    """The release command that is draining it."""
    cores: int | None = None
    """vCPUs it was made with, when its command sized it (a hosted agent's runner); a
    replacement is asked for at the same size."""
    memory_mb: int | None = None
    """MiB it was made with, likewise."""
    restore: bool = False
    """A pinned unit whose process ended because the provisioner stopped (`local`): the
    next provisioner asks for it again, since the pin still holds (a hosted agent's own
    runner, explicit capacity)."""


class Load(msgspec.Struct, kw_only=True):
    """What a unit's telemetry last said about its work."""

    inflight: float = 0.0
    idle_s: float = 0.0
    seen_ts: float = 0.0


def unit_name(command_id: str, index: int) -> str:
    """Our unit name for slot `index` of a command: the same on every redelivery."""
    digest = hashlib.blake2b(f"{command_id}:{index}".encode(), digest_size=6).hexdigest()
    return f"u{digest}"


def idempotency_key(pool: str, unit: str) -> str:
    """The label a provider keeps on the unit: `fleet.<pool>.<unit>`."""
    return f"{KEY_PREFIX}.{pool}.{unit}"


def parse_key(label: str) -> tuple[str, str] | None:
    """(pool, unit) of a label we put on a unit, or None for anyone else's."""
    parts = label.split(".")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def transition(unit: Unit, state: UnitState, now: float, reason: str = "") -> Unit | None:
    """`unit` moved to `state`, or None when that step is not allowed (or a repeat)."""
    if state not in ALLOWED[unit.state]:
        return None
    changed = msgspec.structs.replace(unit, state=state, updated_ts=now)
    if reason:
        changed.reason = reason
    if state == "draining":
        changed.drain_started_ts = now
    return changed


def is_live(unit: Unit) -> bool:
    """Not terminated or failed."""
    return unit.state not in TERMINAL_STATES


def pinned_now(unit: Unit, now: float) -> bool:
    """Whether the unit is explicit capacity at `now`."""
    return unit.pinned and (unit.pinned_until is None or now < unit.pinned_until)


def pick_idlest(units: Iterable[Unit], loads: Mapping[str, Load], count: int) -> list[Unit]:
    """The `count` units to remove first: booting ones (they serve nothing yet, as a
    Kubernetes ReplicaSet removes pending pods first), then ready ones with the least
    in flight and the longest idle, newest first on ties."""

    def order(u: Unit) -> tuple[int, float, float, float]:
        load = loads.get(u.unit, Load())
        return (0 if u.state == "booting" else 1, load.inflight, -load.idle_s, -u.created_ts)

    candidates = [u for u in units if u.state in ("booting", "ready")]
    return sorted(candidates, key=order)[: max(count, 0)]
