"""`[pools.<pool>]`: one pool's configuration, defined once for every service.

The watcher, the scaler, the cost-guard and the provisioner all read the same
table. Before, each declared its own view with its own defaults (the scaler
assumed `min = 1` and `unit_capacity = 8` where the provisioner assumed 0 and
4), so one pool meant different things to different services and a misspelt
key passed silently. Here each key has one type, one default and one
docstring; unknown keys are refused, and each service derives its view (the
scaler's `Policy`, the cost-guard's ceilings) from this struct.

The scaling keys keep the defaults of the scaler's `Policy`, so `fleet replay`
and a configured pool decide alike; `tests/test_pools.py` checks that they agree.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Seconds = Annotated[float, Meta(ge=0.0, le=1e9)]
Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]
Usd = Annotated[float, Meta(ge=0.0, le=1e9)]


class PoolConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `[pools.<pool>]` table; every service reads it whole."""

    # -- what the pool runs and where (cost-guard, provisioner)
    gpu_model: str = "any"
    """GPU model the pool rents (`any`: the cheapest offer); a request for another is denied."""
    providers: list[str] = msgspec.field(default_factory=lambda: ["sim"])
    """Providers the pool may use, in failover order."""
    max_usd_per_hour: Usd = 5.0
    """Price ceiling of one unit, USD/hour: no offer above it is rented, and the cost-guard's
    price estimate when no offer is known. Set it for your GPU model."""

    vram_gb: Annotated[float, Meta(ge=0.0, le=10_000.0)] | None = None
    """VRAM per card, GB, for routing jobs to the pool when no live offer describes its GPU."""
    vendor: str | None = None
    """GPU vendor (NVIDIA, AMD, Apple, ...), likewise for job routing; offers say it otherwise."""
    runtime: str | None = None
    """What the pool's GPUs run (cuda, rocm, metal), likewise for job routing."""

    # -- how many units (scaler; min also bounds idle cleanup, max also the cost-guard)
    min: int = 1
    """Fewest units: what silence scales to, and the floor of idle cleanup. 1 keeps a warm
    unit (a cold start costs the lead time); 0 lets an idle pool cost nothing."""
    max: int = 100
    """Most units: the scaler never proposes more, the cost-guard denies a command for more."""
    unit_capacity: float = 8.0
    """Requests (or sessions) in flight one unit serves at full load (also the simulated
    marketplace's per-unit capacity)."""

    # -- the scaler's policy (see services/scaler/policy.py for how each is used)
    target_utilization: float = 0.8
    """Utilization a scaling action aims for, in (0, 1], at the demand quantile the SLO
    weight covers; 0.8 (ADR 0008, revision 10)."""
    scale_up_at: Fraction = 0.8
    """Utilization whose crossing makes the watcher publish the pool's metrics at once
    rather than at its next tick, so the scaler sees a burst sooner. The scaler itself
    no longer reads it (ADR 0008: the cost quantile decides)."""
    scale_down_at: Fraction = 0.3
    """Unused since ADR 0008 (the hold rule decides how far a scale-in goes); kept so
    old configs load."""
    cooldown_up_s: Seconds = 0.0
    """Seconds after a scale-in before a steady (non-urgent) scale-up; 0 because a late
    scale-up costs requests. Queueing, panic and forecast rises never wait for it."""
    cooldown_down_s: Seconds = 30.0
    """Seconds after any change, up or down, before a scale-in: a unit released just
    after a change is often bought back the next minute."""
    stable_window_s: Seconds = 60.0
    """Window whose highest recommendation bounds a scale-in, seconds (Knative's 60 s)."""
    panic_window_s: Seconds = 6.0
    """Short window watched for bursts, seconds."""
    panic_threshold: Annotated[float, Meta(gt=0.0)] = 2.0
    """Panic when the panic window's demand needs this many times the ready units."""
    max_step_up: Annotated[int, Meta(ge=1)] = 1000
    """Most units one scale-up adds."""
    max_step_down: Annotated[int, Meta(ge=1)] = 10
    """Unused since ADR 0008 (a scale-in goes to what the hold keeps); kept so old
    configs load."""
    lead_time_s: Seconds = 120.0
    """Seconds from requesting a unit to it serving; the forecaster looks this far ahead.
    Replaced by the learned value once requested->ready times are observed."""
    forecast_margin: Annotated[float, Meta(ge=0.0)] = 0.0
    """Extra headroom on a forecast rise, in multiples of the forecast's measured error."""
    tick_s: Annotated[float, Meta(gt=0.0)] = 2.0
    """Seconds between metrics the policy is tuned for."""
    repropose_s: Seconds = 30.0
    """Seconds after which an unfulfilled proposal is sent again."""
    slo_weight: Annotated[float, Meta(gt=0.0)] = 20.0
    """Cost of one under-provisioned unit-second, in unit-seconds of the unit's price: the
    pool's SLO as a price. 20 covers the forecast demand's 95 % quantile (q* = w/(w+1))."""
    billing_s: Annotated[float, Meta(gt=0.0, le=86400.0)] = 1.0
    """Billing granularity of the pool's provider, seconds (1 by the second, 3600 hourly):
    a scale-in holds at least this long, since a paid period released early saves nothing."""
    min_change_fraction: Fraction = 0.1
    """Smallest change worth an action, as a fraction of the pool (at least one unit),
    unless requests queue: smaller steps are what the next minute undoes."""
    hold_lead_times: Annotated[float, Meta(ge=1.0, le=100.0)] = 2.5
    """Lead times of past demand a scale-in must still serve (at least one: a released
    unit is back only a lead time later); 2.5 was chosen leave-one-out (ADR 0008)."""
    up_slack: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.5
    """Fraction of one unit's load at the target a need must exceed the count by before
    a scale-up that is not urgent; 0.5 was chosen on the full-length set (ADR 0008)."""
    rebuy_share: Annotated[float, Meta(gt=0.0, le=10.0)] = 1.0
    """Share of a unit short, for a lead time, when a released unit's load comes back:
    what the learned hold weighs an idle unit's rent against; 1 was chosen leave-one-out
    (ADR 0008, revision 4)."""

    # -- draining and cleanup (provisioner)
    drain_deadline_s: Seconds = 120.0
    """Seconds a draining unit may finish in-flight work before it is destroyed anyway."""
    idle_cleanup_s: Seconds = 1800.0
    """A ready unit idle this long is offered for release (through the cost-guard), never
    below `min`; 30 minutes keeps a unit through a lunch-break lull. 0 turns it off."""

    def __post_init__(self) -> None:
        # The same wording the scaler used, so an operator sees the fix in the message.
        if self.min < 0 or self.min > self.max:
            raise ValueError(f"min={self.min} and max={self.max} need 0 <= min <= max")
        if self.unit_capacity <= 0:
            raise ValueError(f"unit_capacity={self.unit_capacity} must be > 0")
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"target_utilization={self.target_utilization} must be in (0, 1]")


def keys_of(kind: type[msgspec.Struct], pool: PoolConfig) -> dict[str, object]:
    """The keys of `pool` that are also fields of `kind`, for building a service's view."""
    names = {f.name for f in msgspec.structs.fields(kind)}
    return {k: v for k, v in msgspec.structs.asdict(pool).items() if k in names}
