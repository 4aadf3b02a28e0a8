"""Explicit capacity at its edges: which command a pin comes from, sums over several
pins, the exact hold boundary, release texts and hand releases."""

from __future__ import annotations

from contracts.commands import ProvisionRequest, ReleaseRequest, ScaleProposal, Verdict
from services.scaler import pins

T0 = 1_800_000_000.0


def provision(**kw: object) -> ProvisionRequest:
    fields: dict[str, object] = {
        "id": "prov-1",
        "requester": "mcp",
        "pool": "adhoc-a100",
        "gpu_model": "A100",
        "count": 2,
        "pin": True,
        "duration_s": 3600.0,
    }
    fields.update(kw)
    return ProvisionRequest(**fields)  # type: ignore[arg-type]


def pin(id: str, pool: str = "p", count: int = 1, **kw: object) -> pins.Pin:
    return pins.Pin(id=id, pool=pool, count=count, **kw)  # type: ignore[arg-type]


def test_the_pin_comes_from_the_concrete_command_when_there_is_one() -> None:
    asked = provision(id="ask-1", gpu_model="any", requester="agent", count=1)
    placed = provision(id="prov-9", gpu_model="H100", requester="alice", count=3)
    v = Verdict(id="ask-1", decision="approved", request=asked, command=placed, ts=T0)
    p = pins.pin_of(v)
    assert p is not None
    assert (p.id, p.gpu_model, p.requester, p.count) == ("prov-9", "H100", "alice", 3)
    assert (p.since_ts, p.until_ts) == (T0, T0 + 3600.0)


def test_without_a_concrete_command_the_pin_comes_from_the_request() -> None:
    asked = provision(id="ask-2", gpu_model="L4", requester="bob", duration_s=None)
    v = Verdict(id="ask-2", decision="approved", request=asked, ts=T0)
    p = pins.pin_of(v)
    assert p is not None
    assert (p.id, p.gpu_model, p.requester, p.until_ts) == ("ask-2", "L4", "bob", None)


def test_the_floor_sums_every_pin_of_the_pool_whatever_the_order() -> None:
    held = [pin("a", "q", 5), pin("b", "p", 2), pin("c", "q", 7), pin("d", "p", 3)]
    assert pins.floor(held, "p", T0) == 5
    assert pins.floor(held, "q", T0) == 12


def scale(current: int, desired: int) -> ScaleProposal:
    return ScaleProposal(id="s1", pool="p", current=current, desired=desired, reason="Idle.")


def test_a_scale_in_to_exactly_the_floor_is_left_alone() -> None:
    proposal = scale(5, 3)
    assert pins.apply_floor(proposal, 3) == proposal


def test_a_raised_scale_in_says_why_in_its_reason() -> None:
    out = pins.apply_floor(scale(5, 1), 3)
    assert out is not None
    assert out.desired == 3
    assert out.reason == "Idle. Held at 3: 3 units are pinned by explicit provisions."


def test_due_pins_come_soonest_first_then_by_id() -> None:
    ended = [
        pin("b", until_ts=T0 + 20),
        pin("a", until_ts=T0 + 30),
        pin("c", until_ts=T0 + 10),
        pin("a0", until_ts=T0 + 20),
        pin("late", until_ts=T0 + 999),
    ]
    assert [p.id for p in pins.due(ended, T0 + 30)] == ["c", "a0", "b", "a"]


def test_a_releasing_pin_is_kept_through_the_grace_and_forgotten_at_its_end() -> None:
    p = pins.releasing(pin("x", count=2), T0)
    assert pins.forgotten([p], T0 + 10.0) == []
    assert pins.forgotten([p], T0 + pins.RELEASE_GRACE_S - 1) == []
    assert pins.forgotten([p], T0 + pins.RELEASE_GRACE_S) == [p]


def test_an_active_pin_is_not_forgotten_whatever_its_released_time() -> None:
    odd = pin("y", count=2, released_ts=T0 - 1000.0)
    assert pins.forgotten([odd], T0) == []
    no_time = pin("z", count=2, state="releasing")
    assert pins.forgotten([no_time], T0) == []


def test_the_end_release_names_the_pin_and_its_holder() -> None:
    p = pin("prov-7", "p", 2, gpu_model="A100", requester="alice", since_ts=T0)
    r = pins.end_release(p, T0 + 7200.0)
    assert r.id == "pin-end-prov-7"
    assert r.reason == "explicit capacity prov-7 (2 x A100 for alice) ended after 7200 s"


def test_the_end_release_without_a_start_or_a_requester() -> None:
    r = pins.end_release(pin("prov-8", "p", 1), T0)
    assert r.reason == "explicit capacity prov-8 (1 x any for a caller) ended after its duration"


def test_the_end_release_id_is_cut_at_128_characters() -> None:
    r = pins.end_release(pin("x" * 200), T0)
    assert r.id == "pin-end-" + "x" * 120
    assert len(r.id) == 128


def test_a_hand_release_without_unit_or_count_changes_no_pin() -> None:
    held = [pin("a", "p", 2, since_ts=T0), pin("b", "p", 1, since_ts=T0 + 1)]
    release = ReleaseRequest(id="r1", requester="ops", pool="p")
    assert pins.after_release(held, release) == held


def test_a_hand_release_only_touches_active_pins_of_its_pool() -> None:
    held = [
        pin("other", "q", 4, since_ts=T0 + 5),
        pin("old", "p", 2, since_ts=T0),
        pin("new", "p", 1, since_ts=T0 + 3),
        pin("ending", "p", 3, since_ts=T0 + 4, state="releasing", released_ts=T0 + 4),
    ]
    release = ReleaseRequest(id="r1", requester="ops", pool="p", count=2)
    out = {p.id: p.count for p in pins.after_release(held, release)}
    assert out == {"other": 4, "old": 1, "new": 0, "ending": 3}
