"""When a draining unit may be destroyed, and which idle units to hand back. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.provisioner.inventory import Load, Unit, pinned_now

STALE_S = 5.0
"""Telemetry older than this says nothing about work in flight now (units beat every second)."""


def drain_verdict(unit: Unit, load: Load | None, now: float, deadline_s: float) -> str | None:
    """Why `unit` can be destroyed now ("drained" or "drain deadline"), or None to keep waiting.

    A unit with no recent telemetry has nothing in flight that we know of.
    """
    if unit.state != "draining":
        return None
    if load is None or now - load.seen_ts > STALE_S or load.inflight <= 0:
        return "drained: nothing in flight"
    started = unit.drain_started_ts if unit.drain_started_ts is not None else now
    if now - started >= deadline_s:
        return f"drain deadline of {deadline_s:g}s passed with {load.inflight:g} in flight"
    return None


def idle_to_release(
    units: Iterable[Unit],
    loads: Mapping[str, Load],
    idle_cleanup_s: Mapping[str, float],
    min_units: Mapping[str, int],
    now: float,
    repeat_after_s: float = 300.0,
) -> list[Unit]:
    """Ready units idle longer than their pool's `idle_cleanup_s`, longest idle first,
    keeping each pool at or above its `min`; a unit asked about less than
    `repeat_after_s` ago is not asked about again."""
    by_pool: dict[str, list[Unit]] = {}
    for u in units:
        if u.state == "ready":
            by_pool.setdefault(u.pool, []).append(u)
    out: list[Unit] = []
    for pool, members in sorted(by_pool.items()):
        limit = idle_cleanup_s.get(pool)
        if limit is None or limit <= 0:
            continue
        spare = len(members) - max(min_units.get(pool, 0), 0)
        idle = []
        for u in members:
            load = loads.get(u.unit)
            if load is None or now - load.seen_ts > STALE_S or load.idle_s < limit:
                continue
            if pinned_now(u, now):
                continue  # explicit capacity: idle by design until its pin ends
            if u.release_requested_ts is not None and now - u.release_requested_ts < repeat_after_s:
                spare -= 1  # already on its way out
                continue
            idle.append((load.idle_s, u))
        idle.sort(key=lambda pair: -pair[0])
        out.extend(u for _, u in idle[: max(spare, 0)])
    return out
