"""Adapters that put each policy's pure decision behind the sim's `Step`."""

from __future__ import annotations

from contracts.telemetry import PoolMetrics
from services.scaler.policy import Policy, PoolState, decide
from tools.replay import baselines
from tools.replay.baselines import HpaState, KpaState, Target
from tools.replay.sim import Step

NAMES = ("ours", "hpa", "kpa")


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
