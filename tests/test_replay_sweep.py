"""`fleet replay --sweep`: frontiers, the interpolated headline, the JSON."""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

import pytest

from tests.test_replay import synthetic_trace
from tools.cli import main
from tools.replay.fixed import fixed_reading
from tools.replay.frontier import Point, better_baseline, headlines, interpolate
from tools.replay.sim import Warmup
from tools.replay.workload import Workload

KNOBS = {0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95}


def pts(*rows: tuple[float, float, int]) -> list[Point]:
    return [
        Point(knob=0.1 * i, unit_hours=h, under_unit_s=u, actions=a)
        for i, (h, u, a) in enumerate(rows)
    ]


def test_interpolation_between_the_bracketing_points() -> None:
    front = pts((10.0, 100.0, 10), (20.0, 40.0, 20), (40.0, 0.0, 40))
    r = interpolate(front, 15.0)
    assert r is not None and math.isclose(r.under_unit_s, 70.0) and math.isclose(r.actions, 15.0)
    r = interpolate(front, 35.0)
    assert r is not None and math.isclose(r.under_unit_s, 10.0) and math.isclose(r.actions, 35.0)
    r = interpolate(front, 20.0)  # exactly on a point
    assert r is not None and r.under_unit_s == 40.0 and r.actions == 20.0


def test_no_extrapolation_outside_the_frontier() -> None:
    front = pts((10.0, 100.0, 10), (20.0, 40.0, 20))
    assert interpolate(front, 9.99) is None
    assert interpolate(front, 20.01) is None
    assert interpolate([], 1.0) is None


def test_headline_against_the_better_baseline() -> None:
    ours = [  # given unsorted: the frontier sorts by unit-hours
        Point(knob=0.9, unit_hours=20.0, under_unit_s=40.0, actions=20),
        Point(knob=0.5, unit_hours=40.0, under_unit_s=0.0, actions=40),
        Point(knob=0.95, unit_hours=10.0, under_unit_s=100.0, actions=10),
    ]
    defaults = {
        "hpa": Point(knob=0.7, unit_hours=15.0, under_unit_s=200.0, actions=30),
        "kpa": Point(knob=0.7, unit_hours=30.0, under_unit_s=50.0, actions=25),
    }
    assert better_baseline(defaults) == "kpa"
    hpa, kpa = headlines(ours, defaults)
    assert hpa.baseline == "hpa" and hpa.under_ratio == pytest.approx(70 / 200) and hpa.met
    # At 30 unit-hours ours has 20 under unit-s (0.4x) but 30 actions > 25: missed.
    assert kpa.under_ratio == pytest.approx(0.4)
    assert kpa.actions_ratio == pytest.approx(30 / 25)
    assert not kpa.met
    out = headlines(ours, {"kpa": Point(knob=0.7, unit_hours=50.0, under_unit_s=5, actions=1)})
    assert out[0].ours is None and out[0].under_ratio is None and not out[0].met


def test_better_baseline_ties_go_to_fewer_unit_hours() -> None:
    defaults = {
        "hpa": Point(knob=0.7, unit_hours=15.0, under_unit_s=50.0, actions=3),
        "kpa": Point(knob=0.7, unit_hours=12.0, under_unit_s=50.0, actions=30),
    }
    assert better_baseline(defaults) == "kpa"


def test_sweep_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace, out = tmp_path / "syn.txt", tmp_path / "out.json"
    synthetic_trace(trace)
    args = [str(trace), "--unit-capacity", "4", "--lead-time", "30", "--sweep"]
    assert main(["replay", *args, "--policy", "ours", "hpa", "kpa", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "frontiers" in printed and ("met" in printed or "missed" in printed)
    doc = json.loads(out.read_text())
    assert doc["trace"] == str(trace)
    assert set(doc["policies"]) == {"ours", "hpa", "kpa"}
    for entry in doc["policies"].values():
        assert set(entry) == {"totals", "series", "frontier"}
        front = entry["frontier"]
        assert {p["knob"] for p in front} == KNOBS
        assert set(front[0]) == {"knob", "under_unit_s", "unit_hours", "actions"}
        hours = [p["unit_hours"] for p in front]
        assert hours == sorted(hours)
        # A hotter target never buys more units on this trace.
        by_knob = sorted(front, key=lambda p: p["knob"])
        assert by_knob[0]["unit_hours"] > by_knob[-1]["unit_hours"]
    # The baselines' default is their 0.7 point of the sweep.
    for name in ("hpa", "kpa"):
        entry = doc["policies"][name]
        at_07 = next(p for p in entry["frontier"] if p["knob"] == 0.7)
        assert at_07["unit_hours"] == entry["totals"]["unit_hours"]
    head = doc["headline"]
    assert head["better"] in ("hpa", "kpa") and isinstance(head["met"], bool)
    for base in head["baselines"].values():  # the fixed-count yardstick beside each verdict
        fixed = base["fixed_in_hindsight"]
        assert fixed["under_unit_s"] >= 0
        assert fixed["under_ratio"] == pytest.approx(
            fixed["under_unit_s"] / base["default"]["under_unit_s"]
        )
    assert "fixed in hindsight" in printed


def test_a_fixed_count_in_hindsight_reads_between_two_whole_counts() -> None:
    """Units in demand 1, 2, 3 scored, a fourth second in a zero run is not: 1.5 units
    on average cost 1.5 x 3 s; one unit is short 1 + 2, two units 1; halfway: 2."""
    work = Workload(
        name="tiny",
        demand=array("f", [8.0, 16.0, 24.0, 80.0]),
        arrivals=array("f", [0.0] * 4),
        skip=bytearray([0, 0, 0, 1]),
        start_t=0,
        warmup=Warmup(seconds=0, demand=0.0, arrivals=0.0),
    )
    reading = fixed_reading(work, 8.0, 1.5 * 3 / 3600)
    assert reading.under_unit_s == pytest.approx(2.0)
    assert fixed_reading(work, 8.0, 3 * 3 / 3600).under_unit_s == 0.0
    assert fixed_reading(work, 8.0, 0.0).under_unit_s == pytest.approx(6.0)


def test_json_to_stdout_prints_only_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "syn.txt"
    synthetic_trace(trace)
    assert main(["replay", str(trace), "--policy", "ours", "--policy", "kpa", "--json", "-"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert list(doc["policies"]) == ["ours", "kpa"]
    assert "frontier" not in doc["policies"]["ours"]
