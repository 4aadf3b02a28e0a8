"""Explicit capacity as pure decisions: a pinned provision's floor, what it does to the
scaler's scale-in, and its end on time, with an injected clock (no waiting hours)."""

from __future__ import annotations

from pathlib import Path

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal, Verdict
from contracts.telemetry import PoolMetrics
from services.kit.config import load_settings
from services.scaler import pins
from services.scaler.policy import PoolState, decide
from services.scaler.service import Scaler, ScalerSettings

T0 = 1_800_000_000.0
TWO_HOURS = 7200.0


def approved(cmd: ProvisionRequest, ts: float = T0) -> Verdict:
    return Verdict(id=cmd.id, decision="approved", request=cmd, command=cmd, ts=ts)


def two_a100(**kw: object) -> ProvisionRequest:
    return ProvisionRequest(
        id="prov-1",
        requester="mcp",
        pool="adhoc-a100",
        gpu_model="A100",
        count=2,
        pin=True,
        duration_s=TWO_HOURS,
        **kw,  # type: ignore[arg-type]
    )


def scale_in(current: int, desired: int) -> ScaleProposal:
    return ScaleProposal(
        id="scale:adhoc-a100:1", pool="adhoc-a100", current=current, desired=desired, reason="x."
    )


def test_a_two_hour_provision_of_two_a100s_survives_zero_load_and_ends_on_time() -> None:
    pin = pins.pin_of(approved(two_a100()))
    assert pin is not None and pin.until_ts == T0 + TWO_HOURS
    held = [pin]
    # Zero load all along: decide() keeps asking to go 2 -> 0; the floor drops it.
    for t in (T0 + 1, T0 + 3600, T0 + TWO_HOURS - 1):
        assert pins.floor(held, "adhoc-a100", t) == 2
        assert pins.apply_floor(scale_in(2, 0), pins.floor(held, "adhoc-a100", t)) is None
        assert pins.due(held, t) == []
    # At two hours it is due, and its release names the pool and the two units.
    [ended] = pins.due(held, T0 + TWO_HOURS)
    release = pins.end_release(ended, T0 + TWO_HOURS)
    assert (release.pool, release.count, release.requester) == ("adhoc-a100", 2, "scaler")
    assert "ended after 7200 s" in release.reason
    # While the release drains, the scaler's own scale-in cannot remove them twice...
    held = [pins.releasing(ended, T0 + TWO_HOURS)]
    assert pins.due(held, T0 + TWO_HOURS + 1) == []
    assert pins.floor(held, "adhoc-a100", T0 + TWO_HOURS + 1) == 2
    # ...and after the grace the pin is gone.
    later = T0 + TWO_HOURS + pins.RELEASE_GRACE_S
    assert pins.floor(held, "adhoc-a100", later) == 0
    assert pins.forgotten(held, later) == held


def test_the_floor_only_stops_removals_and_never_adds_units() -> None:
    pinned = 2
    assert pins.apply_floor(scale_in(5, 0), pinned).desired == 2  # type: ignore[union-attr]
    assert pins.apply_floor(scale_in(5, 3), pinned).desired == 3  # type: ignore[union-attr]
    up = scale_in(1, 4)
    assert pins.apply_floor(up, pinned) is up
    # Fewer units than pinned (one failed): no scale-up from the floor, no scale-in either.
    assert pins.apply_floor(scale_in(1, 0), pinned) is None
    assert pins.apply_floor(None, pinned) is None


def test_only_approved_pinned_provisions_pin_and_until_released_has_no_end() -> None:
    assert pins.pin_of(approved(two_a100(), T0)) is not None
    unpinned = ProvisionRequest(id="p2", requester="scaler", pool="h100", count=3)
    assert pins.pin_of(approved(unpinned)) is None
    denied = Verdict(id="prov-1", decision="denied", request=two_a100())
    assert pins.pin_of(denied) is None
    forever = ProvisionRequest(id="p3", requester="mcp", pool="h100", count=1, pin=True)
    pin = pins.pin_of(approved(forever))
    assert pin is not None and pin.until_ts is None
    assert pins.due([pin], T0 + 365 * 86400) == []


def test_a_release_by_hand_lowers_the_newest_pins_of_its_pool() -> None:
    old = pins.Pin(id="a", pool="h100", count=2, since_ts=T0)
    new = pins.Pin(id="b", pool="h100", count=1, since_ts=T0 + 10)
    other = pins.Pin(id="c", pool="l40s", count=4, since_ts=T0)
    one = ReleaseRequest(id="r1", requester="mcp", pool="h100", unit="u1")
    after = {p.id: p.count for p in pins.after_release([old, new, other], one)}
    assert after == {"a": 2, "b": 0, "c": 4}
    two = ReleaseRequest(id="r2", requester="mcp", pool="h100", count=2)
    after = {p.id: p.count for p in pins.after_release([old, new, other], two)}
    assert after == {"a": 1, "b": 0, "c": 4}
    assert [p.id for p in pins.forgotten(pins.after_release([old, new], two), T0)] == ["b"]


def test_an_adhoc_pool_is_never_scaled_by_load_before_or_after_its_batch(tmp_path: Path) -> None:
    """A batch's 25 pinned units work its jobs, then the batch releases them all: the
    load still in the hold window must not rent units again for nobody."""
    settings = load_settings(
        ScalerSettings, env={}, overrides={"store": {"dir": str(tmp_path / "scaler")}}
    )
    policy = Scaler(settings).policy_for("adhoc-rtx4090")
    state = PoolState(pool="adhoc-rtx4090")
    proposals = []
    for i in range(120):  # a minute of the batch at work, then a minute after it
        busy = i < 60
        m = PoolMetrics(
            pool="adhoc-rtx4090",
            ts=T0 + i,
            units_ready=25 if busy else 0,
            inflight=25.0 if busy else 0.0,
            queue_depth=3.0 if busy else 0.0,
        )
        state, proposal = decide(state, m, policy, m.ts)
        floor = 25 if busy else 0  # the batch's pin, until it released its units
        proposals.append(pins.apply_floor(proposal, floor))
    assert [p for p in proposals if p is not None] == []
