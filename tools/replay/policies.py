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
KNOBS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""The sweep's settings of the knob."""
BASELINE_DEFAULT_KNOB = baselines.KPA_TARGET_UTILIZATION
"""The baselines' default setting: Knative's 70 % target, also the usual HPA target."""


def ours_at(policy: Policy, knob: float) -> Policy:
    """Ours' policy at one knob setting: what the knob means for ours, in one place.

    Today it is `Policy.target_utilization`; the policy may map it to any of
    its fields, as long as a higher knob means a hotter, cheaper pool."""
    return msgspec.structs.replace(policy, target_utilization=knob)


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
