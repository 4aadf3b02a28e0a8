"""Reactive baselines, implemented from their documentation as pure functions.

`hpa_decide`: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) with its
default behavior, on an AverageValue metric of requests in flight per pod:
- runs every `HPA_SYNC_S` (15 s, `--horizontal-pod-autoscaler-sync-period`);
- desired = ceil(currentReplicas x currentMetric / target), skipped while the
  ratio is within the 0.1 tolerance; pods not ready yet count as using
  nothing on a scale-up and as at the target on a scale-in (as the replica
  calculator treats missing pods);
- scale-up: no stabilization, at most max(4 pods, 100 %) more per 15 s;
- scale-down: the highest recommendation of the last 300 s, 100 % per 15 s.

`kpa_decide`: Knative's KPA (autoscaler/pkg/autoscaler/scaling/autoscaler.go)
with its defaults: a 2 s tick, a 60 s stable window and a 6 s panic window of
averaged concurrency, target = capacity x 70 %, max scale-up rate 1000, max
scale-down rate 2; panic when the panic window's desired count is >= 2x the
ready pods; while panicking the count never falls (it keeps the panic
maximum), and panic ends 60 s after the threshold was last crossed.

Both aim at `unit_capacity x target_utilization` in flight per unit, the same
target as the scaler, and both respect the policy's min and max.
"""

from __future__ import annotations

import math

import msgspec

from contracts.telemetry import PoolMetrics

HPA_SYNC_S = 15.0
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW_S = 300.0
HPA_UP_PODS = 4
HPA_UP_PERCENT = 100.0

KPA_TICK_S = 2.0
KPA_STABLE_S = 60.0
KPA_PANIC_S = 6.0
KPA_PANIC_THRESHOLD = 2.0
KPA_MAX_UP_RATE = 1000.0
KPA_MAX_DOWN_RATE = 2.0
KPA_TARGET_UTILIZATION = 0.7


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What a baseline aims at and its bounds."""

    unit_capacity: float
    """Requests in flight one unit serves at full load."""
    target_utilization: float = KPA_TARGET_UTILIZATION
    min: int = 1
    max: int = 100

    @property
    def per_unit(self) -> float:
        """Requests in flight per unit at the target."""
        return self.unit_capacity * self.target_utilization


def _demand(m: PoolMetrics) -> float:
    return max(0.0, m.inflight + m.queue_depth)


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


class HpaState(msgspec.Struct, frozen=True, kw_only=True):
    """The HPA's memory: its recommendations inside the scale-down window."""

    recs: tuple[tuple[float, int], ...] = ()


def hpa_decide(
    state: HpaState, metrics: PoolMetrics, target: Target, now: float
) -> tuple[HpaState, int]:
    """One HPA sync: the new replica count for the pool."""
    ready, pending = metrics.units_ready, metrics.units_pending
    current = ready + pending
    demand = _demand(metrics)
    rec = current
    if ready > 0:
        ratio = demand / ready / target.per_unit
        if abs(ratio - 1.0) > HPA_TOLERANCE:
            if pending and ratio > 1.0:
                # Pods without metrics count as idle when scaling up.
                ratio = demand / (current * target.per_unit)
            elif pending:
                # ... and as exactly at target when scaling down.
                ratio = (demand + pending * target.per_unit) / (current * target.per_unit)
            if abs(ratio - 1.0) > HPA_TOLERANCE:
                rec = _ceil(ratio * (current if pending else ready))
    rec = max(target.min, min(target.max, rec))
    recs = (*tuple(r for r in state.recs if r[0] > now - HPA_DOWN_WINDOW_S), (now, rec))
    if rec > current:
        limit = max(current + HPA_UP_PODS, _ceil(current * (1 + HPA_UP_PERCENT / 100)))
        desired = min(rec, limit)
    elif rec < current:
        desired = min(current, max(r for _, r in recs))
    else:
        desired = current
    desired = max(target.min, min(target.max, desired))
    return HpaState(recs=recs), desired


class KpaState(msgspec.Struct, frozen=True, kw_only=True):
    """The KPA's memory: concurrency samples, panic start and panic maximum."""

    samples: tuple[tuple[float, float], ...] = ()
    panic_time: float | None = None
    max_panic_pods: int = 0


def kpa_decide(
    state: KpaState, metrics: PoolMetrics, target: Target, now: float
) -> tuple[KpaState, int]:
    """One KPA tick: the new pod count for the pool."""
    samples = tuple(s for s in state.samples if s[0] > now - KPA_STABLE_S)
    samples += ((now, _demand(metrics)),)
    stable = sum(d for _, d in samples) / len(samples)
    panic_vals = [d for t, d in samples if t > now - KPA_PANIC_S]
    panic = sum(panic_vals) / len(panic_vals)

    ready = float(max(1, metrics.units_ready))
    max_up = math.ceil(KPA_MAX_UP_RATE * ready)
    max_down = math.floor(ready / KPA_MAX_DOWN_RATE)
    dspc = min(max(_ceil(stable / target.per_unit), max_down), max_up)
    dppc = min(max(_ceil(panic / target.per_unit), max_down), max_up)
    over = dppc / ready >= KPA_PANIC_THRESHOLD

    panic_time, max_panic = state.panic_time, state.max_panic_pods
    if panic_time is None and over:
        panic_time = now
    elif over:
        panic_time = now
    elif panic_time is not None and now > panic_time + KPA_STABLE_S:
        panic_time, max_panic = None, 0

    desired = dspc
    if panic_time is not None:
        max_panic = max(max_panic, dppc)
        desired = max_panic
    desired = max(target.min, min(target.max, desired))
    return KpaState(samples=samples, panic_time=panic_time, max_panic_pods=max_panic), desired
