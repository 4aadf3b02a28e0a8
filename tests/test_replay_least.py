"""The least under-provisioning any policy could reach (tools/replay/least.py):
a lower bound that no policy run by the sim beats, exact on small cases, and
the verdict that says when the goal is out of every policy's reach."""

from __future__ import annotations

import itertools
import json
import random
from array import array
from pathlib import Path

import pytest

from services.scaler.policy import Policy
from tools.cli import main
from tools.replay.least import least_under
from tools.replay.policies import at_knob
from tools.replay.sim import Warmup
from tools.replay.workload import Workload, run_policy

CAPACITY = 8.0


def work_of(units: list[float], skip: list[int] | None = None) -> Workload:
    """A workload whose demand needs `units` (fractional) units each second."""
    return Workload(
        name="t",
        demand=array("f", [u * CAPACITY for u in units]),
        arrivals=array("f", [0.0] * len(units)),
        skip=bytearray(skip or [0] * len(units)),
        start_t=0,
        warmup=Warmup(seconds=0, demand=0.0, arrivals=0.0),
    )


def least(work: Workload, unit_s: float, *, lead_s: float, floor: int = 1) -> float:
    return least_under(
        work, unit_capacity=CAPACITY, lead_s=lead_s, min_units=floor, unit_hours=unit_s / 3600
    ).under_unit_s


def test_covering_a_spike_costs_its_length_and_a_lead_time() -> None:
    """One unit for 100 s, a second for 10 s, one for 100 s; a unit takes 5 s to
    come, billed from the ask. Covering the spike costs 15 unit-s above the floor."""
    work = work_of([1.0] * 100 + [2.0] * 10 + [1.0] * 100)
    assert least(work, 210, lead_s=5) == pytest.approx(10.0)
    assert least(work, 210 + 15, lead_s=5) == pytest.approx(0.0, abs=1e-6)
    # Between, no policy does better than the straight line from one to the other.
    half = least(work, 210 + 7.5, lead_s=5)
    assert 4.95 <= half <= 5.0 + 1e-9
    # With no lead time, a unit-second bought is a unit-second served.
    assert least(work, 210 + 4, lead_s=0) == pytest.approx(6.0, rel=1e-3)


def _schedules(units: list[float], floor: int, levels: int, lead: int) -> list[tuple[int, float]]:
    """(billed unit-s, under unit-s) of every schedule of whole units above the floor,
    as the sim bills and scores it (the first second's count is the warm start)."""
    n = len(units)
    per_level: list[list[tuple[int, float]]] = []
    for k in range(levels):
        saves = [min(1.0, max(0.0, u - floor - k)) for u in units]
        options = []
        for on in itertools.product((0, 1), repeat=n):
            starts = sum(1 for t in range(1, n) if on[t] and not on[t - 1])
            options.append(
                (sum(on) + lead * starts, sum(s for s, o in zip(saves, on, strict=True) if not o))
            )
        per_level.append(options)
    out = []
    for combo in itertools.product(*per_level):
        out.append((floor * n + sum(c for c, _ in combo), sum(u for _, u in combo)))
    return out


def _hull_at(points: list[tuple[int, float]], budget: float) -> float:
    """The lower convex envelope of (cost, under) points at `budget`: the best mix
    of two schedules, each used for part of the time."""
    cheapest: dict[int, float] = {}
    for c, u in points:
        cheapest[c] = min(u, cheapest.get(c, float("inf")))
    costs = sorted(cheapest)
    best = min(cheapest[c] for c in costs if c <= budget)
    for c1, c2 in itertools.combinations(costs, 2):
        if c1 <= budget <= c2:
            u1, u2 = cheapest[c1], cheapest[c2]
            best = min(best, u1 + (u2 - u1) * (budget - c1) / (c2 - c1))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_bound_is_the_best_schedule_found_by_brute_force(seed: int) -> None:
    """Every schedule of two units above a one-unit floor over 6 s, lead 2 s: the
    bound is never above the best schedule within the budget, and equals the best
    mix of two schedules (the duality is tight on the convex envelope)."""
    rng = random.Random(seed)
    units = [round(rng.uniform(0.5, 3.0), 2) for _ in range(6)]
    points = _schedules(units, floor=1, levels=2, lead=2)
    work = work_of(units)
    for budget in (6, 7, 8, 9, 11, 13, 16, 20):
        best = min((u for c, u in points if c <= budget), default=float("inf"))
        bound = least(work, budget, lead_s=2)
        assert bound <= best + 1e-6
        assert bound == pytest.approx(_hull_at(points, budget), abs=0.02)


