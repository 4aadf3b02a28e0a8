"""The ledger: what the fleet has spent today, burns now, and has promised to spend.

Pure values and functions, no clock and no I/O. Spend is accrued by the second
from unit events: a unit bills from its first billed event (booting, ready,
draining) to its terminal event (terminated, failed), at the event's
`usd_per_hour`, and the part of that interval inside the current UTC day is
today's spend. Times come from the events themselves, so replaying the same
events yields the same figures, in any order of delivery. The day itself comes
only from the cost-guard's clock (`now`): an event dated ahead of it never rolls
the day, and one dated beyond the contract's clock skew is not believed at all;
nor is a unit's end dated (beyond the skew) before the unit began billing.

Approved provisions reserve their units' price until the units start billing
(their events carry the command id) or `reservation_timeout_s` passes.
"""

from __future__ import annotations

import math

import msgspec

from contracts.base import MAX_CLOCK_SKEW_S, clock_skew_problem
from contracts.commands import AnyCommand, ProvisionRequest, ReleaseRequest
from contracts.events import BILLED_STATES, TERMINAL_STATES, UnitEvent

DAY_S = 86_400.0
HOUR_S = 3_600.0


class OpenUnit(msgspec.Struct, frozen=True, kw_only=True):
    """A unit being billed now."""

    pool: str
    usd_per_hour: float
    since: float
    """Unix time billing started at this price."""


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """Units an approved command may start, not yet billing."""

    pool: str
    units: int
    """Units still expected."""
    usd_per_hour: float
    """Price ceiling of one unit."""
    expires_at: float
    claimed: tuple[str, ...] = ()
    """Units whose events already settled part of this reservation."""


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A command waiting for a person."""

    request: AnyCommand
    command: ProvisionRequest | ReleaseRequest
    pool: str
    units: int
    usd_per_hour: float
    """The burn rate the command would add, USD/hour."""
    expires_at: float


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """A requester's token bucket."""

    tokens: float
    at: float


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """The units a pool's latest scale proposal wanted."""

    desired: int
    ts: float
    """When the proposal was made (unix s)."""


