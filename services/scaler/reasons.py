"""The one sentence a scale proposal carries: the numbers behind it, for the
operator reading `fleet tail` and for the audit record."""

from __future__ import annotations

from typing import Protocol


class Policy(Protocol):
    """What a reason reads of the pool's policy (services.scaler.policy.Policy)."""

    @property
    def unit_capacity(self) -> float: ...
    @property
    def stable_window_s(self) -> float: ...
    @property
    def panic_threshold(self) -> float: ...
    @property
    def target_utilization(self) -> float: ...


def reason(
    mode: str,
    current: int,
    desired: int,
    demand: float,
    predicted: float | None,
    lead: float,
    policy: Policy,
    *,
    holding: bool = False,
    recurring: tuple[float, float] | None = None,
    hour: tuple[int, float] | None = None,
    hold: tuple[float, int] | None = None,
) -> str:
    """One sentence naming the numbers behind a proposal."""
    cap = current * policy.unit_capacity
    util = f"{demand / cap:.0%}" if cap else "no capacity"
    verb = "up" if desired > current else "in"
    head = f"Scale {verb} {current} -> {desired} units ({mode}): {demand:.1f} in flight, {util}"
    if mode == "predictive" and predicted is not None and recurring is not None:
        share, ratio = recurring
        return (
            f"{head}; load jumped {ratio:.1f}x near this time of day on {share:.0%} of the "
            f"last days: {predicted:.1f} in flight expected within {lead:.0f} s, bought ahead."
        )
    if mode == "predictive" and predicted is not None and hour is not None:
        minute, shift = hour
        return (
            f"{head}; forecast {predicted:.1f} in flight in {lead:.0f} s, {shift:.1f} of it "
            f"for the forecast's misses near :{minute:02d} past the hour in the last two days."
        )
    if mode == "predictive" and predicted is not None:
        return f"{head}; forecast {predicted:.1f} in flight in {lead:.0f} s."
    if holding:
        return (
            f"{head}; holding the burst's high-water mark of {desired} units until "
            f"{policy.stable_window_s:.0f} s without a burst."
        )
    if mode == "panic":
        return f"{head}, over {policy.panic_threshold:g}x the ready capacity."
    tail = f"{head} of {cap:.0f} at target {policy.target_utilization:.0%}"
    if desired < current and hold is not None:
        held_s, spells = hold
        learned = f"learned from its last {spells} idle spells" if spells else "the default"
        return f"{tail}; released after {held_s:.0f} s unneeded (this pool's hold, {learned})."
    return f"{tail}."