def test_a_unit_asked_across_skipped_seconds_is_not_billed_its_lead_time() -> None:
    """The sim neither bills nor scores skipped seconds (missing telemetry), so a unit
    asked for before them is ready after them at no extra cost."""
    units = [1.0] * 20 + [3.0] * 50 + [2.0] * 10
    skip = [0] * 20 + [1] * 50 + [0] * 10
    work = work_of(units, skip)
    # 30 scored seconds at one unit, and 10 more unit-seconds for the second unit.
    assert least(work, 30 + 10, lead_s=30) == pytest.approx(0.0, abs=1e-6)
    assert least(work, 30, lead_s=30) == pytest.approx(10.0)


def test_no_policy_run_by_the_sim_beats_the_bound() -> None:
    """Bursts, a gap of missing telemetry, a slow ramp: every policy at several
    settings leaves at least the bound at its own unit-hours."""
    rng = random.Random(7)
    units: list[float] = []
    for _ in range(12):
        units += [rng.uniform(0.3, 1.6) for _ in range(240)]
        units += [rng.uniform(2.5, 4.5) for _ in range(rng.choice((5, 40, 200)))]
    units += [0.0] * 700 + [i / 300 for i in range(1200)]
    demand = array("f", [u * CAPACITY for u in units])
    skip = bytearray(1 if 0.0 == u else 0 for u in units)
    work = Workload(
        name="mixed",
        demand=demand,
        arrivals=array("f", [0.0] * len(units)),
        skip=skip,
        start_t=0,
        warmup=Warmup(seconds=60, demand=demand[0], arrivals=0.0),
    )
    policy = Policy(max=50, lead_time_s=60.0, unit_capacity=CAPACITY)
    tight = 0
    for name, knob in itertools.product(("ours", "hpa", "kpa"), (0.5, 0.7, 0.95)):
        totals, _ = run_policy(work, name, at_knob(name, policy, knob), price=1.0)
        bound = least_under(
            work,
            unit_capacity=CAPACITY,
            lead_s=60.0,
            min_units=policy.min,
            unit_hours=totals.unit_hours,
        ).under_unit_s
        assert bound <= totals.under_unit_s + 1e-6, (name, knob)
        tight += bound > 0
    assert tight  # the hottest settings leave shortfall that no spend could avoid


def spiky_trace(path: Path) -> None:
    """Two requests a second with a one-second spike of ten every ten minutes: at
    unit capacity 4, one unit serves the load, and a spike needs a second one for a
    second. No policy can buy it in time, and buying it ahead costs a lead time."""
    counts = [2] * 7200
    for t in range(300, 7200, 600):
        counts[t] = 10
    path.write_text("\n".join(str(c) for c in counts) + "\n")


def test_the_verdict_says_when_no_policy_could_meet_the_goal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, out = tmp_path / "spiky.txt", tmp_path / "out.json"
    spiky_trace(trace)
    args = [str(trace), "--unit-capacity", "4", "--lead-time", "120", "--sweep"]
    assert main(["replay", *args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "least possible" in printed and "missed (out of reach)" in printed
    head = json.loads(out.read_text())["headline"]
    better = head["baselines"][head["better"]]
    least_doc = better["least_possible"]
    assert least_doc["out_of_reach"] and not head["met"]
    assert least_doc["under_ratio"] > 0.6
    # The bound is a bound: the baseline itself is a policy.
    assert least_doc["under_unit_s"] <= better["default"]["under_unit_s"] + 1e-6


def test_eval_counts_the_traces_within_reach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spiky_trace(tmp_path / "spiky.txt")
    code = main(["replay", "--eval", str(tmp_path), "--unit-capacity", "4", "--jobs", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "missed (out of reach)" in printed
    assert "met on 0 of 1 traces (0 within reach of any policy)" in printed
