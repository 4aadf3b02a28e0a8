"""Adapters that put each policy's pure decision behind the sim's `Step`."""

from __future__ import annotations

import msgspec

from contracts.telemetry import PoolMetrics
from services.scaler.policy import Policy, PoolState, decide
from tools.replay import baselines
from tools.replay.baselines import HpaState, KpaState, Target
from tools.replay.sim import Step

NAMES = ("ours", "hpa", "kpa")
BASELINES = ("hpa", "kpa")

KNOB = "target utilization"
"""The one aggressiveness knob a sweep turns, for every policy: the fraction of
a unit's capacity a scaling action aims to fill. Lower buys headroom (more
unit-hours, less under-provisioning); higher runs hotter."""
KNOBS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95)
"""The sweep's settings of the knob: every 0.1 up to 0.8, then denser where ours'
frontier meets the baselines' default unit-hours on every trace of the evaluation
set (ours buys headroom at its cost quantile, so it reaches their spend at a hotter
target). The frontier is convex there, and a straight line across 0.1 of knob
overstated ours' shortfall by up to a fifth (ADR 0008, revision 7)."""
BASELINE_DEFAULT_KNOB = baselines.KPA_TARGET_UTILIZATION
"""The baselines' default setting: Knative's 70 % target, also the usual HPA target."""


OURS_WEIGHT_KNOB = BASELINE_DEFAULT_KNOB
"""The knob at which ours' sweep runs at the configured SLO weight: the baselines'
default target. Fixed, not the configured target, so that the frontier a sweep
draws does not move with the default target (ADR 0008, revision 10)."""


def ours_at(policy: Policy, knob: float) -> Policy:
    """Ours' policy at one knob setting: what the knob means for ours, in one place.

    Ours is sized by two settings that both say how much shortfall the pool
    accepts: the utilization it fills (`target_utilization`) and the price of
    a shortfall (`slo_weight`, which sets the covered demand quantile). The
    knob turns both together: the target utilization is the knob, and the SLO
    weight scales with the spare capacity the knob leaves, (1 - knob), relative
    to the spare at `OURS_WEIGHT_KNOB`, where it is the configured weight; a
    hotter knob also covers a lower quantile. The configured setting is a point
    of its own (the default runs at 0.8 with the full weight, above this line)."""
    spare = 1.0 - OURS_WEIGHT_KNOB
    weight = policy.slo_weight * max(0.0, 1.0 - knob) / spare
    return msgspec.structs.replace(policy, target_utilization=knob, slo_weight=weight)


def at_knob(name: str, policy: Policy, knob: float) -> Policy:
    """The policy `name` runs with at one knob setting; baselines read only
    `target_utilization` (with the bounds and capacity) from it."""
    if name == "ours":
        return ours_at(policy, knob)
    return msgspec.structs.replace(policy, target_utilization=knob)


def default_for(name: str, policy: Policy) -> Policy:
    """The policy `name` runs with at its default setting: ours as configured,
    a baseline at `BASELINE_DEFAULT_KNOB`."""
    if name == "ours":
        return policy
    return at_knob(name, policy, BASELINE_DEFAULT_KNOB)


def make_step(name: str, policy: Policy) -> tuple[Step, float]:
    """The step function and tick (seconds) of the named policy."""
    target = Target(
        unit_capacity=policy.unit_capacity,
        target_utilization=policy.target_utilization,
        min=policy.min,
        max=policy.max,
    )
    if name == "ours":
        box = [PoolState()]

        def ours(m: PoolMetrics, now: float) -> int | None:
            box[0], proposal = decide(box[0], m, policy, now)
            return proposal.desired if proposal is not None else None

        return ours, policy.tick_s
    if name == "hpa":
        hpa = [HpaState()]

        def hpa_step(m: PoolMetrics, now: float) -> int | None:
            hpa[0], n = baselines.hpa_decide(hpa[0], m, target, now)
            return n

        return hpa_step, baselines.HPA_SYNC_S
    if name == "kpa":
        kpa = [KpaState()]

        def kpa_step(m: PoolMetrics, now: float) -> int | None:
            kpa[0], n = baselines.kpa_decide(kpa[0], m, target, now)
            return n

        return kpa_step, baselines.KPA_TICK_S
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(NAMES)}")