class Ledger(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the cost-guard knows about money; stored whole after each change."""

    day: int = 0
    """The UTC day (unix days) `closed_usd` belongs to."""
    closed_usd: float = 0.0
    """Spend today by billing intervals that have ended."""
    units: dict[str, OpenUnit] = msgspec.field(default_factory=dict)
    """Billed units by `<pool>/<unit>`."""
    ended: dict[str, float] = msgspec.field(default_factory=dict)
    """Units that reached a terminal state (kept a day), by key, with the time; late
    events for them are ignored."""
    reservations: dict[str, Reservation] = msgspec.field(default_factory=dict)
    """Reservations by approved command id."""
    held: dict[str, Held] = msgspec.field(default_factory=dict)
    """Commands waiting for a person, by request id."""
    buckets: dict[str, Bucket] = msgspec.field(default_factory=dict)
    targets: dict[str, Target] = msgspec.field(default_factory=dict)
    """Per pool, what its latest scale proposal wanted (a replacement is judged by it)."""


def day_of(ts: float) -> int:
    """The UTC day number of unix time `ts`."""
    return int(ts // DAY_S)


def hours_left(now: float) -> float:
    """Hours from `now` to the end of its UTC day."""
    return ((day_of(now) + 1) * DAY_S - now) / HOUR_S


def _overlap_usd(rate: float, start: float, end: float, day: int) -> float:
    lo, hi = max(start, day * DAY_S), min(end, (day + 1) * DAY_S)
    return rate * max(0.0, hi - lo) / HOUR_S


def roll(ledger: Ledger, now: float) -> Ledger:
    """The ledger moved to the UTC day of `now`: a new day starts with no closed spend,
    and reservations that have expired are dropped."""
    changes: dict[str, object] = {}
    today = day_of(now)
    if today > ledger.day:
        keep_from = (today - 1) * DAY_S  # late redeliveries of yesterday's ends still match
        ended = {k: t for k, t in ledger.ended.items() if t >= keep_from}
        changes.update(day=today, closed_usd=0.0, ended=ended)
    live = {k: r for k, r in ledger.reservations.items() if r.expires_at > now and r.units > 0}
    if len(live) != len(ledger.reservations):
        changes["reservations"] = live
    return msgspec.structs.replace(ledger, **changes) if changes else ledger


def spent_today(ledger: Ledger, now: float) -> float:
    """USD spent so far on the UTC day of `now`, accrued by the second."""
    today = day_of(now)
    closed = ledger.closed_usd if ledger.day == today else 0.0
    running = sum(_overlap_usd(u.usd_per_hour, u.since, now, today) for u in ledger.units.values())
    return closed + running


def burn_rate(ledger: Ledger) -> float:
    """USD/hour of the units billing now."""
    return sum(u.usd_per_hour for u in ledger.units.values())


def reserved_rate(ledger: Ledger, now: float) -> float:
    """USD/hour promised to approved units that have not started billing."""
    return sum(r.units * r.usd_per_hour for r in ledger.reservations.values() if r.expires_at > now)


def pending_units(ledger: Ledger, pool: str, now: float) -> int:
    """Units approved or held for `pool` that are not billing yet."""
    reserved = sum(
        r.units for r in ledger.reservations.values() if r.pool == pool and r.expires_at > now
    )
    held = sum(h.units for h in ledger.held.values() if h.pool == pool)
    return reserved + held


def with_target(ledger: Ledger, pool: str, desired: int, ts: float) -> Ledger:
    """The ledger remembering that a proposal at `ts` wanted `desired` units of `pool`
    (an older proposal, delivered late, changes nothing)."""
    was = ledger.targets.get(pool)
    if was is not None and was.ts > ts:
        return ledger
    targets = {**ledger.targets, pool: Target(desired=desired, ts=ts)}
    return msgspec.structs.replace(ledger, targets=targets)


def pool_rate(ledger: Ledger, pool: str) -> tuple[int, float]:
    """(units billing, their USD/hour) for `pool`."""
    rates = [u.usd_per_hour for u in ledger.units.values() if u.pool == pool]
    return len(rates), sum(rates)


def projected(ledger: Ledger, now: float, extra_usd_per_hour: float = 0.0) -> float:
    """Spend by the end of the UTC day if the burn, the reservations and `extra` last."""
    rate = burn_rate(ledger) + reserved_rate(ledger, now) + extra_usd_per_hour
    return spent_today(ledger, now) + rate * hours_left(now)


def apply_unit_event(ledger: Ledger, event: UnitEvent, now: float) -> Ledger:
    """The ledger after `event`; applying the same event twice changes nothing, and an
    event dated beyond the clock skew ahead of `now` changes nothing either."""
    if clock_skew_problem(event.ts, now) is not None:
        return ledger
    ledger = roll(ledger, now)
    key = f"{event.pool}/{event.unit}"
    price = event.usd_per_hour if math.isfinite(event.usd_per_hour) else 0.0
    units, closed = ledger.units, ledger.closed_usd
    ended = ledger.ended
    current = units.get(key)
    if key in ended:
        return ledger
    if event.state in BILLED_STATES:
        if current is None or current.usd_per_hour != price:
            units = dict(units)
            if current is not None:  # the price changed: close the old interval
                closed += _overlap_usd(current.usd_per_hour, current.since, event.ts, ledger.day)
            since = event.ts if current is None else max(current.since, event.ts)
            units[key] = OpenUnit(pool=event.pool, usd_per_hour=price, since=since)
    elif event.state in TERMINAL_STATES:
        if current is not None and event.ts < current.since - MAX_CLOCK_SKEW_S:
            return ledger  # an end dated before the unit began billing is not believed
        if current is not None:
            units = dict(units)
            del units[key]
            closed += _overlap_usd(current.usd_per_hour, current.since, event.ts, ledger.day)
        ended = {**ended, key: event.ts}
    reservations = _settle(ledger.reservations, event, key)
    return msgspec.structs.replace(
        ledger, units=units, closed_usd=closed, ended=ended, reservations=reservations
    )


def _settle(
    reservations: dict[str, Reservation], event: UnitEvent, key: str
) -> dict[str, Reservation]:
    """A unit of the command's reservation is settled by its first billed or terminal event."""
    res = reservations.get(event.command_id or "")
    settles = event.state in BILLED_STATES or event.state in TERMINAL_STATES
    if res is None or not settles or key in res.claimed:
        return reservations
    out = dict(reservations)
    left = res.units - 1
    if left <= 0:
        del out[event.command_id or ""]
    else:
        out[event.command_id or ""] = msgspec.structs.replace(
            res, units=left, claimed=(*res.claimed, key)
        )
    return out


def reserve(ledger: Ledger, command_id: str, res: Reservation) -> Ledger:
    """The ledger with `res` reserved for the approved command `command_id`."""
    return msgspec.structs.replace(ledger, reservations={**ledger.reservations, command_id: res})


def take_token(ledger: Ledger, requester: str, per_min: float, now: float) -> tuple[Ledger, bool]:
    """Take one token from `requester`'s bucket (`per_min` capacity, refilled per second)."""
    bucket = ledger.buckets.get(requester)
    tokens = per_min if bucket is None else bucket.tokens
    if bucket is not None:
        tokens = min(per_min, tokens + max(0.0, now - bucket.at) * per_min / 60.0)
    ok = tokens >= 1.0
    if ok:
        tokens -= 1.0
    buckets = {
        k: b
        for k, b in ledger.buckets.items()
        if b.tokens + (now - b.at) * per_min / 60.0 < per_min  # full buckets carry no state
    }
    buckets[requester] = Bucket(tokens=tokens, at=now)
    return msgspec.structs.replace(ledger, buckets=buckets), ok


def summary(ledger: Ledger, now: float) -> dict[str, float]:
    """The ledger's figures at `now`, rounded for people."""
    return {
        "spent_today_usd": round(spent_today(ledger, now), 6),
        "burn_usd_per_hour": round(burn_rate(ledger), 6),
        "reserved_usd_per_hour": round(reserved_rate(ledger, now), 6),
        "projected_today_usd": round(projected(ledger, now), 6),
        "hours_left": round(hours_left(now), 4),
    }


def oldest_held_age_s(ledger: Ledger, hold_timeout_s: float, now: float) -> float:
    """Seconds the longest-waiting held command has waited (0 with none held).

    A held command stores when it expires, `hold_timeout_s` after it was held, so
    its age is what of the timeout has run out.
    """
    ages = (hold_timeout_s - (h.expires_at - now) for h in ledger.held.values())
    return max(0.0, max(ages, default=0.0))
