"""Explicit capacity: floors that approved, pinned provisions set on their pools.

A person (or the agent) who provisions 2 A100s for two hours means two hours,
whatever the load says. `decide()` knows nothing of that; these pure functions
are applied after it: a pool's floor is the sum of its live pins, a scale-in
proposal below the floor is raised to it (or dropped), and a pin whose
duration has ended is released through the cost-guard like any other release.
A floor never adds units by itself: the provision that set it already did, and
replacing failed units is the provisioner's job, so a floor only stops removals.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal, Verdict

RELEASE_GRACE_S = 60.0
"""After a pin ends and its release is sent, seconds the floor still holds, so the
scaler's own scale-in does not remove the same units a second time while they drain."""

PinState = Literal["active", "releasing"]


class Pin(msgspec.Struct, frozen=True, kw_only=True):
    """`count` units of `pool` kept until `until_ts` (None: until released)."""

    id: str
    """The provision command's id."""
    pool: str
    count: int
    gpu_model: str = "any"
    requester: str = ""
    since_ts: float = 0.0
    until_ts: float | None = None
    state: PinState = "active"
    released_ts: float | None = None
    """When its end was released (state `releasing`)."""


def pin_of(verdict: Verdict) -> Pin | None:
    """The pin an approved, pinned provision sets, from the approval's time (a replayed
    verdict gives the same pin); None for anything else."""
    now = verdict.ts
    cmd = verdict.command if verdict.command is not None else verdict.request
    if verdict.decision != "approved" or not isinstance(cmd, ProvisionRequest) or not cmd.pin:
        return None
    return Pin(
        id=cmd.id,
        pool=cmd.pool,
        count=cmd.count,
        gpu_model=cmd.gpu_model,
        requester=cmd.requester,
        since_ts=now,
        until_ts=None if cmd.duration_s is None else now + cmd.duration_s,
    )


def floor(pins: list[Pin], pool: str, now: float) -> int:
    """Units the pool keeps whatever its load: live pins, and ended ones still draining."""
    total = 0
    for p in pins:
        if p.pool != pool:
            continue
        if p.state == "active" or (
            p.released_ts is not None and now - p.released_ts < RELEASE_GRACE_S
        ):
            total += p.count
    return total


def apply_floor(proposal: ScaleProposal | None, pinned: int) -> ScaleProposal | None:
    """`decide()`'s proposal with the floor applied: a scale-in never goes below the
    pinned units; one that would is raised to them, or dropped when that is no change."""
    if proposal is None or proposal.desired >= proposal.current:
        return proposal
    keep = min(pinned, proposal.current)
    if proposal.desired >= keep:
        return proposal
    if keep >= proposal.current:
        return None
    return msgspec.structs.replace(
        proposal,
        desired=keep,
        reason=f"{proposal.reason} Held at {keep}: {pinned} units are pinned by explicit "
        "provisions.",
    )


def due(pins: list[Pin], now: float) -> list[Pin]:
    """Active pins whose time has come, soonest first."""
    ended = [
        p for p in pins if p.state == "active" and p.until_ts is not None and p.until_ts <= now
    ]
    return sorted(ended, key=lambda p: (p.until_ts or 0.0, p.id))


def releasing(pin: Pin, now: float) -> Pin:
    """The pin once its end has been released."""
    return msgspec.structs.replace(pin, state="releasing", released_ts=now)


def forgotten(pins: list[Pin], now: float) -> list[Pin]:
    """Pins done with: released longer ago than the grace, or released to zero units."""
    return [
        p
        for p in pins
        if p.count <= 0
        or (
            p.state == "releasing"
            and p.released_ts is not None
            and now - p.released_ts >= RELEASE_GRACE_S
        )
    ]


def end_release(pin: Pin, now: float) -> ReleaseRequest:
    """The release that ends a pin; the cost-guard judges and audits it."""
    held = f"{now - pin.since_ts:.0f} s" if pin.since_ts else "its duration"
    return ReleaseRequest(
        id=f"pin-end-{pin.id}"[:128],
        requester="scaler",
        pool=pin.pool,
        count=pin.count,
        reason=f"explicit capacity {pin.id} ({pin.count} x {pin.gpu_model} for "
        f"{pin.requester or 'a caller'}) ended after {held}",
    )


def after_release(pins: list[Pin], release: ReleaseRequest) -> list[Pin]:
    """Pins after someone released units of their pool by hand: 'until released' ends
    there. The newest active pins of the pool give up the released units first."""
    gone = 1 if release.unit else (release.count or 0)
    out: list[Pin] = []
    for p in sorted(pins, key=lambda p: -p.since_ts):
        if gone > 0 and p.pool == release.pool and p.state == "active":
            take = min(gone, p.count)
            gone -= take
            p = msgspec.structs.replace(p, count=p.count - take)
        out.append(p)
    return sorted(out, key=lambda p: p.since_ts)
